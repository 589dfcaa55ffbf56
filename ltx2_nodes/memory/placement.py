"""Moving a set of module tensors onto the compute device and back, by re-pointing ``.data``.

A placement never copies weights back: the host tensor (often a view of the memory-mapped
checkpoint) is remembered and the parameter is pointed at it again on eviction, so leaving the
device costs nothing and the host never holds a second copy. Parameters keep their identity, so
aliases (tied weights, a buffer referenced under two names) follow automatically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .devices import ComputeDevice
from .ledger import DeviceLedger


@contextlib.contextmanager
def plain_tensors() -> Iterator[None]:
    """Engine-internal buffers are ordinary tensors even when the caller runs under ``inference_mode``
    (inference tensors cannot be written in place outside it, and forwards may run in either mode)."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _own_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def module_tensors(module: nn.Module, skip: Iterable[nn.Module] = ()) -> list[torch.Tensor]:
    """Unique parameters and buffers of ``module``, leaving out the subtrees in ``skip``.

    Refuses a tensor that is both inside and outside ``skip`` (a weight shared between a streamed
    block, or a module kept on the host, and the rest of the model cannot be in two places).
    """
    skip = list(skip)
    skip_ids = {id(m) for m in skip}
    inside = {id(t) for m in skip for t in _own_tensors(m)}
    out, seen = [], set()

    def walk(m: nn.Module) -> None:
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is None or id(t) in seen:
                continue
            if id(t) in inside:
                raise ValueError(f"a {tuple(t.shape)} {t.dtype} tensor of {type(m).__name__} is shared with a "
                                 "streamed block or a module kept on the host; those must own their weights")
            seen.add(id(t))
            out.append(t)
        for child in m.children():
            if id(child) not in skip_ids:
                walk(child)

    walk(module)
    return out


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class PlacedTensors:
    """Tensors that can be put on the compute device (charged to ``ledger`` as ``owner``) and back."""

    def __init__(self, owner: str, tensors: list[torch.Tensor], device: ComputeDevice, ledger: DeviceLedger):
        self.owner = owner
        self.tensors = tensors
        self.device = device
        self.ledger = ledger
        self.nbytes = tensor_bytes(tensors)
        self._homes: list[torch.Tensor] | None = None
        self._copies: list[torch.Tensor] = []

    @property
    def placed(self) -> bool:
        return self._homes is not None

    def place(self, advice: str = "") -> None:
        if self.placed:
            return
        self.ledger.charge(self.owner, self.nbytes, advice)
        homes: list[torch.Tensor] = []
        copies: list[torch.Tensor] = []
        try:
            with plain_tensors():
                for t in self.tensors:
                    home = t.data
                    if self.device.separate:
                        copies.append(self.device.copy_of(home))
                        t.data = copies[-1]
                    homes.append(home)
        except BaseException:
            for t, home in zip(self.tensors, homes):
                t.data = home
            self.ledger.credit(self.owner, self.nbytes)
            raise
        self._homes, self._copies = homes, copies

    def restore(self) -> None:
        if self._homes is None:
            return
        with plain_tensors():
            for t, home in zip(self.tensors, self._homes):
                t.data = home
        self._homes, self._copies = None, []
        self.ledger.credit(self.owner, self.nbytes)

    def intact(self) -> bool:
        """Still placed as we left it (nobody moved the model meanwhile)."""
        if not self.placed:
            return False
        if not self.device.separate:
            return True
        return all(t.data_ptr() == c.data_ptr() for t, c in zip(self.tensors, self._copies))
