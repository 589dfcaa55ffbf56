"""Run a function on ``size`` CPU processes joined in one gloo group: the distributed tests' launcher.

``run_ranks(fn, size, *args)`` spawns ``size`` processes (``torch.multiprocessing``, spawn start method, one
thread each), joins them in a gloo group through a rendezvous file, calls ``fn(world, *args)`` in each (``fn``
must be a module-level function so a spawned process can import it) and answers the return values in rank
order. A rank that raises, dies, or does not answer within ``timeout`` seconds fails the call with every
failing rank's traceback (or exit code), and the remaining processes are killed: no hung test, no orphan.

Return values travel as ``torch.save`` bytes, so tensors come back whole after their process has exited.
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import time
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GRACE_S = 3.0  # after the first failure, how long to wait for the other ranks' own reports


class RankFailure(RuntimeError):
    """One or more ranks raised, died or timed out; the message has each one's traceback, ``answers`` the return
    values of the ranks that did answer (``{rank: value}``)."""

    def __init__(self, message: str, answers: dict):
        super().__init__(message)
        self.answers = answers


def run_ranks(fn, size: int, *args, timeout: float = 120, env: dict[str, str] | None = None,
              grace: float = GRACE_S) -> list:
    """``[fn(world_0, *args), ..., fn(world_{size-1}, *args)]`` computed in ``size`` gloo processes.

    ``env`` adds environment variables to the children (``OMP_NUM_THREADS=1`` is always set); ``grace``: how long
    the other ranks may still answer after the first failure."""
    context = mp.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory(prefix="gloo_ranks_") as folder:
        rendezvous = os.path.join(folder, "rendezvous")
        children_env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
        processes = []
        with _environment(children_env):
            for rank in range(size):
                process = context.Process(target=_child, args=(rank, size, rendezvous, timeout, fn, args, results),
                                          daemon=True)
                process.start()
                processes.append(process)
        try:
            return _collect(processes, results, size, timeout, grace)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join(5)


def _collect(processes, results, size: int, timeout: float, grace: float) -> list:
    answers, failures = {}, {}
    deadline, first_failure = time.monotonic() + timeout, None
    while len(answers) + len(failures) < size:
        now = time.monotonic()
        if first_failure is not None and now > first_failure + grace:
            break
        if now > deadline:
            for rank in range(size):
                if rank not in answers and rank not in failures:
                    failures[rank] = f"rank {rank} did not answer within {timeout:g} s (killed)"
            break
        try:
            rank, ok, payload = results.get(timeout=0.2)
        except queue.Empty:
            for rank, process in enumerate(processes):  # a process that died without a report (os._exit, signal)
                if (process.exitcode is not None and rank not in answers and rank not in failures
                        and results.empty()):
                    failures[rank] = f"rank {rank} exited with code {process.exitcode} without an answer"
            if failures and first_failure is None:
                first_failure = time.monotonic()
            continue
        if ok:
            answers[rank] = torch.load(io.BytesIO(payload), weights_only=False)
        else:
            failures[rank] = payload
            first_failure = first_failure or time.monotonic()
    if failures:
        text = "\n".join(f"--- rank {rank} ---\n{failures[rank]}" for rank in sorted(failures))
        raise RankFailure(f"{len(failures)} of {size} ranks failed:\n{text}", answers)
    return [answers[rank] for rank in range(size)]


def _child(rank, size, rendezvous, timeout, fn, args, results) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size))
    try:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size,
                                timeout=timedelta(seconds=timeout))
        from ltx2_nodes import distributed

        value = fn(distributed.world(), *args)
        buffer = io.BytesIO()
        torch.save(value, buffer)
        results.put((rank, True, buffer.getvalue()))
    except BaseException:  # noqa: BLE001 - every failure, exit included, goes back to the parent as text
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class _environment:
    """Set variables for the children's start (spawn copies ``os.environ``), restore them after."""

    def __init__(self, values: dict[str, str]):
        self.values, self.saved = values, {}

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
