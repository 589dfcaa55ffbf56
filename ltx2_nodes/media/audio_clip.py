"""Cutting a soundtrack to a clip: the segment of an AUDIO dict a video covers, and its latent cut to
the video's audio latent count (audio-to-video)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError


def audio_segment(audio: dict, start_seconds: float, seconds: float) -> dict:
    """``seconds`` of ``audio`` from ``start_seconds``, zero-padded at the end when the file is shorter."""
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if start_seconds < 0:
        raise InputError(f"audio start {start_seconds} s is negative.")
    begin = round(start_seconds * rate)
    if begin >= waveform.shape[-1]:
        raise InputError(f"audio start {start_seconds} s is past the end of the audio "
                         f"({waveform.shape[-1] / rate:.2f} s).")
    length = math.ceil(seconds * rate)
    piece = waveform[..., begin:begin + length]
    return {"waveform": F.pad(piece, (0, length - piece.shape[-1])), "sample_rate": rate}


def fit_latent_frames(latent: torch.Tensor, frames: int) -> torch.Tensor:
    """Cut a ``[B, C, T, M]`` audio latent to ``frames`` steps (or repeat its last step when short by the
    encoder's rounding)."""
    if latent.shape[2] >= frames:
        return latent[:, :, :frames].contiguous()
    pad = latent[:, :, -1:].expand(-1, -1, frames - latent.shape[2], -1)
    return torch.cat([latent, pad], dim=2)
