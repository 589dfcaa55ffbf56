"""GGUF files read through the maintained ``gguf`` package (``gguf.GGUFReader``), served like safetensors.

GGUF is how the community ships low-VRAM LTX-2 DiTs (city96's ComfyUI-GGUF layout: the checkpoint's
own key names, with or without ``model.diffusion_model.``) and Gemma 3 text encoders (llama.cpp's
names, mapped by ``gemma_files``). ``GGUFReader`` parses the header; the tensors are then views of
our own memory map of the file, exactly like ``SafetensorsFile``'s, so nothing is copied.

Shapes: GGUF lists dimensions innermost first (ggml's ``ne``); ``info(key).shape`` is the torch
order (reversed), the logical shape of the values. Quantized tensors (ggml block formats) are
served as their raw bytes ``[..., row_bytes]`` (uint8) with a ``<key>.ggml_type`` sibling (a 0-dim
int32 tensor, zero bytes in ``info``) that names the format; ``quant.prepare_packed_state`` turns
them into ``GGUFLinear`` layers (kept quantized) or dequantizes them. Unsupported types are refused
with their ggml name. Community GGUF DiTs carry no LTX ``config``: the DiT config is inferred from
shapes (``checkpoint.infer_transformer_config``); a file that keeps the checkpoint's ``config`` JSON as a
GGUF string (as the tests' files do) is read like a safetensors file's metadata.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError, ModelNotFoundError
from .gguf_quants import SUPPORTED_NAMES, ggml_type
from .quant import GGML_TYPE_SUFFIX
from .safetensors_file import SafetensorsFile, TensorInfo

log = logging.getLogger("ltx2_nodes")

GGUF_MAGIC = b"GGUF"
_PLAIN = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def is_gguf(path: str | os.PathLike) -> bool:
    """True when the file starts with the GGUF magic (whatever its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except (IsADirectoryError, FileNotFoundError):
        return False


def open_tensor_file(path: str | os.PathLike) -> SafetensorsFile:
    """A ``GGUFFile`` for GGUF content, a ``SafetensorsFile`` otherwise (by magic bytes, not by name)."""
    return GGUFFile(path) if is_gguf(path) else SafetensorsFile(path)


class GGUFFile(SafetensorsFile):
    """A GGUF file behind ``SafetensorsFile``'s interface (keys, info, tensor, release_pages).

    ``rename(file_key) -> key | None`` maps the file's names to the exposed ones (None: not exposed).
    """

    def __init__(self, path: str | os.PathLike, rename: Callable[[str], str | None] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"Model file not found: {self.path}")
        self.file_size = self.path.stat().st_size
        self.data_start = 0
        self._mmap = None
        reader = _read(self.path)
        self.architecture = _field(reader, "general.architecture") or "?"
        self.metadata: dict[str, str] = _scalar_fields(reader)
        self._infos: dict[str, TensorInfo] = {}
        self._packed: dict[str, tuple[int, tuple[int, ...]]] = {}  # key -> (ggml type id, raw byte shape)
        for t in reader.tensors:
            key = rename(t.name) if rename is not None else t.name
            if key is not None:
                self._add(key, t)

    def _add(self, key: str, t) -> None:
        kind = ggml_type(int(t.tensor_type))
        if kind is None:
            raise CheckpointError(
                f"{self.path.name}: tensor '{t.name}' is stored as {t.tensor_type.name}, a GGUF quantization "
                f"ltx2_nodes cannot read (supported: {SUPPORTED_NAMES}). Use a Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0 "
                "file of the model.")
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        begin, end = int(t.data_offset), int(t.data_offset) + int(t.n_bytes)
        if end > self.file_size:
            raise CheckpointError(
                f"{self.path.name} is truncated: tensor '{t.name}' ends at byte {end:,} but the file has "
                f"{self.file_size:,} bytes. The download was interrupted; delete the file and download it again.")
        if kind.quantized:
            if shape[-1] % kind.block_size:
                raise CheckpointError(f"{self.path.name}: tensor '{t.name}' has rows of {shape[-1]} values, not "
                                      f"whole {kind.name} blocks of {kind.block_size}; the file is corrupt.")
            self._packed[key] = (kind.id, shape[:-1] + (kind.row_bytes(shape[-1]),))
            self._infos[key] = TensorInfo(key, torch.uint8, kind.name, shape, begin, end)
            self._infos[key + GGML_TYPE_SUFFIX] = TensorInfo(key + GGML_TYPE_SUFFIX, torch.int32, "ggml_type", (),
                                                             0, 0)
        else:
            self._infos[key] = TensorInfo(key, _PLAIN[kind.name], kind.name, shape, begin, end)

    def ggml_type_name(self, key: str) -> str:
        """The ggml storage type of ``key`` (``Q4_K``, ``F16`` ...)."""
        return self._infos[key].dtype_name

    def tensor(self, name: str) -> torch.Tensor:
        if name.endswith(GGML_TYPE_SUFFIX) and name in self._infos:
            return torch.tensor(self._packed[name[: -len(GGML_TYPE_SUFFIX)]][0], dtype=torch.int32)
        if name in self._packed:
            info = self._infos[name]
            raw = torch.frombuffer(self._map(), dtype=torch.uint8, count=info.nbytes, offset=info.begin)
            return raw.view(self._packed[name][1])
        return super().tensor(name)

    def quantized_keys(self) -> list[str]:
        return list(self._packed)

    def __repr__(self) -> str:
        return f"GGUFFile({self.path}, {len(self._packed)} quantized of {len(self._infos)} entries)"


def _read(path: Path):
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - gguf is in requirements.txt
        raise CheckpointError(f"{path.name} is a GGUF file; reading it needs the 'gguf' package "
                              "(pip install -r requirements.txt).") from None
    try:
        return GGUFReader(path)
    except ValueError as exc:
        if "GGMLQuantizationType" in str(exc):
            raise CheckpointError(
                f"{path.name} stores tensors in a GGUF quantization type this version of the gguf package does not "
                f"know ({exc}); ltx2_nodes reads {SUPPORTED_NAMES}. Use a Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0 file."
            ) from None
        raise _damaged(path, exc) from None
    except (IndexError, KeyError, OSError, OverflowError, UnicodeDecodeError, TypeError) as exc:
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path.name} is a damaged or truncated GGUF file ({type(exc).__name__}: {exc}). The download was probably "
        "interrupted; delete the file and download it again.")


def _scalar_fields(reader) -> dict[str, str]:
    """Metadata entries holding one string or number (arrays such as the tokenizer's vocabulary are skipped)."""
    from gguf import GGUFValueType

    out = {}
    for name, field in reader.fields.items():
        if field.types and field.types[0] != GGUFValueType.ARRAY and not name.startswith("GGUF."):
            value = _field(reader, name)
            if value is not None:
                out[name] = str(value)
    return out


def _field(reader, name: str):
    field = reader.get_field(name)
    if field is None:
        return None
    try:
        return field.contents()
    except (ValueError, IndexError, TypeError):
        return None
