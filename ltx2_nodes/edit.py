"""Editing an existing MP4 end to end (``generate --extend-from`` / ``--retake``): read and check the clip, encode
it (tiled video, its sound), sample the extend windows or the retake window, decode and mux the whole clip.

The latent-level steps are ``editing`` (windows, masks, joins); this module adds the file in, the file out and the
pre-check that refuses, before any model loads, a clip or a request that cannot work (what was given, what would
fit, the fix).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from .editing import DEFAULT_OVERLAP_FRAMES, extend_window, join_extension, plan_extend, retake_window
from .errors import InputError
from .generate import GenerateRequest, precheck, request_text, require_parts, write_clip
from .handles import GemmaHandle, LTX2Models
from .latents import AVLatents
from .memory import MemoryEngine
from .memory.selection import default_engine
from .model.shapes import MAX_FRAMES, audio_latent_frames
from .stages import audio_latent_for_clip, encode_video, run_sampler

log = logging.getLogger("ltx2_nodes")

SEGMENT_SECONDS = 5.0  # default length of one extend segment (each is a window of the same size: flat memory)


@dataclass(frozen=True)
class ClipEdit:
    """What to do to ``source``: extend it by ``extend_seconds`` in segments of at most ``segment_seconds`` (each
    keeping ``overlap`` latent frames), and/or regenerate ``retake`` = (start, end) seconds of its video/audio."""

    source: Path
    extend_seconds: float = 0.0
    segment_seconds: float = SEGMENT_SECONDS
    overlap: int = DEFAULT_OVERLAP_FRAMES
    retake: tuple[float, float] | None = None
    retake_video: bool = True
    retake_audio: bool = True


def parse_window(text: str) -> tuple[float, float]:
    """``"2.0-4.5"`` -> (2.0, 4.5) seconds; refused with the expected form otherwise."""
    start, sep, end = text.partition("-")
    try:
        window = (float(start), float(end))
    except ValueError:
        window = None
    if not sep or window is None or not 0 <= window[0] < window[1]:
        raise InputError(f"--retake {text!r}: expected START-END in seconds with 0 <= START < END, e.g. 2.0-4.5.")
    return window


def check_source(edit: ClipEdit) -> tuple[int, int, int, float]:
    """The clip's (frames, height, width, fps) from its header, refused unless the VAE encodes it as is (official
    retake: 8k+1 frames, sides multiples of 32) and it has sound, and unless the edit fits it."""
    from .media.mux import probe

    if not edit.source.is_file():
        raise InputError(f"{edit.source}: no such file; give the MP4 to edit.")
    info = probe(edit.source)
    frames, height, width, fps = info.video_frames, info.height, info.width, float(info.fps)
    fits = (1 + (frames - 1) // 8 * 8, height // 32 * 32, width // 32 * 32)
    if (frames, height, width) != fits or not info.audio_codec:
        what = "has no audio stream" if not info.audio_codec else f"is {frames} frames of {width}x{height}"
        raise InputError(f"{edit.source} {what}; an edited clip needs 8k+1 frames, sides multiples of 32 and sound: "
                         f"{fits[0]} frames of {fits[2]}x{fits[1]} fit. Trim it (e.g. ffmpeg -frames:v {fits[0]} "
                         f"-vf crop={fits[2]}:{fits[1]}) and keep its audio track.")
    length = frames / fps
    if edit.retake is not None and edit.retake[0] >= length:
        raise InputError(f"--retake {edit.retake[0]:g}-{edit.retake[1]:g}: the clip is {length:.2f} s long; choose "
                         f"a window inside 0-{length:.2f}.")
    if edit.extend_seconds > 0:
        longest = (MAX_FRAMES - 1 - 8 * edit.overlap) / fps
        if edit.segment_seconds > longest:
            raise InputError(f"--segment-seconds {edit.segment_seconds:g}: one segment holds at most {MAX_FRAMES} "
                             f"frames with its overlap; use at most {longest:.2f} s per segment.")
        if not 1 <= edit.overlap < (frames - 1) // 8 + 1:
            raise InputError(f"--overlap {edit.overlap}: the clip has {(frames - 1) // 8 + 1} latent frames; keep 1 "
                             f"to {(frames - 1) // 8} of them.")
    return frames, height, width, fps


def encode_clip(ltx2: LTX2Models, edit: ClipEdit, fps: float, engine: MemoryEngine) -> AVLatents:
    """The source's frames (tiled encode) and sound as one latent clip."""
    from .media.mux import read_video

    images, sound, _ = read_video(edit.source)
    video = encode_video(ltx2.video_vae, images, engine)
    frames = images.shape[0]
    steps = audio_latent_frames(frames, fps, ltx2.audio_vae.timing)
    audio = audio_latent_for_clip(ltx2.audio_vae, sound, 0.0, frames / fps, steps, engine)
    return AVLatents(video, audio, fps, video_scale=ltx2.video_vae.scale, audio_timing=ltx2.audio_vae.timing)


def edit_clip(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, edit: ClipEdit, out_path: str | Path,
              engine: MemoryEngine | None = None) -> Path:
    """Extend and/or retake ``edit.source`` with ``request``'s prompt, preset and seed (single stage at the clip's
    size; segment ``i`` of an extend samples with seed + i); writes the whole clip to ``out_path``."""
    engine = engine if engine is not None else default_engine()
    frames, height, width, fps = check_source(edit)
    request = dataclasses.replace(request.for_model(ltx2), fps=fps, two_stage=False)
    require_parts(ltx2, images=True, audio=True)
    if edit.extend_seconds <= 0:  # a retake encodes, samples and decodes the clip at its size: check it all first
        precheck(ltx2, gemma, dataclasses.replace(request, width=width, height=height, frames=frames), engine,
                 encode_video=True)
    positive, negative = request_text(ltx2, gemma, request, engine)
    settings = request.stage1_settings()
    clip = encode_clip(ltx2, edit, fps, engine)
    if edit.retake is not None:
        marked = retake_window(clip, *edit.retake, video=edit.retake_video, audio=edit.retake_audio)
        clip = dataclasses.replace(run_sampler(ltx2.dit, positive, marked, settings, engine, negative=negative),
                                   video_mask=None, audio_mask=None)
    remaining, segment = edit.extend_seconds, 0
    while remaining > 1e-9:
        seconds = min(edit.segment_seconds, remaining)
        window = extend_window(clip, plan_extend(clip, seconds, edit.overlap))
        segment_settings = dataclasses.replace(settings, seed=settings.seed + segment)
        sampled = run_sampler(ltx2.dit, positive, window, segment_settings, engine, negative=negative)
        clip = join_extension(clip, sampled)
        log.info("extend: segment %d done, the clip is now %.2f s", segment + 1,
                 clip.video_grid().pixel_frames / fps)
        remaining -= seconds
        segment += 1
    grid = clip.video_grid()
    edited = {"source": edit.source.name, "extend_seconds": edit.extend_seconds,
              "retake": list(edit.retake) if edit.retake else None}
    described = {**request.describe(), "width": grid.width * grid.scale.width,
                 "height": grid.height * grid.scale.height, "frames": grid.pixel_frames, "edit": edited}
    return write_clip(ltx2, clip, out_path, fps, {"ltx2_generate": described, **request.metadata}, engine,
                      request.tiling)
