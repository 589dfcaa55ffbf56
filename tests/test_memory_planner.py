"""The streaming planner's cost model and choices."""

from __future__ import annotations

import pytest

from ltx2_nodes.memory.estimates import audio_tokens, dit_block_flops, video_tokens
from ltx2_nodes.memory.planner import StageProfile, StreamPlan, evenly_spaced, plan_streaming, simulate_pass
from ltx2_nodes.model.transformer import TransformerConfig

GB = 10 ** 9


def test_compute_bound_stream_hides_every_copy():
    compute, copy = [2.0] * 6, [1.0] * 6
    assert simulate_pass(compute, copy, frozenset(), 2) == pytest.approx(12.0)


def test_copy_bound_stream_runs_at_copy_speed_and_resident_blocks_cut_it():
    compute, copy = [0.1] * 8, [1.0] * 8
    assert simulate_pass(compute, copy, frozenset(), 2) == pytest.approx(8.0)
    assert simulate_pass(compute, copy, frozenset(), 5) == pytest.approx(8.0)  # more slots do not add bandwidth
    assert simulate_pass(compute, copy, evenly_spaced(8, 4), 2) == pytest.approx(4.0)


def test_uneven_blocks_profit_from_a_deeper_prefetch():
    # heavy blocks alternate with light ones (e.g. a modality skipped in some blocks): with more slots the copy
    # queue works ahead during heavy blocks and light blocks never wait
    compute = [3.0, 0.2] * 4
    copy = [1.0] * 8
    two, four = simulate_pass(compute, copy, frozenset(), 2), simulate_pass(compute, copy, frozenset(), 4)
    assert four < two and four == pytest.approx(sum(compute))


def test_evenly_spaced_resident_blocks():
    assert evenly_spaced(48, 0) == frozenset()
    assert evenly_spaced(8, 2) == {2, 6}
    assert len(evenly_spaced(48, 7)) == 7


def test_plan_refuses_when_two_slots_do_not_fit():
    assert plan_streaming([10] * 4, 19) is None
    assert plan_streaming([10] * 4, 20) == StreamPlan(2)


def test_minimal_plan_ignores_spare_room():
    assert plan_streaming([10] * 8, 1000, compute_s=[0.0] * 8, copy_bytes_per_s=1.0, minimal=True) == StreamPlan(2)


def test_without_a_compute_estimate_spare_room_holds_resident_blocks():
    plan = plan_streaming([10] * 8, 55)
    assert plan.slots == 2 and plan.resident == evenly_spaced(8, 3)


def _dit_plan(video: int, room_gb: float, block_gb: float, tflops: float, copy_gbps: float) -> StreamPlan:
    cfg = TransformerConfig()
    profile = StageProfile(0, (dit_block_flops(cfg, video, audio_tokens(121, 24.0)),))
    compute = profile.block_seconds(cfg.num_layers, tflops * 1e12)
    return plan_streaming([int(block_gb * GB)] * cfg.num_layers, int(room_gb * GB), compute_s=compute,
                          copy_bytes_per_s=copy_gbps * GB)


def test_720p_video_streams_through_two_slots_at_full_speed():
    """19B fp8 blocks (0.39 GB) on a consumer card (~100 TFLOP/s, PCIe 4 ~20 GB/s), 8 GB budget."""
    plan = _dit_plan(video_tokens(1280, 704, 121), room_gb=5.0, block_gb=0.39, tflops=100, copy_gbps=20)
    assert plan.slots == 2 and not plan.resident
    assert plan.predicted_s <= 1.01 * plan.compute_s


def test_audio_only_run_is_copy_bound_so_room_goes_to_resident_blocks():
    plan = _dit_plan(0, room_gb=5.0, block_gb=0.39, tflops=100, copy_gbps=20)
    assert len(plan.resident) == int(5.0 / 0.39) - 2
    video = _dit_plan(video_tokens(1280, 704, 121), room_gb=5.0, block_gb=0.39, tflops=100, copy_gbps=20)
    assert len(plan.resident) > len(video.resident)


def test_fast_gpu_with_bf16_blocks_buys_speed_with_resident_blocks():
    """H100-class compute (700 TFLOP/s effective), bf16 blocks over PCIe 5 (~50 GB/s), 768x512: copy-bound."""
    video = video_tokens(768, 512, 121)
    slowdown = []
    for room_gb in (16, 20, 24):
        plan = _dit_plan(video, room_gb=room_gb, block_gb=0.77, tflops=700, copy_gbps=50)
        slowdown.append(plan.predicted_s / plan.compute_s)
        assert plan.slots == 2 and plan.resident
    assert slowdown[0] > slowdown[1] > slowdown[2] and slowdown[2] <= 1.05
