"""The process group (``ltx2_nodes/distributed.py``) and the gloo test launcher (``tests/gloo_ranks.py``)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import RankFailure, run_ranks

from ltx2_nodes import distributed
from ltx2_nodes.errors import InputError


def rank_sum(world, scale):
    value = torch.tensor([float(world.rank + 1) * scale])
    dist.all_reduce(value, group=world.group)
    return world.rank, world.size, world.is_main, value


def rank_one_fails(world):
    if world.rank == 1:
        raise ValueError("rank one broke on purpose")
    dist.barrier(group=world.group)
    return world.rank


def rank_one_hangs(world):
    if world.rank == 1:
        import time

        time.sleep(60)
    return world.rank


def test_two_gloo_ranks_answer_in_rank_order_and_share_one_group():
    before = os.environ.get("OMP_NUM_THREADS")
    answers = run_ranks(rank_sum, 2, 10.0)
    assert os.environ.get("OMP_NUM_THREADS") == before  # the children's settings stay theirs
    assert [(rank, size, main) for rank, size, main, _ in answers] == [(0, 2, True), (1, 2, False)]
    assert all(value.item() == 30.0 for *_, value in answers)


def test_a_failing_rank_fails_the_call_with_its_traceback():
    with pytest.raises(RankFailure, match="rank one broke on purpose"):
        run_ranks(rank_one_fails, 2, timeout=60)


def test_a_rank_past_the_timeout_is_killed_and_named():
    with pytest.raises(RankFailure, match="rank 1 did not answer within 3 s"):
        run_ranks(rank_one_hangs, 2, timeout=3)


def test_one_process_without_torchrun_is_a_world_of_one(monkeypatch):
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.SINGLE
    assert distributed.init_from_env("cpu") == distributed.SINGLE
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env("cpu").is_main
    distributed.shutdown()  # nothing to leave


def test_a_partial_torchrun_environment_is_refused_with_the_launch_command(monkeypatch):
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="torchrun --nproc-per-node"):
        distributed.init_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="not an integer"):
        distributed.init_from_env("cpu")


def test_a_bad_collective_timeout_is_refused(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "-5")
    with pytest.raises(InputError, match="positive number of seconds"):
        distributed.timeout_s()
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "42")
    assert distributed.timeout_s() == 42.0

