"""The process group a run computes in: one process per GPU under ``torchrun``, one process otherwise.

``init_from_env`` reads what ``torchrun`` (or any launcher speaking its protocol) puts in the environment --
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` -- and joins the default
``torch.distributed`` group: NCCL for CUDA devices, gloo for the CPU. Without ``WORLD_SIZE`` (or with
``WORLD_SIZE=1``) nothing is initialized and the run is the ordinary single process. ``world()`` answers the
current ``World`` anywhere below the CLI, so code that can split work over ranks asks it instead of taking a
flag through every layer.

Every collective of the group runs under the group's timeout (``LTX2_DIST_TIMEOUT`` seconds, default 600): a rank
that dies makes the others fail in their next collective (gloo notices the closed connection at once, NCCL at
the timeout) instead of hanging, and ``torchrun`` then stops the whole job.

Reference: the official multi-GPU pipelines (``ltx_pipelines/multigpu``) initialize the same way from
``torchrun``'s environment; we keep the group in ``torch.distributed``'s default slot rather than a pipeline
object, so the stages do not carry it.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import InputError, RankFailedError

TIMEOUT_VARIABLE = "LTX2_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# what gloo / NCCL / the c10d store say when a peer died or a collective timed out (plain RuntimeErrors in gloo)
PEER_FAILURE = re.compile(r"gloo|nccl|connection (closed|reset)|broken pipe|timed out|timeout|ProcessGroup|"
                          r"remote worker|peer", re.IGNORECASE)


@dataclass(frozen=True)
class World:
    """Where this process stands: its ``rank`` among ``size`` processes, its ``local_rank`` on this machine
    (the GPU it drives), and the process group (``None`` for a single process)."""

    rank: int
    size: int
    local_rank: int
    group: object | None

    @property
    def is_main(self) -> bool:
        """Rank 0, the one process that writes outputs, manifests and logs."""
        return self.rank == 0


SINGLE = World(rank=0, size=1, local_rank=0, group=None)


def world() -> World:
    """The current world: the default ``torch.distributed`` group when it is initialized, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    rank = dist.get_rank()
    return World(rank=rank, size=dist.get_world_size(), local_rank=_int_env("LOCAL_RANK", rank),
                 group=dist.group.WORLD)


def from_rank0(value):
    """``value`` as rank 0 has it, on every rank (as is in one process): a choice a rank makes from its own memory
    budget ("auto" decode tiles, refine tiles grown to the budget) must be the same on every rank, or their tile
    plans, and so their collectives, would not match."""
    ranks = world()
    if ranks.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, group=ranks.group, group_src=0)
    return box[0]


def timeout_s() -> float:
    """The collectives' timeout in seconds: ``$LTX2_DIST_TIMEOUT`` or 600."""
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise InputError(f"{TIMEOUT_VARIABLE}={text!r} is not a positive number of seconds; set it to e.g. 600 "
                         "or unset it")
    return value


def init_from_env(device: torch.device | str) -> World:
    """Join the process group ``torchrun`` describes in the environment and answer this process's ``World``.

    ``device`` picks the backend: NCCL for CUDA, gloo otherwise; on CUDA this process's current device becomes
    ``cuda:LOCAL_RANK``. Idempotent: a second call answers the group already joined (and refuses a different
    world size). Without ``WORLD_SIZE``, or with ``WORLD_SIZE=1``, nothing is initialized and the answer is one
    process.
    """
    device = torch.device(device)
    size = _int_env("WORLD_SIZE", 1)
    if size < 1:
        raise InputError(f"WORLD_SIZE={size} is not a process count; launch with torchrun --nproc-per-node N "
                         "(N >= 1) or unset WORLD_SIZE")
    if dist.is_available() and dist.is_initialized():
        current = world()
        if current.size != size:
            raise InputError(f"torch.distributed is already initialized with {current.size} processes but "
                             f"WORLD_SIZE says {size}; launch each run in its own torchrun job")
        return current
    if size == 1:
        return SINGLE
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; install a PyTorch "
                         "build with distributed support or run one process")
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise InputError(f"WORLD_SIZE={size} but {', '.join(missing)} not set; start the run with "
                         "torchrun --nproc-per-node N -m ltx2_nodes ... (it sets all of them)")
    rank, local_rank = _int_env("RANK", 0), _int_env("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise InputError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size}); let torchrun set both")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise InputError(f"LOCAL_RANK={local_rank} needs CUDA device {local_rank} but this machine has "
                             f"{count}; start at most {count} processes per node (torchrun --nproc-per-node "
                             f"{max(count, 1)}) or run on the CPU (--device cpu)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=size, timeout=timedelta(seconds=timeout_s()))
    return world()


def launched_size() -> int:
    """The world size the launcher asks for (``WORLD_SIZE``, 1 when absent), before any group is joined."""
    return _int_env("WORLD_SIZE", 1)


def peer_failure(exc: BaseException | None) -> BaseException | None:
    """The collective failure (another rank died or hung: a ``DistError``, or gloo's plain ``RuntimeError``) in
    ``exc`` or the exceptions it was raised from, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and PEER_FAILURE.search(str(exc))):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def peer_failures_named():
    """Inside a multi-process run, turn a collective's failure (another rank died, or did not answer within the
    timeout), also when a node or stage wrapped it, into ``RankFailedError`` naming this rank and the fix."""
    try:
        yield
    except RankFailedError:
        raise
    except Exception as exc:
        current, cause = world(), peer_failure(exc)
        if current.size == 1 or cause is None:
            raise
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        raise RankFailedError(
            f"rank {current.rank} of {current.size} stopped: another process of this run failed or did not "
            f"answer within {timeout_s():g} s ({first}). Nothing was written. The failing rank printed its own "
            f"error (torchrun names it in its failure summary); fix that and run again.") from exc


def shutdown() -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not an integer; let torchrun set it") from None
