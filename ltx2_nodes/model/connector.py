"""The text path after Gemma: feature extractor + projection, and the two embedding connectors.

Gemma's hidden states (embedding output and every layer, stacked ``[B, T, D, L]``) are
normalised per sample and per layer over the valid tokens, flattened with the layer index
fastest and projected by ``text_embedding_projection.aggregate_embed`` (no bias). The same
projected features feed a video and an audio ``Embeddings1DConnector``: the valid tokens move
to the front, every remaining slot takes a learnable register ("thinking") token, then a few
pre-norm self-attention/feed-forward blocks with 1-D split RoPE run over the now fully valid
sequence. Outputs are the ``context`` tensors of the DiT.

Dimensions come from the checkpoint's ``config.transformer`` ``connector_*`` keys; defaults are
the released LTX-2 19B values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .layers import Attention, FeedForward, rms_norm
from .rope import RopeSpec, rope_table

# Both reference revisions build the connector RoPE with the constructor default theta; the
# checkpoint's ``positional_embedding_theta`` belongs to the DiT.
CONNECTOR_ROPE_THETA = 10000.0
FEATURE_SCALE = 8.0
FEATURE_EPS = 1e-6


@dataclass(frozen=True)
class ConnectorConfig:
    num_attention_heads: int = 30
    attention_head_dim: int = 128
    num_layers: int = 2
    num_learnable_registers: int = 128
    positional_embedding_max_pos: tuple[float, ...] = (4096,)
    rope_type: str = "split"
    frequencies_precision: str = "float64"
    norm_eps: float = 1e-6

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_metadata(cls, meta: dict) -> "ConnectorConfig":
        """From ``config.transformer``; refuses connector variants this implementation does not run."""
        for key, allowed in (("connector_apply_gated_attention", (False,)), ("connector_ff_bias", (True,))):
            if key in meta and meta[key] not in allowed:
                raise UnsupportedModelError(
                    f"transformer config has {key}={meta[key]!r}; ltx2_nodes runs LTX-2 (19B) text connectors "
                    f"({key} in {list(allowed)}).")
        defaults = cls()
        registers = meta.get("connector_num_learnable_registers", defaults.num_learnable_registers)
        if not registers:
            raise UnsupportedModelError(
                "transformer config has no learnable connector registers (connector_num_learnable_registers="
                f"{registers!r}); LTX-2 connectors always replace padding with registers.")
        return cls(
            num_attention_heads=int(meta.get("connector_num_attention_heads", defaults.num_attention_heads)),
            attention_head_dim=int(meta.get("connector_attention_head_dim", defaults.attention_head_dim)),
            num_layers=int(meta.get("connector_num_layers", defaults.num_layers)),
            num_learnable_registers=int(registers),
            positional_embedding_max_pos=tuple(meta.get("connector_positional_embedding_max_pos",
                                                        defaults.positional_embedding_max_pos)),
            rope_type=meta.get("rope_type", defaults.rope_type),
            frequencies_precision=meta.get("frequencies_precision", defaults.frequencies_precision),
            norm_eps=float(meta.get("norm_eps", defaults.norm_eps)),
        )

    def rope_spec(self) -> RopeSpec:
        return RopeSpec(theta=CONNECTOR_ROPE_THETA, max_pos=tuple(self.positional_embedding_max_pos),
                        rope_type=self.rope_type, double_precision=self.frequencies_precision == "float64")


# ------------------------------------------------------------------------------------------------
# Feature extractor


def normalize_hidden_states(hidden_states: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype | None = None,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """``[B, T, D, L]`` Gemma states -> ``[B, T, D*L]`` normalised features (index ``d*L + l``).

    Per sample and layer: ``8 * (x - mean) / (max - min + 1e-6)`` with mean/min/max over the
    valid tokens and all D features; padded tokens become 0. Statistics are taken in float32
    one layer at a time (the layer slice is also what moves to ``device``), so the full stack
    never exists in float32.
    """
    if hidden_states.ndim != 4:
        raise InputError(f"Gemma hidden states must be [batch, tokens, width, layers], got {list(hidden_states.shape)}")
    batch, tokens, width, layers = hidden_states.shape
    if tuple(mask.shape) != (batch, tokens):
        raise InputError(f"attention mask {list(mask.shape)} does not match hidden states {list(hidden_states.shape)}")
    device = hidden_states.device if device is None else torch.device(device)
    dtype = hidden_states.dtype if dtype is None else dtype
    valid = mask.to(device=device).bool()[:, :, None]  # [B, T, 1]
    count = valid.sum(dim=1, keepdim=True).float() * width  # [B, 1, 1]
    out = torch.empty(batch, tokens, width, layers, dtype=dtype, device=device)
    for layer in range(layers):
        x = hidden_states[..., layer].to(device=device, dtype=torch.float32)
        mean = x.masked_fill(~valid, 0.0).sum(dim=(1, 2), keepdim=True) / (count + FEATURE_EPS)
        low = x.masked_fill(~valid, float("inf")).amin(dim=(1, 2), keepdim=True)
        high = x.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        # A sample without valid tokens gets an infinite range here; its rows are zeroed just below.
        normed = FEATURE_SCALE * (x - mean) / (high - low + FEATURE_EPS)
        out[..., layer] = normed.masked_fill(~valid, 0.0).to(dtype)
    return out.view(batch, tokens, width * layers)


class TextProjection(nn.Module):
    """``aggregate_embed``: flattened normalised Gemma states ``D*L`` -> ``caption_channels``, no bias."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.aggregate_embed = nn.Linear(in_features, out_features, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.aggregate_embed(features)


# ------------------------------------------------------------------------------------------------
# Connector


class ConnectorBlock(nn.Module):
    """``x += attn1(rms(x)); x += ff(rms(x))`` -- no modulation, no gates."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.attn1 = Attention(cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim, eps=cfg.norm_eps)
        self.ff = FeedForward(cfg.inner_dim)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn1(rms_norm(x, self.eps), rope=rope)
        return x + self.ff(rms_norm(x, self.eps))


def fill_with_registers(x: torch.Tensor, mask: torch.Tensor, registers: torch.Tensor) -> torch.Tensor:
    """Move each sample's valid tokens to the front (order kept); slot ``p`` beyond them gets ``registers[p % R]``.

    Works for any padding side and per sample, so batches of prompts of different lengths are
    handled (the reference only handles batch 1).
    """
    batch, tokens, _ = x.shape
    valid = mask.to(x.device).bool()
    # Stable sort on "is padding" puts valid tokens first without reordering them.
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    front = torch.gather(x, 1, order[:, :, None].expand_as(x))
    slots = torch.arange(tokens, device=x.device)
    is_register = slots[None, :] >= valid.sum(dim=1, keepdim=True)  # [B, T]
    tiled = registers.to(x.dtype)[slots % registers.shape[0]]  # [T, C]
    return torch.where(is_register[:, :, None], tiled[None], front)


class Embeddings1DConnector(nn.Module):
    """Register substitution, then ``num_layers`` 1-D transformer blocks, then a weightless RMS norm."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.config = cfg
        self.learnable_registers = nn.Parameter(torch.empty(cfg.num_learnable_registers, cfg.inner_dim))
        self.transformer_1d_blocks = nn.ModuleList([ConnectorBlock(cfg) for _ in range(cfg.num_layers)])

    def with_registers(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return fill_with_registers(x, mask, self.learnable_registers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C]`` projected features, ``mask`` ``[B, T]`` (1 = valid) -> ``[B, T, C]``."""
        cfg = self.config
        x = self.with_registers(x, mask)
        batch, tokens, _ = x.shape
        positions = torch.arange(tokens, dtype=torch.float32, device=x.device)[None, None, :].expand(batch, 1, -1)
        rope = rope_table(positions, cfg.inner_dim, cfg.num_attention_heads, cfg.rope_spec(), x.dtype)
        for block in self.transformer_1d_blocks:
            x = block(x, rope)
        return rms_norm(x, cfg.norm_eps)


# ------------------------------------------------------------------------------------------------
# Whole text path after Gemma


@dataclass
class TextConditioning:
    """What the DiT consumes for one batch of prompts.

    ``video_context``/``audio_context`` ``[B, T, C]``; ``mask`` ``[B, T]`` int64, all ones because
    registers fill every padded slot (the pipelines pass ``context_mask=None`` to the DiT).
    """

    video_context: torch.Tensor
    audio_context: torch.Tensor
    mask: torch.Tensor

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TextConditioning":
        return TextConditioning(self.video_context.to(device=device, dtype=dtype),
                                self.audio_context.to(device=device, dtype=dtype), self.mask.to(device=device))


class TextConnectors(nn.Module):
    """Projection + video connector + audio connector, loaded from an LTX-2 checkpoint."""

    def __init__(self, projection: TextProjection, video: Embeddings1DConnector, audio: Embeddings1DConnector):
        super().__init__()
        self.projection = projection
        self.video = video
        self.audio = audio

    @property
    def in_features(self) -> int:
        return self.projection.aggregate_embed.in_features

    def project(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalise and project ``[B, T, D, L]`` Gemma states to ``[B, T, C]``."""
        batch, tokens, width, layers = hidden_states.shape
        if width * layers != self.in_features:
            raise InputError(
                f"the Gemma features have width {width} x {layers} hidden states = {width * layers}, but this LTX-2 "
                f"checkpoint's text projection expects {self.in_features} (Gemma 3 12B: 3840 x 49). Use the "
                "Gemma 3 12B text encoder with this model.")
        weight = self.projection.aggregate_embed.weight
        compute = weight.dtype if weight.dtype.itemsize > 1 else torch.bfloat16  # fp8 storage computes in bf16
        features = normalize_hidden_states(hidden_states, mask, dtype=compute, device=weight.device)
        return self.projection(features)

    def connect(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> TextConditioning:
        """Gemma features ``[B, T, D, L]`` + mask ``[B, T]`` -> video/audio contexts for the DiT."""
        projected = self.project(hidden_states, mask)
        mask = mask.to(projected.device)
        video = self.video(projected, mask)
        audio = self.audio(projected, mask)
        # The reference multiplies the video output by the mask its connector returns; after register
        # substitution that mask is all ones, so the product is the output itself.
        out_mask = torch.ones(video.shape[:2], dtype=torch.int64, device=video.device)
        return TextConditioning(video, audio, out_mask)

    forward = connect
