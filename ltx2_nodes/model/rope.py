"""Rotary position embeddings as LTX-2 uses them.

Positions arrive as ``[B, P, T, 2]`` token bounds ``[start, end)`` (P = 3 axes t/h/w for video,
1 for audio or 1-D text), in seconds / pixels / token indices. The angle for frequency j and
axis d is ``omega_j * (2 * pos_d / max_pos_d - 1)`` with ``omega_j = pi/2 * theta**(j/(n-1))``.

Release checkpoints use the ``split`` layout: the flattened angle list (frequency-major,
axis-minor) is left-padded with identity rotations to half the rotary width and cut into one
contiguous band per head; inside a head the first half of the features rotates against the
second half. ``interleaved`` (the legacy layout) rotates adjacent feature pairs instead.

Numerics follow the reference exactly: with ``frequencies_precision == "float64"`` only the
frequency ladder is computed in float64 (then rounded to float32); angles are formed in float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RopeSpec:
    theta: float
    max_pos: tuple[float, ...]
    rope_type: str = "split"  # "split" | "interleaved"
    double_precision: bool = True  # frequency ladder in float64
    use_middle_indices_grid: bool = True

    def __post_init__(self):
        if self.rope_type not in ("split", "interleaved"):
            raise ValueError(f"unknown rope_type {self.rope_type!r} (expected 'split' or 'interleaved')")


@dataclass(frozen=True)
class RopeTable:
    """cos/sin ready to apply: split ``[B, H, T, W/(2H)]``; interleaved ``[B, T, W]``."""

    cos: torch.Tensor
    sin: torch.Tensor
    rope_type: str

    def to(self, dtype: torch.dtype) -> "RopeTable":
        return RopeTable(self.cos.to(dtype), self.sin.to(dtype), self.rope_type)


@functools.lru_cache(maxsize=16)
def frequency_ladder(theta: float, num_axes: int, rotary_dim: int, double_precision: bool) -> torch.Tensor:
    """``pi/2 * theta**linspace(0, 1, n)`` with ``n = rotary_dim // (2 * num_axes)`` (float32 result)."""
    n = rotary_dim // (2 * num_axes)
    if double_precision:
        ladder = np.power(theta, np.linspace(0.0, 1.0, n, dtype=np.float64)) * math.pi / 2
        return torch.tensor(ladder, dtype=torch.float32)
    ladder = theta ** torch.linspace(0.0, 1.0, n, dtype=torch.float32)
    return ladder * (math.pi / 2)


def rope_angles(positions: torch.Tensor, rotary_dim: int, spec: RopeSpec) -> torch.Tensor:
    """Angles ``[B, T, n * P]`` (index ``j * P + d``) for token bounds ``[B, P, T, 2]`` (or ``[B, P, T]``)."""
    if positions.ndim == 4:
        if spec.use_middle_indices_grid:
            points = (positions[..., 0] + positions[..., 1]) / 2.0
        else:
            points = positions[..., 0]
    elif positions.ndim == 3:
        points = positions
    else:
        raise ValueError(f"positions must be [B, P, T, 2] or [B, P, T], got {list(positions.shape)}")
    num_axes = points.shape[1]
    if num_axes != len(spec.max_pos):
        raise ValueError(f"positions have {num_axes} axes but max_pos has {len(spec.max_pos)}")
    points = points.float()
    fractions = torch.stack([points[:, d] / spec.max_pos[d] for d in range(num_axes)], dim=-1)  # [B,T,P]
    ladder = frequency_ladder(spec.theta, num_axes, rotary_dim, spec.double_precision).to(points.device)
    angles = ladder * (fractions.unsqueeze(-1) * 2 - 1)  # [B,T,P,n]
    return angles.transpose(-1, -2).flatten(2)


def rope_table(positions: torch.Tensor, rotary_dim: int, heads: int, spec: RopeSpec,
               dtype: torch.dtype = torch.float32) -> RopeTable:
    """Build the cos/sin table for a rotary width ``rotary_dim`` split over ``heads`` heads."""
    angles = rope_angles(positions, rotary_dim, spec)
    cos, sin = angles.cos(), angles.sin()
    batch, tokens, used = angles.shape
    if spec.rope_type == "split":
        pad = rotary_dim // 2 - used
        if pad < 0:
            raise ValueError(f"rotary width {rotary_dim} is too small for {used} angles")
        if pad:
            cos = torch.cat([cos.new_ones(batch, tokens, pad), cos], dim=-1)
            sin = torch.cat([sin.new_zeros(batch, tokens, pad), sin], dim=-1)
        cos = cos.reshape(batch, tokens, heads, -1).transpose(1, 2)
        sin = sin.reshape(batch, tokens, heads, -1).transpose(1, 2)
    else:
        cos = cos.repeat_interleave(2, dim=-1)
        sin = sin.repeat_interleave(2, dim=-1)
        pad = rotary_dim - cos.shape[-1]
        if pad:
            cos = torch.cat([cos.new_ones(batch, tokens, pad), cos], dim=-1)
            sin = torch.cat([sin.new_zeros(batch, tokens, pad), sin], dim=-1)
    return RopeTable(cos.to(dtype), sin.to(dtype), spec.rope_type)


def apply_rope(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    """Rotate ``x`` ``[B, T, W]`` by ``table``; returns the same layout.

    Split layout: each head's halves ``(x1, x2)`` become ``(x1 cos - x2 sin, x2 cos + x1 sin)``. The reference
    moves heads to the front, forms four products, two sums and a concatenation, then moves heads back; here
    the halves are views of ``x`` in token-major order and each output half is one product plus one
    ``addcmul`` written in place into the result (two passes over ``x`` instead of five; same values up to
    the rounding of a fused multiply-add).
    """
    if table.rope_type == "split":
        batch, heads, tokens, half = table.cos.shape
        halves = x.reshape(batch, tokens, heads, 2, half)
        x1, x2 = halves.unbind(-2)
        cos, sin = table.cos.transpose(1, 2), table.sin.transpose(1, 2)  # [B, T, H, half] views
        if torch.compiler.is_compiling() or (x.requires_grad and torch.is_grad_enabled()):
            # out= into strided views neither traces (Dynamo) nor records autograd; compiled, this fuses anyway
            return torch.stack([torch.addcmul(x1 * cos, x2, sin, value=-1), torch.addcmul(x2 * cos, x1, sin)],
                               dim=-2).reshape(x.shape)
        out = torch.empty_like(halves)
        torch.addcmul(x1 * cos, x2, sin, value=-1, out=out[..., 0, :])
        torch.addcmul(x2 * cos, x1, sin, out=out[..., 1, :])
        return out.view(x.shape)
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * table.cos + rotated * table.sin
