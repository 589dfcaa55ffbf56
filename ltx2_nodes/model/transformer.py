"""The LTX-2 asymmetric dual-stream audio-video diffusion transformer (LTX-2, LTX-2.3 and LTX-2.5).

A video stream and an audio stream run side by side through ``num_layers`` blocks. Each block
does, per stream, AdaLN-modulated self-attention with RoPE, text cross-attention, then
bidirectional audio<->video cross-attention (both directions read the pre-exchange states,
modulated by cross-modality AdaLN), then an AdaLN-modulated feed-forward.

Semantics follow the official reference at its later revision (``ltx_core.model.transformer``,
commit 400fd31), for every model version:

* Two noise levels per stream (the reference ``Modality``): ``timesteps`` per token
  (``denoise_mask * sigma``, so conditioned tokens sit at 0) drive the main AdaLN and the
  cross-modal scale/shift; ``sigma`` per sample (0 for a frozen stream) drives the *other*
  stream's cross-modal gate and, in LTX-2.3, this stream's prompt AdaLN.
* A perturbed (STG) self-attention passes its value projection through instead of attending;
  skipped a2v / v2a cross-attention contributes nothing.

LTX-2.3 is the same class with three config flags (the released 2.0 values are the defaults):
``apply_gated_attention`` (per-head output gates in every attention), ``cross_attention_adaln``
(9-row block tables whose rows 6..8 modulate the text cross-attention query; a prompt AdaLN of
the per-sample sigma modulates its context) and ``caption_proj_before_connector`` (no caption
projection here: contexts arrive at the attention widths).

``use_prompt_adaln_single`` false (KV-cacheable checkpoints, reference default true) drops the prompt
AdaLN: the context is modulated by the per-block table alone.

LTX-2.5 adds two more: ``ff_bias`` false (the video feed-forward has no biases; ``audio_ff_bias``
likewise for audio, true in the release) and ``use_keyframes_abs_pos_embedding``: a learned
``keyframes_abs_pos_embedding`` ``[1, D]`` added right after ``patchify_proj`` to the video tokens
``ModalityInput.keyframes_mask`` marks (tokens that encode a single pixel frame: the first latent
frame and generated keyframe slots; reference ``apply_keyframes_absolute_embedding``).

Configuration is read from the checkpoint's ``config.transformer`` metadata; the dataclass
defaults are the released LTX-2 19B values (not the reference code's legacy defaults).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from .config_values import as_tuple, check_config
from .layers import (AdaLayerNormSingle, Attention, CaptionProjection, FeedForward, binary_to_additive_mask, rms_norm,
                     weights_to_additive_mask)
from .rope import RopeSpec, RopeTable, rope_table


@dataclass(frozen=True)
class TransformerConfig:
    num_layers: int = 48
    num_attention_heads: int = 32
    attention_head_dim: int = 128
    in_channels: int = 128
    out_channels: int = 128
    cross_attention_dim: int = 4096
    audio_num_attention_heads: int = 32
    audio_attention_head_dim: int = 64
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    audio_cross_attention_dim: int = 2048
    caption_channels: int = 3840
    norm_eps: float = 1e-6
    positional_embedding_theta: float = 10000.0
    positional_embedding_max_pos: tuple[float, ...] = (20, 2048, 2048)
    audio_positional_embedding_max_pos: tuple[float, ...] = (20,)
    use_middle_indices_grid: bool = True
    rope_type: str = "split"
    frequencies_precision: str = "float64"
    timestep_scale_multiplier: float = 1000.0
    av_ca_timestep_scale_multiplier: float = 1000.0
    apply_gated_attention: bool = False  # LTX-2.3: per-head gates (to_gate_logits) in every attention
    cross_attention_adaln: bool = False  # LTX-2.3: 9-row tables + prompt AdaLN on the text cross-attention
    caption_proj_before_connector: bool = False  # LTX-2.3: no caption_projection in the DiT
    use_prompt_adaln_single: bool = True  # false: the context modulation is the static per-block table only
    ff_bias: bool = True  # LTX-2.5: false, the video feed-forward has no biases
    audio_ff_bias: bool = True
    use_keyframes_abs_pos_embedding: bool = False  # LTX-2.5: learned marker of single-pixel-frame video tokens
    has_video: bool = True
    has_audio: bool = True

    # Values this implementation supports for metadata keys that describe architecture choices.
    _REQUIRED = {
        "qk_norm": ("rms_norm",),
        "activation_fn": ("gelu-approximate",),
        "standardization_norm": ("rms_norm",),
        "positional_embedding_type": ("rope",),
        "attention_bias": (True,),
        "norm_elementwise_affine": (False,),
        "apply_gated_attention": (False, True),
        "cross_attention_adaln": (False, True),
        "caption_proj_before_connector": (False, True),
        "use_prompt_adaln_single": (False, True),
        "ff_bias": (False, True),
        "audio_ff_bias": (False, True),
        "use_keyframes_abs_pos_embedding": (False, True),
        "causal_temporal_positioning": (True,),  # positions always use the first-frame causal fix
    }

    def __post_init__(self):
        check_config(self, "config.transformer")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def audio_inner_dim(self) -> int:
        return self.audio_num_attention_heads * self.audio_attention_head_dim

    @property
    def ada_rows(self) -> int:
        """Rows of the per-block AdaLN tables: 6, plus 3 (text cross-attention query) with cross_attention_adaln."""
        return 9 if self.cross_attention_adaln else 6

    @classmethod
    def from_metadata(cls, meta: dict) -> "TransformerConfig":
        """Build from a checkpoint's ``config.transformer`` dict, refusing architectures we do not run."""
        for key, allowed in cls._REQUIRED.items():
            if key in meta and meta[key] not in allowed:
                raise UnsupportedModelError(
                    f"transformer config has {key}={meta[key]!r}; ltx2_nodes runs LTX-2 (19B), LTX-2.3 (22B) and "
                    f"LTX-2.5 transformers, which have {key} in {list(allowed)}. This checkpoint is a newer or "
                    "modified architecture; use an LTX-2 / LTX-2.3 / LTX-2.5 checkpoint or a newer ltx2_nodes."
                )
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in meta.items() if k in names}
        for key in ("positional_embedding_max_pos", "audio_positional_embedding_max_pos"):
            if key in values:
                values[key] = as_tuple(values[key])
        if "frequencies_precision" in values and values["frequencies_precision"] not in ("float32", "float64"):
            raise UnsupportedModelError(f"unknown frequencies_precision {values['frequencies_precision']!r}")
        cfg = cls(**values)
        if cfg.has_video and cfg.has_audio and cfg.num_attention_heads != cfg.audio_num_attention_heads:
            # the cross-modal RoPE of each stream is laid out for its own head count while a2v / v2a
            # attend with the audio head count; the reference refuses such configs the same way
            raise UnsupportedModelError(
                f"transformer config has num_attention_heads={cfg.num_attention_heads} but "
                f"audio_num_attention_heads={cfg.audio_num_attention_heads}; audio-video LTX-2 transformers "
                "need equal head counts (the checkpoint's config is inconsistent with its architecture).")
        return cfg

    def context_width(self, modality: str) -> int:
        """Width of the text context the DiT takes: ``caption_channels`` (projected inside, LTX-2) or the
        stream's cross-attention width (LTX-2.3: the connectors already project)."""
        if not self.caption_proj_before_connector:
            return self.caption_channels
        return self.cross_attention_dim if modality == "video" else self.audio_cross_attention_dim

    def rope_spec(self, modality: str) -> RopeSpec:
        max_pos = self.positional_embedding_max_pos if modality == "video" else self.audio_positional_embedding_max_pos
        return RopeSpec(theta=self.positional_embedding_theta, max_pos=tuple(max_pos), rope_type=self.rope_type,
                        double_precision=self.frequencies_precision == "float64",
                        use_middle_indices_grid=self.use_middle_indices_grid)

    def cross_rope_spec(self) -> RopeSpec:
        max_pos = max(self.positional_embedding_max_pos[0], self.audio_positional_embedding_max_pos[0])
        return RopeSpec(theta=self.positional_embedding_theta, max_pos=(max_pos,), rope_type=self.rope_type,
                        double_precision=self.frequencies_precision == "float64", use_middle_indices_grid=True)


# ------------------------------------------------------------------------------------------------
# Guidance switches


class Skip(enum.Enum):
    """Attention a guidance pass perturbs.

    A skipped self-attention passes its value projection through instead of attending (STG, the
    reference's later semantics); a skipped a2v / v2a cross-attention contributes nothing.
    """

    VIDEO_SELF_ATTN = "video_self_attn"
    AUDIO_SELF_ATTN = "audio_self_attn"
    A2V_CROSS_ATTN = "a2v_cross_attn"
    V2A_CROSS_ATTN = "v2a_cross_attn"


@dataclass(frozen=True)
class SampleSkips:
    """What one batch sample skips: ``{Skip: block indices}``, ``None`` meaning every block."""

    skips: dict = field(default_factory=dict)

    def skipped(self, kind: Skip, block: int) -> bool:
        if kind not in self.skips:
            return False
        blocks = self.skips[kind]
        return blocks is None or block in blocks

    @staticmethod
    def stg(blocks, video: bool = True, audio: bool = True) -> "SampleSkips":
        """Spatio-temporal guidance: self-attention perturbed (value pass-through) in ``blocks``."""
        blocks = frozenset(blocks)
        skips = {}
        if video:
            skips[Skip.VIDEO_SELF_ATTN] = blocks
        if audio:
            skips[Skip.AUDIO_SELF_ATTN] = blocks
        return SampleSkips(skips)

    @staticmethod
    def isolate_modalities() -> "SampleSkips":
        """Modality guidance: both audio<->video cross-attentions removed in every block."""
        return SampleSkips({Skip.A2V_CROSS_ATTN: None, Skip.V2A_CROSS_ATTN: None})


class Perturbations:
    """Per-sample skips for a batch; answers 'keep mask' questions per block."""

    def __init__(self, samples: list[SampleSkips]):
        self.samples = list(samples)

    def keep_mask(self, kind: Skip, block: int, like: torch.Tensor) -> torch.Tensor | None | bool:
        """``None``: nothing skipped; ``False``: every sample skips; else a ``[B, 1, 1]`` 0/1 mask."""
        flags = [s.skipped(kind, block) for s in self.samples]
        if not any(flags):
            return None
        if all(flags):
            return False
        keep = torch.tensor([0.0 if f else 1.0 for f in flags], dtype=like.dtype, device=like.device)
        return keep.view(-1, 1, 1)


def _residual(x: torch.Tensor, update_fn, keep) -> torch.Tensor:
    if keep is False:
        return x
    update = update_fn()
    return x + (update if keep is None else update * keep)


def _modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation ``normed * (1 + scale) + shift`` in one pass (``addcmul``; the reference takes two)."""
    return torch.addcmul(shift, normed, 1 + scale)


@dataclass(frozen=True)
class BlockKeeps:
    """One block's perturbation masks (``Perturbations.keep_mask`` values), decided outside the block's compute.

    Each is ``None`` (nothing skipped), ``False`` (every sample skips) or a ``[B, 1, 1]`` 0/1 tensor. Taking
    them out of the block's body keeps the block index out of it, so one compiled body serves every block.
    """

    video_self: torch.Tensor | bool | None = None
    audio_self: torch.Tensor | bool | None = None
    a2v: torch.Tensor | bool | None = None
    v2a: torch.Tensor | bool | None = None


# ------------------------------------------------------------------------------------------------
# Inputs and per-forward state


@dataclass
class ModalityInput:
    """One stream's inputs (the reference's ``Modality``).

    ``latent``: tokens ``[B, T, C]``. ``sigma``: the step's noise level per sample ``[B]`` (a
    single value is shared by the batch; 0 for a frozen stream, e.g. the given audio of an
    audio-to-video run). ``timesteps``: the noise level the model is told per sample (``[B]``,
    ``[B, 1]``, ``[B, 1, 1]``) or per token (``[B, T]``, ``[B, T, 1]``), i.e. ``denoise_mask *
    sigma``; it is also what ``to_denoised`` uses. ``positions``: token bounds ``[B, P, T, 2]``.
    ``context``: connector output ``[B, L, W]`` (``W`` = ``caption_channels`` for LTX-2, the
    stream's cross-attention width for LTX-2.3). ``context_mask``: optional ``[B, L]``, 1 = attend.
    ``keyframes_mask``: optional ``[B, T]`` / ``[B, T, 1]``, non-zero on video tokens that encode a
    single pixel frame (they receive the keyframe embedding; ignored by models without one).
    ``attention_mask``: optional ``[B, T, T]`` self-attention weights in [0, 1] (0 = masked; IC-LoRA guides'
    ``conditioning_attention_strength``), reference ``Modality.attention_mask``; None = full attention.
    """

    latent: torch.Tensor
    sigma: torch.Tensor
    timesteps: torch.Tensor
    positions: torch.Tensor
    context: torch.Tensor
    context_mask: torch.Tensor | None = None
    keyframes_mask: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


class AdaValues:
    """AdaLN outputs computed once per distinct timestep and gathered per token on use.

    Per-token timesteps usually take only a few values (0 for conditioned tokens, sigma for the
    rest); embedding each distinct value once avoids a ``[T, k*D]`` matmul and its memory.
    ``values`` is ``[B, 1, k, D]`` (one timestep per sample, ``index`` None) or ``[U, k, D]``
    shared by the batch with ``index`` ``[B, T]`` selecting a row per token.
    """

    def __init__(self, values: torch.Tensor, index: torch.Tensor | None):
        self.values = values
        self.index = index

    def rows(self, table: torch.Tensor | None, start: int, stop: int) -> list[torch.Tensor]:
        """Rows ``start:stop`` (+ the learned ``table`` rows), each broadcastable to ``[B, T, D]``."""
        vals = self.values[..., start:stop, :]
        if table is not None:
            vals = vals + table[start:stop].to(vals.dtype)
        if self.index is not None:
            batch, tokens = self.index.shape
            vals = vals.index_select(0, self.index.reshape(-1)).view(batch, tokens, *vals.shape[1:])
        return list(vals.unbind(dim=2))

    def expanded(self, tokens: int) -> torch.Tensor:
        """Full ``[B, tokens, k*D]`` tensor (for debugging and parity tests)."""
        rows = self.rows(None, 0, self.values.shape[-2])
        return torch.cat([r.expand(-1, tokens, -1) for r in rows], dim=-1)


def _timestep_groups(t: torch.Tensor, batch: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Timesteps to embed and, for per-token timesteps, the ``[B, T]`` index of each token's value."""
    flat = t.reshape(batch, -1).float()
    if flat.shape[1] == 1:
        return flat.reshape(-1), None
    if flat.shape[1] != tokens:
        raise ValueError(f"timesteps have {flat.shape[1]} entries per sample; expected 1 or {tokens} (one per token)")
    uniques, inverse = torch.unique(flat, return_inverse=True)
    return uniques, inverse


def _per_sample(sigma: torch.Tensor, batch: int, modality: str) -> torch.Tensor:
    """``sigma`` as ``[B]`` (one shared value is broadcast)."""
    flat = sigma.reshape(-1)
    if flat.numel() == 1:
        return flat.expand(batch)
    if flat.numel() != batch:
        raise ValueError(f"{modality} sigma has {flat.numel()} values for a batch of {batch}; it is the per-sample "
                         "noise level ([B]); per-token noise levels belong in timesteps.")
    return flat


@dataclass
class StreamState:
    """Everything a block needs for one stream during one forward."""

    x: torch.Tensor
    context: torch.Tensor
    context_mask: torch.Tensor | None
    ada: AdaValues  # 6 rows (shift/scale/gate msa, shift/scale/gate mlp) [+ shift/scale/gate of the text query]
    embedded_timestep: AdaValues  # 1 row
    rope: RopeTable
    prompt_ada: AdaValues | None = None  # 2 rows (shift, scale of the text context); with the prompt AdaLN only
    cross_rope: RopeTable | None = None
    cross_ada: AdaValues | None = None  # 4 rows (scale a2v, shift a2v, scale v2a, shift v2a)
    cross_gate: AdaValues | None = None  # 1 row, from the other stream's per-sample sigma
    self_mask: torch.Tensor | None = None  # additive [B, 1, T, T] self-attention mask (``attention_mask``)


# ------------------------------------------------------------------------------------------------
# Modules


class AVTransformerBlock(nn.Module):
    def __init__(self, index: int, cfg: TransformerConfig):
        super().__init__()
        self.index = index
        self.eps = cfg.norm_eps
        self.cross_attention_adaln = cfg.cross_attention_adaln
        eps, gated = cfg.norm_eps, cfg.apply_gated_attention
        for prefix, on, d, h, dh, ctx in (
                ("", cfg.has_video, cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim,
                 cfg.cross_attention_dim),
                ("audio_", cfg.has_audio, cfg.audio_inner_dim, cfg.audio_num_attention_heads,
                 cfg.audio_attention_head_dim, cfg.audio_cross_attention_dim)):
            if not on:
                continue
            setattr(self, prefix + "attn1", Attention(d, h, dh, eps=eps, gated=gated))
            setattr(self, prefix + "attn2", Attention(d, h, dh, context_dim=ctx, eps=eps, gated=gated))
            setattr(self, prefix + "ff", FeedForward(d, bias=cfg.audio_ff_bias if prefix else cfg.ff_bias))
            setattr(self, prefix + "scale_shift_table", nn.Parameter(torch.empty(cfg.ada_rows, d)))
            if cfg.cross_attention_adaln:
                setattr(self, prefix + "prompt_scale_shift_table", nn.Parameter(torch.empty(2, d)))
        if cfg.has_video and cfg.has_audio:
            h, dh = cfg.audio_num_attention_heads, cfg.audio_attention_head_dim
            self.audio_to_video_attn = Attention(cfg.inner_dim, h, dh, context_dim=cfg.audio_inner_dim, eps=eps,
                                                 gated=gated)
            self.video_to_audio_attn = Attention(cfg.audio_inner_dim, h, dh, context_dim=cfg.inner_dim, eps=eps,
                                                 gated=gated)
            self.scale_shift_table_a2v_ca_video = nn.Parameter(torch.empty(5, cfg.inner_dim))
            self.scale_shift_table_a2v_ca_audio = nn.Parameter(torch.empty(5, cfg.audio_inner_dim))
        self.compiled_run = None  # set by ``model.compiling.compiled_blocks``: a compiled ``run``

    def _self_and_text(self, x: torch.Tensor, s: StreamState, prefix: str, keep) -> torch.Tensor:
        table = getattr(self, prefix + "scale_shift_table")
        shift, scale, gate = s.ada.rows(table, 0, 3)
        x = torch.addcmul(x, getattr(self, prefix + "attn1")(
            _modulate(rms_norm(x, self.eps), shift, scale), rope=s.rope, keep=keep, mask=s.self_mask), gate)
        attn2, normed = getattr(self, prefix + "attn2"), rms_norm(x, self.eps)
        if not self.cross_attention_adaln:  # LTX-2: un-modulated text cross-attention
            return x + attn2(normed, context=s.context, mask=s.context_mask)
        # LTX-2.3: rows 6..8 modulate and gate the query, the prompt AdaLN shifts/scales the context
        shift_q, scale_q, gate_q = s.ada.rows(table, 6, 9)
        prompt_table = getattr(self, prefix + "prompt_scale_shift_table")
        if s.prompt_ada is not None:
            shift_kv, scale_kv = s.prompt_ada.rows(prompt_table, 0, 2)
        else:  # use_prompt_adaln_single false: the static table alone (timestep-independent K/V)
            shift_kv, scale_kv = prompt_table.to(s.context.dtype).unbind(0)
        return torch.addcmul(x, attn2(_modulate(normed, shift_q, scale_q), context=_modulate(s.context, shift_kv,
                                                                                               scale_kv),
                                      mask=s.context_mask), gate_q)

    def _feed_forward(self, x: torch.Tensor, s: StreamState, prefix: str) -> torch.Tensor:
        shift, scale, gate = s.ada.rows(getattr(self, prefix + "scale_shift_table"), 3, 6)
        return torch.addcmul(x, getattr(self, prefix + "ff")(_modulate(rms_norm(x, self.eps), shift, scale)), gate)

    def _exchange(self, vx: torch.Tensor, ax: torch.Tensor, v: StreamState, a: StreamState, keep_a2v, keep_v2a
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        if keep_a2v is False and keep_v2a is False:
            return vx, ax
        vn, an = rms_norm(vx, self.eps), rms_norm(ax, self.eps)
        v_sc_a2v, v_sh_a2v, v_sc_v2a, v_sh_v2a = v.cross_ada.rows(self.scale_shift_table_a2v_ca_video, 0, 4)
        a_sc_a2v, a_sh_a2v, a_sc_v2a, a_sh_v2a = a.cross_ada.rows(self.scale_shift_table_a2v_ca_audio, 0, 4)
        (gate_a2v,) = v.cross_gate.rows(self.scale_shift_table_a2v_ca_video[4:], 0, 1)
        (gate_v2a,) = a.cross_gate.rows(self.scale_shift_table_a2v_ca_audio[4:], 0, 1)
        new_vx = _residual(vx, lambda: self.audio_to_video_attn(
            _modulate(vn, v_sh_a2v, v_sc_a2v), context=_modulate(an, a_sh_a2v, a_sc_a2v),
            rope=v.cross_rope, k_rope=a.cross_rope) * gate_a2v, keep_a2v)
        new_ax = _residual(ax, lambda: self.video_to_audio_attn(
            _modulate(an, a_sh_v2a, a_sc_v2a), context=_modulate(vn, v_sh_v2a, v_sc_v2a),
            rope=a.cross_rope, k_rope=v.cross_rope) * gate_v2a, keep_v2a)
        return new_vx, new_ax

    def keeps(self, skips: Perturbations, like: torch.Tensor) -> BlockKeeps:
        """This block's perturbation masks for ``skips`` (per block index; computed eagerly, outside ``run``)."""
        return BlockKeeps(*(skips.keep_mask(kind, self.index, like) for kind in (
            Skip.VIDEO_SELF_ATTN, Skip.AUDIO_SELF_ATTN, Skip.A2V_CROSS_ATTN, Skip.V2A_CROSS_ATTN)))

    def run(self, video: StreamState | None, audio: StreamState | None, keeps: BlockKeeps
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The block's compute: the new ``(video.x, audio.x)``. Reads no block index and mutates nothing, so
        one compiled ``run`` serves every block (``model.compiling``)."""
        vx = video.x if video is not None else None
        ax = audio.x if audio is not None else None
        if video is not None:
            vx = self._self_and_text(vx, video, "", keeps.video_self)
        if audio is not None:
            ax = self._self_and_text(ax, audio, "audio_", keeps.audio_self)
        if video is not None and audio is not None:
            vx, ax = self._exchange(vx, ax, video, audio, keeps.a2v, keeps.v2a)
        if video is not None:
            vx = self._feed_forward(vx, video, "")
        if audio is not None:
            ax = self._feed_forward(ax, audio, "audio_")
        return vx, ax

    def forward(self, video: StreamState | None, audio: StreamState | None, skips: Perturbations) -> None:
        """Updates ``video.x`` / ``audio.x`` in place of the state objects (tensors are not mutated)."""
        keeps = self.keeps(skips, (video or audio).x)
        run = self.compiled_run
        vx, ax = run(self, video, audio, keeps) if run is not None else self.run(video, audio, keeps)
        if video is not None:
            video.x = vx
        if audio is not None:
            audio.x = ax


class LTX2Transformer(nn.Module):
    """Velocity model: ``forward(video, audio) -> (video_velocity, audio_velocity)`` in token layout."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        for prefix, on, d, out in (("", cfg.has_video, cfg.inner_dim, cfg.out_channels),
                                   ("audio_", cfg.has_audio, cfg.audio_inner_dim, cfg.audio_out_channels)):
            if not on:
                continue
            setattr(self, prefix + "patchify_proj",
                    nn.Linear(cfg.in_channels if prefix == "" else cfg.audio_in_channels, d))
            setattr(self, prefix + "adaln_single", AdaLayerNormSingle(d, cfg.ada_rows))
            if cfg.cross_attention_adaln and cfg.use_prompt_adaln_single:
                setattr(self, prefix + "prompt_adaln_single", AdaLayerNormSingle(d, 2))
            if not cfg.caption_proj_before_connector:
                setattr(self, prefix + "caption_projection", CaptionProjection(cfg.caption_channels, d))
            setattr(self, prefix + "scale_shift_table", nn.Parameter(torch.empty(2, d)))
            setattr(self, prefix + "proj_out", nn.Linear(d, out))
        if cfg.use_keyframes_abs_pos_embedding and cfg.has_video:
            self.keyframes_abs_pos_embedding = nn.Parameter(torch.empty(1, cfg.inner_dim))
        if cfg.has_video and cfg.has_audio:
            self.av_ca_video_scale_shift_adaln_single = AdaLayerNormSingle(cfg.inner_dim, 4)
            self.av_ca_audio_scale_shift_adaln_single = AdaLayerNormSingle(cfg.audio_inner_dim, 4)
            self.av_ca_a2v_gate_adaln_single = AdaLayerNormSingle(cfg.inner_dim, 1)
            self.av_ca_v2a_gate_adaln_single = AdaLayerNormSingle(cfg.audio_inner_dim, 1)
        self.transformer_blocks = nn.ModuleList(AVTransformerBlock(i, cfg) for i in range(cfg.num_layers))

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype activations run in: that of the input projection (its bias when a GGUF file stores the weight
        block-quantized as bytes; fp8 files never quantize it)."""
        proj = self.patchify_proj if self.config.has_video else self.audio_patchify_proj
        return proj.weight.dtype if proj.weight.is_floating_point() else proj.bias.dtype

    # -- preparation ---------------------------------------------------------------------------

    def _ada(self, adaln: AdaLayerNormSingle, t: torch.Tensor, batch: int, tokens: int, dtype,
             multiplier: float) -> tuple[AdaValues, AdaValues]:
        values, index = _timestep_groups(t, batch, tokens)
        rows, embedded = adaln(values * multiplier, dtype)
        shape = (-1, adaln.coefficient, rows.shape[-1] // adaln.coefficient)
        rows, embedded = rows.view(shape), embedded.unsqueeze(1)
        if index is None:  # one row per sample -> [B, 1, k, D]
            rows, embedded = rows.unsqueeze(1), embedded.unsqueeze(1)
        return AdaValues(rows, index), AdaValues(embedded, index)

    def _context(self, inp: ModalityInput, modality: str, prefix: str, dtype) -> torch.Tensor:
        caption = getattr(self, prefix + "caption_projection", None)
        width = self.config.context_width(modality)
        if inp.context.shape[-1] != width:
            raise ValueError(
                f"{modality} context is {inp.context.shape[-1]} wide; this transformer expects {width}. "
                "Use the text connectors of the same checkpoint as the transformer.")
        context = inp.context.to(dtype)
        return caption(context) if caption is not None else context

    def _prepare(self, inp: ModalityInput, modality: str, other: ModalityInput | None) -> StreamState:
        cfg = self.config
        dtype = self.compute_dtype
        video = modality == "video"
        prefix = "" if video else "audio_"
        heads = cfg.num_attention_heads if video else cfg.audio_num_attention_heads
        inner = cfg.inner_dim if video else cfg.audio_inner_dim

        x = getattr(self, prefix + "patchify_proj")(inp.latent.to(dtype))
        batch, tokens = x.shape[:2]
        marker = getattr(self, "keyframes_abs_pos_embedding", None) if video else None
        if marker is not None and inp.keyframes_mask is not None:
            x = x + (inp.keyframes_mask.reshape(batch, tokens, 1) > 0).to(dtype) * marker.to(dtype)
        ts = cfg.timestep_scale_multiplier
        ada, embedded = self._ada(getattr(self, prefix + "adaln_single"), inp.timesteps, batch, tokens, dtype, ts)
        state = StreamState(
            x=x, context=self._context(inp, modality, prefix, dtype),
            context_mask=binary_to_additive_mask(inp.context_mask, dtype), ada=ada, embedded_timestep=embedded,
            rope=rope_table(inp.positions, inner, heads, cfg.rope_spec(modality), dtype),
            self_mask=weights_to_additive_mask(inp.attention_mask, dtype))
        if cfg.cross_attention_adaln and cfg.use_prompt_adaln_single:
            state.prompt_ada, _ = self._ada(getattr(self, prefix + "prompt_adaln_single"),
                                            _per_sample(inp.sigma, batch, modality), batch, tokens, dtype, ts)
        if other is not None:
            cross_adaln = (self.av_ca_video_scale_shift_adaln_single if video
                           else self.av_ca_audio_scale_shift_adaln_single)
            gate_adaln = self.av_ca_a2v_gate_adaln_single if video else self.av_ca_v2a_gate_adaln_single
            other_sigma = _per_sample(other.sigma, batch, "audio" if video else "video")
            state.cross_ada, _ = self._ada(cross_adaln, inp.timesteps, batch, tokens, dtype, ts)
            state.cross_gate, _ = self._ada(gate_adaln, other_sigma, batch, tokens, dtype,
                                            ts * (cfg.av_ca_timestep_scale_multiplier / ts))
            state.cross_rope = rope_table(inp.positions[:, :1], cfg.audio_cross_attention_dim, heads,
                                          cfg.cross_rope_spec(), dtype)
        return state

    def prepare(self, video: ModalityInput | None, audio: ModalityInput | None
                ) -> tuple[StreamState | None, StreamState | None]:
        cfg = self.config
        if video is None and audio is None:
            raise ValueError("LTX2Transformer needs at least one of video / audio")
        if video is not None and not cfg.has_video:
            raise ValueError("this transformer has no video stream")
        if audio is not None and not cfg.has_audio:
            raise ValueError("this transformer has no audio stream")
        v = self._prepare(video, "video", audio) if video is not None else None
        a = self._prepare(audio, "audio", video) if audio is not None else None
        return v, a

    def _head(self, s: StreamState, table: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        (emb,) = s.embedded_timestep.rows(None, 0, 1)
        shift = table[0].to(emb.dtype) + emb
        scale = table[1].to(emb.dtype) + emb
        x = F.layer_norm(s.x, (s.x.shape[-1],), eps=self.config.norm_eps)
        return proj(x * (1 + scale) + shift)

    # -- forward -------------------------------------------------------------------------------

    def forward(self, video: ModalityInput | None = None, audio: ModalityInput | None = None,
                perturbations: Perturbations | None = None, block_hook=None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Velocities ``[B, T, out_channels]`` per stream (None for a stream not given).

        Passing only one stream runs that modality alone (no audio<->video exchange).
        ``block_hook(index, video_state, audio_state)`` is called after every block (debugging,
        progress, interruption).
        """
        v, a = self.prepare(video, audio)
        batch = (v or a).x.shape[0]
        skips = perturbations or Perturbations([SampleSkips()] * batch)
        if len(skips.samples) != batch:
            raise ValueError(f"perturbations describe {len(skips.samples)} samples, batch has {batch}")
        for i, block in enumerate(self.transformer_blocks):
            block(v, a, skips)
            if block_hook is not None:
                block_hook(i, v, a)
        out_v = self._head(v, self.scale_shift_table, self.proj_out) if v is not None else None
        out_a = self._head(a, self.audio_scale_shift_table, self.audio_proj_out) if a is not None else None
        return out_v, out_a


def to_denoised(latent: torch.Tensor, velocity: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """``x0 = x - timesteps * v`` in float32 (per sample or per token), cast back to the latent dtype."""
    t = timesteps.float()
    if t.ndim == 1:
        t = t.view(-1, 1, 1)
    elif t.ndim == 2:
        t = t.unsqueeze(-1)
    return (latent.float() - velocity.float() * t).to(latent.dtype)
