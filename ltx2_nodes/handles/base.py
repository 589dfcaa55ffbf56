"""What every handle shares: the weight dtype and fp8 options, the file-keyed LRU caches of loaded models, and
the lazy, thread-safe module builds (see the package doc of ``handles``)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import InputError

WEIGHT_DTYPES = ("auto", "bfloat16", "float16", "float32")
FP8_MODES = ("as stored", "upcast on load", "cast bf16 to fp8")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
CACHE_SIZE = 2  # bundles kept per kind: a workflow switching between two checkpoints does not reload


def resolve_dtype(weight_dtype: str, device: torch.device | str | None = None) -> torch.dtype:
    """"auto": bfloat16 on CUDA, float32 elsewhere; else the named dtype."""
    if weight_dtype == "auto":
        kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        return torch.bfloat16 if kind == "cuda" else torch.float32
    if weight_dtype not in _DTYPES:
        raise InputError(f"weight dtype {weight_dtype!r} is not one of {list(WEIGHT_DTYPES)}.")
    return _DTYPES[weight_dtype]


def _fp8_mode(fp8: str) -> str:
    if fp8 not in FP8_MODES:
        raise InputError(f"fp8 option {fp8!r} is not one of {list(FP8_MODES)}.")
    return fp8


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


class _Cache:
    """A tiny LRU of loaded bundles; a changed file (mtime/size) is a new key."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_LTX2_CACHE, _GEMMA_CACHE, _UPSCALER_CACHE, _LORA_CACHE = _Cache(), _Cache(), _Cache(), _Cache(8)
_DURATION_HEAD_CACHE = _Cache()


def clear_caches() -> None:
    """Forget every cached model (tests; ComfyUI's "unload models" does not need it: nothing is on the GPU)."""
    for cache in (_LTX2_CACHE, _GEMMA_CACHE, _UPSCALER_CACHE, _LORA_CACHE, _DURATION_HEAD_CACHE):
        cache.clear()


class _Lazy:
    """Builds each named module once, thread-safely, outside ``inference_mode``: a module first used inside it
    (``run`` executes workflows under it) would otherwise hold inference tensors, which the memory engine
    cannot re-point at their device copies ("Inference tensors do not track version counter")."""

    def __init__(self):
        self._lock = threading.RLock()
        self._built: dict[str, nn.Module] = {}

    def get(self, name: str, build: Callable[[], nn.Module]) -> nn.Module:
        with self._lock:
            if name not in self._built:
                with torch.inference_mode(False):
                    self._built[name] = build()
            return self._built[name]


def _folder_key(path: Path) -> tuple:
    if not path.is_dir():
        return _file_key(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return (str(path.resolve()), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def file_signature(path: str | os.PathLike) -> str:
    """mtime and size, for ``IS_CHANGED`` of loader nodes (a replaced file reloads)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return "missing"
    return f"{stat.st_mtime_ns}:{stat.st_size}"
