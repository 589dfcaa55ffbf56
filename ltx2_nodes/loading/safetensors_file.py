"""A strict, zero-copy reader for safetensors files.

Why not ``safetensors.safe_open``: we need (a) tensors that alias a memory map so building a
19B model never holds a second copy in RAM, (b) precise errors for the files users actually
feed us (truncated downloads, pickles renamed to .safetensors, GGUF files where only safetensors are read: GGUF
DiTs and text encoders are read by ``gguf_file``), and (c) dtypes such
as F8_E4M3 exposed unchanged. The format is simple: 8-byte little-endian header length, a JSON
header mapping names to ``{dtype, shape, data_offsets}`` plus ``__metadata__``, then raw bytes.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, ModelNotFoundError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}

_MAX_HEADER_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: torch.dtype
    dtype_name: str
    shape: tuple[int, ...]
    begin: int  # byte offset inside the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _sniff_foreign_format(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch zip/pickle checkpoint (.ckpt/.pt)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a raw Python pickle"
    if head.startswith(b"GGUF"):
        return "a GGUF file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 (Keras) file"
    return None


class SafetensorsFile:
    """Header of one safetensors file plus lazily memory-mapped tensor access."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise ModelNotFoundError(f"Model file not found: {self.path}")
        if self.path.is_dir():
            raise CheckpointError(f"{self.path} is a folder; a single .safetensors file was expected here.")
        self.file_size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            header = self._read_header(f, head)
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path.name}: the safetensors header is not a JSON object.")
        self.data_start = 8 + struct.unpack("<Q", head)[0]
        raw_meta = header.pop("__metadata__", None) or {}
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in raw_meta.items()}
        self._infos = self._parse_infos(header)
        data_end = max((i.end for i in self._infos.values()), default=0)
        if self.data_start + data_end > self.file_size:
            raise CheckpointError(
                f"{self.path.name} is truncated: its header describes {self.data_start + data_end:,} bytes but "
                f"the file has {self.file_size:,} bytes ({(self.data_start + data_end - self.file_size):,} "
                "missing). The download was interrupted; delete the file and download it again."
            )
        self._mmap: mmap.mmap | None = None

    def _read_header(self, f, head: bytes):
        """Parse the JSON header; a file that is not safetensors is named by its magic bytes."""

        def refuse(reason: str) -> CheckpointError:
            foreign = _sniff_foreign_format(head)
            if foreign == "a GGUF file":
                return CheckpointError(
                    f"{self.path.name} is a GGUF file. GGUF is read for the LTX-2 DiT (checkpoint loader, "
                    "models/diffusion_models) and the Gemma 3 text encoder; this model is needed as .safetensors.")
            if foreign:
                return CheckpointError(
                    f"{self.path.name} is {foreign}, not a safetensors file. ltx2_nodes only reads safetensors "
                    "(pickle checkpoints can run arbitrary code and are never loaded); download the "
                    ".safetensors release of the model instead."
                )
            return CheckpointError(f"{self.path.name}: {reason}")

        if len(head) < 8:
            raise refuse(f"{self.file_size} bytes long, too short to be a safetensors file (the download probably "
                         "failed); delete it and download it again.")
        (header_len,) = struct.unpack("<Q", head)
        if header_len == 0 or header_len > min(_MAX_HEADER_BYTES, self.file_size - 8):
            raise refuse(f"not a valid safetensors file (header length {header_len} does not fit a "
                         f"{self.file_size}-byte file). It is probably truncated or another format; re-download it.")
        try:
            return json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise refuse(f"the safetensors header is not valid JSON ({exc}); the file is damaged or not a "
                         "safetensors file. Re-download it.") from None

    def _parse_infos(self, header: dict) -> dict[str, TensorInfo]:
        infos: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            try:
                dtype_name = entry["dtype"]
                shape = tuple(int(s) for s in entry["shape"])
                begin, end = (int(o) for o in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.path.name}: malformed header entry for tensor '{name}'.") from None
            if dtype_name not in DTYPES:
                raise CheckpointError(
                    f"{self.path.name}: tensor '{name}' has dtype {dtype_name}, which ltx2_nodes cannot read "
                    f"(supported: {', '.join(DTYPES)})."
                )
            dtype = DTYPES[dtype_name]
            expected = math.prod(shape) * dtype.itemsize
            if end - begin != expected or begin < 0:
                raise CheckpointError(
                    f"{self.path.name}: tensor '{name}' claims {end - begin} bytes but shape {list(shape)} of "
                    f"{dtype_name} needs {expected}; the file is corrupt."
                )
            infos[name] = TensorInfo(name, dtype, dtype_name, shape, begin, end)
        return infos

    # -- header queries -------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def json_metadata(self, key: str) -> dict | None:
        """Parse one metadata entry as JSON (e.g. ``config``); None when absent."""
        if key not in self.metadata:
            return None
        try:
            value = json.loads(self.metadata[key])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.path.name}: metadata entry '{key}' is not valid JSON ({exc}).") from None
        return value

    # -- tensor access --------------------------------------------------------------------------

    def _map(self) -> mmap.mmap:
        if self._mmap is None:
            with open(self.path, "rb") as f:
                # ACCESS_COPY: private pages, writable tensors without touching the file.
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._mmap

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor ``name`` as a view of the memory-mapped file (no copy)."""
        if name not in self._infos:
            raise KeyError(f"{self.path.name} has no tensor '{name}'")
        info = self._infos[name]
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        offset = self.data_start + info.begin
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if offset % info.dtype.itemsize == 0:
                flat = torch.frombuffer(self._map(), dtype=info.dtype, count=info.nbytes // info.dtype.itemsize,
                                        offset=offset)
            else:  # unaligned tensor in the file: copy this one
                raw = torch.frombuffer(self._map(), dtype=torch.uint8, count=info.nbytes, offset=offset)
                flat = raw.clone().view(info.dtype)
        return flat.view(info.shape)

    def release_pages(self, tensor: torch.Tensor) -> None:
        """Drop the mapped pages behind ``tensor`` from this process's RSS once it has been copied.

        Applies only to views of this file's map; the data stays on disk and is re-read if used.
        """
        if self._mmap is None or tensor.numel() == 0 or not hasattr(self._mmap, "madvise"):
            return
        base = torch.frombuffer(self._mmap, dtype=torch.uint8, count=1).data_ptr()
        start = tensor.data_ptr() - base
        end = start + tensor.numel() * tensor.element_size()
        if start < 0 or end > len(self._mmap):
            return
        page = mmap.PAGESIZE
        first = -(-start // page) * page  # only whole pages inside the tensor
        last = end // page * page
        if last > first:
            self._mmap.madvise(mmap.MADV_DONTNEED, first, last - first)

    def close(self) -> None:
        # Tensors handed out keep their own reference to the map, so closing only drops ours.
        self._mmap = None

    def __repr__(self) -> str:
        return f"SafetensorsFile({self.path}, {len(self._infos)} tensors)"


_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def write_safetensors(path: str | os.PathLike, entries, metadata: dict[str, str] | None = None) -> Path:
    """Stream tensors to a safetensors file without holding them all in memory.

    ``entries``: iterable of ``(name, shape, dtype, make)`` where ``make()`` returns the tensor when
    its turn comes (so a multi-GB synthetic checkpoint needs only one tensor in RAM at a time).
    Written to a temporary name and renamed, so an interrupted write never leaves a plausible file.
    """
    entries = list(entries)
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, shape, dtype, _ in entries:
        nbytes = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape, dtype, make in entries:
            tensor = make()
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ValueError(f"{name}: produced {tuple(tensor.shape)} {tensor.dtype}, "
                                 f"declared {tuple(shape)} {dtype}")
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    os.replace(tmp, path)
    return path
