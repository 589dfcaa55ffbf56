"""How many device slots to stream through and which blocks to keep resident.

Cost model per block ``i``: compute time ``c_i = flops_i / device flops/s`` and copy time
``t_i = bytes_i / host->device bytes/s``. One forward is simulated as two in-order queues:
* the copy queue transfers streamed blocks in order; the copy of the m-th streamed block starts
  when the queue is free and the slot it reuses was released, i.e. when the (m - slots)-th
  streamed block finished computing;
* the compute queue runs block ``i`` after block ``i-1`` and, if ``i`` is streamed, after its copy.
Two passes are simulated (copies run ahead across the pass boundary, as the streamer prefetches
cyclically) and the second one is timed.

Resident blocks cost no copy and are spread evenly, so each gap between streamed blocks is
covered by resident compute. The planner tries every (resident count, slot count) that fits the
room left in the budget and keeps the fastest; among plans within 2% of it, the one using the
least device memory. This is what makes LTX-2's audio-heavy/light workloads stream well: an
audio-only or low-resolution run computes little per block (copy-bound), so the planner keeps
more blocks resident; a 720p video run computes ~5x longer than a block copy, so two slots and no
resident blocks already hide every transfer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .devices import ComputeDevice, MiB, copy_queue_for, host_buffer
from .placement import plain_tensors

MIN_SLOTS = 2
MAX_SLOTS = 6
NEAR_BEST = 1.02


@dataclass(frozen=True)
class StreamPlan:
    slots: int
    resident: frozenset[int] = frozenset()
    predicted_s: float | None = None  # one forward pass under the cost model
    compute_s: float | None = None  # the same pass with every block resident


@dataclass(frozen=True)
class StageProfile:
    """What a stage will do, for placement: the activation reserve and each block's forward FLOPs."""

    activation_bytes: int = 0
    block_flops: tuple[float, ...] | None = None

    def block_seconds(self, n_blocks: int, flops_per_s: float) -> list[float] | None:
        if not self.block_flops:
            return None
        flops = list(self.block_flops)
        if len(flops) == 1:
            flops = flops * n_blocks
        if len(flops) != n_blocks:
            raise ValueError(f"profile gives FLOPs for {len(flops)} blocks, the model has {n_blocks}")
        return [f / flops_per_s for f in flops]


@dataclass(frozen=True)
class DeviceSpeed:
    flops_per_s: float
    copy_bytes_per_s: float
    measured_on: str = field(default="", compare=False)


def simulate_pass(compute_s: Sequence[float], copy_s: Sequence[float], resident: frozenset[int] | set[int],
                  slots: int) -> float:
    """Seconds for one forward (the second of two back-to-back) under the two-queue model."""
    n = len(compute_s)
    compute_end = 0.0
    copy_free = 0.0
    streamed_done: list[float] = []  # compute end time of each streamed block, in issue order
    pass_end = []
    for _ in range(2):
        for i in range(n):
            start = compute_end
            if i not in resident:
                m = len(streamed_done)
                slot_free = streamed_done[m - slots] if m >= slots else 0.0
                copy_end = max(copy_free, slot_free) + copy_s[i]
                copy_free = copy_end
                start = max(start, copy_end)
            compute_end = start + compute_s[i]
            if i not in resident:
                streamed_done.append(compute_end)
        pass_end.append(compute_end)
    return pass_end[1] - pass_end[0]


def evenly_spaced(n: int, k: int) -> frozenset[int]:
    return frozenset(min(n - 1, int((j + 0.5) * n / k)) for j in range(k)) if k else frozenset()


def plan_streaming(block_bytes: Sequence[int], room: int, *, compute_s: Sequence[float] | None = None,
                   copy_bytes_per_s: float | None = None, minimal: bool = False) -> StreamPlan | None:
    """Best plan whose resident blocks + slots fit in ``room`` bytes; None if two slots do not fit.

    Without a compute estimate the stream is assumed copy-bound: keep as many blocks resident as
    fit next to two slots. ``minimal`` (ComfyUI --novram) always takes two slots and nothing resident.
    """
    n = len(block_bytes)
    if n == 0:
        raise ValueError("no blocks to stream")

    def cost(resident: frozenset[int], slots: int) -> int:
        streamed = [b for i, b in enumerate(block_bytes) if i not in resident]
        return sum(block_bytes[i] for i in resident) + slots * max(streamed)

    if cost(frozenset(), MIN_SLOTS) > room:
        return None
    if minimal:
        return StreamPlan(MIN_SLOTS)
    if compute_s is None or copy_bytes_per_s is None:
        best = StreamPlan(MIN_SLOTS)
        for k in range(1, n - MIN_SLOTS + 1):
            resident = evenly_spaced(n, k)
            if cost(resident, MIN_SLOTS) > room:
                break
            best = StreamPlan(MIN_SLOTS, resident)
        return best
    copy_s = [b / copy_bytes_per_s for b in block_bytes]
    candidates: list[tuple[float, int, StreamPlan]] = []
    for k in range(0, n - 1):
        resident = evenly_spaced(n, k)
        if cost(resident, MIN_SLOTS) > room:
            break
        for slots in range(MIN_SLOTS, min(MAX_SLOTS, n - k) + 1):
            used = cost(resident, slots)
            if used > room:
                break
            seconds = simulate_pass(compute_s, copy_s, resident, slots)
            candidates.append((seconds, used, StreamPlan(slots, resident, seconds, sum(compute_s))))
    fastest = min(seconds for seconds, _, _ in candidates)
    return min((c for c in candidates if c[0] <= fastest * NEAR_BEST), key=lambda c: (c[1], c[0]))[2]


def measure_speed(device: ComputeDevice, dtype: torch.dtype = torch.bfloat16) -> DeviceSpeed:
    """Matmul throughput and host->device copy bandwidth of ``device`` (a fraction of a second)."""
    big = device.is_cuda
    size = 4096 if big else 384
    dtype = dtype if big else torch.float32
    copy_bytes = 256 * MiB if big else 32 * MiB
    queue = copy_queue_for(device)
    with plain_tensors():
        a = torch.randn(size, size, dtype=dtype, device=device.device)
        b = torch.randn(size, size, dtype=dtype, device=device.device)
        src = host_buffer(copy_bytes, pinned=big)
        dst = device.empty(copy_bytes)

        def timed(fn, repeats: int) -> float:
            fn()
            queue.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            queue.synchronize()
            return (time.perf_counter() - start) / repeats

        matmul_s = timed(lambda: a @ b, 5)
        copy_s = timed(lambda: queue.copy(dst, src), 3)
    return DeviceSpeed(2 * size ** 3 / matmul_s, copy_bytes / copy_s, device.describe())
