"""Editing an existing clip at the latent level: extend it in time, regenerate a time window (retake).

Both keep tokens exactly with the denoise masks of ``AVLatents`` (0 = keep: the sampler pins those tokens to
their given latent at every step and tells the model sigma 0 there) and sample with the existing
``latents.sample`` / sampler node; nothing here runs a model.

* **Extend** (not in the reference, which has no extend pipeline): :func:`extend_window` cuts a *window* of
  ``overlap`` kept latent frames at the clip's end plus ``new`` latent frames to generate, and the audio latents
  of the same span (kept up to the clip's end, generated after). The window carries its place in the clip
  (``AVLatents.video_start`` / ``audio_start``), so its RoPE positions are, token for token, those one run over
  the whole extended clip would use (``model.patchify.video_positions(first_frame=...)``). :func:`join_extension`
  appends the window's new frames to the clip; chained, each segment samples a window of the same size, so
  the DiT's memory per segment stays flat however long the clip grows. Past ~20 s the positions exceed the
  range the model was trained on (see the README: the window still attends only to itself, but its absolute
  positions keep growing).
* **Retake** (reference ``ltx_pipelines.retake`` / ``TemporalRegionMask``): :func:`retake_window` marks the
  tokens whose time bounds intersect ``[start, end)`` seconds for regeneration, per modality; everything else
  is kept.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .errors import InputError
from .latents import AVLatents
from .model.shapes import MAX_FRAMES, audio_latent_frames, pixel_frames

__all__ = ["ExtendPlan", "plan_extend", "extend_window", "join_extension", "retake_window", "clip_seconds"]

DEFAULT_OVERLAP_FRAMES = 2  # latent frames kept at the seam (17 pixel frames at 8x temporal compression)


def clip_seconds(clip: AVLatents) -> float:
    """The clip's length in seconds: its video's pixel frames / fps, else its audio latents / latent rate."""
    if clip.video is not None:
        return clip.video_grid().pixel_frames / clip.fps
    return clip.audio.shape[2] / clip.audio_timing.latents_per_second


@dataclass(frozen=True)
class ExtendPlan:
    """One extend segment in latent frames: the window is video latent frames ``[video_start, video_start +
    overlap + new)`` of the extended clip (the first ``overlap`` kept) and audio latents ``[audio_start,
    audio_start + audio_kept + audio_new)`` (the first ``audio_kept`` kept); indices relative to the clip."""

    overlap: int
    new: int
    video_start: int
    audio_start: int
    audio_kept: int
    audio_new: int

    @property
    def window_frames(self) -> int:
        return self.overlap + self.new


def _new_latent_frames(seconds: float, fps: float, time_scale: int) -> int:
    return max(1, round(seconds * fps / time_scale))


def plan_extend(clip: AVLatents, seconds: float, overlap: int = DEFAULT_OVERLAP_FRAMES) -> ExtendPlan:
    """The segment that extends ``clip`` by about ``seconds`` (whole latent frames: ``8`` pixel frames each at
    the released VAE), keeping its last ``overlap`` latent frames and the audio of that span.

    Refuses (``InputError``: what was asked, what fits, the fix) a clip without video, an overlap outside
    ``1 .. frames - 1`` and a window longer than the pack's longest clip (``shapes.MAX_FRAMES``)."""
    if clip.video is None:
        raise InputError("extend continues a video: this latent holds audio only. Connect an audio+video latent "
                         "(a sampler's output or 'LTX-2 Video Encode').")
    if seconds <= 0:
        raise InputError(f"extend by {seconds:g} s: give a positive number of seconds, e.g. 5.")
    grid = clip.video_grid()
    frames = grid.frames
    if not 1 <= overlap < frames:
        raise InputError(f"overlap {overlap} latent frames: the clip has {frames} latent frames, so keep 1 to "
                         f"{frames - 1} of them (the default {DEFAULT_OVERLAP_FRAMES} keeps "
                         f"{DEFAULT_OVERLAP_FRAMES * grid.scale.time} pixel frames).")
    new = _new_latent_frames(seconds, clip.fps, grid.scale.time)
    window = pixel_frames(overlap + new, grid.scale)
    if window > MAX_FRAMES:
        fits = (pixel_frames(MAX_FRAMES // grid.scale.time + 1 - overlap, grid.scale) - 1) / clip.fps
        raise InputError(f"extend by {seconds:g} s with {overlap} kept latent frames is a {window}-frame window; "
                         f"one segment holds at most {MAX_FRAMES} frames. Extend by at most {fits:.2f} s per "
                         "segment and chain segments for longer clips.")
    start = frames - overlap
    timing = clip.audio_timing
    audio_start = audio_new = audio_kept = 0
    if clip.audio is not None:
        have = clip.audio.shape[2]
        # the window's first latent frame starts at pixel frame 8s - 7 (causal VAE): its audio from there
        first_pixel = pixel_frames(start, grid.scale)
        audio_start = min(have, math.floor(first_pixel / clip.fps * timing.latents_per_second))
        audio_kept = have - audio_start
        audio_new = (audio_latent_frames(pixel_frames(frames + new, grid.scale), clip.fps, timing)
                     - audio_latent_frames(grid.pixel_frames, clip.fps, timing))
    return ExtendPlan(overlap, new, start, audio_start, audio_kept, audio_new)


def extend_window(clip: AVLatents, plan: ExtendPlan) -> AVLatents:
    """The window to sample for ``plan``: the kept latents (mask 0) then zeros to generate (mask 1), placed at
    their positions in the extended clip. Sample it (any schedule, prompt, seed), then :func:`join_extension`."""
    batch, channels, _, height, width = clip.video.shape
    kept = clip.video[:, :, plan.video_start:]
    video = torch.cat([kept, kept.new_zeros(batch, channels, plan.new, height, width)], dim=2)
    video_mask = torch.ones(batch, 1, plan.window_frames, height, width)
    video_mask[:, :, : plan.overlap] = 0.0
    audio = audio_mask = None
    if clip.audio is not None:
        kept_audio = clip.audio[:, :, plan.audio_start:]
        audio = torch.cat([kept_audio, kept_audio.new_zeros(*kept_audio.shape[:2], plan.audio_new,
                                                            kept_audio.shape[3])], dim=2)
        audio_mask = torch.ones(batch, 1, plan.audio_kept + plan.audio_new, 1)
        audio_mask[:, :, : plan.audio_kept] = 0.0
    return dataclasses.replace(clip, video=video, audio=audio, video_mask=video_mask, audio_mask=audio_mask,
                               video_start=clip.video_start + plan.video_start,
                               audio_start=clip.audio_start + plan.audio_start, keyframe_slots=(), keyframes=None,
                               keyframe_frames=())


def join_extension(clip: AVLatents, window: AVLatents) -> AVLatents:
    """``clip`` followed by the new part of a sampled ``window`` (of :func:`extend_window` on this clip): one
    latent, the clip's own latents kept as given (so the seam is the clip's exactly, in any compute dtype)."""
    if window.video is None or clip.video is None:
        raise InputError("join needs the clip and its sampled extend window, both with video.")
    start = window.video_start - clip.video_start
    overlap = clip.video.shape[2] - start
    if start < 0 or not 0 < overlap < window.video.shape[2] or window.video.shape[3:] != clip.video.shape[3:]:
        raise InputError(f"this window (latent frames from {window.video_start}, {window.video.shape[2]} frames "
                         f"{list(window.video.shape[3:])}) does not extend this clip ({clip.video.shape[2]} latent "
                         f"frames {list(clip.video.shape[3:])} from {clip.video_start}); connect the clip that went "
                         "into 'LTX-2 Extend Window' and the sampler output of that window.")
    video = torch.cat([clip.video, window.video[:, :, overlap:].to(clip.video.dtype)], dim=2)
    audio = clip.audio
    if clip.audio is not None and window.audio is not None:
        kept = clip.audio.shape[2] - (window.audio_start - clip.audio_start)
        audio = torch.cat([clip.audio, window.audio[:, :, kept:].to(clip.audio.dtype)], dim=2)
    return dataclasses.replace(clip, video=video, audio=audio, video_mask=None, audio_mask=None,
                               keyframe_slots=(), keyframes=None, keyframe_frames=())


def _in_window(bounds: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """Tokens whose ``[t0, t1)`` seconds intersect ``[start, end)`` (reference ``TemporalRegionMask``)."""
    return (bounds[..., 1] > start) & (bounds[..., 0] < end)


def retake_window(clip: AVLatents, start: float, end: float, video: bool = True, audio: bool = True) -> AVLatents:
    """``clip`` with the tokens in ``[start, end)`` seconds marked for regeneration (mask 1) in the chosen
    modalities and every other token kept (mask 0); a modality not retaken is kept whole.

    Refuses an empty or reversed window, one outside the clip, and a request that regenerates nothing."""
    length = clip_seconds(clip)
    if not 0 <= start < end:
        raise InputError(f"retake window {start:g}-{end:g} s: give start < end, both >= 0 (e.g. 2.0-4.5).")
    if start >= length:
        raise InputError(f"retake window {start:g}-{end:g} s starts after the clip's end ({length:.2f} s); choose "
                         f"a window inside 0-{length:.2f} s.")
    if not (video and clip.video is not None) and not (audio and clip.audio is not None):
        raise InputError("retake regenerates nothing: enable video or audio (for a modality the clip has).")
    video_mask = audio_mask = None
    if clip.video is not None:
        grid = clip.video_grid()
        bounds = grid.positions(1)[0, 0].view(grid.frames, grid.height * grid.width, 2)[:, 0]  # per latent frame
        hit = _in_window(bounds, start, end) if video else torch.zeros(grid.frames, dtype=torch.bool)
        video_mask = hit.float().view(1, 1, grid.frames, 1, 1).expand(1, 1, grid.frames, grid.height,
                                                                      grid.width).contiguous()
    if clip.audio is not None:
        grid = clip.audio_grid()
        hit = _in_window(grid.positions(1)[0, 0], start, end) if audio else torch.zeros(grid.frames, dtype=torch.bool)
        audio_mask = hit.float().view(1, 1, grid.frames, 1)
    return dataclasses.replace(clip, video_mask=video_mask, audio_mask=audio_mask)
