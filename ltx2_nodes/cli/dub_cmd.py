"""``generate --dub CLIP``: Dub-It (lip-dub / re-voicing) in one command, as the reference ``DubItPipeline``.

The clip's frames guide both stages through the Dub-It IC-LoRA (``--ic-lora``, in both stages), its sound (or
``--reference-audio``) is the voice, the prompt says the new words; ``generate.sample_stages`` runs it with the
node graph's semantics (docs/DUBIT.md). Here: the options, what contradicts them, and the clip's size, length and
frame rate as the run's where none is given, all checked before any model loads (exit 2 with the fix).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..model.shapes import floor_frames, size_multiple, stage1_size
from ..sampling.guides import ControlVideo, guide_pixel_size, reference_scale_factors
from ..sampling.reference_audio import check_reference_length
from .common import load_clip
from .workflow import UsageError

log = logging.getLogger("ltx2_nodes")
DUBIT_LORA = "ltx-2.3-22b-ic-lora-dubit-0.9.safetensors"  # Lightricks/LTX-2.3-22b-IC-LoRA-DubIt
DEFAULTS = {"width": 1536, "height": 1024, "fps": 24.0}  # generate's size and rate when neither given nor dubbed

# (option, what it is given as, why it does not combine with --dub): the official recipe is the distilled two-stage
# run with the clip as the only control and new speech generated
CONFLICTS = (
    ("control_video", "--control-video", "the clip itself is Dub-It's control video"),
    ("audio", "--audio", "keeps a soundtrack, while Dub-It generates new speech (give the voice with "
                         "--reference-audio)"),
    ("audio_only", "--audio-only", "generates sound alone"),
    ("video_to_audio", "--video-to-audio", "keeps the frames and generates only sound"),
    ("extend_from", "--extend-from", "edits a clip (Dub-It re-voices the whole clip)"),
    ("retake", "--retake", "edits a window of a clip (Dub-It re-voices the whole clip)"),
    ("retake_from", "--retake-from", "edits a window of a clip (Dub-It re-voices the whole clip)"),
    ("single_stage", "--single-stage", "samples one stage; Dub-It is the official two-stage recipe (both stages "
                                       "reference the clip)"),
    ("temporal_upscaler", "--temporal-upscaler", "samples stage 1 at half the frames; Dub-It keeps the clip's"),
    ("keyframes", "--keyframes", "generates LTX-2.5 keyframes; Dub-It runs the LTX-2.3 distilled recipe"),
)


def add_options(p) -> None:
    dub = p.add_argument_group("Dub-It: re-voice and lip-sync a clip (LTX-2.3 with the Dub-It IC-LoRA; docs/DUBIT.md)")
    dub.add_argument("--dub", metavar="CLIP", help="the video to re-voice (with its sound): its frames guide both "
                     f"stages, its sound is the voice; needs --ic-lora (the Dub-It LoRA, {DUBIT_LORA}); the prompt "
                     "says the new words. Size, length and fps default to the clip's (sides floored to the "
                     "two-stage multiple, frames to 1 + 8k)")
    dub.add_argument("--reference-audio", metavar="AUDIO", help="--dub: speak in this recording's voice instead of "
                     "the clip's own sound")


@dataclass
class DubInputs:
    """What ``--dub`` hands ``generate``: the clip as the control of both stages, the voice, the clip's frame count."""

    control: ControlVideo
    voice: dict
    clip_frames: int


def fill_defaults(args) -> None:
    """A run without ``--dub``: the size and frame rate not given are generate's defaults (returns None: no
    Dub-It inputs)."""
    for name, value in DEFAULTS.items():
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name))


def resolve(args, upscale, ic_loras: list) -> DubInputs:
    """The Dub-It inputs of ``args`` (``upscale``: what the upscaler does, ``ic_loras``: ``[(LoRA, strength)]`` of
    ``--ic-lora``), the ``--dub`` clip read now. Sets ``args.width`` / ``height`` / ``fps`` / ``mode``
    where not given: the clip's sides floored to the multiple the two-stage run and the LoRA's reference scale
    need, its frame rate, its frame count floored to 1 + 8k, the distilled recipe (:func:`check_length` refuses a
    longer request once ``--seconds`` is counted)."""
    clip = load_clip(Path(args.dub).expanduser(), "--dub")
    downscale, _ = reference_scale_factors([lora for lora, _ in ic_loras])
    step = size_multiple(two_stage=True, upscale=upscale) * downscale
    clip_height, clip_width = clip.images.shape[1:3]
    height = args.height if args.height is not None else step * (clip_height // step)
    width = args.width if args.width is not None else step * (clip_width // step)
    if min(height, width) < step:
        raise UsageError(f"--dub {args.dub}: the clip is {clip_width}x{clip_height}; a two-stage Dub-It run with "
                         f"this IC-LoRA needs sides of at least {step} pixels (give --width / --height, or a larger "
                         "clip).")
    try:  # the guide's size at both stages (the reference's rule), before any model loads
        first = stage1_size(height, width, upscale=upscale)
        guide_pixel_size(*first, downscale)
        guide_pixel_size(height, width, downscale)
    except InputError as exc:
        raise UsageError(f"--dub at {width}x{height} (stage 1 at {first[1]}x{first[0]}) with an IC-LoRA of reference "
                         f"downscale factor {downscale}: {exc} Multiples of {step} always work.") from None
    args.width, args.height = width, height
    args.fps = args.fps if args.fps is not None else float(clip.frame_rate)
    if args.frames is None and args.seconds is None:  # the whole clip, floored to 1 + 8k (at most MAX_FRAMES)
        args.frames = floor_frames(clip.images.shape[0], two_stage=True, upscale=upscale)
    args.mode = "distilled" if args.mode == "auto" else args.mode
    voice = _voice(args, clip)
    strength, attention = args.control_strength, args.control_attention
    return DubInputs(ControlVideo(clip.images, strength, attention, stage2=True), voice, clip.images.shape[0])


def refuse_conflicts(args) -> None:
    """Refuse (exit 2) what ``--dub`` cannot run with, naming the option; ``--reference-audio`` without ``--dub``."""
    if not args.dub:
        if args.reference_audio:
            raise UsageError("--reference-audio is the voice of a Dub-It run: add --dub CLIP (the video to "
                             "re-voice) and --ic-lora (the Dub-It LoRA), or drop --reference-audio.")
        return
    for name, option, why in CONFLICTS:
        if getattr(args, name, None):
            raise UsageError(f"--dub does not combine with {option}: {option} {why}. Drop {option}.")
    if args.frames == "auto":
        raise UsageError("--dub takes the clip's length (or --frames N / --seconds S up to it); --frames auto is "
                         "LTX-2.5's predicted length. Drop --frames auto.")
    if args.mode in ("dev", "hq"):
        raise UsageError(f"--dub runs the distilled two-stage recipe, as the official Dub-It pipeline (distilled "
                         f"checkpoint only); --mode {args.mode} does not apply. Use --mode distilled (or auto) with "
                         "the distilled checkpoint.")
    if not args.ic_lora:
        raise UsageError(f"--dub needs the Dub-It IC-LoRA, applied in both stages: add --ic-lora NAME (a file in "
                         f"loras/, e.g. {DUBIT_LORA} from Lightricks/LTX-2.3-22b-IC-LoRA-DubIt).")


def check_length(dub: DubInputs, args, frames: int) -> None:
    """Refuse a requested length (``frames``) the clip does not have; log what the run takes from the clip."""
    fits = floor_frames(dub.clip_frames, two_stage=True)
    if frames > dub.clip_frames:
        raise UsageError(f"--dub {args.dub}: {frames} frames asked, the clip has {dub.clip_frames}; ask for at most "
                         f"{fits} (--frames {fits}) or leave the length out to take the clip's.")
    log.info("--dub %s: %dx%d, %d frames at %g fps (the clip: %d frames; sizes and lengths not given are the clip's, "
             "sides floored to the two-stage multiple, frames to 1 + 8k)", Path(args.dub).name, args.width,
             args.height, frames, args.fps, dub.clip_frames)


def _voice(args, clip) -> dict:
    """The reference speech: ``--reference-audio``, else the clip's own sound; refused when absent or too short."""
    if args.reference_audio:
        from ..media.audio_io import load_audio_file

        path = Path(args.reference_audio).expanduser()
        if not path.is_file():
            raise UsageError(f"--reference-audio {path}: no such file; name an audio file (WAV, FLAC, MP3, M4A) or "
                             "a video with sound.")
        try:
            voice, what = load_audio_file(path), f"--reference-audio {path}"
        except InputError as exc:
            raise UsageError(f"--reference-audio {path}: {exc}") from None
    elif clip.audio is None:
        raise UsageError(f"--dub {args.dub}: the clip has no audio track, so there is no voice to keep; give the "
                         "voice with --reference-audio AUDIO (a recording of the speaker), or a clip with sound.")
    else:
        voice, what = clip.audio, f"the sound of --dub {args.dub}"
    try:
        check_reference_length(voice, what=what)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    return voice
