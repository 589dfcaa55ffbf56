"""Measuring the peak of live activation bytes on any device, CPU included.

``LiveBytes`` is a ``TorchDispatchMode`` that sees every tensor an operator returns, counts each
storage allocated inside it once, and uncounts it when that storage is freed. Tensors that existed before the mode started (weights, inputs) are not counted,
so ``peak`` is the activation high-water mark of the code run inside it. Used to check the
activation formulas of ``estimates`` against the real model code.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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
