"""Appending tokens after a modality's grid, and the self-attention weights that go with them.

Modality-agnostic (video or audio ``LatentState``): guide tokens of any kind (keyframes, IC-LoRA reference
videos, reference audio) go after the grid tokens with their own positions, clean latent and denoise mask
(``1 - strength``), and are dropped when the state is read back (``LatentState.to_grid``).

The self-attention weights follow the reference's ``conditioning/mask_utils.py`` (``update_attention_mask``,
``build_attention_mask``): ``LatentState.attention`` is ``[B, T, T]`` in [0, 1] or None (full attention). A
group of ``M`` new tokens with per-token weights ``w`` ``[B, M]`` extends it to ``[B, T + M, T + M]``: the grid
tokens and the new ones attend each other with ``w`` (both directions), the new ones attend themselves fully,
and never the tokens appended before them (nor those them). A group appended without weights, after a group
that had some, gets weight 1 towards the grid; while no group has weights the state carries no mask at all.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .state import LatentState


def token_weights(weights: float | torch.Tensor, count: int, batch: int, device=None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Attention weights for ``count`` new tokens as ``[B, count]``: a number (every token), ``[count]`` (every
    sample) or ``[B|1, count]`` (reference ``resolve_cross_mask``); values must lie in [0, 1]."""
    w = torch.as_tensor(weights, dtype=dtype, device=device)
    if w.ndim == 0:
        w = w.expand(batch, count)
    elif w.ndim == 1 and w.shape[0] == count:
        w = w.unsqueeze(0).expand(batch, count)
    elif w.ndim == 2 and w.shape[1] == count and w.shape[0] in (1, batch):
        w = w.expand(batch, count)
    else:
        raise InputError(f"attention weights of shape {list(w.shape)} do not fit {count} new tokens for a batch of "
                         f"{batch}; give one number, [{count}] or [{batch}, {count}].")
    if w.numel() and (w.min() < 0 or w.max() > 1):
        raise InputError(f"attention weights must lie in [0, 1] (1 = full attention, 0 = none), got "
                         f"[{w.min():.3g}, {w.max():.3g}].")
    return w


def grow_attention(state: LatentState, count: int, weights: float | torch.Tensor | None = None,
                   dtype: torch.dtype | None = None) -> torch.Tensor | None:
    """``state.attention`` extended for ``count`` tokens appended after the state's tokens (module docstring);
    None while neither the state nor the new group has weights. ``dtype``: that of a new mask (default the
    latent's, as the reference builds it in the conditioning latent's dtype)."""
    existing = state.attention
    if weights is None and existing is None:
        return None
    batch, total, device = state.batch, state.latent.shape[1], state.latent.device
    dtype = existing.dtype if existing is not None else (dtype or state.latent.dtype)
    cross = token_weights(1.0 if weights is None else weights, count, batch, device, dtype)
    grid = state.grid.tokens
    mask = torch.zeros(batch, total + count, total + count, device=device, dtype=dtype)
    mask[:, :total, :total] = 1.0 if existing is None else existing
    mask[:, total:, total:] = 1.0
    mask[:, :grid, total:] = cross.unsqueeze(1)
    mask[:, total:, :grid] = cross.unsqueeze(2)
    return mask


def append_tokens(state: LatentState, latent: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor,
                  positions: torch.Tensor, *, marked: bool = False,
                  attention: float | torch.Tensor | None = None) -> LatentState:
    """``state`` with tokens appended after its own: ``latent`` / ``clean`` ``[B, M, C]``, denoise ``mask``
    ``[B, M, 1]``, ``positions`` ``[B, P, M, 2]``; a video state's keyframe marker is 1 on them (``marked``) or 0;
    ``attention``: their attention weights towards the grid (:func:`grow_attention`)."""
    count = latent.shape[1]
    keyframes = state.keyframes
    if keyframes is not None:
        keyframes = torch.cat([keyframes, torch.full_like(mask, float(marked), dtype=keyframes.dtype)], dim=1)
    return state.replace(latent=torch.cat([state.latent, latent], dim=1), clean=torch.cat([state.clean, clean], dim=1),
                         mask=torch.cat([state.mask, mask.to(state.mask.dtype)], dim=1),
                         positions=torch.cat([state.positions, positions.to(state.positions.dtype)], dim=2),
                         keyframes=keyframes, attention=grow_attention(state, count, attention, latent.dtype))
