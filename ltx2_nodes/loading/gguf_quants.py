"""GGML block formats dequantized in torch (any device), one vectorised function per quant type.

A quantized GGUF tensor is kept as its raw bytes: a uint8 tensor ``[..., row_bytes]`` whose last
dimension holds the blocks of one row (GGUF quantizes along the innermost dimension, which is a
Linear's ``in_features``). ``dequantize`` turns it into ``[..., row_bytes / type_size * block_size]``
values. The arithmetic follows ggml's reference (``ggml-quants.c``) operation for operation, in
float32, so the result is bit-identical to the ``gguf`` package's numpy ``gguf.quants.dequantize``
(``tests/test_gguf_quants.py`` checks every type); only then is it cast to the compute dtype.

Type ids are ggml's ``GGMLQuantizationType`` values (stable across ggml versions); this module
needs no ``gguf`` import, so dequantization runs wherever torch runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

QK_K = 256  # super-block size of the K-quants


@dataclass(frozen=True)
class GGMLType:
    """One ggml storage type: ``block_size`` values stored in ``type_size`` bytes."""

    id: int
    name: str
    block_size: int
    type_size: int
    dequantize_blocks: Callable[[torch.Tensor], torch.Tensor]  # [n, type_size] uint8 -> [n, block_size] float32

    @property
    def quantized(self) -> bool:
        return self.name not in ("F32", "F16", "BF16")

    def row_bytes(self, values: int) -> int:
        return values // self.block_size * self.type_size

    def row_values(self, row_bytes: int) -> int:
        return row_bytes // self.type_size * self.block_size


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """Little-endian float16 bytes ``[n, 2]`` -> float32 ``[n, 1]``."""
    return raw.contiguous().view(torch.float16).float()


def _nibbles(raw: torch.Tensor, groups: int, width: int) -> torch.Tensor:
    """``[n, groups * width]`` bytes -> ``[n, groups * 2, width]`` 4-bit values: each group's low nibbles,
    then its high nibbles (ggml's order)."""
    n = raw.shape[0]
    shifts = _shifts(4, 2, raw.device)
    return ((raw.reshape(n, groups, 1, width) >> shifts) & 0x0F).reshape(n, groups * 2, width)


def _shifts(step: int, count: int, device: torch.device) -> torch.Tensor:
    """Bit shifts ``0, step, 2 * step ...`` shaped ``[1, 1, count, 1]``, made on ``device`` (``arange``: no
    host-to-device copy, so a per-layer dequantization never waits for one on a GPU)."""
    return torch.arange(0, step * count, step, dtype=torch.uint8, device=device).reshape(1, 1, count, 1)


def _f32_blocks(blocks: torch.Tensor) -> torch.Tensor:
    return blocks.contiguous().view(torch.float32)


def _f16_blocks(blocks: torch.Tensor) -> torch.Tensor:
    return blocks.contiguous().view(torch.float16).float()


def _bf16_blocks(blocks: torch.Tensor) -> torch.Tensor:
    return blocks.contiguous().view(torch.bfloat16).float()


def _q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])
    return blocks[:, 2:].contiguous().view(torch.int8).float() * d


def _q4_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])
    q = _nibbles(blocks[:, 2:], 1, 16).reshape(blocks.shape[0], 32).to(torch.int8) - 8
    return d * q.float()


def _k_scales(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and mins packed in 12 bytes (Q4_K / Q5_K)."""
    d, m, md = scales.reshape(-1, 3, 4).unbind(1)
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def _k_affine(blocks: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``d * scale * q - dmin * min`` per 32-value sub-block of a Q4_K / Q5_K super-block."""
    n = blocks.shape[0]
    sc, mn = _k_scales(blocks[:, 4:16])
    d = (_f16(blocks[:, :2]) * sc.float()).reshape(n, 8, 1)
    dm = (_f16(blocks[:, 2:4]) * mn.float()).reshape(n, 8, 1)
    return (d * q.float() - dm).reshape(n, QK_K)


def _q4_k(blocks: torch.Tensor) -> torch.Tensor:
    return _k_affine(blocks, _nibbles(blocks[:, 16:], 4, 32))


def _q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    low = _nibbles(blocks[:, 48:], 4, 32)
    high = ((blocks[:, 16:48].reshape(n, 1, 1, 32) >> _shifts(1, 8, blocks.device)) & 0x01).reshape(n, 8, 32)
    return _k_affine(blocks, low | (high << 4))


def _q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
    d = (_f16(blocks[:, 208:210]) * scales).reshape(n, QK_K // 16, 1)
    low = _nibbles(blocks[:, :128], 2, 64).reshape(n, 8, 32)
    high = ((blocks[:, 128:192].reshape(n, 2, 1, 32) >> _shifts(2, 4, blocks.device)) & 0x03).reshape(n, 8, 32)
    q = (low | (high << 4)).to(torch.int8) - 32
    return (d * q.reshape(n, QK_K // 16, 16).float()).reshape(n, QK_K)


GGML_TYPES: dict[int, GGMLType] = {t.id: t for t in (
    GGMLType(0, "F32", 1, 4, _f32_blocks),
    GGMLType(1, "F16", 1, 2, _f16_blocks),
    GGMLType(2, "Q4_0", 32, 18, _q4_0),
    GGMLType(8, "Q8_0", 32, 34, _q8_0),
    GGMLType(12, "Q4_K", QK_K, 144, _q4_k),
    GGMLType(13, "Q5_K", QK_K, 176, _q5_k),
    GGMLType(14, "Q6_K", QK_K, 210, _q6_k),
    GGMLType(30, "BF16", 1, 2, _bf16_blocks),
)}
SUPPORTED_NAMES = ", ".join(t.name for t in GGML_TYPES.values())


def ggml_type(type_id: int) -> GGMLType | None:
    return GGML_TYPES.get(int(type_id))


def dequantize(raw: torch.Tensor, type_id: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Raw GGUF bytes ``[..., row_bytes]`` of ggml type ``type_id`` -> ``[..., values]`` in ``dtype``.

    Computed in float32 (bit-exact against ``gguf.quants.dequantize``) and then cast.
    """
    kind = GGML_TYPES[int(type_id)]
    lead, row_bytes = tuple(raw.shape[:-1]), raw.shape[-1]
    values = kind.dequantize_blocks(raw.reshape(-1, kind.type_size))
    return values.reshape(*lead, kind.row_values(row_bytes)).to(dtype)
