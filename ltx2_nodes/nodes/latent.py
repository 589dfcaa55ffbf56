"""Latent nodes: the empty audio+video latent, image and audio conditioning, the x2 latent upscaler, generated
keyframe slots (LTX-2.5)."""

from __future__ import annotations

import dataclasses
import logging
import math

from .. import paths, stages
from ..errors import InputError
from ..model.shapes import MAX_FRAMES, check_video_size, describe_rounding, frames_for_seconds
from ..handles import load_upscaler
from ..latents import AVLatents, empty_latents
from ..media.audio_clip import audio_segment
from ..sampling.conditioning import DEFAULT_IMAGE_CRF, ImageCondition
from ..sampling.state import AudioGrid
from .common import LATENT, device, engine, require
from .comfy_types import (ConditionRecord, LatentInfo, fit_empty_channels, from_av_latents, from_conditioning,
                          latent_info, pixel_frames, to_av_latents)

log = logging.getLogger("ltx2_nodes")

VAE_HINT = "connect the video_vae output of an LTX-2 Checkpoint Loader that loaded a full single file."
AUDIO_VAE_HINT = "connect the audio_vae output of an LTX-2 Checkpoint Loader that loaded a full single file."


# the seconds widget's maximum: the longest clip at the default 24 fps (1025 frames), on the widget's 0.05 grid
MAX_SECONDS = math.floor(MAX_FRAMES / 24.0 * 20) / 20


def frames_for(seconds: float, fps: float, frames: int) -> int:
    """``frames`` unless ``seconds`` > 0: then the 8k+1 frame count nearest to ``seconds * fps`` (logged when it
    is not exactly ``seconds``; refused, with the longest duration that fits, above the frames maximum)."""
    if seconds <= 0:
        return frames
    frames = frames_for_seconds(seconds, fps)
    rounding = describe_rounding(seconds, fps, frames)
    if rounding:
        log.info("LTX-2 Empty AV Latent: %s", rounding)
    return frames


def auto_frames(duration_head, conditioning, fps: float) -> int:
    """The "auto" length: the duration head's prediction for the prompt's conditioning (``stages.predict_frames``)."""
    missing = [name for name, value in (("duration_head", duration_head), ("conditioning", conditioning))
               if value is None]
    if missing:
        raise InputError(f"auto_length needs {' and '.join(missing)} connected: the LTX-2.5 duration head file "
                         "(models/model_patches) and the prompt's conditioning from the text connector. Without a "
                         "duration head (LTX-2 / LTX-2.3, or a 2.5 pack without that file) turn auto_length off and "
                         "set frames or seconds.")
    text, _ = from_conditioning(conditioning, "conditioning", duration_head.model.config.video_width)
    return stages.predict_frames(duration_head, text, fps)


class LTX2EmptyAVLatent:
    DESCRIPTION = ("An empty audio+video latent. Width and height are multiples of 32 (of 64 for two-stage "
                   "workflows, which sample this latent at half the final size), frames are 8k+1 (1, 9, ..., 121); "
                   "seconds > 0 picks the 8k+1 frame count nearest to seconds x fps. auto_length (LTX-2.5): the "
                   "duration head predicts the length from the prompt's conditioning (clamped to 1..20 s, floored to "
                   "8k+1 frames at fps); frames and seconds are then ignored. The audio latent covers exactly the "
                   "video's duration.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 768, "min": 64, "max": 4096, "step": 32}),
            "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32}),
            "frames": ("INT", {"default": 121, "min": 1, "max": MAX_FRAMES, "step": 8}),
            "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_SECONDS, "step": 0.05,
                                  "tooltip": f"0 = use frames; at most {MAX_FRAMES} frames (at 24 fps "
                                             f"{MAX_SECONDS:g} s, at higher fps less)"}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.01}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 16}),
        }, "optional": {
            "audio": ("BOOLEAN", {"default": True, "tooltip": "generate a soundtrack too"}),
            "auto_length": ("BOOLEAN", {"default": False, "tooltip": "LTX-2.5: the clip length the duration head "
                                        "predicts from the conditioning (connect both)"}),
            "duration_head": ("LTX2_DURATION_HEAD",),
            "conditioning": ("CONDITIONING",),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "create"
    CATEGORY = LATENT

    def create(self, width, height, frames, seconds, fps, batch_size, audio=True, auto_length=False,
               duration_head=None, conditioning=None):
        if auto_length:
            frames = auto_frames(duration_head, conditioning, fps)
        else:
            frames = frames_for(seconds, fps, frames)
        check_video_size(frames, height, width)
        av = empty_latents(batch_size, frames, height, width, fps, audio=audio)
        return (from_av_latents(av, LatentInfo(fps=float(fps), frames=frames)),)


class LTX2ImageToVideo:
    DESCRIPTION = ("Conditions the video on an image at a frame: frame 0 replaces the first latent frame (kept "
                   "exactly at strength 1), later frames guide the video as keyframes. The image is encoded now "
                   "and again by a sampler running at another size (stage 2 after the upscaler). crf: the "
                   "reference's H.264 pre-compression (33), 0 = off.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "video_vae": ("LTX2_VIDEO_VAE",),
            "image": ("IMAGE",),
            "frame_index": ("INT", {"default": 0, "min": -MAX_FRAMES, "max": MAX_FRAMES,
                                    "tooltip": "pixel frame; negative counts from the end (-1 = the last frame)"}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "crf": ("INT", {"default": DEFAULT_IMAGE_CRF, "min": 0, "max": 51}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "condition"
    CATEGORY = LATENT

    def condition(self, latent, video_vae, image, frame_index=0, strength=1.0, crf=DEFAULT_IMAGE_CRF):
        video_vae = require(video_vae, "video VAE", VAE_HINT)
        info = latent_info(latent)
        av = fit_empty_channels(to_av_latents(latent), video_channels=video_vae.latent_channels)
        if av.video is None:
            raise InputError("image conditioning needs a video latent; this latent holds audio only.")
        grid = av.video_grid()
        if not -grid.pixel_frames <= frame_index < grid.pixel_frames:
            raise InputError(f"frame_index {frame_index} is outside the video (frames 0..{grid.pixel_frames - 1}, "
                             f"or -1..-{grid.pixel_frames} counted from the end).")
        frame_index %= grid.pixel_frames  # -1 = the last frame
        condition = ImageCondition(image, frame_index, strength, crf)
        item = stages.encode_conditioning_images(video_vae, [condition], grid, engine())[0]
        size = (grid.height * grid.scale.height, grid.width * grid.scale.width)
        record = ConditionRecord(condition, video_vae, {size: item.latent})
        return (from_av_latents(av, info.replace(conditions=info.conditions + (record,)), base=latent),)


class LTX2AudioToLatent:
    DESCRIPTION = ("Audio-to-video: encodes the audio (from start_seconds, as long as the video) into the audio "
                   "latent and marks it to be kept unchanged while the video is generated to match it. The 'audio' "
                   "output is that very piece of the input, as long as the video: connect it to the Save node to "
                   "keep the original sound (the official a2vid pipeline returns the input waveform, not the audio "
                   "VAE's re-synthesis).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "audio_vae": ("LTX2_AUDIO_VAE",), "audio": ("AUDIO",)},
                "optional": {"start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT", "AUDIO")
    RETURN_NAMES = ("latent", "audio")
    FUNCTION = "encode"
    CATEGORY = LATENT

    def encode(self, latent, audio_vae, audio, start_seconds=0.0):
        audio_vae = require(audio_vae, "audio VAE", AUDIO_VAE_HINT)
        info = latent_info(latent)
        av = to_av_latents(latent)
        shape = (audio_vae.latent_channels, audio_vae.latent_mel_bins)
        av = fit_empty_channels(av, audio_shape=shape)
        frames = pixel_frames(av, info)
        if frames is None:
            raise InputError("cannot tell the clip's length: connect a latent from LTX-2 Empty AV Latent.")
        steps = av.audio.shape[2] if av.audio is not None else AudioGrid.for_video(
            shape[0], shape[1], frames, av.fps, audio_vae.timing).frames
        segment = audio_segment(audio, start_seconds, frames / av.fps)
        encoded = stages.audio_latent_for_clip(audio_vae, audio, start_seconds, frames / av.fps, steps, engine())
        if av.audio is not None and tuple(encoded.shape[1:]) != tuple(av.audio.shape[1:]):
            raise InputError(f"the encoded audio latent {list(encoded.shape[1:])} does not match the latent's audio "
                             f"{list(av.audio.shape[1:])}; both must come from the same LTX-2 model.")
        encoded = encoded[:1].expand(av.batch, *encoded.shape[1:]).contiguous()
        av = dataclasses.replace(av, audio=encoded, audio_timing=audio_vae.timing).keep_audio()
        return from_av_latents(av, info, base=latent), segment


class LTX2LatentUpscaler:
    DESCRIPTION = ("x2 width and height of the video latent with the LTX-2 spatial upscaler (two-stage workflows: "
                   "stage 1 at half size, upscale, refine with a stage-2 sampler), or x1.5 with the LTX-2.3 x1.5 "
                   "upscaler (stage 1 at 2/3 size; its latent height and width must be even, i.e. pixel sizes "
                   "multiples of 64), or x2 in time with a temporal upscaler (ltx-2-temporal-upscaler-x2, LTX-2.3's "
                   "and LTX-2.5's): F frames become 2F - 1 at twice the frame rate, the same duration (sample stage "
                   "1 at half the fps, e.g. 61 frames at 12 fps for 121 at 24; image conditions move to twice their "
                   "frame; save the result at the doubled fps). Audio passes through.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "video_vae": ("LTX2_VIDEO_VAE",),
                             "upscale_model": (paths.list_models("latent_upscale_models"),)}}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "upscale"
    CATEGORY = LATENT

    def upscale(self, latent, video_vae, upscale_model):
        video_vae = require(video_vae, "video VAE", VAE_HINT)
        upscaler = load_upscaler(paths.find_model("latent_upscale_models", upscale_model), device=device())
        av = to_av_latents(latent)
        out = stages.upscale(av, upscaler, video_vae.stats, engine())
        info = latent_info(latent)
        if out.fps != av.fps:  # the temporal upscaler: frame k is now frame 2k, at twice the frame rate
            factor = round(out.fps / av.fps)
            conditions = tuple(dataclasses.replace(r, condition=dataclasses.replace(
                r.condition, frame_index=r.condition.frame_index * factor)) for r in info.conditions)
            info = info.replace(fps=out.fps, frames=out.video_grid().pixel_frames, conditions=conditions)
        return (from_av_latents(out, info, base=latent),)


class LTX2KeyframeSlots:
    DESCRIPTION = ("LTX-2.5: asks the next sampler to also generate standalone keyframes at chosen frames of the "
                   "video (extra tokens the model denoises with the video, each one pixel frame long). They never "
                   "appear in the video: take them with 'LTX-2 Generated Keyframes' after sampling. count: that many "
                   "evenly spaced interior frames; frames: explicit pixel frames ('24, 60'), used when not empty. "
                   "Needs an LTX-2.5 model.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "count": ("INT", {"default": 1, "min": 0, "max": 64, "tooltip": "evenly spaced interior keyframes"}),
            "frames": ("STRING", {"default": "", "tooltip": "pixel frames, e.g. '24, 60'; overrides count"}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "request"
    CATEGORY = LATENT

    def request(self, latent, count=1, frames=""):
        av = to_av_latents(latent)
        text = frames.strip()
        try:
            request = [int(part) for part in text.replace(";", ",").split(",") if part.strip()] if text else count
        except ValueError:
            raise InputError(f"frames {frames!r} must be pixel frame numbers separated by commas, e.g. '24, 60'.") \
                from None
        av = av.with_keyframe_slots(request)
        return (from_av_latents(av, latent_info(latent), base=latent),)


class LTX2GeneratedKeyframes:
    DESCRIPTION = ("LTX-2.5: the keyframes a sampler generated for 'LTX-2 Keyframe Slots', as a video latent of "
                   "one-frame clips (batch = samples x keyframes, in frame order): decode it with the video VAE to "
                   "get one image per keyframe.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("keyframes",)
    FUNCTION = "extract"
    CATEGORY = LATENT

    def extract(self, latent):
        av = to_av_latents(latent)
        clips = av.keyframe_clips()
        if clips is None:
            raise InputError("this latent has no generated keyframes; put 'LTX-2 Keyframe Slots' before the sampler "
                             "(an LTX-2.5 model) and connect the sampler's output here.")
        out = AVLatents(clips, None, av.fps, video_scale=av.video_scale)
        return (from_av_latents(out, LatentInfo(fps=av.fps, frames=1)),)
