"""Reference audio tokens (Dub-It): a given audio latent appended to the audio stream as frozen tokens.

Reference semantics (``ltx_pipelines.dubit`` with ``ltx_core``'s ``AudioConditionByReferenceLatent``): the
reference latent ``[B|1, C, T_ref, M]`` is patchified like the audio it conditions and appended *after* the
generated audio tokens (so those keep their indices and ``LatentState.to_grid`` drops the reference again), with

* denoise mask 0: the tokens are never noised, the model is told timestep 0 there and every sampler step pins
  them to the given latent (frozen, like kept audio);
* RoPE positions on a timeline of their own *before* the clip: the bounds of a clip of ``T_ref`` latents starting
  at 0 (``model.patchify.audio_positions``), shifted back by the end of its last latent plus one latent's
  duration (the reference writes the gap as ``0.04`` s: one latent at the released 25 latents/s), so the last
  reference latent ends one latent before the generated audio starts, as the Dub-It LoRA was trained.

Deviation: the reference's ``strength`` argument (``1 - strength`` as the denoise mask) is not offered: the
Dub-It pipeline only ever passes 1, and a partly noised reference has no meaning for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.patchify import audio_positions, patchify_audio
from ..model.shapes import AudioTiming
from .tokens import append_tokens
from .state import AudioGrid, LatentState


def reference_audio_positions(batch: int, frames: int, timing: AudioTiming = AudioTiming(),
                              device: torch.device | str | None = None) -> torch.Tensor:
    """Token bounds ``[B, 1, frames, 2]`` (seconds, float32) of a reference audio of ``frames`` latents: its own
    bounds moved to end one latent's duration before time 0 (all negative)."""
    positions = audio_positions(batch, frames, timing, device=device)
    end = positions[:, :, -1, 1].max().item()
    return positions - end - 1.0 / timing.latents_per_second


def check_reference_length(audio: dict, timing: AudioTiming = AudioTiming(), what: str = "the reference audio"
                           ) -> None:
    """Refuse a reference AUDIO (``waveform`` ``[B, C, S]``, ``sample_rate``) shorter than one audio latent."""
    rate = max(int(audio["sample_rate"]), 1)
    if audio["waveform"].shape[-1] < rate / timing.latents_per_second:
        raise InputError(f"{what} is {audio['waveform'].shape[-1] / rate:.3f} s long; give at least "
                         f"{1 / timing.latents_per_second:g} s of speech (about 3-10 s works best).")


@dataclass
class ReferenceAudio:
    """Append ``latent`` ``[B|1, C, T_ref, M]`` (a normalised audio VAE latent) to an audio state as frozen
    reference tokens at negative positions (see the module docstring)."""

    latent: torch.Tensor

    @property
    def tokens(self) -> int:
        return self.latent.shape[2]

    def apply(self, state: LatentState) -> LatentState:
        grid = state.grid
        if not isinstance(grid, AudioGrid):
            raise InputError("reference audio conditions the audio stream; it was applied to the video.")
        latent = self.latent
        if latent.ndim != 4 or latent.shape[2] < 1:
            raise InputError(f"reference audio latent must be [B, C, T, M] with T >= 1, got {list(latent.shape)}.")
        if (latent.shape[1], latent.shape[3]) != (grid.channels, grid.mel_bins):
            raise InputError(f"the reference audio latent has {latent.shape[1]} x {latent.shape[3]} (channels x mel "
                             f"bins) per frame, the generated audio {grid.channels} x {grid.mel_bins}; encode the "
                             "reference with the audio VAE of the model that samples.")
        if latent.shape[0] not in (1, state.batch):
            raise InputError(f"reference audio latent has batch {latent.shape[0]}; the generation has batch "
                             f"{state.batch} (give one reference shared by all samples, or one per sample).")
        latent = latent.expand(state.batch, *latent.shape[1:])
        tokens = patchify_audio(latent).to(device=state.latent.device, dtype=state.latent.dtype)
        positions = reference_audio_positions(state.batch, self.tokens, grid.timing, device=state.positions.device)
        mask = torch.zeros(*tokens.shape[:2], 1, device=state.mask.device, dtype=state.mask.dtype)
        return append_tokens(state, tokens, tokens, mask, positions)
