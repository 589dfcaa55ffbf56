"""``torchrun --nproc-per-node N -m ltx2_nodes generate|run ...``: one process per GPU, one clip.

Every process runs the same command on the same inputs; the sampler's DiT splits the video tokens over them
(``model.sequence_parallel`` through ``stages.run_sampler``). Rank 0 alone writes: outputs (the writers of
``media`` discard on the other ranks), stdout and the log (the other ranks print errors only). A rank that
fails makes the others fail in their next collective, which ``distributed.peer_failures_named`` turns into a
``RankFailedError`` on every rank (exit code 1), and ``torchrun`` stops the job; MP4s are renamed into place
only when complete, so nothing half-written is left. Multi-node runs use ``torchrun``'s own rendezvous
(``--nnodes``, ``--rdzv-backend c10d --rdzv-endpoint HOST:PORT``); see docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

import torch

from .. import distributed
from .workflow import UsageError

MULTI_PROCESS_COMMANDS = ("generate", "run")


class Silent:
    """A text stream that drops what it is given: stdout and the progress display of the ranks other than 0."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def progress_stream():
    """Where the progress display writes: stderr on rank 0 (or a single process), nowhere on the other ranks."""
    return sys.stderr if distributed.world().is_main else Silent()


@contextmanager
def torchrun_process(command: str):
    """Around one command: refuse commands that do not split over processes, quiet the ranks other than 0,
    name a peer's failure, leave the process group at the end. A no-op without ``WORLD_SIZE`` > 1."""
    size = distributed.launched_size()
    if size == 1:
        yield
        return
    if command not in MULTI_PROCESS_COMMANDS:
        raise UsageError(f"'{command}' runs in one process, but this one was started as one of {size} "
                         f"(WORLD_SIZE={size}); start it with plain python, or use "
                         f"{' / '.join(MULTI_PROCESS_COMMANDS)} under torchrun")
    quiet = os.environ.get("RANK", "0") != "0"
    stdout, logger = sys.stdout, logging.getLogger()
    level = logger.level
    if quiet:
        sys.stdout = Silent()
        logger.setLevel(logging.ERROR)
    try:
        with distributed.peer_failures_named():
            yield
        distributed.shutdown()  # only after a clean run: a group with a dead peer is left to the exit
    finally:
        if quiet:
            sys.stdout = stdout
            logger.setLevel(level)


def rank_device(requested: str | None, local_rank: int) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` for "auto" / "cuda" when CUDA is there, else the CPU.

    ``requested``: ``--device`` or ``$LTX2_DEVICE`` (None: auto). A given ``cuda:N`` other than this rank's is
    refused: under torchrun each process drives the GPU of its local rank (choose GPUs with
    ``CUDA_VISIBLE_DEVICES``)."""
    name = (requested or "auto").lower()
    if name.startswith("cuda:") and name != f"cuda:{local_rank}":
        raise UsageError(f"--device {requested}: under torchrun each process drives the GPU of its local rank "
                         f"(this one: cuda:{local_rank}); pass --device cuda (or auto) and pick the GPUs with "
                         "CUDA_VISIBLE_DEVICES")
    if name in ("auto", "cuda") or name.startswith("cuda:"):
        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
        if name != "auto":
            raise UsageError(f"--device {requested}: CUDA is not available in this process; run on the CPU "
                             "(--device cpu) or install a CUDA build of PyTorch")
        return "cpu"
    return name


def join_world(settings: dict) -> dict:
    """Engine settings with this rank's device (``rank_device``), after joining the process group on it."""
    from ..memory.selection import ENGINE_ENV

    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    device = rank_device(settings.get("device") or os.environ.get(ENGINE_ENV["device"]), local_rank)
    distributed.init_from_env(device)
    return {**settings, "device": device}
