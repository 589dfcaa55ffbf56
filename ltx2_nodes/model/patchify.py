"""Latent <-> token layouts and the token positions the DiT's RoPE reads.

Video latents ``[B, C, F, H, W]`` become tokens ``[B, F*H*W, C]`` (f-major, then h, then w).
Audio latents ``[B, C, T, M]`` become ``[B, T, C*M]`` (feature index ``c*M + m``).

Positions are token bounds ``[start, end)`` in real units: video time in seconds (pixel-frame
bounds after the causal first-frame fix, divided by fps), height/width in pixels; audio time
in seconds of the 16 kHz mel grid. The factors (``VideoScale``, ``AudioTiming``) live in ``shapes``.
"""

from __future__ import annotations

import torch

from .shapes import AudioTiming, VideoScale


def patchify_video(latent: torch.Tensor) -> torch.Tensor:
    b, c, f, h, w = latent.shape
    return latent.reshape(b, c, f * h * w).transpose(1, 2)


def unpatchify_video(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, frames, height, width)


def patchify_audio(latent: torch.Tensor) -> torch.Tensor:
    b, c, t, m = latent.shape
    return latent.permute(0, 2, 1, 3).reshape(b, t, c * m)


def unpatchify_audio(tokens: torch.Tensor, channels: int, mel_bins: int) -> torch.Tensor:
    b, t, _ = tokens.shape
    return tokens.reshape(b, t, channels, mel_bins).permute(0, 2, 1, 3)


def video_positions(batch: int, frames: int, height: int, width: int, fps: float,
                    scale: VideoScale = VideoScale(), causal_fix: bool = True,
                    frame_offset: int = 0, first_frame: int = 0,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Token bounds ``[B, 3, F*H*W, 2]`` for a latent grid of ``frames x height x width``.

    ``frame_offset`` shifts the grid by that many *pixel* frames (keyframe tokens placed at a
    later frame); the causal fix only applies to a grid that starts at frame 0, as in the reference.
    ``first_frame``: the grid is latent frames ``first_frame ..`` of a longer clip (an extend window),
    its bounds exactly those tokens' bounds in one run over the whole clip (not in the reference, whose
    runs always start at latent frame 0; the causal fix only touches latent frame 0).
    """
    f, h, w = torch.meshgrid(torch.arange(first_frame, first_frame + frames, device=device),
                             torch.arange(height, device=device),
                             torch.arange(width, device=device), indexing="ij")
    starts = torch.stack([f.flatten(), h.flatten(), w.flatten()]).float()  # [3, T]
    bounds = torch.stack([starts, starts + 1], dim=-1)  # [3, T, 2]
    factors = torch.tensor([scale.time, scale.height, scale.width], dtype=torch.float32, device=device)
    pixels = bounds * factors.view(3, 1, 1)
    if causal_fix and frame_offset == 0:
        pixels[0] = (pixels[0] + 1 - scale.time).clamp(min=0)
    pixels[0] = (pixels[0] + frame_offset) / fps
    return pixels.unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def keyframe_slot_positions(batch: int, pixel_frame: int, height: int, width: int, fps: float,
                            scale: VideoScale = VideoScale(), device: torch.device | str | None = None) -> torch.Tensor:
    """Token bounds ``[B, 3, H*W, 2]`` of one generated keyframe slot (LTX-2.5): the full spatial grid of one latent
    frame whose temporal span is the single pixel frame ``[t, t + 1) / fps`` (reference
    ``VideoGeneratedKeyframeSlots._slot_positions``), where a latent frame spans ``scale.time`` pixel frames."""
    positions = video_positions(batch, 1, height, width, fps, scale, causal_fix=False, device=device)
    positions[:, 0, :, 0] = float(pixel_frame)
    positions[:, 0, :, 1] = float(pixel_frame + 1)
    positions[:, 0] /= fps  # in float32, as the reference
    return positions


def audio_positions(batch: int, num_latents: int, timing: AudioTiming = AudioTiming(), start: int = 0,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Token bounds ``[B, 1, T, 2]`` in seconds for ``num_latents`` audio latents starting at index ``start``."""

    def seconds(first: int) -> torch.Tensor:
        mel = torch.arange(first, first + num_latents, dtype=torch.float32, device=device) * timing.latent_downsample
        if timing.causal:
            mel = (mel + 1 - timing.latent_downsample).clamp(min=0)
        return mel * timing.hop_length / timing.sample_rate

    bounds = torch.stack([seconds(start), seconds(start + 1)], dim=-1)  # [T, 2]
    return bounds.view(1, 1, num_latents, 2).expand(batch, -1, -1, -1).contiguous()
