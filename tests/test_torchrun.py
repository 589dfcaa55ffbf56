"""``torchrun -m ltx2_nodes generate|run`` on 2 gloo processes (the CLI's multi-process launch, ``cli/launch.py``).

Each rank runs ``main`` in-process as torchrun would start it (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` set,
the group already joined: ``init_from_env`` takes it over)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from gloo_ranks import RankFailure, run_ranks

from demo_support import demo_models  # noqa: F401 (fixture)
from ltx2_nodes import distributed
from ltx2_nodes.cli import main
from ltx2_nodes.cli.launch import rank_device
from ltx2_nodes.cli.workflow import UsageError
from ltx2_nodes.demo.models import CHECKPOINT
from ltx2_nodes.media.mux import probe

CRASH_AT_CALL = 2  # the DiT call of rank 1 that dies (os._exit) in the crash test


def generate_argv(models: str, out: str) -> list[str]:
    return ["generate", "--prompt", "a fox trots through snow, wind hisses", "--models-dir", models, "--width",
            "128", "--height", "96", "--frames", "9", "--checkpoint", CHECKPOINT, "--single-stage", "--device",
            "cpu", "--out", out]


def cli_runs(world, runs: list[tuple[list[str], int | None]]) -> list[tuple[int, str, str]]:
    """``main(argv)`` on this rank for each ``(argv, crash_rank)`` in turn: exit code, stdout, stderr. The rank
    ``crash_rank`` dies (``os._exit(7)``) in its ``CRASH_AT_CALL``-th DiT call."""
    from ltx2_nodes.model import sequence_parallel

    distributed.shutdown = lambda: None  # the group stays for the next run (run_ranks leaves it at the end)
    results, call = [], sequence_parallel.SequenceParallelDiT.__call__
    for argv, crash_rank in runs:
        calls = [0]

        def dying(self, *args, calls=calls, **kw):
            calls[0] += 1
            if calls[0] == CRASH_AT_CALL:
                os._exit(7)
            return call(self, *args, **kw)

        sequence_parallel.SequenceParallelDiT.__call__ = dying if world.rank == crash_rank else call
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        results.append((int(code), out.getvalue(), err.getvalue()))
    return results


def test_two_ranks_write_one_clip_from_rank_zero_and_a_dying_rank_stops_the_other_with_nothing_written(
        demo_models, tmp_path):
    """One launch (the processes' start-up paid once): a clean run, then a run whose rank 1 dies mid-sampling."""
    good, crashed = tmp_path / "good", tmp_path / "crashed"
    runs = [(generate_argv(str(demo_models.root), str(good / "clip.mp4")), None),
            (generate_argv(str(demo_models.root), str(crashed / "clip.mp4")), 1)]
    with pytest.raises(RankFailure, match="rank 1 exited with code 7") as failure:
        run_ranks(cli_runs, 2, runs, grace=60)
    (code, out, err), (crash_code, _, crash_err) = failure.value.answers[0]
    assert code == 0 and str(good / "clip.mp4") in out, err
    assert sorted(p.name for p in good.iterdir()) == ["clip.mp4"]  # rank 0 alone wrote; no partial file
    assert probe(good / "clip.mp4").video_frames == 9
    assert crash_code == 1
    assert "error: rank 0 of 2 stopped: another process of this run failed" in crash_err
    assert not crashed.exists() or list(crashed.iterdir()) == []  # nothing written, nothing partial


def test_commands_that_do_not_split_are_refused_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["demo-models", "nowhere"]) == 2
    assert "'demo-models' runs in one process" in capsys.readouterr().err


def test_each_rank_drives_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert rank_device(None, 1) == rank_device("cuda", 1) == rank_device("cuda:1", 1) == "cuda:1"
    assert rank_device("cpu", 1) == "cpu"
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES"):
        rank_device("cuda:0", 1)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert rank_device("auto", 3) == "cpu"


def test_a_peer_failure_inside_a_wrapped_error_is_named_on_a_multi_process_world(monkeypatch):
    from ltx2_nodes.errors import LTX2Error, RankFailedError

    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:18338")
    wrapped = LTX2Error("LTX2Sampler failed: RuntimeError: ...")
    wrapped.__cause__ = gloo
    assert distributed.peer_failure(wrapped) is gloo and distributed.peer_failure(ValueError("x")) is None
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 2, 1, None))
    with pytest.raises(RankFailedError, match="rank 1 of 2 stopped.*Connection closed by peer"):
        with distributed.peer_failures_named():
            raise wrapped
    with pytest.raises(ValueError):
        with distributed.peer_failures_named():
            raise ValueError("a bug of this rank stays itself")


def test_output_writers_discard_on_ranks_other_than_zero(monkeypatch, tmp_path):
    import torch

    from ltx2_nodes.media import audio_io, mux

    monkeypatch.setattr(mux, "world", lambda: distributed.World(1, 2, 1, None))
    monkeypatch.setattr(audio_io, "world", lambda: distributed.World(1, 2, 1, None))
    with mux.MP4Writer(tmp_path / "a.mp4", 24, audio_sample_rate=16000) as writer:
        writer.add_frames(torch.zeros(3, 32, 32, 3))
        writer.set_audio(torch.zeros(2, 100))
    assert writer.frames_written == 3
    audio_io.write_audio_file(tmp_path / "a.flac", {"waveform": torch.zeros(1, 2, 100), "sample_rate": 16000})
    assert list(Path(tmp_path).iterdir()) == []
