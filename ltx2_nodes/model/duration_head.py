"""The LTX-2.5 duration head: how long the shot a prompt describes should last, in seconds.

Reference: ``ltx_core/duration_head/duration_head.py`` (``DurationHead``, ``AttentionPooler``) and its
configurator ``DurationHeadConfigurator``. The head reads the *outputs of the text connectors* (what the
DiT cross-attends to), never Gemma directly:

* each present stream is projected to a shared width (``video_input_proj`` / ``audio_input_proj``, Linear with
  bias) and tagged with a learnable modality vector (``video_modality_emb`` / ``audio_modality_emb``);
* the tagged tokens (video first, then audio) are pooled by ``num_queries`` learnable queries through one
  multi-head cross-attention (``attention_pooler.query_tokens``, ``attention_pooler.cross_attn.*``, stored in
  PyTorch's ``nn.MultiheadAttention`` layout -- fused ``in_proj_weight`` / ``in_proj_bias``, ``out_proj`` --
  so that class runs it here too); no mask: the connectors fill padded slots with registers, every token is
  valid;
* the flattened pooled queries go through ``mlp_hidden`` -> tanh-GELU -> ``mlp_out`` to a log-duration; the
  result is ``exp`` of it, in seconds, one per batch item.

Either stream may be missing (video-only or audio-only calls), not both. Snapping the seconds to a frame
count is not the head's business: ``model.shapes.clamped_frames_for_seconds`` owns that rule.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError


@dataclass(frozen=True)
class DurationHeadConfig:
    """Widths of the head. Defaults are the reference configurator's (the released head's are not public).

    ``video_width`` / ``audio_width`` are the connectors' output widths (``config.transformer``'s
    ``cross_attention_dim`` / ``audio_cross_attention_dim``); the rest is the file's ``config.duration_head``.
    """

    video_width: int = 4096
    audio_width: int = 2048
    pooler_hidden_dim: int = 256
    num_queries: int = 1
    num_pooler_heads: int = 4
    mlp_hidden: int = 256

    @classmethod
    def from_metadata(cls, config: dict, source: str = "duration head") -> "DurationHeadConfig":
        """From the file's ``config`` metadata: ``{"transformer": {...}, "duration_head": {...}}``."""
        transformer = config.get("transformer") or {}
        head = config.get("duration_head") or {}
        known = {f.name for f in fields(cls)} - {"video_width", "audio_width"}
        unknown = sorted(set(head) - known)
        if unknown:
            raise UnsupportedModelError(
                f"{source}: config.duration_head has settings this pack does not implement: {unknown} (it knows "
                f"{sorted(known)}). The file is from a newer duration head; update ltx2_nodes, or generate with an "
                "explicit frame count instead of 'auto'.")
        cfg = cls(video_width=int(transformer.get("cross_attention_dim", cls.video_width)),
                  audio_width=int(transformer.get("audio_cross_attention_dim", cls.audio_width)),
                  **{k: int(v) for k, v in head.items()})
        if min(cfg.pooler_hidden_dim, cfg.num_queries, cfg.num_pooler_heads, cfg.mlp_hidden) < 1 or \
                cfg.pooler_hidden_dim % cfg.num_pooler_heads:
            raise UnsupportedModelError(
                f"{source}: duration head with pooler_hidden_dim={cfg.pooler_hidden_dim}, num_queries="
                f"{cfg.num_queries}, num_pooler_heads={cfg.num_pooler_heads}, mlp_hidden={cfg.mlp_hidden}; all must "
                "be positive and pooler_hidden_dim divisible by num_pooler_heads. The metadata is damaged; use the "
                "original release file.")
        return cfg


class AttentionPooler(nn.Module):
    """``num_queries`` learnable queries cross-attending to all tokens (reference ``AttentionPooler``)."""

    def __init__(self, hidden_dim: int, num_queries: int, num_heads: int):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.empty(num_queries, hidden_dim))
        self.cross_attn = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, num_queries, D]``."""
        queries = self.query_tokens.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        pooled, _ = self.cross_attn(queries, tokens, tokens, need_weights=False)
        return pooled


class DurationHead(nn.Module):
    """Connector outputs -> predicted shot duration in seconds (module doc)."""

    def __init__(self, config: DurationHeadConfig = DurationHeadConfig()):
        super().__init__()
        self.config = config
        width = config.pooler_hidden_dim
        self.video_input_proj = nn.Linear(config.video_width, width)
        self.video_modality_emb = nn.Parameter(torch.empty(width))
        self.audio_input_proj = nn.Linear(config.audio_width, width)
        self.audio_modality_emb = nn.Parameter(torch.empty(width))
        self.attention_pooler = AttentionPooler(width, config.num_queries, config.num_pooler_heads)
        self.mlp_hidden = nn.Linear(width * config.num_queries, config.mlp_hidden)
        self.mlp_out = nn.Linear(config.mlp_hidden, 1)

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """``video`` ``[B, T_v, video_width]`` and/or ``audio`` ``[B, T_a, audio_width]`` -> seconds ``[B]``."""
        streams = [(name, x, proj, emb, width) for name, x, proj, emb, width in (
            ("video", video, self.video_input_proj, self.video_modality_emb, self.config.video_width),
            ("audio", audio, self.audio_input_proj, self.audio_modality_emb, self.config.audio_width))
            if x is not None]
        if not streams:
            raise InputError("the duration head needs the video or the audio text conditioning (or both); got "
                             "neither. Connect the prompt's conditioning.")
        batches = {x.shape[0] for _, x, *_ in streams}
        for name, x, _, _, width in streams:
            if x.ndim != 3 or x.shape[-1] != width:
                raise InputError(f"the duration head reads {name} conditioning [B, T, {width}], got "
                                 f"{list(x.shape)}; connect the conditioning of the LTX-2.5 model it ships with.")
        if len(batches) > 1:
            raise InputError(f"the video and audio conditioning have different batch sizes {sorted(batches)}.")
        tokens = torch.cat([proj(x.to(proj.weight.dtype)) + emb for _, x, proj, emb, _ in streams], dim=1)
        pooled = self.attention_pooler(tokens).flatten(1)
        log_seconds = self.mlp_out(F.gelu(self.mlp_hidden(pooled), approximate="tanh")).squeeze(-1)
        return log_seconds.exp()
