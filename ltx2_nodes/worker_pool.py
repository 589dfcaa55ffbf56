"""Sampling on several GPUs from one process: the sampler's ``gpus`` option, inside ComfyUI and headless.

``sample_on(gpus, ...)`` runs ``stages.run_sampler`` -- the very function a ``torchrun`` rank runs -- on ``gpus``
worker processes, one per GPU (processes on the CPU), joined in one ``torch.distributed`` group (NCCL on CUDA,
gloo on the CPU) by ``distributed.init_from_env``, exactly as under ``torchrun``. The calling process (ComfyUI's
server) never joins the group, so ``distributed.world()`` stays one process for every other node.

The workers are a :class:`WorkerPool` started with torch's own multiprocessing (spawn: CUDA cannot be forked) and
kept between runs: each worker opens the model again from its file (``LTX2Models`` and file-backed LoRAs pickle
as their paths) and keeps it in its own cache, so the second run of a workflow loads nothing. One pool lives at a
time; asking for another size or device replaces it.

Protocol, per run (``WorkerPool.run``): every rank gets the same task; rank 0 reports each sampling step (and the
preview latent when the canvas shows previews) and returns the result; the others acknowledge.

* **Cancel**: the caller's cancel (ComfyUI's Cancel button, ``progress.request_interrupt``) sets a shared event;
  the ranks agree on it after each step (rank 0 reads the event and broadcasts it, ``distributed.from_rank0``), so
  they all leave at the same step and none is left waiting in a collective. The caller returns at once; the next
  run first waits for the ranks to finish that step.
* **Failure**: a rank that raises reports its error and exits, so the other ranks' next collective fails at once
  (they report a ``RankFailedError``); the caller raises the first rank's own error (an ``InputError`` stays one),
  closes the pool, and the next run starts a fresh one. A rank that dies (killed, out of host memory) does the
  same through its exit code.

Why not ``torch.multiprocessing.spawn``: it runs one function to completion, while a pool must stay up between
runs with its models loaded. The workers start through ``exec`` of a few lines (``_BOOT``) that import this
package by the name it has in the calling process -- inside ComfyUI a custom node is imported under its folder's
path, which a plain spawned process could not import -- and the calling process's ``__main__`` (ComfyUI's
``main.py``, which starts a server at import) is hidden from the spawned processes while they start.
"""

from __future__ import annotations

import atexit
import io
import logging
import multiprocessing.connection
import os
import queue
import socket
import sys
import threading
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.multiprocessing as mp

from . import distributed, stages
from .errors import InputError, LTX2Error, RankFailedError, RunInterrupted
from .memory.engine import MemoryEngine
from .model.sequence_parallel import check_heads
from .progress import ProgressBar, check_interrupted

log = logging.getLogger("ltx2_nodes")

START_TIMEOUT_S = 300.0  # importing torch and joining the group; a worker not ready by then is reported
POLL_S = 0.1  # how often the caller looks at ComfyUI's Cancel button and the workers' liveness
GRACE_S = 10.0  # after a failure, how long the other ranks may still report their own error

# What a worker process runs first (its spawn target is ``exec``): import this package under the caller's name,
# registering its top-level package by path when that name is no importable module (a ComfyUI custom node).
_BOOT = """
import importlib, importlib.util, sys
try:
    pool = importlib.import_module(module)
except ModuleNotFoundError:
    spec = importlib.util.spec_from_loader(top, loader=None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [top_dir]
    sys.modules[top] = package
    pool = importlib.import_module(module)
pool.serve(**arguments)
"""


@dataclass(frozen=True)
class PoolSpec:
    """What a pool is started for: ``size`` ranks on ``device`` ("cuda": rank r drives ``cuda:r``; "cpu"), with
    ``engine`` (``MemoryEngine.worker_settings``) for each rank's memory engine."""

    size: int
    device: str
    engine: tuple

    @classmethod
    def of(cls, size: int, engine: MemoryEngine) -> "PoolSpec":
        return cls(size, engine.device.device.type, tuple(sorted(engine.worker_settings().items())))


def check_gpus(gpus: int, device: torch.device, dit_config) -> None:
    """Refuse, before any work, a GPU count this machine or this model cannot run (the fix in the message)."""
    if gpus < 1:
        raise InputError(f"gpus={gpus}: give 1 (this process) or more (one worker process per GPU)")
    if distributed.world().size > 1:
        raise InputError(f"gpus={gpus} in a run started by torchrun ({distributed.world().size} processes): both "
                         "split the sampler over GPUs. Set gpus to 1 (torchrun already splits it) or run one process")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if gpus > count:
            raise InputError(f"gpus={gpus} but this machine has {count} CUDA device{'s' * (count != 1)}; set gpus "
                             f"to at most {count}")
    elif device.type != "cpu":
        raise InputError(f"gpus={gpus} needs CUDA devices (or the CPU); the compute device is {device}. Set gpus "
                         "to 1")
    check_heads(dit_config, gpus)


def sample_on(gpus: int, dit, positive, latents, settings, engine: MemoryEngine, *, noise, callback=None,
              **kwargs):
    """``stages.run_sampler`` on ``gpus`` worker processes (``gpus`` 1: here, in this process).

    Same arguments as ``run_sampler`` (``noise`` is required: the workers draw from it and it comes back advanced,
    so a stage-2 sampler continues the stream). Answers ``(latents, noise)``. ``callback(step, total, preview)``
    runs here after every step (the preview latent only when ``callback`` wants one: ``callback.wants_preview``)."""
    if gpus == 1:
        out = stages.run_sampler(dit, positive, latents, settings, engine, noise=noise, callback=callback, **kwargs)
        return out, noise
    check_gpus(gpus, engine.device.device, dit.config)
    if engine.make_room is not None:  # ComfyUI: rank 0 shares this process's GPU; its own models make room
        engine.make_room(dit.stage_weights.total)
    engine.release()
    pool = pool_for(PoolSpec.of(gpus, engine))
    bar = ProgressBar(1) if callback is None else None

    def on_step(step: int, total: int, preview) -> None:
        if callback is not None:
            callback(step, total, preview)
        else:
            bar.update_absolute(step, total)

    wants = getattr(callback, "wants_preview", False)
    return pool.run(_sample_rank, (dit, positive, latents, settings), dict(kwargs, noise=noise, preview=wants),
                    on_step=on_step)


def _sample_rank(dit, positive, latents, settings, *, engine, step, noise, preview, **kwargs):
    """One rank's part of ``sample_on`` (runs in a worker)."""
    def callback(index: int, total: int, estimate) -> None:
        shown = preview and estimate is not None and distributed.world().is_main  # rank 0 reports the steps
        step(index, total, estimate[:1].float().cpu() if shown else None)

    out = stages.run_sampler(dit, positive, latents, settings, engine, noise=noise, callback=callback, **kwargs)
    return out, noise


# ------------------------------------------------------------------------------------------------
# The pool (caller side)


class WorkerPool:
    """``spec.size`` worker processes, one rank each, serving tasks until closed (see the module doc)."""

    def __init__(self, spec: PoolSpec):
        self.spec = spec
        context = mp.get_context("spawn")
        self._tasks = [context.Queue() for _ in range(spec.size)]
        self._results = context.Queue()
        self._cancel = context.Event()
        self._task = 0
        self._unfinished: set[int] = set()  # ranks still running a cancelled task
        top = __name__.split(".")[0]
        port = _free_port()
        self._processes = []
        with _hidden_main():
            for rank in range(spec.size):
                arguments = dict(rank=rank, size=spec.size, device=spec.device, port=port,
                                 engine=dict(spec.engine), tasks=self._tasks[rank], results=self._results,
                                 cancel=self._cancel)
                namespace = dict(module=__name__, top=top, top_dir=str(_package_dir(top)), arguments=arguments)
                process = context.Process(target=exec, args=(_BOOT, namespace), daemon=True,
                                          name=f"ltx2-rank{rank}")
                process.start()
                self._processes.append(process)
        try:
            ready = set()
            while len(ready) < spec.size:
                kind, rank, _, payload = self._next(timeout=START_TIMEOUT_S, cancellable=False)
                if kind == "failed":
                    raise _rebuilt(rank, payload, self.spec.size)
                ready.add(rank)
        except BaseException:
            self.close()
            raise
        log.info("ltx2_nodes: %d sampler worker processes ready (%s)", spec.size,
                 "cuda:0.." + str(spec.size - 1) if spec.device == "cuda" else "CPU, gloo")

    @property
    def alive(self) -> bool:
        """Every worker is running (a closed pool is not)."""
        return bool(self._processes) and all(p.is_alive() for p in self._processes)

    def run(self, fn, args: tuple, kwargs: dict, on_step=None):
        """``fn(*args, engine=, step=, **kwargs)`` on every rank; answers rank 0's return value. Raises the
        caller's cancel (after telling the ranks), or the first rank's own error (and closes the pool)."""
        self._finish_cancelled()
        self._cancel.clear()
        self._task += 1
        task = _pack((self._task, fn, args, kwargs))
        for tasks in self._tasks:
            tasks.put(task)
        reports: dict[int, tuple[str, object]] = {}
        try:
            while len(reports) < self.spec.size:
                kind, rank, task_id, payload = self._next()
                if task_id != self._task:
                    continue  # the end of a task cancelled earlier
                if kind == "step":
                    if on_step is not None:
                        on_step(*payload)
                    continue
                reports[rank] = (kind, payload)
                if kind == "failed":
                    self._raise_failure(reports)
        except BaseException:
            if self.alive:  # the caller's cancel: the ranks stop after their step
                self._cancel.set()
                self._unfinished = set(range(self.spec.size)) - set(reports)
            raise
        if any(kind == "cancelled" for kind, _ in reports.values()):
            raise RunInterrupted("Run cancelled during sampling; the sampler workers stopped at the same step.")
        return reports[0][1]

    def close(self) -> None:
        """Stop the workers (a running task is abandoned) and forget them."""
        for tasks in self._tasks:
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
        for process in self._processes:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        self._processes = []

    # -- internals --------------------------------------------------------------------------------

    def _next(self, timeout: float | None = None, cancellable: bool = True) -> tuple:
        """The next report of any rank; meanwhile: the caller's cancel (``check_interrupted``) and the ranks'
        liveness (a dead rank raises ``RankFailedError`` naming it and its exit code)."""
        waited = 0.0
        while True:
            if cancellable:
                check_interrupted("during sampling on several processes")
            try:
                return _unpack(self._results.get(timeout=POLL_S))
            except queue.Empty:
                waited += POLL_S
            dead = [(rank, p.exitcode) for rank, p in enumerate(self._processes) if not p.is_alive()]
            if dead:
                self._drain_after_death(dead)
            if timeout is not None and waited >= timeout:
                self.close()
                raise RankFailedError(f"the {self.spec.size} sampler worker processes did not start within "
                                      f"{timeout:g} s; nothing was run. Try again, or set gpus to 1.")

    def _drain_after_death(self, dead: list[tuple[int, int | None]]) -> None:
        """A rank died: its own error report, if it sent one, else its exit code; the pool is closed."""
        try:
            while True:
                kind, rank, _, payload = _unpack(self._results.get(timeout=POLL_S))
                if kind == "failed" and not _is_peer_failure(payload):
                    self.close()
                    raise _rebuilt(rank, payload, self.spec.size)
        except queue.Empty:
            pass
        self.close()
        raise self._death(*dead[0])

    def _raise_failure(self, reports: dict) -> None:
        """One rank failed: wait briefly for the others' reports (or deaths), close the pool, raise the root
        error: a rank's own error, else the death of a rank that never reported, else the first peer failure."""
        waited = 0.0
        while len(reports) < self.spec.size and waited < GRACE_S:
            try:
                kind, rank, task_id, payload = _unpack(self._results.get(timeout=POLL_S))
            except queue.Empty:
                waited += POLL_S
                if any(not p.is_alive() for r, p in enumerate(self._processes) if r not in reports):
                    break
                continue
            if task_id == self._task and kind != "step":
                reports[rank] = (kind, payload)
        dead = [(r, p.exitcode) for r, p in enumerate(self._processes) if r not in reports and not p.is_alive()]
        self.close()
        failed = [(rank, payload) for rank, (kind, payload) in sorted(reports.items()) if kind == "failed"]
        own = next(((r, p) for r, p in failed if not _is_peer_failure(p)), None)
        if own is None and dead:
            raise self._death(*dead[0])
        rank, payload = own or failed[0]
        raise _rebuilt(rank, payload, self.spec.size)

    def _death(self, rank: int, code: int | None) -> RankFailedError:
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return RankFailedError(f"sampler worker rank {rank} of {self.spec.size} {how} (out of host memory? "
                               "killed?); the other ranks were stopped and nothing was returned. The workers "
                               "start again at the next run; lower gpus if memory is short.")

    def _finish_cancelled(self) -> None:
        """Wait for the ranks still finishing a cancelled task (at most one step)."""
        while self._unfinished:
            kind, rank, task_id, payload = self._next(cancellable=False)
            if task_id != self._task or kind == "step":
                continue
            self._unfinished.discard(rank)
            if kind == "failed":
                self._unfinished.clear()
                self.close()
                raise _rebuilt(rank, payload, self.spec.size)


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def pool_for(spec: PoolSpec) -> WorkerPool:
    """The running pool when it was started for ``spec`` and is whole, else a new one (the old one closed)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and (_POOL.spec != spec or not _POOL.alive):
            _POOL.close()
            _POOL = None
        if _POOL is None:
            _POOL = WorkerPool(spec)
        return _POOL


def close_pool() -> None:
    """Stop the sampler workers (at exit; when another pool is wanted)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None


atexit.register(close_pool)


# ------------------------------------------------------------------------------------------------
# The worker side


def serve(*, rank: int, size: int, device: str, port: int, engine: dict, tasks, results, cancel) -> None:
    """A worker's life: join the group as ``torchrun`` would have it, then run tasks until told to stop."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    threading.Thread(target=_exit_with_parent, daemon=True, name="ltx2-parent-watch").start()
    if device == "cpu":  # the ranks share the machine's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    try:
        distributed.init_from_env(device)
        worker_engine = MemoryEngine(f"cuda:{rank}" if device == "cuda" else "cpu", **engine)
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        results.put(_pack(("failed", rank, 0, _portable(exc))))
        return
    results.put(_pack(("ready", rank, 0, None)))
    while (task := tasks.get()) is not None:
        task_id, fn, args, kwargs = _unpack(task)

        def step(index: int, total: int, preview, task_id=task_id) -> None:
            if rank == 0:
                results.put(_pack(("step", rank, task_id, (index, total, preview))))
            if distributed.from_rank0(cancel.is_set()):
                raise RunInterrupted("cancelled by the caller")

        try:
            with distributed.peer_failures_named():
                value = fn(*args, engine=worker_engine, step=step, **kwargs)
        except RunInterrupted:
            results.put(_pack(("cancelled", rank, task_id, None)))
        except BaseException as exc:  # noqa: BLE001 - reported; leaving makes the peers fail at once
            results.put(_pack(("failed", rank, task_id, _portable(exc))))
            return
        else:
            results.put(_pack(("done", rank, task_id, value if rank == 0 else None)))
    distributed.shutdown()


def _exit_with_parent() -> None:
    """A worker ends when the process that started it is gone (a killed ComfyUI server runs no exit handler):
    no orphan keeps a GPU's memory."""
    parent = mp.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


# ------------------------------------------------------------------------------------------------
# Helpers


def _pack(message) -> bytes:
    """Messages travel as ``torch.save`` bytes: tensors are copied, not shared through file descriptors, so they
    stay whole when their process has gone."""
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def _unpack(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def _portable(exc: BaseException) -> tuple:
    """``(exception or None, type name, message, traceback)``: the exception itself when it survives pickling."""
    text = "".join(traceback.format_exception(exc))
    try:
        _unpack(_pack(exc))
        kept = exc
    except Exception:  # noqa: BLE001 - an exception that does not pickle is sent as its text
        kept = None
    return kept, type(exc).__name__, str(exc), text


def _is_peer_failure(payload: tuple) -> bool:
    return isinstance(payload[0], RankFailedError)


def _rebuilt(rank: int, payload: tuple, size: int) -> BaseException:
    """The error a rank reported, to raise here: the pack's own errors as they are (the message says the fix),
    anything else as a ``RankFailedError`` naming the rank and carrying its traceback."""
    exc, name, message, text = payload
    if isinstance(exc, LTX2Error):
        return exc
    error = RankFailedError(f"sampler worker rank {rank} of {size} failed: {name}: {message}. The workers start "
                            f"again at the next run; set gpus to 1 to run in this process.")
    error.add_note(f"rank {rank}'s traceback:\n{text}")
    return error


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _package_dir(top: str) -> Path:
    """The folder of the top-level package this module belongs to (a custom node's folder inside ComfyUI)."""
    module = sys.modules[top]
    return Path(next(iter(module.__path__)))


@contextmanager
def _hidden_main():
    """While workers start: no ``__main__`` for spawn to import again in them (ComfyUI's ``main.py`` would start
    its own startup in every worker)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
