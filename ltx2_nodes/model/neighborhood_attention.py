"""3-D neighborhood attention (NATTEN ``na3d`` semantics) for the LTX-2.5 diffusion video decoder.

Every query at ``(t, h, w)`` attends to the ``kt x kh x kw`` box of keys around it; at a border the
box is shifted inward, not clipped (per axis the window starts at ``clamp(i - k // 2, 0, L - k)``),
so every query sees exactly ``k`` keys per axis. Inputs are ``(B, T, H, W, heads, head_dim)``, queries
already scaled; the output has the same layout.

Two implementations, chosen per call by :func:`neighborhood_attention`:

* ``natten.na3d`` when the optional ``natten`` package is installed and the tensors are on a GPU (it is
  never required; ltx2_nodes does not install it);
* :func:`tiled_sdpa_na3d`, pure torch: the queries are cut into boxes of about :data:`BOX_QUERIES`, each box
  attends to the union of its queries' windows under a boolean mask, and boxes whose masks are identical
  (everything away from the borders) are stacked into one ``scaled_dot_product_attention`` call as long as
  its score matrix stays under ``score_budget`` elements, which bounds the memory.
"""

from __future__ import annotations

import math
from itertools import product

import torch
import torch.nn.functional as F

try:  # optional fast path, never required
    import natten as _natten
except ImportError:  # pragma: no cover - depends on the host
    _natten = None

# Elements of one SDPA call's [queries, keys] score matrix (all stacked boxes together).
SCORE_BUDGET = 1 << 24
# Queries per box: small boxes waste little on masked keys (a box of q queries attends to about
# prod(box + kernel - 1) keys), stacking keeps the calls few. Measured on the CPU (3x7x7 windows,
# 64-wide heads): 128 queries 1.05 s, 512 1.54 s, one box per score budget ~6 s.
BOX_QUERIES = 128


def natten_available() -> bool:
    return _natten is not None


def window_starts(length: int, kernel: int) -> list[int]:
    """First key index of every query's window along one axis (NATTEN: shifted inward at the borders)."""
    kernel = min(kernel, length)
    return [min(max(i - kernel // 2, 0), length - kernel) for i in range(length)]


def _box_size(dims: tuple[int, int, int], kernel: tuple[int, int, int], queries: int) -> list[int]:
    """Query box per axis: halve the axis with the most queries per kernel until the box holds ``queries``."""
    box = list(dims)
    while math.prod(box) > queries and max(box) > 1:
        axis = max(range(3), key=lambda a: box[a] / kernel[a])
        box[axis] = (box[axis] + 1) // 2
    return box


def _axis_boxes(length: int, kernel: int, box: int) -> list[tuple[slice, slice, tuple[tuple[int, int], ...]]]:
    """(query slice, key slice, per-query key window relative to the key slice) along one axis."""
    kernel = min(kernel, length)
    starts = window_starts(length, kernel)
    out = []
    for q0 in range(0, length, box):
        q1 = min(q0 + box, length)
        k0, k1 = starts[q0], starts[q1 - 1] + kernel
        out.append((slice(q0, q1), slice(k0, k1), tuple((starts[i] - k0, starts[i] - k0 + kernel)
                                                       for i in range(q0, q1))))
    return out


def _box_mask(windows: tuple[tuple[tuple[int, int], ...], ...], device: torch.device) -> torch.Tensor:
    """Boolean ``[Nq, Nk]`` visibility of one box: the outer AND of the three per-axis windows."""
    axes = []
    for axis_windows in windows:
        lo = torch.tensor([w[0] for w in axis_windows], device=device)
        hi = torch.tensor([w[1] for w in axis_windows], device=device)
        keys = torch.arange(int(hi.max()), device=device)
        axes.append((keys[None, :] >= lo[:, None]) & (keys[None, :] < hi[:, None]))
    t, h, w = axes
    mask = t[:, None, None, :, None, None] & h[None, :, None, None, :, None] & w[None, None, :, None, None, :]
    nq = mask.shape[0] * mask.shape[1] * mask.shape[2]
    return mask.reshape(nq, -1)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(G, B, t, h, w, heads, d) -> (G*B, heads, t*h*w, d)``."""
    g, b, t, h, w, heads, d = x.shape
    return x.permute(0, 1, 5, 2, 3, 4, 6).reshape(g * b, heads, t * h * w, d)


def tiled_sdpa_na3d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: tuple[int, int, int],
                    score_budget: int = SCORE_BUDGET) -> torch.Tensor:
    """Neighborhood attention by masked SDPA over query boxes (see the module docstring); ``q`` pre-scaled."""
    batch, t, h, w, heads, dim = q.shape
    dims = (t, h, w)
    kernel = tuple(min(kk, d) for kk, d in zip(kernel_size, dims))
    box = _box_size(dims, kernel, BOX_QUERIES)
    per_axis = [_axis_boxes(d, kk, b) for d, kk, b in zip(dims, kernel, box)]
    groups: dict[tuple, list[tuple[tuple[slice, ...], tuple[slice, ...]]]] = {}
    for parts in product(*per_axis):
        windows = tuple(p[2] for p in parts)
        groups.setdefault(windows, []).append((tuple(p[0] for p in parts), tuple(p[1] for p in parts)))
    out = torch.empty_like(v)
    for windows, boxes in groups.items():
        mask = _box_mask(windows, q.device)
        stack = max(1, score_budget // max(batch * heads * mask.numel(), 1))
        for i in range(0, len(boxes), stack):
            chunk = boxes[i:i + stack]
            qs = torch.stack([q[:, a, b, c] for (a, b, c), _ in chunk])
            ks = torch.stack([k[:, a, b, c] for _, (a, b, c) in chunk])
            vs = torch.stack([v[:, a, b, c] for _, (a, b, c) in chunk])
            o = F.scaled_dot_product_attention(_tokens(qs), _tokens(ks), _tokens(vs), attn_mask=mask, scale=1.0)
            g, _, bt, bh, bw, _, _ = qs.shape
            o = o.reshape(g, batch, heads, bt, bh, bw, dim).permute(0, 1, 3, 4, 5, 2, 6)
            for j, ((a, b, c), _) in enumerate(chunk):
                out[:, a, b, c] = o[j]
    return out


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           kernel_size: tuple[int, int, int]) -> torch.Tensor:
    """``natten.na3d`` on a GPU when installed, else :func:`tiled_sdpa_na3d`; ``q`` already scaled."""
    if _natten is not None and q.is_cuda:
        return _natten.na3d(q.contiguous(), k.contiguous(), v.contiguous(), kernel_size=tuple(kernel_size),
                            scale=1.0)
    return tiled_sdpa_na3d(q, k, v, kernel_size)
