"""Sequence-parallel DiT: the video tokens split across the processes of a ``torch.distributed`` group.

Every rank holds the whole model (or streams its own copy block by block) and the whole audio stream; the
video tokens are padded to a multiple of the world size and each rank runs the blocks on its contiguous
share. Everything per token (patchify, AdaLN, RoPE, q/k RMSNorm, the text cross-attention, audio->video
cross-attention, feed-forward, the output head) runs on the share alone; the two attentions whose keys are
the video tokens need them all and exchange attention heads (Ulysses):

* video self-attention: ``all_to_all`` turns each rank's ``[tokens/N, heads]`` queries, keys and values into
  ``[tokens, heads/N]``, the rank attends over the whole sequence for its heads, and a second ``all_to_all``
  brings the output back to ``[tokens/N, heads]``;
* video->audio cross-attention (audio queries, replicated): keys and values go through the same
  ``all_to_all``, each rank attends its heads' slice of the audio queries, and an ``all_gather`` of the heads
  rebuilds the audio output on every rank.

Padded keys are masked out of both; padded query rows are dropped after the final ``all_gather`` of the
video velocity. Audio and the text cross-attention are replicated (small). The exchanges only move bytes:
each head's attention is the single-process one over the same keys, so the result equals the
single-process forward up to floating-point reduction order (the masked padding and the per-rank kernel
shapes): on 2 gloo processes in float32, tests/test_sequence_parallel.py measured max |diff| 6e-7
on tiny random DiTs and 9.5e-7 on the golden transformer fixtures (2.0, 2.3, 2.5) and holds 1e-5.

Guidance passes need nothing special: perturbation masks are per sample and every rank decides them from
the same ``Perturbations``, so a skipped attention is skipped on all ranks (no collective is left waiting).
Per-token timesteps (frozen conditioning tokens, I2AV) and keyframe markers are split with the tokens;
a frozen audio stream (A2V) is just replicated input.

Reference: ``ltx_core.multigpu.transformer.sequence_parallel`` (docs/multigpu/sequence-parallel.md of the
official pipelines). Deviations: the heads travel through ``torch.distributed.all_to_all_single`` (NCCL on
GPUs, gloo on the CPU) instead of the ``ltx-kernels`` CUDA-IPC kernel, so there is no token-count ceiling
(``max_tokens``) and no extra package; and the module wraps the transformer's call (like ``TiledDiT``)
through one hook (``ModalityInput.shard``) instead of patching its attention modules.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..errors import InputError
from .layers import attend_heads


def check_heads(config, size: int) -> None:
    """Refuse a world size that does not divide the attention heads the exchanged attentions split."""
    heads = {config.num_attention_heads} if config.has_video else set()
    if config.has_video and config.has_audio:
        heads.add(config.audio_num_attention_heads)
    bad = sorted(h for h in heads if h % size)
    if bad:
        fits = [n for n in range(1, max(heads) + 1) if all(h % n == 0 for h in heads)]
        raise InputError(f"{size} processes cannot split this transformer's {bad[0]} attention heads evenly "
                         f"(sequence parallelism gives every process the same number of heads); run with one "
                         f"of {fits} processes (torchrun --nproc-per-node / the sampler's GPU count)")


class TokenShard:
    """One rank's contiguous share of a video sequence of ``tokens`` tokens padded to ``size * local``.

    ``self_attention`` and ``keys_attention`` are the attention cores (``layers.Attention(core=...)``) of the
    video self-attention (queries sharded) and of attentions whose keys are the video (queries replicated)."""

    def __init__(self, group, rank: int, size: int, tokens: int):
        self.group, self.rank, self.size, self.tokens = group, rank, size, tokens
        self.local = math.ceil(tokens / size)
        self.padded = self.local * size
        self.start = rank * self.local

    def key_mask(self, device) -> torch.Tensor | None:
        """``[1, 1, 1, padded]`` booleans, False on padded keys (None without padding)."""
        if self.padded == self.tokens:
            return None
        return (torch.arange(self.padded, device=device) < self.tokens).view(1, 1, 1, -1)

    def _to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, local, H, D]`` (this rank's tokens, all heads) -> ``[B, padded, H/N, D]`` (all tokens, its heads)."""
        batch, local, heads, dim = x.shape
        send = x.reshape(batch, local, self.size, heads // self.size, dim).permute(2, 0, 1, 3, 4).contiguous()
        received = torch.empty_like(send)
        dist.all_to_all_single(received, send, group=self.group)  # chunk i: rank i's tokens, this rank's heads
        return received.permute(1, 0, 2, 3, 4).reshape(batch, self.padded, heads // self.size, dim)

    def _to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``_to_heads``: ``[B, padded, H/N, D]`` -> ``[B, local, H, D]``."""
        batch, _, part, dim = x.shape
        send = x.reshape(batch, self.size, self.local, part, dim).permute(1, 0, 2, 3, 4).contiguous()
        received = torch.empty_like(send)
        dist.all_to_all_single(received, send, group=self.group)  # chunk i: this rank's tokens, rank i's heads
        return received.permute(1, 2, 0, 3, 4).reshape(batch, self.local, part * self.size, dim)

    def _mask(self, mask: torch.Tensor | None, device) -> torch.Tensor | None:
        if mask is not None:
            raise ValueError("sequence-parallel attention over the video takes no key mask of its own (the "
                             "padding mask is the shard's)")
        return self.key_mask(device)

    @torch.compiler.disable
    def self_attention(self, q, k, v, mask):
        """Video self-attention: all four tensors hold this rank's tokens and every head."""
        q, k, v = self._to_heads(q), self._to_heads(k), self._to_heads(v)
        return self._to_tokens(attend_heads(q, k, v, self._mask(mask, q.device)))

    @torch.compiler.disable
    def keys_attention(self, q, k, v, mask):
        """Replicated queries (every rank has all of them) over the sharded video keys and values."""
        k, v = self._to_heads(k), self._to_heads(v)
        part = q.shape[2] // self.size
        q = q[:, :, self.rank * part:(self.rank + 1) * part]
        out = attend_heads(q, k, v, self._mask(mask, q.device)).contiguous()
        parts = [torch.empty_like(out) for _ in range(self.size)]
        dist.all_gather(parts, out, group=self.group)
        return torch.cat(parts, dim=2)

    def split(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's share of ``x`` along its token axis ``dim`` (padded with zeros to ``padded``)."""
        if x.shape[dim] != self.padded:
            pad = [0, 0] * (x.ndim - 1 - dim) + [0, self.padded - x.shape[dim]]
            x = F.pad(x, pad)
        return x.narrow(dim, self.start, self.local)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's ``[B, local, C]`` share -> the whole ``[B, tokens, C]`` on every rank."""
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)[:, :self.tokens]


class SequenceParallelDiT:
    """A DiT whose video tokens are split over ``group``: ``(video, audio, perturbations) -> (video_velocity,
    audio_velocity)`` like the transformer, both whole on every rank; ``config`` and ``compute_dtype`` passed
    through (what the sampler reads).

    Every rank calls it with the same inputs (the sampler runs replicated: same seed, same noise). ``model``
    is the rank's own ``LTX2Transformer`` (resident or block-streamed). A world of one calls ``model`` as is.
    """

    def __init__(self, model, group=None):
        self.model = model
        self.group = group
        joined = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank(group) if joined else 0
        self.size = dist.get_world_size(group) if joined else 1
        self.config = model.config
        self.compute_dtype = model.compute_dtype
        check_heads(self.config, self.size)

    def parameters(self, *args, **kw):
        return self.model.parameters(*args, **kw)

    def shard_of(self, video):
        """``video`` (a ``ModalityInput``) cut to this rank's tokens, with its ``TokenShard``."""
        tokens = video.latent.shape[1]
        shard = TokenShard(self.group, self.rank, self.size, tokens)
        batch = video.latent.shape[0]
        timesteps = video.timesteps
        if tokens > 1 and timesteps.reshape(batch, -1).shape[1] == tokens:  # per token: [B, T] or [B, T, 1]
            timesteps = shard.split(timesteps)
        keyframes = None if video.keyframes_mask is None else shard.split(video.keyframes_mask)
        return dataclasses.replace(video, latent=shard.split(video.latent), timesteps=timesteps,
                                   positions=shard.split(video.positions, dim=2), keyframes_mask=keyframes,
                                   shard=shard)

    def __call__(self, video, audio, perturbations=None):
        if video is None or self.size == 1:
            return self.model(video, audio, perturbations)
        local = self.shard_of(video)
        velocity, audio_velocity = self.model(local, audio, perturbations)
        return local.shard.gather(velocity), audio_velocity
