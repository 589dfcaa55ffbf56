"""The text path after Gemma: feature extractor + projection, and the two embedding connectors.

Gemma's hidden states (embedding output and every layer, stacked ``[B, T, D, L]``) are
normalised, flattened with the layer index fastest and projected to the connectors' widths.
Two feature extractors exist (reference ``feature_extractor.py``), chosen by
:class:`TextProjectionConfig` from the checkpoint config:

* ``FeatureExtractorV1`` (LTX-2 19B): per sample and layer ``8 * (x - mean) / (max - min)``
  over the valid tokens, one ``aggregate_embed`` (no bias) whose output feeds both connectors;
  the DiT's ``caption_projection`` later maps it to the inner widths.
* ``FeatureExtractorV2`` (LTX-2.3 and LTX-2.5, ``caption_proj_before_connector``): per-token RMS norm per
  layer, then ``video_aggregate_embed`` / ``audio_aggregate_embed`` (biased) of the features
  times ``sqrt(out_width / D)``, straight to the DiT's inner widths (the DiT has no caption
  projection).

Each ``Embeddings1DConnector`` moves the valid tokens to the front, fills every remaining slot
with a learnable register ("thinking") token, then runs a few pre-norm self-attention (gated in
2.3) / feed-forward blocks with 1-D split RoPE over the now fully valid sequence. Outputs are the
``context`` tensors of the DiT; the audio connector may be narrower than the video one (2.3).

Dimensions come from the checkpoint's ``config.transformer`` ``connector_*`` /
``audio_connector_*`` keys and the file's tensor shapes; defaults are the released LTX-2 19B values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .config_values import as_tuple, check_config
from .layers import Attention, FeedForward, rms_norm
from .rope import RopeSpec, rope_table

# Both reference revisions build the connector RoPE with the constructor default theta; the
# checkpoint's ``positional_embedding_theta`` belongs to the DiT.
CONNECTOR_ROPE_THETA = 10000.0
FEATURE_SCALE = 8.0
FEATURE_EPS = 1e-6
# The exact ``config.transformer`` values that select FeatureExtractorV2 (reference
# ``_V2_EXPECTED_CONFIG``); none of them present selects V1, anything else is refused.
V2_PROJECTION_CONFIG = {"caption_proj_before_connector": True, "caption_projection_first_linear": False,
                        "caption_proj_input_norm": False, "caption_projection_second_linear": False}


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
    gated_attention: bool = False
    ff_bias: bool = True  # connector_ff_bias (reference default true)

    def __post_init__(self):
        check_config(self, "config.transformer (text connector)")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_metadata(cls, meta: dict, *, audio: bool = False, registers: int | None = None) -> "ConnectorConfig":
        """From ``config.transformer``; refuses connector variants this implementation does not run.

        ``audio`` reads ``audio_connector_{num_attention_heads,attention_head_dim,num_layers}``,
        each falling back to the video connector's key (as the reference does). ``registers`` is
        the row count of the file's ``learnable_registers``: both reference revisions build 128
        (the released value) whatever ``connector_num_learnable_registers`` says, so only files
        with 128 rows load there; we take the file's count instead (the tiny 2.0 fixtures carry 8).
        Without it the count comes from ``connector_num_learnable_registers`` (to build a model).
        ``connector_norm_output`` / ``connector_learnable_registers_std`` are not read by the
        reference either (the output norm is always applied).
        """
        if meta.get("connector_ff_bias", True) not in (True, False):
            raise UnsupportedModelError(
                f"transformer config has connector_ff_bias={meta['connector_ff_bias']!r}; it must be true or false.")
        defaults = cls()
        if registers is None:
            registers = meta.get("connector_num_learnable_registers", defaults.num_learnable_registers)
        if not registers:
            raise UnsupportedModelError(
                "the text connector has no learnable registers (connector_num_learnable_registers="
                f"{registers!r}); LTX-2 connectors always replace padding with registers.")

        def read(key: str, default):
            return meta.get(f"audio_{key}", meta.get(key, default)) if audio else meta.get(key, default)

        return cls(
            num_attention_heads=read("connector_num_attention_heads", defaults.num_attention_heads),
            attention_head_dim=read("connector_attention_head_dim", defaults.attention_head_dim),
            num_layers=read("connector_num_layers", defaults.num_layers),
            num_learnable_registers=registers,
            positional_embedding_max_pos=as_tuple(meta.get("connector_positional_embedding_max_pos",
                                                           defaults.positional_embedding_max_pos)),
            rope_type=meta.get("rope_type", defaults.rope_type),
            frequencies_precision=meta.get("frequencies_precision", defaults.frequencies_precision),
            norm_eps=meta.get("norm_eps", defaults.norm_eps),
            gated_attention=bool(meta.get("connector_apply_gated_attention", defaults.gated_attention)),
            ff_bias=meta.get("connector_ff_bias", defaults.ff_bias),
        )

    def rope_spec(self) -> RopeSpec:
        return RopeSpec(theta=CONNECTOR_ROPE_THETA, max_pos=tuple(self.positional_embedding_max_pos),
                        rope_type=self.rope_type, double_precision=self.frequencies_precision == "float64")


# ------------------------------------------------------------------------------------------------
# Feature extractor


def _check_states(hidden_states: torch.Tensor, mask: torch.Tensor) -> tuple[int, int, int, int]:
    if hidden_states.ndim != 4:
        raise InputError(f"Gemma hidden states must be [batch, tokens, width, layers], got {list(hidden_states.shape)}")
    batch, tokens, width, layers = hidden_states.shape
    if tuple(mask.shape) != (batch, tokens):
        raise InputError(f"attention mask {list(mask.shape)} does not match hidden states {list(hidden_states.shape)}")
    return batch, tokens, width, layers


def normalize_hidden_states(hidden_states: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype | None = None,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """``[B, T, D, L]`` Gemma states -> ``[B, T, D*L]`` FeatureExtractorV1 features (index ``d*L + l``).

    Per sample and layer: ``8 * (x - mean) / (max - min + 1e-6)`` with mean/min/max over the
    valid tokens and all D features; padded tokens become 0. Statistics are taken in float32
    one layer at a time (the layer slice is also what moves to ``device``), so the full stack
    never exists in float32.
    """
    batch, tokens, width, layers = _check_states(hidden_states, mask)
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


def rms_normalize_hidden_states(hidden_states: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype | None = None,
                                device: torch.device | str | None = None, chunk: int = 64) -> torch.Tensor:
    """``[B, T, D, L]`` Gemma states -> ``[B, T, D*L]`` per-token RMS-normalised features (index ``d*L + l``).

    Per token and layer ``x / sqrt(mean_d(x^2) + 1e-6)`` (reference ``norm_and_concat_per_token_rms``);
    padded tokens become 0. The norm is token-local, so it runs ``chunk`` tokens at a time in
    float32 on ``device`` (the reference computes the whole stack in the states' dtype: identical
    in float32, closer in bf16, and the full stack never exists in float32).
    """
    batch, tokens, width, layers = _check_states(hidden_states, mask)
    device = hidden_states.device if device is None else torch.device(device)
    dtype = hidden_states.dtype if dtype is None else dtype
    valid = mask.to(device=device).bool()[:, :, None]  # [B, T, 1]
    out = torch.empty(batch, tokens, width * layers, dtype=dtype, device=device)
    for start in range(0, tokens, chunk):
        x = hidden_states[:, start:start + chunk].to(device=device, dtype=torch.float32)
        normed = (x * torch.rsqrt(torch.mean(x ** 2, dim=2, keepdim=True) + FEATURE_EPS)).flatten(2)
        out[:, start:start + chunk] = normed.masked_fill(~valid[:, start:start + chunk], 0.0).to(dtype)
    return out


@dataclass(frozen=True)
class TextProjectionConfig:
    """The text projection's kind and widths; defaults are the released LTX-2 19B (FeatureExtractorV1).

    ``separate_projections`` selects FeatureExtractorV2 (LTX-2.3): per-token RMS norm and one
    biased projection per modality; without it one projection feeds both connectors and the two
    widths are equal. Widths come from the file's tensor shapes.
    """

    in_features: int = 3840 * 49
    video_width: int = 3840
    audio_width: int = 3840
    separate_projections: bool = False

    def __post_init__(self):
        check_config(self, "text projection")

    @staticmethod
    def separate_from_metadata(meta: dict) -> bool:
        """Whether ``config.transformer`` selects FeatureExtractorV2, like the reference's
        ``_create_feature_extractor``: all of :data:`V2_PROJECTION_CONFIG` with exactly those values
        -> True, none of the keys -> False, anything in between is refused."""
        present = {k: meta[k] for k in V2_PROJECTION_CONFIG if k in meta}
        if not present:
            return False
        if present != V2_PROJECTION_CONFIG:
            raise UnsupportedModelError(
                f"transformer config has the caption projection settings {present}; ltx2_nodes runs the LTX-2 "
                f"19B text projection (none of these keys) or the LTX-2.3 one ({V2_PROJECTION_CONFIG}). This "
                "file is a variant neither release uses; use an official LTX-2 / LTX-2.3 checkpoint.")
        return True


class TextProjection(nn.Module):
    """Normalised Gemma features ``D*L`` -> video and audio connector inputs.

    V1: ``aggregate_embed`` (no bias), one output shared by both connectors. V2:
    ``video_aggregate_embed`` / ``audio_aggregate_embed`` (biased), each applied to the features
    scaled by ``sqrt(out_width / gemma_width)`` (reference ``_rescale_norm``).
    """

    def __init__(self, cfg: TextProjectionConfig):
        super().__init__()
        self.config = cfg
        if cfg.separate_projections:
            self.video_aggregate_embed = nn.Linear(cfg.in_features, cfg.video_width, bias=True)
            self.audio_aggregate_embed = nn.Linear(cfg.in_features, cfg.audio_width, bias=True)
        else:  # one output for both connectors: audio_width == video_width
            self.aggregate_embed = nn.Linear(cfg.in_features, cfg.video_width, bias=False)

    @property
    def weight(self) -> torch.Tensor:
        """A projection weight (its device and storage dtype set where the features are computed)."""
        return (self.video_aggregate_embed if self.config.separate_projections else self.aggregate_embed).weight

    def normalize(self, hidden_states: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
        """``[B, T, D, L]`` -> ``[B, T, D*L]`` with this checkpoint's feature normalisation."""
        norm = rms_normalize_hidden_states if self.config.separate_projections else normalize_hidden_states
        return norm(hidden_states, mask, dtype=dtype, device=device)

    def forward(self, features: torch.Tensor, gemma_width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features ``[B, T, D*L]`` (``D`` = ``gemma_width``) -> (video, audio) connector inputs."""
        if not self.config.separate_projections:
            projected = self.aggregate_embed(features)
            return projected, projected
        video = self.video_aggregate_embed(features * math.sqrt(self.config.video_width / gemma_width))
        audio = self.audio_aggregate_embed(features * math.sqrt(self.config.audio_width / gemma_width))
        return video, audio


# ------------------------------------------------------------------------------------------------
# Connector


class ConnectorBlock(nn.Module):
    """``x += attn1(rms(x)); x += ff(rms(x))`` -- no modulation; per-head attention gates in 2.3."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.attn1 = Attention(cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim, eps=cfg.norm_eps,
                               gated=cfg.gated_attention)
        self.ff = FeedForward(cfg.inner_dim, bias=cfg.ff_bias)

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
        """Register substitution; the token count must be a multiple of the register count, as the
        reference asserts (it tiles the registers over the sequence)."""
        registers = self.learnable_registers.shape[0]
        if x.shape[1] % registers:
            raise InputError(
                f"the prompt is padded to {x.shape[1]} tokens, but this checkpoint's text connector has {registers} "
                f"learnable registers and needs a token count that is a multiple of {registers}; pad prompts to a "
                f"multiple of {registers} (the default length, 1024 tokens, is one).")
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

    ``video_context`` ``[B, T, C_video]`` / ``audio_context`` ``[B, T, C_audio]`` (equal widths in
    LTX-2 19B, the DiT's two inner widths in 2.3); ``mask`` ``[B, T]`` int64, all ones because
    registers fill every padded slot (the pipelines pass ``context_mask=None`` to the DiT).
    """

    video_context: torch.Tensor
    audio_context: torch.Tensor
    mask: torch.Tensor

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TextConditioning":
        return TextConditioning(self.video_context.to(device=device, dtype=dtype),
                                self.audio_context.to(device=device, dtype=dtype), self.mask.to(device=device))


class TextConnectors(nn.Module):
    """Projection + video connector + audio connector, loaded from an LTX-2 / LTX-2.3 checkpoint."""

    def __init__(self, projection: TextProjection, video: Embeddings1DConnector, audio: Embeddings1DConnector):
        super().__init__()
        for name, connector, width in (("video", video, projection.config.video_width),
                                       ("audio", audio, projection.config.audio_width)):
            if connector.config.inner_dim != width:
                raise UnsupportedModelError(
                    f"the text projection gives the {name} connector {width} features but that connector is "
                    f"{connector.config.inner_dim} wide; the checkpoint's connector config does not match its "
                    "text_embedding_projection tensors (damaged or mixed-up file).")
        self.projection = projection
        self.video = video
        self.audio = audio

    @property
    def in_features(self) -> int:
        return self.projection.config.in_features

    @property
    def video_width(self) -> int:
        """Width of ``video_context`` (what the DiT's video stream reads)."""
        return self.video.config.inner_dim

    @property
    def audio_width(self) -> int:
        """Width of ``audio_context``; differs from the video width in LTX-2.3."""
        return self.audio.config.inner_dim

    def project(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise and project ``[B, T, D, L]`` Gemma states to the (video, audio) connector inputs."""
        batch, tokens, width, layers = hidden_states.shape
        if width * layers != self.in_features:
            raise InputError(
                f"the Gemma features have width {width} x {layers} hidden states = {width * layers}, but this LTX-2 "
                f"checkpoint's text projection expects {self.in_features} (Gemma 3 12B: 3840 x 49). Use the "
                "text encoder this model was released with (LTX-2 / LTX-2.3: Gemma 3 12B; LTX-2.5: its Gemma 4 file).")
        weight = self.projection.weight
        compute = weight.dtype if weight.dtype.itemsize > 1 else torch.bfloat16  # fp8 storage computes in bf16
        features = self.projection.normalize(hidden_states, mask, dtype=compute, device=weight.device)
        return self.projection(features, width)

    def connect(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> TextConditioning:
        """Gemma features ``[B, T, D, L]`` + mask ``[B, T]`` -> video/audio contexts for the DiT."""
        video_in, audio_in = self.project(hidden_states, mask)
        mask = mask.to(video_in.device)
        video = self.video(video_in, mask)
        audio = self.audio(audio_in, mask)
        # The reference multiplies the video output by the mask its connector returns; after register
        # substitution that mask is all ones, so the product is the output itself.
        out_mask = torch.ones(video.shape[:2], dtype=torch.int64, device=video.device)
        return TextConditioning(video, audio, out_mask)

    forward = connect
