"""Where streamed blocks live on the host, and how one block's bytes reach a device slot.

Each block gets a ``BlockLayout``: its tensors at 256-byte aligned offsets of one flat byte
buffer, with their original strides. A device slot is such a buffer; moving a block is then a
single contiguous copy, and pointing the block's parameters at views of the slot makes it run
there. Two host strategies:

* ``PackedHost`` — every streamed block packed once into its own host buffer (page-locked on
  CUDA, so copies are truly asynchronous); the block's tensors are re-pointed at the packed bytes
  for good, which frees their previous storage. Costs RAM equal to the streamed bytes.
* ``StagedHost`` — blocks stay where they are (views of the memory-mapped checkpoint: no RAM of
  their own); a worker thread gathers a block into one of two (pinned) staging buffers and issues
  the device copy from there. For when RAM is short; disk and memcpy speed bound it.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn

from .devices import CopyQueue, host_buffer
from .placement import module_tensors, plain_tensors

ALIGN = 256  # bytes: cuBLAS/cuDNN-friendly and the same for every run, so results do not depend on it


def _span(shape, stride) -> int:
    """Elements from the first to the last element of a strided view, inclusive."""
    if any(size == 0 for size in shape):
        return 0
    return 1 + sum((size - 1) * st for size, st in zip(shape, stride))


class BlockLayout:
    """A block's tensors mapped onto one flat byte buffer, original shapes and strides kept."""

    def __init__(self, block: nn.Module):
        self.tensors = module_tensors(block)
        self.homes = [t.data for t in self.tensors]
        self.strides: list[tuple[int, ...]] = []
        self.offsets: list[int] = []
        offset = 0
        for t in self.tensors:
            # overlapping views (stride 0) are stored densely; everything else keeps its layout
            dense = _span(t.shape, t.stride()) >= t.numel()
            stride = tuple(t.stride()) if dense else torch.empty(t.shape, device="meta").stride()
            self.strides.append(stride)
            self.offsets.append(offset)
            offset += math.ceil(_span(t.shape, stride) * t.element_size() / ALIGN) * ALIGN
        self.nbytes = offset

    def carve(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``buffer`` (uint8, >= nbytes) shaped like the block's tensors."""
        views = []
        for t, offset, stride in zip(self.tensors, self.offsets, self.strides):
            flat = buffer[offset: offset + _span(t.shape, stride) * t.element_size()].view(t.dtype)
            views.append(torch.as_strided(flat, t.shape, stride))
        return views

    def fill(self, views: list[torch.Tensor], release_pages: Callable[[torch.Tensor], None] | None = None) -> None:
        """Copy the block's host tensors into ``views``; ``release_pages`` then drops their mapped file
        pages from the process (the loaders' ``release_pages``), so reading in place does not grow RSS."""
        for view, home in zip(views, self.homes):
            view.copy_(home)
            if release_pages is not None:
                release_pages(home)

    def point_at(self, views: list[torch.Tensor]) -> None:
        for t, view in zip(self.tensors, views):
            t.data = view

    def point_home(self) -> None:
        for t, home in zip(self.tensors, self.homes):
            t.data = home


def _ready(marker) -> Future:
    future: Future = Future()
    future.set_result(marker)
    return future


class _Packed:
    """One block's packed host bytes; kept (weakly keyed by the block) across stages."""

    def __init__(self, layout: BlockLayout, pinned: bool, release_pages):
        with plain_tensors():
            self.buffer = host_buffer(layout.nbytes, pinned)
            views = layout.carve(self.buffer)
            layout.fill(views, release_pages)
        layout.point_at(views)
        layout.homes = [t.data for t in layout.tensors]
        self.pointers = [t.data_ptr() for t in layout.tensors]
        self.nbytes = layout.nbytes

    def intact(self, layout: BlockLayout) -> bool:
        return [t.data_ptr() for t in layout.tensors] == self.pointers


_PACKED: "weakref.WeakKeyDictionary[nn.Module, _Packed]" = weakref.WeakKeyDictionary()


def packed_bytes(block: nn.Module) -> int:
    """Host bytes already packed for ``block`` (0 if it is not packed)."""
    packed = _PACKED.get(block)
    return packed.nbytes if packed is not None and packed.intact(BlockLayout(block)) else 0


def packed_total() -> int:
    """Host bytes held by packed blocks of models still alive (the memory goes with its model)."""
    return sum(packed.nbytes for packed in list(_PACKED.values()))


class PackedHost:
    """Streamed blocks packed in (pinned) host buffers; a copy is one async transfer."""

    def __init__(self, blocks: dict[int, nn.Module], copies: CopyQueue, pinned: bool, release_pages=None):
        self.copies = copies
        self.layouts: dict[int, BlockLayout] = {}
        self._buffers: dict[int, torch.Tensor] = {}
        for index, block in blocks.items():
            layout = BlockLayout(block)
            packed = _PACKED.get(block)
            if packed is None or not packed.intact(layout):
                packed = _PACKED[block] = _Packed(layout, pinned, release_pages)
            self.layouts[index] = layout
            self._buffers[index] = packed.buffer

    def submit(self, index: int, slot: torch.Tensor, after) -> Future:
        n = self.layouts[index].nbytes
        with plain_tensors():
            return _ready(self.copies.copy(slot[:n], self._buffers[index][:n], after))

    def close(self) -> None:
        pass


class StagedHost:
    """Blocks read in place (e.g. from the memory map) through two staging buffers on a worker thread."""

    STAGING = 2

    def __init__(self, blocks: dict[int, nn.Module], copies: CopyQueue, pinned: bool, release_pages=None):
        self.copies = copies
        self.release_pages = release_pages
        self.layouts = {index: BlockLayout(block) for index, block in blocks.items()}
        self.staging_bytes = max((layout.nbytes for layout in self.layouts.values()), default=0)
        with plain_tensors():
            self._staging = [host_buffer(self.staging_bytes, pinned) for _ in range(self.STAGING)]
        self._last_copy = [None] * self.STAGING
        self._turn = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltx2-block-staging")

    def submit(self, index: int, slot: torch.Tensor, after) -> Future:
        k = self._turn
        self._turn = (self._turn + 1) % self.STAGING
        return self._worker.submit(self._stage, index, slot, after, k)

    def _stage(self, index: int, slot: torch.Tensor, after, k: int):
        layout = self.layouts[index]
        staging = self._staging[k]
        with plain_tensors():
            self.copies.host_wait(self._last_copy[k])  # the previous transfer out of this buffer is done
            layout.fill(layout.carve(staging), self.release_pages)
            marker = self.copies.copy(slot[: layout.nbytes], staging[: layout.nbytes], after)
        self._last_copy[k] = marker
        return marker

    def close(self) -> None:
        self._worker.shutdown(wait=True)
