"""Memory and compute estimates per stage, from model configs and token counts.

Notation: ``s`` bytes per activation element (2 for bf16), ``B`` batch (prompts or guidance passes
run together), ``Tv``/``Ta`` video/audio tokens, ``L`` text tokens (1024, the padded Gemma
length), ``D``/``Da`` video/audio inner width (4096/2048 for the 19B), ``Dx`` the audio<->video
cross-attention rotary width (2048).

DiT activations of one forward (peak):
    persistent = s*B*[ Tv*(2D + Dx) + Ta*(2Da + Dx) + L*(Cv + Ca + P*(D + Da)) ]
        (hidden states, self-attention RoPE cos+sin = D per token, cross-modal RoPE = Dx per token,
        the caller's two text contexts of Cv/Ca channels, ``TransformerConfig.context_width``: 3840 each
        for LTX-2, D/Da for LTX-2.3 whose connectors already project; P = 1 for LTX-2, whose DiT keeps a
        projected copy of each context, 0 for LTX-2.3)
    transient  = s*B*[ max(Tv*D, Ta*Da) * (10 + 3 if sigma is per token) + L*max(D, Da)*(2 + 2 if 2.3) ]
        (the feed-forward holds its input, the modulated input and 2 x 4D of GELU in/out = 10 units;
        per-token AdaLN gathers shift/scale/gate rows = 3 more (the 9-row LTX-2.3 tables gather 3 rows
        at a time too); the text cross-attention's keys and values = 2 units of the context, and in
        LTX-2.3 the prompt-AdaLN-modulated context and its ``1 + scale`` temporary = 2 more; attention
        is no larger with flash/memory-efficient SDPA, which never materialises the T x T scores; the
        LTX-2.3 gate logits are ``heads`` values per token, noise at these widths)
    io         = B*(Tv + Ta) * 1536   (float32 latents, velocity, denoised: 3 x 128 channels)
    mask       = B*Tm^2*(s + 8)       (only with an IC-LoRA guide at attention strength < 1 or with a mask: the
        DiT's additive self-attention mask over all Tm video tokens, grid + guides, ``[B, 1, Tm, Tm]`` in the
        compute dtype (``layers.weights_to_additive_mask``), plus the float32 ``[B, Tm, Tm]`` weights handed in
        (``ModalityInput.attention_mask``) and the sampler state's own copy; while the mask is formed a bool
        ``[B, Tm, Tm]`` and two float32 temporaries of it are alive, B*Tm^2*9, before any block runs, so the
        transient is the larger of that and the blocks' own; Tm = 30k: 3.6 GB per sample for the mask alone
        in float32, 1.8 GB in bf16)
fp8 blocks add the dequantisation transient of their largest Linear (``fp8_upcast_bytes``: 2 x its
weight in the compute dtype, 256 MiB for the 19B feed-forward in bf16); the engine adds it to the
activation reserve by itself. Checked against the real model code with ``measure.LiveBytes`` (tests: estimate within
[1.0, 1.35] x the measured peak). Sizes in bf16 at B=1, per-token sigma: 768x512x121 (Tv = 6144,
Ta = 126): 0.78 GiB; 1280x704x121 (Tv = 14080): 1.73 GiB; multiply by B for batched guidance.

DiT FLOPs per block and forward (multiply-add = 2 FLOPs): per stream with tokens T, width d,
text width c: self-attention projections 8*T*d^2 + scores 4*T^2*d; text cross-attention
4*T*d^2 + 4*L*c*d + 4*T*L*d; feed-forward 16*T*d^2; plus the two cross-modal attentions
(inner width Dx): q/out 4*T*d*Dx for the query stream, k/v 4*T'*d'*Dx for the key stream,
scores 4*Tv*Ta*Dx, once per direction. LTX-2.3's gated attention adds 2*T*d*heads per attention
(``to_gate_logits`` of the query input; six attentions per block); its AdaLN modulations are
elementwise (the AdaLN-single matmuls run once per forward, outside the blocks).

Gemma 3 (any decoder-only text model of that shape) activations, all hidden states kept:
    s*B*L*[ (layers + 2)*H + 3*I + 4*heads*head_dim ] + 2*s*B*L^2   (causal + sliding masks)
with hidden width H, MLP width I (the states, the residual being formed, the MLP's gate/up/product,
q/k/v/attention output). FLOPs per layer: 2*L*H*(2*heads + 2*kv_heads)*head_dim
+ 4*L^2*heads*head_dim + 6*L*H*I.

Other stages (weights dominate; the activation terms are upper estimates):
* connectors: s*B*L*[ 2*G*(layers + 1) + Cv + Ca + 10*max(Cv, Ca) ] with G the Gemma width (3840),
  Cv/Ca the video/audio connector widths (3840/3840 for LTX-2; 4096/2048 for LTX-2.3): the 49
  stacked, normalised Gemma states, the two connector outputs and one connector block's transient
  (feed-forward 4x: 10 units, as in the DiT); the depth (2 blocks in LTX-2, 8 in LTX-2.3) does not
  add to the peak since the blocks run one after another;
* x2 upscaler: s*V*24576 with V = stage-1 latent voxels (1024 mid channels at 4x the voxels
  after the pixel shuffle, ~6 such tensors alive);
* video VAE encode/decode: the one VAE memory model in ``memory/vae.py`` (per voxel of a tile);
* audio VAE + vocoder: 4 bytes * 40000 * mel frames (float32 HiFi-GAN: up to 7680 channel-samples
  per mel frame per upsampling stage, a few alive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..loading.quant import FP8_DTYPES, QuantLinear
from ..model.shapes import AudioTiming, VideoScale, audio_latent_frames, video_latent_size
from ..model.transformer import TransformerConfig
from .planner import StageProfile

TEXT_TOKENS = 1024
DIT_TRANSIENT_UNITS = 10
ADALN_GATHER_UNITS = 3
TEXT_KV_UNITS = 2
PROMPT_ADALN_UNITS = 2
CONNECTOR_TRANSIENT_UNITS = 10
IO_BYTES_PER_TOKEN = 3 * 128 * 4
MASK_WEIGHT_BYTES = 2 * 4  # the float32 attention weights handed to the DiT and the sampler state's own
MASK_BUILD_BYTES = 1 + 2 * 4  # forming the additive mask: the bool of positive weights, two float32 temporaries
UPSCALER_BYTES_PER_VOXEL = 24576
VOCODER_BYTES_PER_MEL_FRAME = 40000 * 4
DEQUANT_FLOAT32_BYTES = 4  # GGUF / NVFP4 dequantization works in float32 before the cast


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def fp8_upcast_bytes(module: torch.nn.Module) -> int:
    """Transient device bytes of dequantising ``module``'s largest quantized Linear weight during its forward.

    ``FP8Linear`` forms ``weight.to(dtype) * scale``: two temporaries of the weight's size in the
    compute dtype (the widest non-fp8 floating dtype among the module's tensors). For the 19B's
    feed-forward (16384 x 4096) in bf16 that is 256 MiB. GGUF and NVFP4 layers dequantize in float32
    and cast: 4 + compute bytes per weight (``DEQUANT_FLOAT32_BYTES``).
    """
    quantized = [m for m in module.modules() if isinstance(m, QuantLinear)]
    if not quantized:
        return 0
    compute = max((t.element_size() for t in module.parameters()
                   if t.is_floating_point() and t.dtype not in FP8_DTYPES), default=2)
    return max(m.in_features * m.out_features * (2 * compute if m.weight.is_floating_point()
                                                 else DEQUANT_FLOAT32_BYTES + compute) for m in quantized)


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


def additive_mask_bytes(tokens: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
    """The additive self-attention mask the DiT builds over ``tokens`` video tokens from an IC-LoRA guide's
    attention weights (``layers.weights_to_additive_mask``): ``[batch, 1, T, T]`` in the compute dtype."""
    return batch * tokens * tokens * itemsize(dtype)


def attention_mask_bytes(tokens: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
    """Device bytes a self-attention mask over ``tokens`` holds while the DiT runs: the additive mask and the
    float32 weights it is made of (given and the sampler's own, module doc); 0 without a mask (``tokens`` 0)."""
    return additive_mask_bytes(tokens, batch, dtype) + batch * tokens * tokens * MASK_WEIGHT_BYTES


def dit_activation_bytes(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *,
                         text_tokens: int = TEXT_TOKENS, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                         per_token_timesteps: bool = True, masked_tokens: int = 0) -> int:
    """``per_token_timesteps``: sigma varies per token (conditioning frames), which adds the AdaLN gather;
    ``masked_tokens``: the video tokens under a self-attention mask (an IC-LoRA guide at attention strength below 1
    or with a mask: all of them, grid and guides; 0: no mask)."""
    s, b = itemsize(dtype), batch
    d, da, dx = cfg.inner_dim, cfg.audio_inner_dim, cfg.audio_cross_attention_dim
    tv = video_tokens if cfg.has_video else 0
    ta = audio_tokens if cfg.has_audio else 0
    widths = [(d, cfg.context_width("video"))] * (tv > 0) + [(da, cfg.context_width("audio"))] * (ta > 0)
    projected = 0 if cfg.caption_proj_before_connector else 1  # LTX-2: a projected copy of each context
    text = text_tokens * sum(ctx + projected * inner for inner, ctx in widths)
    persistent = s * b * (tv * (2 * d + dx) + ta * (2 * da + dx) + text)
    units = DIT_TRANSIENT_UNITS + (ADALN_GATHER_UNITS if per_token_timesteps else 0)
    text_units = TEXT_KV_UNITS + (PROMPT_ADALN_UNITS if cfg.cross_attention_adaln else 0)
    widest = max((inner for inner, _ in widths), default=0)
    transient = s * b * (max(tv * d, ta * da) * units + text_tokens * widest * text_units)
    transient = max(transient, b * masked_tokens * masked_tokens * MASK_BUILD_BYTES)
    mask = attention_mask_bytes(masked_tokens, b, dtype)
    return int(persistent + transient + mask + b * (tv + ta) * IO_BYTES_PER_TOKEN)


def _attention_flops(tokens: int, width: int, context_tokens: int, context_width: int, inner: int) -> float:
    """q and out projections of ``tokens``, k/v of the context, scores and weighted sum."""
    return (4 * tokens * width * inner + 4 * context_tokens * context_width * inner
            + 4 * tokens * context_tokens * inner)


def dit_block_flops(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *,
                    text_tokens: int = TEXT_TOKENS, batch: int = 1) -> float:
    d, da, dx = cfg.inner_dim, cfg.audio_inner_dim, cfg.audio_cross_attention_dim
    tv = video_tokens if cfg.has_video else 0
    ta = audio_tokens if cfg.has_audio else 0
    # LTX-2.3 gated attention: one query-width -> heads projection per attention (2*T*width*heads)
    gate = 2 if cfg.apply_gated_attention else 0
    flops = 0.0
    for tokens, width, context, heads in ((tv, d, cfg.cross_attention_dim, cfg.num_attention_heads),
                                          (ta, da, cfg.audio_cross_attention_dim, cfg.audio_num_attention_heads)):
        if tokens:
            flops += _attention_flops(tokens, width, tokens, width, width)  # self-attention
            flops += _attention_flops(tokens, width, text_tokens, context, width)  # text cross-attention
            flops += 16 * tokens * width * width  # feed-forward, 4x expansion
            flops += 2 * gate * tokens * width * heads  # gates of self- and text cross-attention
    if tv and ta:
        flops += _attention_flops(tv, d, ta, da, dx) + _attention_flops(ta, da, tv, d, dx)
        heads = cfg.audio_num_attention_heads  # a2v / v2a attend with the audio head count
        flops += gate * (tv * d + ta * da) * heads
    return flops * batch


def dit_profile(cfg: TransformerConfig, video_tokens: int, audio_tokens: int, *, text_tokens: int = TEXT_TOKENS,
                batch: int = 1, dtype: torch.dtype = torch.bfloat16, masked_tokens: int = 0) -> StageProfile:
    """Placement profile of a DiT stage: ``batch`` = samples per model call (guidance passes run together);
    ``masked_tokens``: see :func:`dit_activation_bytes`."""
    return StageProfile(
        dit_activation_bytes(cfg, video_tokens, audio_tokens, text_tokens=text_tokens, batch=batch, dtype=dtype,
                             masked_tokens=masked_tokens),
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
        """From a ``transformers`` text config (attribute names of Gemma 3 / Llama configs) or ours (Gemma 4's
        full-attention layers have wider heads: ``max_head_dim``)."""
        head_dim = getattr(config, "max_head_dim", None) or getattr(config, "head_dim", None) \
            or config.hidden_size // config.num_attention_heads
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


def connector_activation_bytes(gemma_width: int, text_layers: int, widths: tuple[int, int], *,
                               tokens: int = TEXT_TOKENS, batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
    """``widths``: the video and audio connectors' widths (= the DiT's text contexts,
    ``TransformerConfig.context_width``); the connectors' depth does not change the peak (blocks run in turn)."""
    video, audio = widths
    per_token = 2 * gemma_width * (text_layers + 1) + video + audio + CONNECTOR_TRANSIENT_UNITS * max(video, audio)
    return itemsize(dtype) * batch * tokens * per_token


def upscaler_activation_bytes(latent_voxels: int, dtype: torch.dtype = torch.bfloat16) -> int:
    return itemsize(dtype) * latent_voxels * UPSCALER_BYTES_PER_VOXEL


def audio_decode_activation_bytes(audio_latents: int) -> int:
    mel_frames = max(4 * audio_latents - 3, 1)
    return mel_frames * VOCODER_BYTES_PER_MEL_FRAME
