"""The compute device as the memory engine sees it, copy ordering, host memory queries.

``ComputeDevice`` wraps a torch device plus one test switch: ``virtual=True`` makes host memory
stand in for a separate device, so placements really copy into fresh buffers and every byte is
accounted as if it sat on a GPU. CI runs the whole engine (slots, rotation, prefetch, eviction)
that way; only the CUDA side stream is replaced by synchronous copies.

``CopyQueue`` orders weight copies against compute:
* CUDA: copies run on a dedicated side stream. ``copy`` records an event on it; ``wait_ready``
  makes the compute stream wait for that event (device side, the host never blocks);
  ``compute_done`` records an event on the compute stream that a later copy into the same slot
  waits for. No device-wide synchronisation per block.
* anything else: copies complete when issued, events are ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from dataclasses import dataclass

import torch

from ..errors import InputError

log = logging.getLogger("ltx2_nodes")

GiB = 1024 ** 3
MiB = 1024 ** 2


@dataclass(frozen=True)
class ComputeDevice:
    device: torch.device
    virtual: bool = False  # host memory plays a separate device (tests, accounting runs)

    @classmethod
    def resolve(cls, device: str | torch.device | None = "auto", virtual: bool = False) -> "ComputeDevice":
        """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu``; a
        name torch does not know, or a device this machine does not have, raises ``InputError``."""
        if device is None or device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = _checked_device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if virtual and dev.type != "cpu":
            raise ValueError(f"virtual=True stands host memory in for a device; it needs device='cpu', got {dev}")
        return cls(dev, virtual)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def separate(self) -> bool:
        """Whether weights must be copied to be used there (False: plain CPU, placement is bookkeeping)."""
        return self.virtual or self.device.type != "cpu"

    def empty(self, nbytes: int) -> torch.Tensor:
        return torch.empty(max(nbytes, 1), dtype=torch.uint8, device=self.device)

    def copy_of(self, t: torch.Tensor) -> torch.Tensor:
        """A device copy of host tensor ``t`` with the same shape, dtype and strides."""
        out = torch.empty_like(t, device=self.device)
        out.copy_(t, non_blocking=self.is_cuda and t.is_pinned())
        return out

    def free_bytes(self) -> int | None:
        """Free device memory including what PyTorch's caching allocator holds unused (None: unknown)."""
        if not self.is_cuda:
            return None
        free, _total = torch.cuda.mem_get_info(self.device)
        stats = torch.cuda.memory_stats(self.device)
        return free + stats.get("reserved_bytes.all.current", 0) - stats.get("active_bytes.all.current", 0)

    def total_bytes(self) -> int | None:
        if not self.is_cuda:
            return None
        return torch.cuda.get_device_properties(self.device).total_memory

    def empty_cache(self) -> None:
        if self.is_cuda:
            torch.cuda.empty_cache()

    def describe(self) -> str:
        return f"{self.device} (virtual device in host memory)" if self.virtual else str(self.device)


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def _checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists on this machine (see :meth:`ComputeDevice.resolve`)."""
    usage = "use auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown compute device {device!r}; {usage}") from None
    if dev.type not in DEVICE_TYPES:
        raise InputError(f"compute device {device!r} is not supported (supported: {', '.join(DEVICE_TYPES)}); "
                         f"{usage}")
    backend = torch.cuda if dev.type == "cuda" else getattr(torch.backends, "mps", None) if dev.type == "mps" \
        else getattr(torch, dev.type, None)
    if dev.type != "cpu" and not (backend is not None and backend.is_available()):
        raise InputError(f"compute device {device!r} is not available on this machine (this PyTorch "
                         f"{'has no CUDA support or sees no NVIDIA GPU' if dev.type == 'cuda' else 'cannot use it'}); "
                         f"use cpu (or auto, which picks CUDA when present)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"compute device {device!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return dev


class CopyQueue:
    """Synchronous copies (CPU and virtual devices): everything is complete when issued."""

    asynchronous = False

    def copy(self, dst: torch.Tensor, src: torch.Tensor, after=None):
        """Copy ``src`` into ``dst`` once ``after`` (a compute-done marker) has passed; returns a ready marker."""
        dst.copy_(src)
        return None

    def wait_ready(self, marker) -> None:
        """Make compute wait until a copy's ready marker has passed."""

    def compute_done(self):
        """A marker that passes when the compute issued so far has finished."""
        return None

    def host_wait(self, marker) -> None:
        """Block the calling thread until ``marker`` has passed."""

    def synchronize(self) -> None:
        """Drain every outstanding copy and compute."""


class CudaCopyQueue(CopyQueue):
    """Copies on a side stream, ordered against the compute stream with events only."""

    asynchronous = True

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device=device)

    def copy(self, dst, src, after=None):
        with torch.cuda.stream(self.stream):
            if after is not None:
                self.stream.wait_event(after)
            dst.copy_(src, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        return event

    def wait_ready(self, marker) -> None:
        if marker is not None:
            torch.cuda.current_stream(self.device).wait_event(marker)

    def compute_done(self):
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def host_wait(self, marker) -> None:
        if marker is not None:
            marker.synchronize()

    def synchronize(self) -> None:
        self.stream.synchronize()
        torch.cuda.current_stream(self.device).synchronize()


def copy_queue_for(device: ComputeDevice) -> CopyQueue:
    return CudaCopyQueue(device.device) if device.is_cuda else CopyQueue()


# ------------------------------------------------------------------------------------------------
# Host memory


def host_buffer(nbytes: int, pinned: bool) -> torch.Tensor:
    """A uint8 host buffer, page-locked when ``pinned`` (falls back to pageable if pinning fails).

    Pinned buffers are registered with ``cudaHostRegister`` on a plain allocation: PyTorch's
    ``pin_memory=True`` allocator rounds every request up to a power of two, which would cost
    ~30% extra RAM on 0.4 GB blocks. The registration is undone when the storage is freed.
    """
    buf = torch.empty(max(nbytes, 1), dtype=torch.uint8)
    if pinned and torch.cuda.is_available():
        cudart = torch.cuda.cudart()
        ptr = buf.data_ptr()
        if int(cudart.cudaHostRegister(ptr, buf.numel(), 1)) == 0:
            weakref.finalize(buf.untyped_storage(), cudart.cudaHostUnregister, ptr)
        else:
            log.warning("could not pin %.1f MiB of host memory; block copies will be slower", nbytes / MiB)
    return buf


def host_ram_available() -> int:
    """Bytes of RAM the OS could give us now (MemAvailable), without swapping."""
    try:
        import psutil  # present inside ComfyUI; optional elsewhere

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

