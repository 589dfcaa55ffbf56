"""Measuring memory on any device, CPU included.

``DeviceAllocations`` counts what the engine allocates on its compute device (weights, slots),
independently of the engine's own ledger, by wrapping the two allocation points of
``ComputeDevice``; with a virtual device it proves on CPU that placements stay within budget and
that nothing is left after a run.

``LiveBytes`` is a ``TorchDispatchMode`` that sees every tensor an operator returns, counts each
storage allocated inside it once, and uncounts it when that storage is freed. Tensors that existed
before the mode started (weights, inputs) are not counted, so ``peak`` is the activation
high-water mark of the code run inside it. Used to check the activation formulas of
``estimates`` against the real model code.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .devices import ComputeDevice


class DeviceAllocations:
    """Live and peak bytes of engine allocations on the compute device, while the context is active."""

    def __init__(self):
        self.live = 0
        self.peak = 0
        self.samples: list[int] = []
        self._saved = None

    def __enter__(self) -> "DeviceAllocations":
        empty, copy_of = ComputeDevice.empty, ComputeDevice.copy_of
        self._saved = (empty, copy_of)
        ComputeDevice.empty = lambda device, nbytes: self._track(empty(device, nbytes))
        ComputeDevice.copy_of = lambda device, t: self._track(copy_of(device, t))
        return self

    def __exit__(self, *exc) -> None:
        ComputeDevice.empty, ComputeDevice.copy_of = self._saved

    def _track(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        nbytes = storage.nbytes()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, nbytes)
        return t

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def sample(self, *_args) -> None:
        self.samples.append(self.live)


class LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()  # data pointers of storages allocated inside the mode

    def __enter__(self):
        self.live = self.peak = 0
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        before = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t.untyped_storage(), before)
        return out

    def _track(self, storage, before: set[int]) -> None:
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in before or ptr in self._tracked:
            return  # empty, a view/in-place result of an input, or already counted
        nbytes = storage.nbytes()
        self._tracked.add(ptr)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, ptr, nbytes)

    def _release(self, ptr: int, nbytes: int) -> None:
        self._tracked.discard(ptr)
        self.live -= nbytes
