"""``queue --ray ADDRESS``: the batch queue's jobs on a Ray cluster, one worker (a Ray actor) per GPU.

Ray (https://docs.ray.io) is an optional dependency (``pip install 'ltx2_nodes[cluster]'``); it is imported only
when ``--ray`` is given, and its absence is a usage error with the install hint before any work.

- Workers: ``--ray-workers`` actors of :class:`JobWorker`, each reserving ``--ray-gpus`` GPUs (default 1 when
  the cluster has GPUs, else 0) and ``--ray-cpus`` CPUs (default 1). A worker keeps one headless
  :class:`~.executor.Executor` for its life, so loaded models stay loaded between its jobs, and runs each job
  with :func:`~.jobs.run_job`, the same function as ``queue --local``.
- Outputs: a worker's save nodes write into a fresh folder per job on the worker; the files come back to this
  process (the driver) as bytes, so the workers need no shared output folder. The driver renumbers each file
  to the next free ``<prefix>_<counter>_`` name of ``--out`` like a local save, writes it to
  ``<name>.partial<ext>`` and renames it into place. Model and input folders are passed to the workers as this
  machine's absolute paths: every node must see them at the same place (a shared or copied folder).
- The manifest on the driver is the source of truth. An attempt is ``running`` (with a new prompt id) while a
  worker has it; the driver records the output names it is about to publish, renames the files, then marks
  the job ``done``; a driver killed between the two finds the files on resume and marks the job done without
  running it again. A worker that dies mid-job (``kill -9``, the OOM killer, a lost node) fails only its Ray
  call: the driver puts the job back at the front of the queue, up to ``--ray-retries`` times, and the dead
  attempt never wrote a file this process records. Ray restarts the actor (its models load again on first use);
  the driver gives it jobs again once it answers :meth:`JobWorker.ready`.
- ``--ray local`` starts a private Ray instance on this machine for the run; ``auto`` joins the running one
  (``$RAY_ADDRESS`` or ``ray start`` on this machine); ``HOST:PORT`` or ``ray://HOST:PORT`` is checked with a
  TCP connection first (``CONNECT_TIMEOUT`` seconds) because Ray itself retries an unreachable address for
  minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from .. import paths
from ..errors import LTX2Error
from .common import apply_engine_options, node_registry, nonnegative_float, nonnegative_int, positive_int
from .executor import Executor
from .jobs import Job, JobOutcome, record_outcome, run_job
from .manifest import Manifest, fsync_directory
from .workflow import UsageError, Workflow

INSTALL_HINT = "pip install 'ltx2_nodes[cluster]' (or pip install -r requirements-cluster.txt)"
CONNECT_TIMEOUT = 10.0  # seconds to open a TCP connection to a named Ray address before giving up
DEFAULT_RETRIES = 2
REVIVE_TIMEOUT = 300.0  # seconds a dead worker has to come back (Ray restarts it) before the queue goes on without it
_COUNTED = re.compile(r"^(?P<name>.*)_(?P<counter>\d{5,})_\.(?P<ext>[^./]+)$")  # paths.next_output_file's names
_RAY_ONLY = (("--ray-workers", "ray_workers"), ("--ray-gpus", "ray_gpus"), ("--ray-cpus", "ray_cpus"),
             ("--ray-retries", "ray_retries"))


def add_ray_options(parser, target_group) -> None:
    target_group.add_argument("--ray", metavar="ADDRESS",
                              help="run the jobs on a Ray cluster: HOST:PORT, ray://HOST:PORT, auto (the running "
                                   f"one) or local (a private one on this machine); needs {INSTALL_HINT}")
    parser.add_argument("--ray-workers", type=positive_int, metavar="N",
                        help="--ray: how many workers (default: as many as the cluster's GPUs, or CPUs, fit)")
    parser.add_argument("--ray-gpus", type=nonnegative_float, metavar="G",
                        help="--ray: GPUs each worker reserves (default 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--ray-cpus", type=nonnegative_float, metavar="C",
                        help="--ray: CPUs each worker reserves (default 1)")
    parser.add_argument("--ray-retries", type=nonnegative_int, metavar="N",
                        help=f"--ray: how often a job whose worker died is run again (default {DEFAULT_RETRIES})")


def import_ray():
    """The ``ray`` module, or a usage error with the install hint."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed for {sys.executable}; install it with "
                         f"{INSTALL_HINT} on this machine and on every worker machine") from None
    return ray


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to run jobs like ``queue --local`` would here (attribute names are the options')."""

    models_dir: str | None
    input_dir: str
    nodes: tuple[str, ...]
    device: str | None
    vram_budget: str | None
    ram_budget: str | None


@dataclass(frozen=True)
class RaySettings:
    worker: WorkerSettings
    workers: int | None
    gpus: float | None
    cpus: float
    retries: int


def ray_settings(args) -> RaySettings | None:
    """The ``--ray*`` options (``None`` without ``--ray``, where the other ``--ray-*`` options are refused).
    Call after ``apply_path_options``: folders are sent as this machine's absolute paths."""
    if not args.ray:
        given = [option for option, name in _RAY_ONLY if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only used with --ray ADDRESS")
        return None
    models = paths.models_dir()
    nodes = tuple(str(Path(n).resolve()) if Path(n).exists() else n for n in args.nodes)
    worker = WorkerSettings(str(models) if models else None, str(paths.input_directory().resolve()), nodes,
                            args.device, args.vram_budget, args.ram_budget)
    return RaySettings(worker, args.ray_workers, args.ray_gpus, 1.0 if args.ray_cpus is None else args.ray_cpus,
                       DEFAULT_RETRIES if args.ray_retries is None else args.ray_retries)


class JobWorker:
    """One Ray actor: a headless executor kept for the actor's life (models stay loaded between jobs)."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.executor: Executor | None = None

    def run(self, workflow: Workflow, prompt_id: str) -> tuple[JobOutcome, list[tuple[str, bytes]]]:
        """Run one job into a fresh output folder: its outcome (listing only files outside that folder) and
        ``(path relative to the folder, bytes)`` of every file written there. The folder is deleted afterwards (a
        killed worker leaves it in its temp dir)."""
        with tempfile.TemporaryDirectory(prefix="ltx2-ray-job-") as folder:
            staging = Path(folder).resolve()
            try:
                executor = self._prepare(staging)
            except LTX2Error as exc:  # e.g. the models folder does not exist on this node
                return JobOutcome(False, error=f"on worker {socket.gethostname()}: {exc}"), []
            outcome = run_job(executor, workflow, prompt_id)
            staged, elsewhere = [], []  # files outside the job's folder (an input listed by a node) stay as named
            for name in outcome.files:
                path = Path(name)
                if path.is_relative_to(staging) and path.is_file():
                    staged.append((path.relative_to(staging).as_posix(), path.read_bytes()))
                else:
                    elsewhere.append(name)
            return JobOutcome(outcome.ok, elsewhere, outcome.error), staged

    def ready(self) -> str:
        """Answers once the actor runs (the driver asks a restarted worker before giving it a job)."""
        return socket.gethostname()

    def _prepare(self, staging: Path) -> Executor:
        s = self.settings
        paths.configure(models_dir=s.models_dir, output_dir=staging, input_dir=s.input_dir)
        if self.executor is None:
            apply_engine_options(s)
            self.executor = Executor(node_registry(s))
        self.executor.forget_saved_outputs()  # a repeated job writes its files again, into this job's folder
        return self.executor


def publish_targets(staged: list[tuple[str, bytes]]) -> list[Path]:
    """Where a job's staged files go in the output folder: counted names get this folder's next free counter
    (as if saved here), other names keep their relative path."""
    targets = []
    for relative, _ in staged:
        path = PurePosixPath(relative)
        match = _COUNTED.match(path.name)
        if match:
            prefix = match["name"] if str(path.parent) == "." else f"{path.parent}/{match['name']}"
            target = paths.next_output_file(prefix, match["ext"]).path
            while target in targets:  # two files of one job with one prefix: the folder does not know yet
                counter = int(_COUNTED.match(target.name)["counter"]) + 1
                target = target.with_name(f"{match['name']}_{counter:05}_.{match['ext']}")
        else:
            target = paths.output_directory() / path
        targets.append(target)
    return targets


def write_atomically(target: Path, data: bytes) -> None:
    """``<name>.partial<ext>`` first, fsynced, then renamed: the name appears only with the whole file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + ".partial" + target.suffix)
    try:
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def _address_target(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of an explicit address (checked before Ray sees it); ``None`` for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    parts = urlsplit(address if "://" in address else "ray-gcs://" + address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("ray", "ray-gcs") or not parts.hostname or port is None or parts.path:
        raise UsageError(f"--ray {address!r}: expected HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379), "
                         f"ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001), auto or local")
    return parts.hostname, port


def connect(ray, address: str) -> None:
    """``ray.init`` for ``address``; an unreachable cluster is a usage error naming it and the fix, within about
    ``CONNECT_TIMEOUT`` seconds (a TCP connection first; then Ray's own GCS connect and retry budget are bounded
    through its ``RAY_*`` settings unless the user set them)."""
    fix = ("start one there (ray start --head on that machine), check the address and firewall, or pass "
           "--ray local to run on this machine alone")
    target = _address_target(address)
    bounded = {}
    if target is not None:
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise UsageError(f"cannot reach a Ray cluster at {address} ({reason}); {fix}") from None
    if address != "local":
        bounded = {"RAY_py_gcs_connect_timeout_s": str(max(1, round(CONNECT_TIMEOUT))),
                   "RAY_gcs_server_port_wait_time_s": "1"}  # one connection attempt, not twenty
        bounded = {k: v for k, v in bounded.items() if k not in os.environ}
    os.environ.update(bounded)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except ConnectionError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot connect to a Ray cluster at {address} ({message}); {fix}") from None
    except (RuntimeError, ValueError) as exc:  # e.g. a Ray Client address without ray[client] installed
        raise UsageError(f"cannot use the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    finally:
        for key in bounded:
            os.environ.pop(key, None)


class RayQueue:
    """The driver: hands unfinished jobs to idle workers, publishes and records what comes back."""

    def __init__(self, address: str, settings: RaySettings, manifest: Manifest, display):
        self.address, self.settings, self.manifest, self.display = address, settings, manifest, display
        self.target = f"ray:{address}"

    def run(self, jobs: list[Job]) -> None:
        pending = deque()
        for job in jobs:
            record = self.manifest.get(job.key) or {}
            if record.get("status") != "done" and self._recover(job, record):
                record = self.manifest.get(job.key)
            if record.get("status") == "done":
                self.display.skip_job(job.number, "already done (manifest)")
            else:
                pending.append(job)
        if not pending:
            return
        ray = import_ray()
        # Ray prints its own messages (a worker died, ...) to stdout, which lists the output files: to stderr
        with contextlib.redirect_stdout(sys.stderr):
            connect(ray, self.address)  # an unreachable cluster leaves the manifest untouched
            try:
                workers = self._start_workers(ray, len(pending))
                self.manifest.register(jobs, self.target)
                self._schedule(ray, workers, pending)
            finally:
                ray.shutdown()  # ends this driver's actors (and a --ray local instance)

    def _recover(self, job: Job, record: dict) -> bool:
        """A driver killed between renaming a job's files into place and recording it: the files are there."""
        files = record.get("files") or []
        if record.get("status") == "running" and str(record.get("target", "")).startswith("ray:") and files \
                and all(Path(f).is_file() for f in files):
            self.manifest.update(job.key, status="done")
            return True
        return False

    def _start_workers(self, ray, jobs: int) -> list:
        s = self.settings
        resources = ray.cluster_resources()
        have_gpus, have_cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        gpus = s.gpus if s.gpus is not None else (1.0 if have_gpus >= 1 else 0.0)
        if gpus > have_gpus or s.cpus > have_cpus:
            raise UsageError(f"the Ray cluster at {self.address} has {have_gpus:g} GPU(s) and {have_cpus:g} CPU(s); "
                             f"a worker needs {gpus:g} GPU(s) and {s.cpus:g} CPU(s); lower --ray-gpus/--ray-cpus"
                             + (" (--ray-gpus 0 runs on CPUs)" if gpus else ""))
        fits = int(min(have_gpus / gpus if gpus else float("inf"), have_cpus / s.cpus if s.cpus else float("inf")))
        count = s.workers or max(1, min(fits, jobs))
        self.display.note(f"Ray cluster at {self.address}: {count} worker(s), each {gpus:g} GPU(s) and "
                          f"{s.cpus:g} CPU(s)")
        actor = ray.remote(JobWorker).options(num_gpus=gpus, num_cpus=s.cpus, max_restarts=-1, max_task_retries=0)
        return [actor.remote(s.worker) for _ in range(count)]

    def _schedule(self, ray, workers: list, pending: deque) -> None:
        from ray.exceptions import RayError, RayTaskError

        idle, running, reviving = list(workers), {}, {}  # object ref -> (job, worker) / (worker, since)
        try:
            while pending or running:
                while pending and idle:
                    job, worker = pending.popleft(), idle.pop()
                    prompt_id = self.manifest.begin(job.key, self.target)
                    self.display.start_job(job.number, job.title, job.workflow)
                    running[worker.run.remote(job.workflow, prompt_id)] = (job, worker)
                waiting = list(running) + list(reviving)
                ready, _ = ray.wait(waiting, num_returns=1, timeout=None if running else REVIVE_TIMEOUT)
                if not ready:
                    self.display.note(f"no worker came back within {REVIVE_TIMEOUT:g} s; {len(pending)} job(s) left "
                                      f"queued; run the same command again")
                    return
                if ready[0] in reviving:
                    self._revive(ray, ready[0], reviving, idle)
                    continue
                job, worker = running.pop(ready[0])
                try:
                    outcome, staged = ray.get(ready[0])
                except RayTaskError as exc:  # an unexpected exception in the job's code: this job failed
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    outcome, staged = JobOutcome(False, error=f"{type(cause).__name__}: {cause}"), []
                except RayError as exc:  # the worker (or the node holding the result) died: run it again
                    self._worker_died(job, exc, pending)
                    reviving[worker.ready.remote()] = (worker, time.monotonic())  # Ray restarts it
                    continue
                idle.append(worker)
                if outcome.ok:
                    outcome = self._publish(job, outcome, staged)
                record_outcome(self.manifest, self.display, job, outcome)
        except KeyboardInterrupt:
            for job, _ in running.values():
                self.manifest.update(job.key, status="queued", error="interrupted")
            raise

    def _revive(self, ray, ref, reviving: dict, idle: list) -> None:
        """A restarted worker answers its first call: idle again. Calls to it while Ray restarts it fail at once, so
        jobs go only to workers that answered (asking again every half second, for ``REVIVE_TIMEOUT`` seconds)."""
        from ray.exceptions import RayError

        worker, since = reviving.pop(ref)
        try:
            ray.get(ref)
        except RayError as exc:
            if time.monotonic() - since > REVIVE_TIMEOUT:
                self.display.note(f"a worker did not come back within {REVIVE_TIMEOUT:g} s ({exc}); going on "
                                  f"without it")
                return
            time.sleep(0.5)
            reviving[worker.ready.remote()] = (worker, since)
            return
        idle.append(worker)

    def _worker_died(self, job: Job, exc: Exception, pending: deque) -> None:
        attempts = self.manifest.get(job.key).get("attempts", 1)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if attempts <= self.settings.retries:
            self.manifest.update(job.key, status="queued", error=f"worker died: {reason}")
            self.display.note(f"job {job.number}: its worker died ({reason}); running it again")
            pending.appendleft(job)
        else:
            record_outcome(self.manifest, self.display, job, JobOutcome(
                False, error=f"its worker died during {attempts} attempt(s) (last: {reason}); run the queue again, "
                             f"raise --ray-retries, or give the workers more memory"))

    def _publish(self, job: Job, outcome: JobOutcome, staged: list[tuple[str, bytes]]) -> JobOutcome:
        """Name the files in the manifest, then write each (``.partial``, rename): a resumed driver that finds
        them all marks the job done (:meth:`_recover`)."""
        targets = publish_targets(staged)
        files = [str(t) for t in targets]
        self.manifest.update(job.key, files=files)
        for target, (_, data) in zip(targets, staged):
            write_atomically(target, data)
        return JobOutcome(True, files + outcome.files)
