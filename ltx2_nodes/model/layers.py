"""Building blocks shared by the DiT and the text connectors.

Module and attribute names mirror the released checkpoint keys (``to_q``, ``to_out.0``,
``ff.net.0.proj``, ``emb.timestep_embedder.linear_1`` ...) so state dicts load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .rope import RopeTable, apply_rope


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weightless RMS normalisation over the last dimension."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


def binary_to_additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``[B, L]`` 1 = attend / 0 = ignore  ->  additive ``[B, 1, 1, L]`` ((m - 1) * finfo.max)."""
    if mask is None or torch.is_floating_point(mask):
        return mask
    additive = (mask.to(dtype) - 1) * torch.finfo(dtype).max
    return additive.reshape(mask.shape[0], 1, 1, mask.shape[-1])


def weights_to_additive_mask(weights: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Self-attention weights ``[B, Tq, Tk]`` in [0, 1] -> additive ``[B, 1, Tq, Tk]`` in ``dtype``: ``log(w)``
    (1 -> 0, full attention; small weights clamped to the dtype's ``tiny``), and the dtype's minimum where
    ``w <= 0`` (masked). Reference ``_prepare_self_attention_mask`` (IC-LoRA ``conditioning_attention_strength``)."""
    if weights is None:
        return None
    finfo = torch.finfo(dtype)
    positive = weights > 0
    bias = torch.full(weights.shape, finfo.min, dtype=dtype, device=weights.device)
    bias[positive] = torch.log(weights[positive].clamp(min=finfo.tiny)).to(dtype)
    return bias.unsqueeze(1)


class GELUProjection(nn.Module):
    """Linear followed by tanh-approximated GELU (key ``net.0.proj``)."""

    def __init__(self, dim_in: int, dim_out: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """``net.0.proj`` (d -> mult*d, GELU-tanh) then ``net.2`` (mult*d -> d); ``bias`` False: both without
    biases (the LTX-2.5 video feed-forward)."""

    def __init__(self, dim: int, mult: int = 4, inner_dim: int | None = None, bias: bool = True):
        super().__init__()
        inner = inner_dim or dim * mult
        self.net = nn.ModuleList([GELUProjection(dim, inner, bias), nn.Identity(), nn.Linear(inner, dim, bias=bias)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Multi-head attention with biased projections, q/k RMSNorm over the full inner width and RoPE.

    ``rope``/``k_rope`` rotate queries and keys (``k_rope`` defaults to ``rope``); cross-modal
    attention passes each stream's own table. ``mask`` is additive, broadcastable to
    ``[B, heads, Tq, Tk]``.

    ``keep`` (guidance perturbation, reference ``perturbation_mask``): per-sample 0/1 weights
    ``[B, 1, 1]``; the output becomes ``attention * keep + to_v(context) * (1 - keep)``, so a
    perturbed sample passes its value projection through. ``keep=False`` perturbs every sample
    and skips the query/key path. ``gated`` (LTX-2.3 ``apply_gated_attention``) adds
    ``to_gate_logits`` (query_dim -> heads): each head's output (after the perturbation blend,
    before ``to_out``) is scaled by ``2 * sigmoid(logit)`` computed from the query input ``x``.
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None,
                 eps: float = 1e-6, bias: bool = True, gated: bool = False):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.q_norm = nn.RMSNorm(inner, eps=eps)
        self.k_norm = nn.RMSNorm(inner, eps=eps)
        self.to_gate_logits = nn.Linear(query_dim, heads, bias=True) if gated else None
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=bias)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rope: RopeTable | None = None, k_rope: RopeTable | None = None,
                keep: torch.Tensor | bool | None = None) -> torch.Tensor:
        context = x if context is None else context
        v = self.to_v(context)
        out = v if keep is False else self._attend(x, context, v, mask, rope, k_rope)
        if keep is not None and keep is not False:
            out = out * keep + v * (1 - keep)
        if self.to_gate_logits is not None:
            gates = 2.0 * torch.sigmoid(self.to_gate_logits(x))  # [B, T, heads]
            out = (out.unflatten(-1, (self.heads, self.dim_head)) * gates.unsqueeze(-1)).flatten(-2)
        return self.to_out[0](out)

    def _attend(self, x, context, v, mask, rope, k_rope) -> torch.Tensor:
        q = self.q_norm(self.to_q(x))
        k = self.k_norm(self.to_k(context))
        if rope is not None:
            q = apply_rope(q, rope)
            k = apply_rope(k, rope if k_rope is None else k_rope)
        batch = x.shape[0]
        q, k, v = (t.view(batch, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        if mask is not None:
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(batch, -1, self.heads * self.dim_head)


def timestep_sinusoid(t: torch.Tensor, channels: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[N, channels]`` of 1-D ``t`` in float32, cosine half first."""
    half = channels // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _TimestepEmbedding(nn.Module):
    """Holds ``timestep_embedder`` so keys read ``emb.timestep_embedder.*`` as in the release."""

    def __init__(self, dim: int, channels: int = 256):
        super().__init__()
        self.channels = channels
        self.timestep_embedder = TimestepEmbedder(channels, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(timestep_sinusoid(t, self.channels).to(dtype))


class AdaLayerNormSingle(nn.Module):
    """PixArt adaLN-single: timestep -> embedded timestep ``[N, D]`` and ``coefficient`` rows ``[N, k*D]``."""

    def __init__(self, dim: int, coefficient: int = 6):
        super().__init__()
        self.coefficient = coefficient
        self.emb = _TimestepEmbedding(dim)
        self.linear = nn.Linear(dim, coefficient * dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.emb(t, dtype)
        return self.linear(F.silu(embedded)), embedded


class CaptionProjection(nn.Module):
    """Text context projection: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))
