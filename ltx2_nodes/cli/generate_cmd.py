"""``generate``: text (+ image / audio) -> MP4 in one command, through the same stage functions as the nodes."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..model.shapes import MAX_FRAMES, floor_frames
from .common import (add_engine_options, apply_engine_options, load_clip, nonnegative_float, nonnegative_int,
                     positive_float, positive_int, unit_float, writable_folder)
from . import dub_cmd
from .workflow import UsageError

HELP = ("generate one video with sound from a prompt (optionally conditioned on an image or an audio file) and "
        "write an MP4; models come from --models-dir like ComfyUI's folders")

# Preferred files when --checkpoint / --gemma / --upscaler are not given (first one present wins).
RELEASED = {
    "checkpoints": ("ltx-2-19b-distilled-fp8.safetensors", "ltx-2-19b-distilled.safetensors",
                    "ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-dev.safetensors"),
    "text_encoders": ("gemma_3_12B_it.safetensors", "gemma_3_12B_it_fp8_scaled.safetensors", "gemma-3-12b-it",
                      "gemma-3-12b-it-qat-q4_0-unquantized"),
    "latent_upscale_models": ("ltx-2-spatial-upscaler-x2-1.0.safetensors",),
    "loras": ("ltx-2-19b-distilled-lora-384.safetensors",),
}
# LTX-2.3 (Lightricks/LTX-2.3): same Gemma; its own upscaler and distilled LoRA, picked for a 2.3 checkpoint
RELEASED_23 = {
    "checkpoints": ("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-dev.safetensors"),
    "text_encoders": RELEASED["text_encoders"],
    "latent_upscale_models": ("ltx-2.3-spatial-upscaler-x2-1.1.safetensors",),
    "loras": ("ltx-2.3-22b-distilled-lora-384-1.1.safetensors",),
}
# LTX-2.5 (split files): the transformer in diffusion_models brings its text encoder, VAEs and duration head from
# the model folders (loading.split); its own upscaler and distilled LoRA
RELEASED_25 = {
    "diffusion_models": ("ltx-2.5-22b-distilled-transformer-bf16.safetensors",
                         "ltx-2.5-22b-dev-transformer-bf16.safetensors"),
    "text_encoders": ("gemma4-12b-with-proj-ltx-2.5-bf16.safetensors",),
    "latent_upscale_models": ("ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",),
    "loras": ("ltx-2.5-22b-distilled-lora-450-bf16.safetensors",),
}
_RELEASES = {"2.3": RELEASED_23, "2.5": RELEASED_25}


def add_parser(p) -> None:
    p.add_argument("--prompt", required=True, help="what to generate (describe sound too: speech, music, ambience)")
    p.add_argument("--negative", help="negative prompt for the dev model's text CFG (default: the reference's)")
    p.add_argument("--enhance", action="store_true", help="expand the prompt with Gemma first (seeded)")
    p.add_argument("--image", metavar="PATH", help="condition on this image (first frame unless --image-frame)")
    p.add_argument("--image-frame", type=nonnegative_int, default=0,
                   help="pixel frame the image is pinned at (default 0)")
    p.add_argument("--image-strength", type=unit_float, default=1.0, help="1 = keep exactly, lower = looser")
    p.add_argument("--control-video", metavar="PATH",
                   help="IC-LoRA control: guide stage 1 with this video (depth / pose / edge maps or any reference, "
                        "as the IC-LoRA was trained); needs --ic-lora")
    p.add_argument("--ic-lora", action="append", default=[], metavar="NAME[:STRENGTH]",
                   help="the IC-LoRA for --control-video (stage 1 only, as the official IC-LoRA pipeline) or --dub "
                        "(both stages)")
    p.add_argument("--control-strength", type=unit_float, default=1.0,
                   help="1 = the reference (control video, --dub's clip) stays clean")
    p.add_argument("--control-attention", type=unit_float, default=1.0,
                   help="conditioning attention strength: 1 = full influence of the control video, 0 = none")
    p.add_argument("--audio", metavar="PATH", help="keep this soundtrack and generate video for it (audio-to-video)")
    p.add_argument("--audio-start", type=nonnegative_float, default=0.0, metavar="SECONDS",
                   help="where the soundtrack starts")
    sound = p.add_mutually_exclusive_group()
    sound.add_argument("--audio-only", action="store_true",
                       help="text to audio: sound alone, on the DiT's audio stream (the video weights are never "
                            "loaded); --out names a .flac/.wav/.mp3/.m4a file or a folder (LTX2_00001_.flac)")
    sound.add_argument("--video-to-audio", metavar="PATH",
                       help="a soundtrack for this video: its frames are kept (seen at its own size, cut to 8k+1 "
                            "frames, its frame rate) and the MP4 holds the original frames with the new sound")
    edit = p.add_argument_group("editing an existing clip (an MP4 with sound: 8k+1 frames, sides multiples of 32)")
    edit.add_argument("--extend-from", metavar="CLIP", help="continue this clip by --seconds (its sound carried on); "
                      "the output is the whole clip")
    edit.add_argument("--segment-seconds", type=positive_float, default=5.0,
                      help="extend in segments of at most this many seconds (same memory for each; default 5)")
    edit.add_argument("--overlap", type=positive_int, default=2,
                      help="latent frames (8 pixel frames each) kept from the clip's end per segment (default 2)")
    edit.add_argument("--retake", metavar="START-END", help="regenerate this window in seconds, e.g. 2.0-4.5")
    edit.add_argument("--retake-from", metavar="CLIP", help="the clip --retake edits (default: --extend-from)")
    edit.add_argument("--retake-only", choices=("both", "video", "audio"), default="both",
                      help="what --retake regenerates (default both)")
    p.add_argument("--width", type=positive_int, default=None,
                   help="final width (two-stage: multiple of 64; default 1536, --dub: the clip's)")
    p.add_argument("--height", type=positive_int, default=None, help="final height (default 1024, --dub: the clip's)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=frames_or_auto, default=None,
                        help=f"8k+1 frames, at most {MAX_FRAMES} (default 121, --dub: the clip's); auto: the length "
                             "the LTX-2.5 duration head predicts for the prompt")
    length.add_argument("--seconds", type=positive_float, default=None,
                        help=f"duration; becomes the nearest 8k+1 frames (at most {MAX_FRAMES})")
    p.add_argument("--fps", type=positive_float, default=None, help="frame rate (default 24, --dub: the clip's)")
    p.add_argument("--keyframes", type=keyframes_request, default=0, metavar="N|F1,F2",
                   help="LTX-2.5: also generate N evenly spaced standalone keyframes (or at these pixel frames), "
                        "written to <name>_keyframes.mp4 beside the video")
    p.add_argument("--seed", type=nonnegative_int, default=10)
    p.add_argument("--mode", choices=("auto", "distilled", "dev", "hq"), default="auto",
                   help="distilled: its fixed list, no guidance; dev: --steps with the reference's multimodal "
                        "guidance; hq: the reference's two-stage HQ recipe on the dev model (res_2s, 15 steps, "
                        "STG off, the distilled LoRA at 0.25 in stage 1 and 0.5 in stage 2); auto: dev or distilled "
                        "from the checkpoint's file name")
    p.add_argument("--steps", type=positive_int, default=None, help="dev / hq stage-1 steps (default: the "
                                                           "preset's, see sampling/recipe.py)")
    p.add_argument("--sampler", default=None, help="stage-1 sampler: euler, euler_ancestral or res_2s (checked by "
                   "sampling.loop; default: the preset's, euler_ancestral for LTX-2.5 distilled, else euler)")
    _add_stage_options(p)
    dub_cmd.add_options(p)
    p.add_argument("--checkpoint", help="file in checkpoints/, or an LTX-2.5 transformer in diffusion_models/ (its "
                   "other files are found in the model folders; default: the first released file found)")
    p.add_argument("--gemma", help="file or folder in text_encoders/ (default: Gemma 3 12B as released; LTX-2.5: the "
                   "text encoder of its split pack)")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:STRENGTH]", help="LoRA for every stage")
    p.add_argument("--stage2-lora", action="append", default=None, metavar="NAME[:STRENGTH]",
                   help="LoRA for the refine stage only (dev default: the distilled LoRA at the recipe's "
                        "stage-2 strength when present)")
    p.add_argument("--weight-dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto")
    p.add_argument("--fp8", choices=("as stored", "upcast on load", "cast bf16 to fp8"), default="as stored")
    p.add_argument("--compile", action="store_true",
                   help="run the DiT blocks through torch.compile (first step of each stage compiles; needs a C++ "
                        "compiler on CPU, Triton on GPU)")
    p.add_argument("--models-dir", metavar="DIR", help="ComfyUI-style models folder (default $LTX2_MODELS_DIR)")
    p.add_argument("--out", metavar="PATH", default="output",
                   help="output .mp4 file or folder (default ./output, named LTX2_00001_.mp4, ...)")
    add_engine_options(p)


def _add_stage_options(p) -> None:
    """The two-stage options: single stage, the upscalers between the stages, stage 2 in tiles."""
    p.add_argument("--single-stage", action="store_true", help="sample at the final size (no x2 upscale + refine)")
    p.add_argument("--refine-tiles", default=None, metavar="auto|N|RxC",
                   help="refine stage 2 tile by tile with blended overlaps (memory of one tile; 1080p and up): "
                        "auto (the whole frame up to a 1280x704 area, else tiles of at most that area, more if the "
                        "memory budget needs it), N (N x N), rows x columns such as 2x3, or 2x3x2 to tile time "
                        "too (default: untiled)")
    p.add_argument("--refine-tile-positions", choices=("grid", "tile"), default="grid",
                   help="grid: every refine tile keeps its true positions; tile: each tile's positions start at 0 "
                        "(the reference's choice; keeps frames wider than the trained 2048 px in range)")
    p.add_argument("--upscaler", help="file in latent_upscale_models/ (default: the released x2 upscaler; x1.5: "
                   "stage 1 at 2/3 of the size, sides multiples of 96)")
    p.add_argument("--temporal-upscaler", metavar="NAME", help="temporal x2 upscaler in latent_upscale_models/ after "
                   "the spatial one: stage 1 at (F + 1) / 2 frames and half the fps (--frames 1 + 16k)")


def frames_or_auto(value: str) -> int | str:
    """``--frames``: a positive frame count, or "auto" (the LTX-2.5 duration head's prediction)."""
    return "auto" if value.strip().lower() == "auto" else positive_int(value)


def keyframes_request(value: str) -> int | tuple[int, ...]:
    """``--keyframes``: a count ("2") or pixel frames ("24,60")."""
    import argparse

    parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a count or pixel frames like 24,60") from None
    if not numbers or min(numbers) < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a count >= 0 or pixel frames >= 0, e.g. 2 or 24,60")
    return numbers[0] if len(numbers) == 1 and "," not in value else tuple(numbers)


def _pick(folder: str, name: str | None, required: bool = True, family: str = "2.0") -> Path | None:
    """``name`` in ``folder``, else the first released file present (``family``'s release: "2.0", "2.3" or "2.5";
    a checkpoint of any: single files in checkpoints/, LTX-2.5 transformers in diffusion_models/), else the
    folder's only file."""
    from .. import paths
    from ..nodes.common import find_checkpoint

    if name:
        return find_checkpoint(name) if folder == "checkpoints" else paths.find_model(folder, name)
    released = _RELEASES.get(family, RELEASED)[folder]
    if folder == "checkpoints":
        released = RELEASED[folder] + RELEASED_23[folder]
        transformers = [n for n in RELEASED_25["diffusion_models"] if _exists("diffusion_models", n)]
        if transformers and not any(_exists(folder, n) for n in released):
            return paths.find_model("diffusion_models", transformers[0])
    present = [n for n in released if _exists(folder, n)]
    if present:
        return paths.find_model(folder, present[0])
    if not required:
        return None
    available = paths.list_models(folder)
    if folder == "text_encoders":
        from ..nodes.common import text_encoder_names

        available = [n for n in text_encoder_names() if family == "2.5" or not _is_packed_25(n)]
    if folder == "checkpoints":
        from ..nodes.common import checkpoint_names

        available = checkpoint_names()
    if len(available) == 1:
        return find_checkpoint(available[0]) if folder == "checkpoints" else paths.find_model(folder, available[0])
    option = {"checkpoints": "--checkpoint", "text_encoders": "--gemma", "latent_upscale_models": "--upscaler"}[folder]
    listed = ", ".join(available) if available else "none"
    raise UsageError(f"no {folder} file chosen and none of the released names {list(RELEASED[folder])} found in "
                     f"{', '.join(str(p) for p in paths.model_folders(folder)) or 'no models folder'} "
                     f"(available: {listed}); pass {option} NAME or --models-dir DIR")


def _is_packed_25(name: str) -> bool:
    """Whether text encoder ``name`` is an LTX-2.5 packed file (Gemma 4 + projection), which only 2.5 models use."""
    from ..errors import CheckpointError
    from ..loading.safetensors_file import SafetensorsFile
    from ..loading.split import SPLIT_KINDS
    from ..nodes.common import find_text_encoder

    path = find_text_encoder(name)
    try:
        return path.is_file() and SPLIT_KINDS["text_encoder"].recognise(SafetensorsFile(path))
    except (CheckpointError, OSError):  # not a readable safetensors file (a GGUF, a folder): not a 2.5 pack
        return False


def _exists(folder: str, name: str) -> bool:
    from .. import paths
    from ..errors import ModelNotFoundError

    try:
        paths.find_model(folder, name)
        return True
    except ModelNotFoundError:
        return False


def _loras(specs: list[str]):
    from .. import paths
    from ..handles import load_lora_file

    loras = []
    for spec in specs:
        name, _, strength = spec.partition(":")
        try:
            value = float(strength) if strength else 1.0
        except ValueError:
            raise UsageError(f"--lora {spec}: strength {strength!r} is not a number (use NAME:0.8)") from None
        loras.append((load_lora_file(paths.find_model("loras", name)), value))
    return loras


def _out_path(out: str) -> Path:
    """The MP4 to write, its folder known to be writable (checked before anything loads)."""
    from .. import paths

    target = Path(out).expanduser()
    if target.suffix.lower() == ".mp4" and not target.is_dir():
        writable_folder(target.parent, "--out")
        return target
    paths.configure(output_dir=str(writable_folder(target, "--out")))
    return paths.next_output_file("LTX2", "mp4").path


def _frames(args) -> int | None:
    """The frame count the options ask for, refused (nearest valid values named) unless the pack can make
    exactly it at the requested size; a duration rounded to 8k+1 frames is logged. None: "auto"."""
    import logging

    from ..model.shapes import check_video_size, describe_rounding, frames_for_seconds

    upscale = _upscale(args)
    if args.frames == "auto":
        if upscale.temporal:
            raise UsageError("--frames auto with --temporal-upscaler: a predicted length need not be 1 + 16k "
                             "frames; give --frames or --seconds")
        if args.image and args.image_frame > 0:
            raise UsageError("--image-frame with --frames auto: the length is not known before the prompt is "
                             "encoded; pin the image at frame 0 or give --frames")
        try:
            check_video_size(1, args.height, args.width, two_stage=not args.single_stage, upscale=upscale)
        except InputError as exc:
            raise UsageError(f"--width {args.width} --height {args.height}: {exc}") from None
        return None
    frames = 121 if args.frames is None else args.frames
    if args.seconds is not None:
        try:
            frames = frames_for_seconds(args.seconds, args.fps)
        except InputError as exc:
            raise UsageError(f"--seconds {args.seconds:g}: {exc}") from None
        rounding = describe_rounding(args.seconds, args.fps, frames)
        if rounding:
            logging.getLogger("ltx2_nodes").info("--seconds %s", rounding)
    if frames > MAX_FRAMES:
        raise UsageError(f"--frames {frames}: at most {MAX_FRAMES} frames ({MAX_FRAMES / args.fps:.2f} s at "
                         f"{args.fps:g} fps); ask for fewer")
    try:
        check_video_size(frames, args.height, args.width, two_stage=not args.single_stage, upscale=upscale)
    except InputError as exc:
        raise UsageError(f"--width {args.width} --height {args.height} --frames {frames}: {exc}"
                         + ("" if args.single_stage else " (--single-stage samples at the size itself: multiples "
                            "of 32)")) from None
    if args.image and args.image_frame >= frames:
        raise UsageError(f"--image-frame {args.image_frame}: the video has frames 0..{frames - 1}; pin the image "
                         f"at one of them")
    return frames


def _upscale(args):
    """What the chosen upscalers do (``model.shapes.Upscale``), from the files' headers before anything loads:
    ``--upscaler``'s factor (default: the released x2) and whether ``--temporal-upscaler`` follows."""
    from .. import paths
    from ..loading.components import read_upsampler_config
    from ..loading.safetensors_file import SafetensorsFile
    from ..model.shapes import Upscale

    if args.single_stage:
        if args.temporal_upscaler or args.mode == "hq":
            raise UsageError(("--temporal-upscaler" if args.temporal_upscaler else "--mode hq") + " belongs to a "
                             "two-stage run (the refine stage follows the upscalers); drop --single-stage")
        return Upscale()
    spatial = (read_upsampler_config(SafetensorsFile(paths.find_model("latent_upscale_models", args.upscaler)))
               .upscale.spatial if args.upscaler else Upscale().spatial)
    return Upscale(spatial, bool(args.temporal_upscaler))


SOUND_FORMATS = (".flac", ".wav", ".mp3", ".m4a")


def _sound_request(args) -> tuple[Path, object | None]:
    """``--audio-only`` / ``--video-to-audio``: the output path and the clip's frames (None for text to audio), the
    options that contradict a sound-only run, the clip's length and size refused (exit 2) before any model
    loads. Sets ``args.frames`` / ``fps`` / ``width`` / ``height`` to what the run samples."""
    from .. import paths

    flag = "--audio-only" if args.audio_only else "--video-to-audio"
    for given, option, why in ((args.image, "--image", "conditions a generated video"),
                               (args.control_video, "--control-video", "guides a generated video"),
                               (args.audio, "--audio", "keeps a soundtrack and generates the video")):
        if given:
            raise UsageError(f"{flag} generates the sound; {option} {why}. Drop one of them.")
    if args.audio_only:
        frames = _frames(_namespace_with(args, width=512, height=512, single_stage=True))
        target = Path(args.out).expanduser()
        if target.suffix.lower() in SOUND_FORMATS:
            writable_folder(target.parent, "--out")
        elif target.suffix:
            raise UsageError(f"--out {args.out}: --audio-only writes audio; name a {'/'.join(SOUND_FORMATS)} file "
                             "or a folder.")
        else:
            paths.configure(output_dir=str(writable_folder(target, "--out")))
            target = paths.next_output_file("LTX2", "flac").path
        args.frames, args.seconds = frames, None
        return target, None
    video = load_clip(Path(args.video_to_audio).expanduser())
    args.fps = float(video.frame_rate)
    available = video.images.shape[0]
    fits = floor_frames(available)
    frames = fits if args.frames is None and args.seconds is None else _frames(
        _namespace_with(args, width=512, height=512, single_stage=True))
    if frames > available:
        raise UsageError(f"--video-to-audio {args.video_to_audio}: {frames} frames asked, the video has {available} "
                         f"at {args.fps:g} fps; ask for at most {fits} (--frames {fits}) or leave the length out.")
    height, width = (32 * (side // 32) for side in video.images.shape[1:3])
    if min(height, width) < 32:
        raise UsageError(f"--video-to-audio {args.video_to_audio}: the video is {video.images.shape[2]}x"
                         f"{video.images.shape[1]}; the model needs at least 32x32 pixels.")
    args.frames, args.seconds, args.width, args.height = frames, None, width, height
    return _out_path(args.out), video.images[:frames]


def _namespace_with(args, **changes):
    import argparse

    return argparse.Namespace(**{**vars(args), **changes})


def _control(args):
    """``--control-video`` as a ``ControlVideo`` (None without it), refused without its IC-LoRA or in a run it does
    not guide, before any model loads."""
    from ..sampling.guides import ControlVideo

    if not args.control_video:
        if args.ic_lora and not args.dub:
            raise UsageError("--ic-lora guides with a control video: add --control-video PATH.")
        return None
    if not args.ic_lora:
        raise UsageError("--control-video needs the IC-LoRA trained for that kind of control: add --ic-lora NAME "
                         "(a file in loras/, e.g. ltx-2.3-22b-ic-lora-union-control-ref0.5.safetensors).")
    clip = load_clip(Path(args.control_video).expanduser(), "--control-video")
    return ControlVideo(clip.images, args.control_strength, args.control_attention)


def _edit(args):
    """The ``ClipEdit`` the editing options ask for (None without them), checked before anything loads."""
    from ..edit import ClipEdit, check_source, parse_window

    source = args.retake_from or args.extend_from
    if source is None:
        if args.retake:
            raise UsageError("--retake needs the clip: add --retake-from CLIP (or --extend-from CLIP).")
        return None
    if args.retake_from and args.extend_from and Path(args.retake_from) != Path(args.extend_from):
        raise UsageError("--retake-from and --extend-from name different clips; edit one clip per run.")
    if args.frames is not None or (args.seconds is None and args.extend_from):
        raise UsageError("--extend-from takes the clip's size and frame rate and extends it by --seconds N "
                         "(e.g. --seconds 10); --frames does not apply" if args.extend_from else
                         "--retake keeps the clip's length: --frames does not apply.")
    if args.image or args.audio or args.control_video:
        raise UsageError("--image / --audio / --control-video do not combine with --extend-from / --retake.")
    edit = ClipEdit(Path(source).expanduser().resolve(), extend_seconds=args.seconds if args.extend_from else 0.0,
                    segment_seconds=args.segment_seconds, overlap=args.overlap,
                    retake=parse_window(args.retake) if args.retake else None,
                    retake_video=args.retake_only != "audio", retake_audio=args.retake_only != "video")
    check_source(edit)
    return edit


def _lora_specs(specs: list[str] | None, mode: str, two_stage: bool, family: str) -> tuple[list[str], list[str]]:
    """(stage-1, stage-2) LoRA specs of the recipe. Stage 2: ``--stage2-lora`` as given, else for a dev or HQ
    two-stage run the family's distilled LoRA at the recipe's stage-2 strength when it is in loras/ (a dev run
    warns when not); HQ also puts it in stage 1 at its stage-1 strength and refuses to run without it."""
    import logging

    from ..sampling.recipe import recipe_for

    first, second = recipe_for(family).stage_lora_strengths(mode)
    if mode not in ("dev", "hq") or not two_stage:
        return [], specs or []
    lora = _pick("loras", None, required=False, family=family)
    released = _RELEASES.get(family, RELEASED)["loras"][0]
    if lora is None and mode == "hq":
        raise UsageError(f"--mode hq puts the distilled LoRA in both stages; {released} is not in loras/ (put it "
                         "there, or use --mode dev)")
    if lora is None and specs is None:
        logging.getLogger("ltx2_nodes").warning(
            "dev two-stage run without %s in loras/: stage 2 refines with the distilled schedule on the dev weights "
            "alone", released)
    stage1 = [f"{lora.name}:{first}"] if first is not None else []
    return stage1, (specs if specs is not None else [f"{lora.name}:{second}"] if lora is not None else [])


def run(args) -> int:
    from .. import paths, stages
    from ..generate import generate, keyframes_path, require_parts
    from ..memory.selection import compute_device
    from ..handles import load_gemma, load_ltx2
    from ..text.tokenizer import check_text

    paths.configure(models_dir=args.models_dir)
    apply_engine_options(args)
    dub_cmd.refuse_conflicts(args)  # --dub: the clip's size, length and rate where not given, else the defaults
    dub = dub_cmd.resolve(args, _upscale(args), _loras(args.ic_lora)) if args.dub else dub_cmd.fill_defaults(args)
    if args.mode == "hq" and (args.audio_only or args.video_to_audio or args.extend_from or args.retake):
        raise UsageError("--mode hq is the two-stage video recipe; sound-only runs and edits take dev or distilled")
    if args.audio_only or args.video_to_audio:
        if args.frames == "auto" or args.keyframes:
            raise UsageError("--frames auto and --keyframes belong to a video generation; give --audio-only / "
                             "--video-to-audio a frame count or --seconds")
        if args.extend_from or args.retake:
            raise UsageError("--audio-only / --video-to-audio do not combine with --extend-from / --retake.")
        return _run_sound(args)
    edit = _edit(args)
    frames = 0 if edit else _frames(args)  # every number, and the output, checked before anything loads
    if dub is not None:
        dub_cmd.check_length(dub, args, frames)
    out = _out_path(args.out)
    device = compute_device()

    # the inputs are read and checked before any model loads
    check_text(args.prompt, "--prompt")
    if args.negative is not None:
        check_text(args.negative, "--negative")
    image = _load_image(args.image) if args.image else None
    control = _control(args)
    checkpoint = _pick("checkpoints", args.checkpoint)
    mode = _mode(args.mode, checkpoint)
    two_stage = not args.single_stage and edit is None
    ltx2 = load_ltx2(checkpoint, args.weight_dtype, args.fp8, device=device)
    require_parts(ltx2, images=bool(args.image) or control is not None or dub is not None,
                  audio=bool(args.audio) or dub is not None)  # refused now
    if frames is None or args.keyframes:
        _require_25(ltx2, "--frames auto" if frames is None else "--keyframes")
    gemma_path = (_pick("text_encoders", args.gemma, family=ltx2.ckpt.family.version)
                  if args.gemma or ltx2.pack is None else ltx2.text_encoder_path())
    gemma = load_gemma(gemma_path, args.weight_dtype, device=device)
    family = ltx2.ckpt.family.version
    upscaler, temporal = _upscalers(args, two_stage, family, device)
    stage1_specs, stage2_specs = _lora_specs(args.stage2_lora, mode, two_stage, family)

    prompt = args.prompt
    if args.enhance:
        prompt = stages.enhance_prompt(gemma, prompt, mode="i2v" if args.image else "t2v", seed=args.seed)
        print(f"enhanced prompt: {prompt}")
    request = _request(args, prompt, frames, mode, two_stage, family, image, dub.control if dub else control,
                       dub.voice if dub else None)
    if edit is not None:
        from ..edit import edit_clip

        print(f"{checkpoint.name} ({ltx2.ckpt.family.name} {mode}): editing {edit.source.name}, seed {args.seed}")
        print(edit_clip(ltx2, gemma, request, edit, out))
        return 0
    print(f"{checkpoint.name} ({ltx2.ckpt.family.name} {mode}, {'two-stage' if two_stage else 'single stage'}"
          f"{', Dub-It of ' + Path(args.dub).name if dub else ''}), {args.width}x{args.height}, {frames or 'auto'} "
          f"frames at {args.fps:g} fps, seed {args.seed} on {device}")
    every, first = (args.ic_lora, []) if dub else ([], args.ic_lora)  # Dub-It: its IC-LoRA in both stages
    path = generate(ltx2, gemma, request, out, upscaler=upscaler, temporal_upscaler=temporal,
                    loras=_loras([*args.lora, *every]), stage1_loras=_loras([*stage1_specs, *first]),
                    stage2_loras=_loras(stage2_specs), compile_dit=args.compile)
    print(path)
    if args.keyframes:
        print(keyframes_path(path))
    return 0


def _request(args, prompt: str, frames: int | None, mode: str, two_stage: bool, family: str, image, control,
             voice: dict | None):
    """The ``GenerateRequest`` of the (checked) options: ``image`` to condition on, the IC-LoRA ``control`` video,
    Dub-It's ``voice``."""
    import dataclasses

    from ..generate import GenerateRequest
    from ..media.audio_io import load_audio_file
    from ..sampling.conditioning import ImageCondition
    from ..sampling.recipe import recipe_for

    images = ()
    if image is not None:
        images = (ImageCondition(image[:1], frame_index=args.image_frame, strength=args.image_strength,
                                 crf=recipe_for(family).image_crf),)
    request = GenerateRequest(
        prompt=prompt, negative_prompt=args.negative,
        width=args.width, height=args.height, frames=frames, fps=args.fps, seed=args.seed, mode=mode,
        steps=args.steps, two_stage=two_stage, images=images,
        audio=load_audio_file(args.audio) if args.audio else None, audio_start_seconds=args.audio_start,
        family=family, keyframes=args.keyframes, refine_tiles=args.refine_tiles,
        refine_tile_positions=args.refine_tile_positions == "tile", control=control, reference_audio=voice)
    if args.sampler is not None:
        request = dataclasses.replace(request, stage1=dataclasses.replace(request.stage1_settings(),
                                                                          sampler=args.sampler))
    return request


def _load_image(path: str):
    """``--image``: the IMAGE batch of the file (its folder becomes the input folder)."""
    from .. import paths
    from .core_nodes import LoadImage

    image_path = Path(path).resolve()
    paths.configure(input_dir=str(image_path.parent))
    return LoadImage().load_image(image_path.name)[0]


def _mode(mode: str, checkpoint: Path) -> str:
    """``--mode``: "auto" is dev or distilled from the checkpoint's file name; hq refuses a distilled checkpoint."""
    distilled = "distill" in checkpoint.name.lower()
    if mode == "auto":
        return "dev" if "dev" in checkpoint.name.lower() and not distilled else "distilled"
    if mode == "hq" and distilled:
        raise UsageError(f"--mode hq is the dev model's recipe (CFG guidance plus the distilled LoRA at 0.25 / 0.5); "
                         f"{checkpoint.name} is a distilled checkpoint, which already is what that LoRA adds: use "
                         "--mode distilled, or a dev checkpoint with --mode hq")
    return mode


def _upscalers(args, two_stage: bool, family: str, device):
    """(spatial upscaler, temporal upscaler or None) of a two-stage run, else (None, None)."""
    from .. import paths
    from ..handles import load_upscaler

    if not two_stage:
        return None, None
    spatial = load_upscaler(_pick("latent_upscale_models", args.upscaler, family=family), args.weight_dtype,
                            device=device)
    temporal = (load_upscaler(paths.find_model("latent_upscale_models", args.temporal_upscaler), args.weight_dtype,
                              device=device) if args.temporal_upscaler else None)
    return spatial, temporal


def _require_25(ltx2, option: str) -> None:
    """``option`` needs an LTX-2.5 model (and, for auto length, its duration head file): refused before sampling."""
    if ltx2.ckpt.family.version_tuple < (2, 5):
        raise UsageError(f"{option} needs an LTX-2.5 model; {ltx2.name} is {ltx2.ckpt.family.name}")
    if option.startswith("--frames"):
        _ = ltx2.duration_head  # raises, naming the missing duration-head file and where it looked


def _run_sound(args) -> int:
    """``--audio-only`` / ``--video-to-audio``: one stage of the mode's preset (``generate.generate_sound``)."""
    from ..generate import GenerateRequest, generate_sound
    from ..handles import load_gemma, load_ltx2
    from ..memory.selection import compute_device
    from ..text.tokenizer import check_text

    out, video = _sound_request(args)  # everything checked before anything loads
    check_text(args.prompt, "--prompt")
    if args.negative is not None:
        check_text(args.negative, "--negative")
    device = compute_device()
    checkpoint = _pick("checkpoints", args.checkpoint)
    mode = _mode(args.mode, checkpoint)
    ltx2 = load_ltx2(checkpoint, args.weight_dtype, args.fp8, device=device)
    gemma = load_gemma(_pick("text_encoders", args.gemma), args.weight_dtype, device=device)
    request = GenerateRequest(prompt=args.prompt, negative_prompt=args.negative, width=args.width, height=args.height,
                              frames=args.frames, fps=args.fps, seed=args.seed, mode=mode, steps=args.steps,
                              two_stage=False, family=ltx2.ckpt.family.version)
    what = "audio only" if video is None else f"video to audio, {args.width}x{args.height}"
    print(f"{checkpoint.name} ({ltx2.ckpt.family.name} {mode}, {what}), {args.frames} frames at {args.fps:g} fps, "
          f"seed {args.seed} on {device}")
    print(generate_sound(ltx2, gemma, request, out, video=video, loras=_loras(args.lora)))
    return 0
