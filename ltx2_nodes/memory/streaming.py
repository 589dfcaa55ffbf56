"""Block streaming: a model's repeated blocks rotate through a few device slots during a forward.

Attached with forward pre/post hooks on the blocks of an ``nn.ModuleList``, so the model needs
no knowledge of it. Before block ``i`` runs, its bytes are in a slot (usually prefetched), the
compute stream waits for that copy's event and the block's parameters are pointed at the slot;
after it ran, they point back at their host storage and the slot is released with a
compute-done event, which the next copy into that slot waits for on the copy stream. Copies of
the following blocks are issued as soon as slots free up, so block ``i+1`` (and further, with
more slots) copies while block ``i`` computes. Blocks the plan keeps resident stay on the device
for the whole stage. Prefetch runs cyclically, so block 0 of the next forward (the next sampling
step) copies while the model's output head runs.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import nn

from .devices import ComputeDevice, CopyQueue
from .host import PackedHost, StagedHost
from .ledger import DeviceLedger
from .placement import PlacedTensors, module_tensors, plain_tensors
from .planner import StreamPlan


@dataclass
class StreamStats:
    copies: int = 0  # block transfers issued
    copied_bytes: int = 0
    misses: int = 0  # blocks that had not been prefetched when they were needed
    host_wait_s: float = 0.0  # time the Python thread waited for staged copies


class BlockStreamer:
    def __init__(self, blocks: nn.ModuleList, device: ComputeDevice, ledger: DeviceLedger, copies: CopyQueue,
                 host: PackedHost | StagedHost, plan: StreamPlan, *, owner: str,
                 between_blocks: Callable[[], None] | None = None):
        self.blocks = blocks
        self.device = device
        self.ledger = ledger
        self.copies = copies
        self.host = host
        self.plan = plan
        self.owner = owner
        self.between_blocks = between_blocks
        self.stats = StreamStats()
        self.streamed = [i for i in range(len(blocks)) if i not in plan.resident]
        self._next = {i: self.streamed[(k + 1) % len(self.streamed)] for k, i in enumerate(self.streamed)}
        self._resident = [PlacedTensors(f"{owner}:block{i}", module_tensors(blocks[i]), device, ledger)
                          for i in sorted(plan.resident)]
        self._slot_bytes = max(host.layouts[i].nbytes for i in self.streamed)
        self._slots: list[torch.Tensor] = []
        self._free: deque[tuple[int, object]] = deque()  # (slot, compute-done marker of its last user)
        self._pending: OrderedDict[int, tuple[int, Future]] = OrderedDict()  # prefetched, not yet run
        self._active: dict[int, int] = {}  # running block -> slot
        self._hooks: list = []

    @property
    def slot_bytes(self) -> int:
        return self._slot_bytes * self.plan.slots

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, advice: str = "") -> "BlockStreamer":
        try:
            for placed in self._resident:
                placed.place(advice)
            self.ledger.charge(f"{self.owner}:slots", self.slot_bytes, advice)
            with plain_tensors():
                self._slots = [self.device.empty(self._slot_bytes) for _ in range(self.plan.slots)]
            self._free.extend((k, None) for k in range(self.plan.slots))
            for i in self.streamed:
                block = self.blocks[i]
                self._hooks.append(block.register_forward_pre_hook(lambda _m, _a, i=i: self._before(i)))
                self._hooks.append(block.register_forward_hook(lambda _m, _a, _o, i=i: self._after(i)))
            if self.between_blocks is not None:
                for i in sorted(self.plan.resident):
                    self._hooks.append(self.blocks[i].register_forward_pre_hook(
                        lambda _m, _a: self.between_blocks()))
        except BaseException:
            self.detach()
            raise
        return self

    def detach(self) -> None:
        """Stop streaming; every block points at its host storage again and no slot is held."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for _slot, future in self._pending.values():
            if not future.cancel():
                try:
                    future.result()
                except BaseException:  # noqa: BLE001 - a failed prefetch no longer matters
                    pass
        self._pending.clear()
        self.copies.synchronize()
        with plain_tensors():
            for layout in self.host.layouts.values():
                layout.point_home()
        self._active.clear()
        self._free.clear()
        self._slots = []
        if self.ledger.held(f"{self.owner}:slots"):
            self.ledger.credit(f"{self.owner}:slots", self.slot_bytes)
        for placed in self._resident:
            placed.restore()

    # -- hooks -----------------------------------------------------------------------------------

    def _before(self, index: int) -> None:
        if self.between_blocks is not None:
            self.between_blocks()
        entry = self._pending.pop(index, None)
        if entry is None:
            self.stats.misses += 1
            entry = self._fetch(index)
        slot, future = entry
        start = time.perf_counter()
        marker = future.result()
        self.stats.host_wait_s += time.perf_counter() - start
        self.copies.wait_ready(marker)
        layout = self.host.layouts[index]
        with plain_tensors():
            layout.point_at(layout.carve(self._slots[slot]))
        self._active[index] = slot
        self._prefetch(index)

    def _after(self, index: int) -> None:
        slot = self._active.pop(index)
        with plain_tensors():
            self.host.layouts[index].point_home()
        self._free.append((slot, self.copies.compute_done()))
        self._prefetch(index)

    # -- slots -----------------------------------------------------------------------------------

    def _prefetch(self, index: int) -> None:
        """Start copies for the next streamed blocks after ``index`` while slots are free."""
        upcoming = index
        for _ in range(self.plan.slots - 1):
            upcoming = self._next[upcoming]
            if upcoming in self._active or upcoming in self._pending:
                continue
            if not self._free:
                return
            self._pending[upcoming] = self._fetch(upcoming)

    def _fetch(self, index: int) -> tuple[int, Future]:
        if not self._free:
            # every slot holds a prefetch for a block the model did not run next: drop the oldest
            # (a later copy into its slot is ordered after it on the same copy queue)
            _dropped, (slot, _future) = self._pending.popitem(last=False)
            self._free.append((slot, None))
        slot, after = self._free.popleft()
        future = self.host.submit(index, self._slots[slot], after)
        self.stats.copies += 1
        self.stats.copied_bytes += self.host.layouts[index].nbytes
        return slot, future
