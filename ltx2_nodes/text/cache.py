"""Prompt-embedding cache: the same prompt with the same Gemma weights never runs Gemma twice.

Entries hold only the valid (non-padding) tokens of one prompt, ``[n, D, L]`` -- Gemma's states
for padding are never used downstream -- so a typical prompt costs tens of MB instead of the
full ``1024 x 3840 x 49`` stack. Keys hash the token ids (after truncation), the padded length
(it sets the RoPE positions) and the encoder's weights/tokenizer/dtype fingerprint.

The in-memory LRU lives for the session (``SESSION_CACHE``); the optional on-disk cache stores
one safetensors file per entry under a directory the caller chooses (inside ComfyUI: a folder
of the user directory), named by the key's hex digest so no prompt text reaches the file system.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..loading.safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

FORMAT = "ltx2_nodes.gemma_states.v1"


def cache_key(encoder_fingerprint: str, token_ids: list[int], padded_length: int) -> str:
    digest = hashlib.sha256(f"{FORMAT}|{encoder_fingerprint}|{padded_length}|".encode())
    digest.update(",".join(map(str, token_ids)).encode())
    return digest.hexdigest()


class PromptCache:
    """Thread-safe LRU of compact Gemma states bounded by bytes, with an optional directory behind it."""

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get(self, key: str, directory: str | Path | None = None) -> torch.Tensor | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        if directory is None:
            return None
        entry = _read(Path(directory), key)
        if entry is not None:
            self.put(key, entry)
        return entry

    def put(self, key: str, states: torch.Tensor, directory: str | Path | None = None) -> None:
        states = states.detach().to("cpu").contiguous()
        with self._lock:
            if key in self._entries:
                self._bytes -= _nbytes(self._entries.pop(key))
            if _nbytes(states) <= self.max_bytes:
                self._entries[key] = states
                self._bytes += _nbytes(states)
                while self._bytes > self.max_bytes:
                    _, old = self._entries.popitem(last=False)
                    self._bytes -= _nbytes(old)
        if directory is not None:
            _write(Path(directory), key, states)


SESSION_CACHE = PromptCache()


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _path(directory: Path, key: str) -> Path:
    return directory / f"{key}.safetensors"


def _read(directory: Path, key: str) -> torch.Tensor | None:
    path = _path(directory, key)
    if not path.is_file():
        return None
    try:
        f = SafetensorsFile(path)
        if f.metadata.get("format") != FORMAT or f.metadata.get("key") != key:
            raise CheckpointError("foreign or stale entry")
        return f.tensor("states").clone()
    except (CheckpointError, KeyError) as exc:
        log.warning("Ignoring unreadable prompt cache file %s (%s); it will be rewritten.", path, exc)
        return None


def _write(directory: Path, key: str, states: torch.Tensor) -> None:
    from safetensors.torch import save_file

    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        save_file({"states": states}, str(tmp), metadata={"format": FORMAT, "key": key})
        os.replace(tmp, _path(directory, key))  # atomic: readers never see a half-written entry
    except OSError as exc:
        log.warning("Could not write the prompt cache entry to %s: %s", directory, exc)
