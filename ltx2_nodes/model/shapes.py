"""Pixels and seconds <-> latent grid sizes: the one owner of the LTX-2 size and length rules.

Everything that turns a video size or a clip length into latent cells or tokens calls this module
(the latent grids in ``sampling.state``, the estimates and the pre-check in ``memory/``, the VAE's
input check, the nodes, the CLI); ``js/lib/shape.js`` repeats the rules for the canvas and
``tests/test_js.py`` checks it against them.

The factors are properties of the loaded VAEs, with the released LTX-2 values as defaults:

* ``VideoScale``: pixel frames / pixels per latent cell, derived from the video VAE's block list
  (``VideoVAEConfig.encoder_scale``; released 8, 32, 32), as the reference's
  ``SpatioTemporalScaleFactors.from_blocks``.
* ``AudioTiming``: the audio VAE's mel grid (``AudioVAEConfig.timing``): sample rate / hop / the
  latent downsampling = latents per second (released 16000 / 160 / 4 = 25), as the reference's
  ``AudioLatentShape.from_duration``.

Size rules (reference: ``VideoLatentShape.from_pixel_shape``, ``VideoEncoder.forward``,
``ltx_pipelines.utils.helpers.assert_resolution``):

* latent grid: ``F' = (F - 1) // 8 + 1``, ``H' = H // 32``, ``W' = W // 32`` (floor, as the reference);
* a video the VAE encodes, or a run generates: frames ``1 + 8k``, width and height multiples of 32,
  at least one latent cell (a 32-pixel-high video encodes to a one-cell-high latent). The reference
  encoder crops extra frames with a warning; we refuse them with the nearest valid counts instead.
  Decoding a one-cell side needs a decoder with zero padding: the released 2.0 decoder pads with
  'reflect', which needs two cells per side (``VideoDecoder.check_latent`` says so; the reference
  fails there inside ``torch.nn.functional.pad``);
* a two-stage run (stage 1 at half size, x2 latent upscaler): width and height multiples of 64, so
  the half size is a valid size; with the rational x1.5 upscaler (``Upscale(spatial=(3, 2))``) stage 1 runs at
  2/3 of the final size, whose latent sides the upscaler needs even (``UpsamplerConfig.check_input_size``): the
  final sides are multiples of 96 (in general: the latent cell times the reduced factor's numerator);
* the temporal x2 upscaler (``Upscale(temporal=True)``) maps F latent frames to 2F - 1 (its first output frame,
  the duplicate of the single-pixel-frame first latent, is dropped), hence F pixel frames to 2F - 1 as well:
  stage 1 samples ``(F + 1) / 2`` frames at half the frame rate (the same duration), so a final F is
  ``1 + 16k`` (the reference's DFR pipeline: ``num_frames = 2 * (num_frames - 1) + 1``, fps doubled);
* audio latents for ``F`` frames at ``r`` fps: ``round(F / r * 25)`` (Python round, float64);
* a predicted duration (LTX-2.5 duration head) -> frames: clamped to [1 s, 20 s], floored to 1 + 8k
  (``clamped_frames_for_seconds``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

UPSCALE_FACTOR = 2  # the x2 spatial latent upscaler between the two stages
MAX_FRAMES = 1025  # longest clip the nodes and the CLI generate (1 + 8*128; 42.7 s at 24 fps)
TEMPORAL_FACTOR = 2  # the temporal latent upscaler: F -> 2F - 1 frames, the frame rate doubled


@dataclass(frozen=True)
class Upscale:
    """What the latent upscalers between the two stages of a run do: the spatial factor as (up, down) in lowest
    terms (x2: (2, 1); the rational x1.5: (3, 2); none: (1, 1)) and whether the temporal x2 upscaler follows."""

    spatial: tuple[int, int] = (UPSCALE_FACTOR, 1)
    temporal: bool = False

    def __post_init__(self):
        up, down = self.spatial
        if up < 1 or down < 1 or math.gcd(up, down) != 1:
            raise InputError(f"spatial upscale factor {up}/{down}: give positive numbers in lowest terms, e.g. 3/2.")

    def describe(self) -> str:
        up, down = self.spatial
        parts = [] if up == down else [f"x{up / down:g} spatial"]
        return " + ".join(parts + (["x2 temporal"] if self.temporal else [])) or "none"


@dataclass(frozen=True)
class VideoScale:
    """How many pixel frames / pixels one latent cell spans (LTX-2 VAE: 8, 32, 32)."""

    time: int = 8
    height: int = 32
    width: int = 32


@dataclass(frozen=True)
class AudioTiming:
    """Mel grid of the audio VAE: latent index i covers mel frames [i*downsample, (i+1)*downsample)."""

    sample_rate: int = 16000
    hop_length: int = 160
    latent_downsample: int = 4
    causal: bool = True

    @property
    def latents_per_second(self) -> float:
        return self.sample_rate / self.hop_length / self.latent_downsample


# ------------------------------------------------------------------------------------------------
# Video


def video_latent_size(frames: int, height: int, width: int, scale: VideoScale = VideoScale()) -> tuple[int, int, int]:
    """(F', H', W') of the latent of a ``frames x height x width`` video (floor division, no check)."""
    return (frames - 1) // scale.time + 1, height // scale.height, width // scale.width


def pixel_frames(latent_frames: int, scale: VideoScale = VideoScale()) -> int:
    """Pixel frames a latent of ``latent_frames`` frames decodes to: the first alone, then ``scale.time`` each."""
    return (latent_frames - 1) * scale.time + 1


def size_multiple(scale: VideoScale = VideoScale(), two_stage: bool = False, upscale: Upscale = Upscale()) -> int:
    """What width and height must be multiples of: 32, or for a two-stage run 32 x the upscale numerator (x2: 64,
    x1.5: 96) so stage 1's size is valid and its latent scales exactly."""
    return max(scale.height, scale.width) * (upscale.spatial[0] if two_stage else 1)


def frame_step(scale: VideoScale = VideoScale(), two_stage: bool = False, upscale: Upscale = Upscale()) -> int:
    """Frames are 1 + k x this: 8, or 16 for a two-stage run through the temporal upscaler."""
    return scale.time * (TEMPORAL_FACTOR if two_stage and upscale.temporal else 1)


def floor_frames(frames: int, scale: VideoScale = VideoScale(), two_stage: bool = False, upscale: Upscale = Upscale(),
                 max_frames: int = MAX_FRAMES) -> int:
    """The longest valid frame count (1 + k :func:`frame_step`, at most ``max_frames``) that ``frames`` frames hold: a
    clip's frames as a run takes them (the reference's ``snap_frames_to_grid``); at least 1."""
    step = frame_step(scale, two_stage, upscale)
    return 1 + step * ((max(min(frames, max_frames), 1) - 1) // step)


def reference_frames(frames: int, temporal_scale_factor: int = 1, scale: VideoScale = VideoScale()) -> int:
    """Pixel frames of an IC-LoRA reference video made from ``frames`` frames (at most the guided video's): frame 0
    and every ``temporal_scale_factor``-th after it, cut to the longest 1 + 8k (``sampling.guides.control_frames``;
    the VAE encoder crops the same way)."""
    count = 1 + -(-(max(frames, 1) - 1) // temporal_scale_factor)
    return floor_frames(count, scale, max_frames=count)


def snap_video_size(frames: int, height: int, width: int, scale: VideoScale = VideoScale(),
                    two_stage: bool = False, upscale: Upscale = Upscale()) -> tuple[int, int, int]:
    """Nearest valid (frames, height, width): frames to the nearest 1 + k :func:`frame_step` (ties round up),
    height/width to the nearest multiple of :func:`size_multiple` (ties round up), each at least one step."""
    step = size_multiple(scale, two_stage, upscale)

    def nearest(value: int, step: int, offset: int, minimum: int) -> int:
        return max(minimum, offset + math.floor((value - offset) / step + 0.5) * step)

    return (nearest(frames, frame_step(scale, two_stage, upscale), 1, 1), nearest(height, step, 0, step),
            nearest(width, step, 0, step))


def check_video_size(frames: int, height: int, width: int, scale: VideoScale = VideoScale(),
                     two_stage: bool = False, upscale: Upscale = Upscale()) -> None:
    """Refuse a pixel size the VAE cannot encode or a run cannot generate (module doc), naming the nearest one."""
    step, time = size_multiple(scale, two_stage, upscale), frame_step(scale, two_stage, upscale)
    problems = []
    if frames < 1 or (frames - 1) % time:
        problems.append(f"{frames} frames (must be 1 + {time}*k: 1, {1 + time}, {1 + 2 * time}, ..."
                        + (": the temporal x2 upscaler makes 2F - 1 frames of stage 1's F)" if time != scale.time
                           else ")"))
    for name, value in (("height", height), ("width", width)):
        if value % step or value < step:
            problems.append(f"{name} {value} (must be a positive multiple of {step}"
                            + (f": a two-stage run samples stage 1 at {_fraction(upscale)} size)" if two_stage
                               else ")"))
    if problems:
        f, h, w = snap_video_size(frames, height, width, scale, two_stage, upscale)
        raise InputError(f"video size not supported by LTX-2: {'; '.join(problems)}. "
                         f"Nearest valid size: {w}x{h}, {f} frames.")


def _fraction(upscale: Upscale) -> str:
    up, down = upscale.spatial
    return "half the" if (up, down) == (2, 1) else f"{down}/{up} of the"


def checked_latent_size(frames: int, height: int, width: int, scale: VideoScale = VideoScale()) -> tuple[int, int, int]:
    """(F', H', W') of a valid pixel size (:func:`check_video_size` first)."""
    check_video_size(frames, height, width, scale)
    return video_latent_size(frames, height, width, scale)


def stage1_size(height: int, width: int, scale: VideoScale = VideoScale(), upscale: Upscale = Upscale()
                ) -> tuple[int, int]:
    """(height, width) stage 1 of a two-stage run samples at: the final size / the spatial upscale factor (half for
    x2, 2/3 for x1.5), which must be valid and scale back exactly."""
    step = size_multiple(scale, two_stage=True, upscale=upscale)
    if height % step or width % step or height <= 0 or width <= 0:
        raise InputError(f"a two-stage run with the {upscale.describe()} upscaler needs width and height divisible "
                         f"by {step} (stage 1 runs at {_fraction(upscale)} size); got {width}x{height}.")
    up, down = upscale.spatial
    return height * down // up, width * down // up


def temporal_upscaled_frames(frames: int) -> int:
    """Frames after the temporal x2 upscaler: 2F - 1 (latent frames, hence pixel frames too)."""
    return TEMPORAL_FACTOR * (frames - 1) + 1


def stage1_frames(frames: int, fps: float, upscale: Upscale = Upscale(),
                  scale: VideoScale = VideoScale()) -> tuple[int, float]:
    """(frames, fps) stage 1 of a two-stage run samples: with the temporal upscaler (F + 1) / 2 frames at half the
    frame rate (the same duration; F must be 1 + 16k), else the request's."""
    if not upscale.temporal:
        return frames, fps
    check_video_size(frames, scale.height, scale.width, scale, two_stage=True, upscale=Upscale((1, 1), True))
    return (frames - 1) // TEMPORAL_FACTOR + 1, fps / TEMPORAL_FACTOR


def frames_for_seconds(seconds: float, fps: float, max_frames: int = MAX_FRAMES,
                       scale: VideoScale = VideoScale()) -> int:
    """The 1 + 8k frame count whose duration at ``fps`` is nearest to ``seconds`` (ties: the longer clip).

    A duration whose nearest count is above ``max_frames`` is refused with the longest duration that fits
    (never quietly cut to ``max_frames``). The canvas helper in ``js/lib/shape.js`` (``framesForSeconds``)
    computes the same expression (and clamps the frames widget instead, where the user sees it)."""
    if not (math.isfinite(seconds) and math.isfinite(fps) and seconds > 0 and fps > 0):
        raise InputError(f"seconds ({seconds}) and fps ({fps}) must be positive finite numbers to pick a frame "
                         "count.")
    k = math.floor((seconds * fps - 1) / scale.time + 0.5)
    frames = max(scale.time * max(k, 0) + 1, 1)
    if frames > max_frames:
        longest = max_frames / fps
        raise InputError(f"{seconds:g} s at {fps:g} fps is {frames} frames, more than the {max_frames} frames "
                         f"(1 + {scale.time}*k) LTX-2 generates here; the longest clip at {fps:g} fps is "
                         f"{longest:.2f} s ({max_frames} frames): ask for at most {longest:.2f} s or a lower fps.")
    return frames


def describe_rounding(seconds: float, fps: float, frames: int) -> str | None:
    """A line saying what ``seconds`` became (``frames`` at ``fps``) when the durations differ by more than a
    millisecond, else None: the nodes and the CLI log it, so the change is never silent."""
    if abs(frames / fps - seconds) < 1e-3:
        return None
    return (f"{seconds:g} s at {fps:g} fps -> {frames} frames ({frames / fps:.3f} s), the nearest 1 + 8k frame "
            f"count LTX-2 can generate")


def clamped_frames_for_seconds(seconds: float, fps: float, min_seconds: float = 1.0, max_seconds: float = 20.0,
                               scale: VideoScale = VideoScale()) -> int:
    """The 1 + 8k frame count for a *predicted* duration (the LTX-2.5 duration head's "auto" length).

    As the reference (``ltx_pipelines.utils.helpers.seconds_to_clamped_num_frames`` with the
    ``DurationPredictor`` bounds): ``round(seconds * fps)`` (Python round) clamped to
    ``[round(min_seconds * fps), round(max_seconds * fps)]``, then floored to 1 + 8k; a result below the
    lower bound is snapped up to the next 1 + 8k instead (never above the upper bound). Unlike
    :func:`frames_for_seconds` (a length the user typed: nearest), this floors, as the reference does."""
    if not (fps > 0 and 0 < min_seconds <= max_seconds):
        raise InputError(f"fps ({fps}) must be positive and 0 < min_seconds ({min_seconds}) <= max_seconds "
                         f"({max_seconds}) to snap a predicted duration.")
    low, high = max(round(min_seconds * fps), 1), round(max_seconds * fps)
    raw = min(max(round(float(seconds) * fps), low), high)
    frames = (raw - 1) // scale.time * scale.time + 1
    if frames < low:
        frames = min(-(-(low - 1) // scale.time) * scale.time + 1, high)
    return frames


# ------------------------------------------------------------------------------------------------
# Audio


def audio_latent_frames(frames: int, fps: float, timing: AudioTiming = AudioTiming()) -> int:
    """Audio latents covering ``frames / fps`` seconds: ``round(seconds * latents_per_second)`` like the
    reference (``AudioLatentShape.from_video_pixel_shape``: Python round, half to even, in float64)."""
    return round(float(frames) / float(fps) * timing.latents_per_second)
