"""Memory and compute estimates per stage, from model configs and token counts.

Notation: ``s`` bytes per activation element (2 for bf16), ``B`` batch (prompts or guidance passes
run together), ``Tv``/``Ta`` video/audio tokens, ``L`` text tokens (1024, the padded Gemma
length), ``D``/``Da`` video/audio inner width (4096/2048 for the 19B), ``Dx`` the audio<->video
cross-attention rotary width (2048).

DiT activations of one forward (peak):
    persistent = s*B*[ Tv*(2D + Dx) + Ta*(2Da + Dx) + L*(D + Da + 2C) ]
        (hidden states, self-attention RoPE cos+sin = D per token, cross-modal RoPE = Dx per token,
        projected text context, and the caller's two connector outputs of C = 3840 channels)
    transient  = s*B*max(Tv*D, Ta*Da) * (10 + 3 if sigma is per token)
        (the feed-forward holds its input, the modulated input and 2 x 4D of GELU in/out = 10 units;
        per-token AdaLN gathers shift/scale/gate rows = 3 more; attention is no larger with
        flash/memory-efficient SDPA, which never materialises the T x T scores)
    io         = B*(Tv + Ta) * 1536   (float32 latents, velocity, denoised: 3 x 128 channels)
fp8 blocks add the dequantisation transient of their largest Linear (``fp8_upcast_bytes``: 2 x its
weight in the compute dtype, 256 MiB for the 19B feed-forward in bf16); the engine adds it to the
activation reserve by itself. Checked against the real model code with ``measure.LiveBytes`` (tests: estimate within
[1.0, 1.35] x the measured peak). Sizes in bf16 at B=1, per-token sigma: 768x512x121 (Tv = 6144,
Ta = 126): 0.76 GiB; 1280x704x121 (Tv = 14080): 1.71 GiB; multiply by B for batched guidance.

DiT FLOPs per block and forward (multiply-add = 2 FLOPs): per stream with tokens T, width d,
text width c: self-attention projections 8*T*d^2 + scores 4*T^2*d; text cross-attention
4*T*d^2 + 4*L*c*d + 4*T*L*d; feed-forward 16*T*d^2; plus the two cross-modal attentions
(inner width Dx): q/out 4*T*d*Dx for the query stream, k/v 4*T'*d'*Dx for the key stream,
scores 4*Tv*Ta*Dx, once per direction.

Gemma 3 (any decoder-only text model of that shape) activations, all hidden states kept:
    s*B*L*[ (layers + 2)*H + 3*I + 4*heads*head_dim ] + 2*s*B*L^2   (causal + sliding masks)
with hidden width H, MLP width I (the states, the residual being formed, the MLP's gate/up/product,
q/k/v/attention output). FLOPs per layer: 2*L*H*(2*heads + 2*kv_heads)*head_dim
+ 4*L^2*heads*head_dim + 6*L*H*I.

Other stages (weights dominate; the activation terms are upper estimates):
* connectors: s*B*L*[ 2*C*(layers + 1) + 12*C ] with C = caption channels (3840): the 49
  stacked, normalised Gemma states and the 2-block connector transient;
* x2 upscaler: s*V*24576 with V = stage-1 latent voxels (1024 mid channels at 4x the voxels
  after the pixel shuffle, ~6 such tensors alive);
* video VAE encode/decode: the one VAE memory model in ``memory/vae.py`` (per decoded voxel of a tile);
* audio VAE + vocoder: 4 bytes * 40000 * mel frames (float32 HiFi-GAN: up to 7680 channel-samples
  per mel frame per upsampling stage, a few alive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..loading.quant import FP8_DTYPES, FP8Linear
from ..model.shapes import AudioTiming, VideoScale, audio_latent_frames, video_latent_size
from ..model.transformer import TransformerConfig
from .planner import StageProfile

TEXT_TOKENS = 1024
DIT_TRANSIENT_UNITS = 10
ADALN_GATHER_UNITS = 3
IO_BYTES_PER_TOKEN = 3 * 128 * 4
UPSCALER_BYTES_PER_VOXEL = 24576
VOCODER_BYTES_PER_MEL_FRAME = 40000 * 4


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def fp8_upcast_bytes(module: torch.nn.Module) -> int:
    """Transient device bytes of dequantising ``module``'s largest fp8 Linear weight during its forward.

    ``FP8Linear`` forms ``weight.to(dtype) * scale``: two temporaries of the weight's size in the
    compute dtype (the widest non-fp8 floating dtype among the module's tensors). For the 19B's
    feed-forward (16384 x 4096) in bf16 that is 256 MiB.
    """
    largest = max((m.weight.numel() for m in module.modules() if isinstance(m, FP8Linear)), default=0)
    if not largest:
        return 0
    compute = max((t.element_size() for t in module.parameters()
                   if t.is_floating_point() and t.dtype not in FP8_DTYPES), default=2)
    return 2 * largest * compute


# ------------------------------------------------------------------------------------------------
# Token counts


def video_tokens(width: int, height: int, frames: int, scale: VideoScale = VideoScale()) -> int:
    """DiT tokens of a ``width x height x frames`` video: its latent cells (``model.shapes``)."""
    return math.prod(video_latent_size(frames, height, width, scale))


def audio_tokens(frames: int, fps: float, timing: AudioTiming = AudioTiming()) -> int:
    """DiT tokens of the audio of ``frames`` at ``fps``: its latent frames (``model.shapes``)."""
    return audio_latent_frames(frames, fps, timing)


# ------------------------------------------------------------------------------------------------
# DiT


def dit_activation_bytes(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *,
                         text_tokens: int = TEXT_TOKENS, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                         per_token_timesteps: bool = True) -> int:
    """``per_token_timesteps``: sigma varies per token (conditioning frames), which adds the AdaLN gather."""
    s, b = itemsize(dtype), batch
    d, da, dx = cfg.inner_dim, cfg.audio_inner_dim, cfg.audio_cross_attention_dim
    tv = video_tokens if cfg.has_video else 0
    ta = audio_tokens if cfg.has_audio else 0
    streams = (tv > 0) + (ta > 0)
    text = text_tokens * (d * (tv > 0) + da * (ta > 0) + cfg.caption_channels * streams)
    persistent = s * b * (tv * (2 * d + dx) + ta * (2 * da + dx) + text)
    units = DIT_TRANSIENT_UNITS + (ADALN_GATHER_UNITS if per_token_timesteps else 0)
    transient = s * b * max(tv * d, ta * da) * units
    return int(persistent + transient + b * (tv + ta) * IO_BYTES_PER_TOKEN)


def _attention_flops(tokens: int, width: int, context_tokens: int, context_width: int, inner: int) -> float:
    """q and out projections of ``tokens``, k/v of the context, scores and weighted sum."""
    return (4 * tokens * width * inner + 4 * context_tokens * context_width * inner
            + 4 * tokens * context_tokens * inner)


def dit_block_flops(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *,
                    text_tokens: int = TEXT_TOKENS, batch: int = 1) -> float:
    d, da, dx = cfg.inner_dim, cfg.audio_inner_dim, cfg.audio_cross_attention_dim
    tv = video_tokens if cfg.has_video else 0
    ta = audio_tokens if cfg.has_audio else 0
    flops = 0.0
    for tokens, width, context in ((tv, d, cfg.cross_attention_dim), (ta, da, cfg.audio_cross_attention_dim)):
        if tokens:
            flops += _attention_flops(tokens, width, tokens, width, width)  # self-attention
            flops += _attention_flops(tokens, width, text_tokens, context, width)  # text cross-attention
            flops += 16 * tokens * width * width  # feed-forward, 4x expansion
    if tv and ta:
        flops += _attention_flops(tv, d, ta, da, dx) + _attention_flops(ta, da, tv, d, dx)
    return flops * batch


def dit_profile(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *, text_tokens: int = TEXT_TOKENS,
                batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> StageProfile:
    """Placement profile of a DiT stage: ``batch`` = samples per model call (guidance passes run together)."""
    return StageProfile(
        dit_activation_bytes(cfg, video_tokens, audio_tokens, text_tokens=text_tokens, batch=batch, dtype=dtype),
        (dit_block_flops(cfg, video_tokens, audio_tokens, text_tokens=text_tokens, batch=batch),))


# ------------------------------------------------------------------------------------------------
# Gemma 3 text encoder


@dataclass(frozen=True)
class DecoderShape:
    """The dimensions of a decoder-only text model that matter for memory and compute."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int

    @classmethod
    def of(cls, config) -> "DecoderShape":
        """From a ``transformers`` text config (attribute names of Gemma 3 / Llama configs)."""
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(config.hidden_size, config.intermediate_size, config.num_attention_heads,
                   getattr(config, "num_key_value_heads", config.num_attention_heads), head_dim,
                   config.num_hidden_layers)


GEMMA3_12B = DecoderShape(hidden=3840, intermediate=15360, heads=16, kv_heads=8, head_dim=256, layers=48)


def decoder_activation_bytes(shape: DecoderShape, tokens: int = TEXT_TOKENS, *, batch: int = 1,
                             dtype: torch.dtype = torch.bfloat16) -> int:
    s, b, h = itemsize(dtype), batch, shape.hidden
    per_token = (shape.layers + 2) * h + 3 * shape.intermediate + 4 * shape.heads * shape.head_dim
    return int(s * b * tokens * per_token + 2 * s * b * tokens * tokens)


def decoder_layer_flops(shape: DecoderShape, tokens: int = TEXT_TOKENS, *, batch: int = 1) -> float:
    qkvo = 2 * tokens * shape.hidden * (2 * shape.heads + 2 * shape.kv_heads) * shape.head_dim
    scores = 4 * tokens * tokens * shape.heads * shape.head_dim
    mlp = 6 * tokens * shape.hidden * shape.intermediate
    return float(qkvo + scores + mlp) * batch


def decoder_profile(shape: DecoderShape, tokens: int = TEXT_TOKENS, *, batch: int = 1,
                    dtype: torch.dtype = torch.bfloat16) -> StageProfile:
    return StageProfile(decoder_activation_bytes(shape, tokens, batch=batch, dtype=dtype),
                        (decoder_layer_flops(shape, tokens, batch=batch),))


# ------------------------------------------------------------------------------------------------
# Other stages


def connector_activation_bytes(caption_channels: int, text_layers: int, *, tokens: int = TEXT_TOKENS,
                               batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
    c = caption_channels
    return itemsize(dtype) * batch * tokens * (2 * c * (text_layers + 1) + 12 * c)


def upscaler_activation_bytes(latent_voxels: int, dtype: torch.dtype = torch.bfloat16) -> int:
    return itemsize(dtype) * latent_voxels * UPSCALER_BYTES_PER_VOXEL


def audio_decode_activation_bytes(audio_latents: int) -> int:
    mel_frames = max(4 * audio_latents - 3, 1)
    return mel_frames * VOCODER_BYTES_PER_MEL_FRAME
