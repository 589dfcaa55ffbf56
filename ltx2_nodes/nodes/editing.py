"""Editing nodes (issue 15): encode a loaded video to a latent, extend a clip (window -> sampler -> join), retake a
time window. They only build latents and masks (``ltx2_nodes.editing``); any LTX-2 Sampler samples them."""

from __future__ import annotations

import logging

from .. import stages
from ..editing import DEFAULT_OVERLAP_FRAMES, extend_window, join_extension, plan_extend, retake_window
from ..errors import InputError
from ..latents import AVLatents
from ..model.shapes import AudioTiming, audio_latent_frames
from .common import LATENT, engine, require
from .comfy_types import LatentInfo, from_av_latents, latent_info, to_av_latents
from .latent import AUDIO_VAE_HINT, VAE_HINT

log = logging.getLogger("ltx2_nodes")


def fit_frames(images, fit: bool, scale) -> tuple:
    """``images`` [F, H, W, 3] cut to the nearest smaller valid video (8k+1 frames, sides multiples of the VAE's
    cell, centre-cropped) when ``fit``; otherwise refused unless valid already (``shapes.check_video_size``)."""
    frames, height, width = images.shape[:3]
    valid = (1 + (frames - 1) // scale.time * scale.time, height // scale.height * scale.height,
             width // scale.width * scale.width)
    if min(valid[1:]) == 0:
        raise InputError(f"the video is {width}x{height}; the VAE needs at least {scale.width}x{scale.height} pixels.")
    if valid == (frames, height, width):
        return images
    if not fit:
        raise InputError(f"the video is {frames} frames of {width}x{height}; the VAE encodes 8k+1 frames with sides "
                         f"multiples of {scale.height}: {valid[0]} frames of {valid[2]}x{valid[1]} fit. Turn 'fit' on "
                         "to cut it to that, or trim the video.")
    top, left = (height - valid[1]) // 2, (width - valid[2]) // 2
    log.info("LTX-2 Video Encode: %d frames %dx%d cut to %d frames %dx%d (8k+1 frames, multiples of %d)", frames,
             width, height, valid[0], valid[2], valid[1], scale.height)
    return images[:valid[0], top:top + valid[1], left:left + valid[2]]


class LTX2VideoEncode:
    DESCRIPTION = ("Encodes video frames (IMAGE, e.g. from Load Video -> Get Video Components) into an LTX-2 video "
                   "latent, tile by tile so a long clip fits (the tiles follow the free memory), and, with an audio "
                   "VAE and AUDIO connected, its sound into the audio latent of the same duration. The VAE encodes "
                   "8k+1 frames with width and height multiples of 32: 'fit' cuts the last frames and centre-crops "
                   "to that; off, other sizes are refused. Feed the latent to LTX-2 Extend Window or LTX-2 Retake.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video_vae": ("LTX2_VIDEO_VAE",),
            "images": ("IMAGE",),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.01}),
            "fit": ("BOOLEAN", {"default": True, "tooltip": "cut to 8k+1 frames and sides multiples of 32"}),
        }, "optional": {"audio_vae": ("LTX2_AUDIO_VAE",), "audio": ("AUDIO",)}}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "encode"
    CATEGORY = LATENT

    def encode(self, video_vae, images, fps, fit=True, audio_vae=None, audio=None):
        video_vae = require(video_vae, "video VAE", VAE_HINT)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"expected IMAGE frames [F, H, W, 3], got {list(images.shape)}.")
        images = fit_frames(images, fit, video_vae.scale)
        video = stages.encode_video(video_vae, images, engine())
        encoded = None
        timing = audio_vae.timing if audio_vae is not None else AudioTiming()
        if audio is not None:
            audio_vae = require(audio_vae, "audio VAE", AUDIO_VAE_HINT)
            steps = audio_latent_frames(images.shape[0], fps, audio_vae.timing)
            encoded = stages.audio_latent_for_clip(audio_vae, audio, 0.0, images.shape[0] / fps, steps, engine())
        av = AVLatents(video, encoded, float(fps), video_scale=video_vae.scale, audio_timing=timing)
        return (from_av_latents(av, LatentInfo(fps=float(fps), frames=int(images.shape[0]))),)


class LTX2ExtendWindow:
    DESCRIPTION = ("Extend, step 1 of 2: the window that continues a clip by 'seconds' (whole latent frames, 8 pixel "
                   "frames each): its last 'overlap' latent frames and their audio are kept exactly, the rest is "
                   "generated at the positions it has in the whole clip. Sample it with an LTX-2 Sampler (any prompt: "
                   "a new one per segment steers it), then LTX-2 Extend Join. Chain window -> sampler -> join for "
                   "longer clips: each segment costs the same memory. Past about 20 s the positions leave the range "
                   "the model was trained on (see the README).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "seconds": ("FLOAT", {"default": 5.0, "min": 0.1, "max": 40.0, "step": 0.05}),
            "overlap": ("INT", {"default": DEFAULT_OVERLAP_FRAMES, "min": 1, "max": 64,
                                "tooltip": "latent frames kept from the clip's end (8 pixel frames each)"}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("window",)
    FUNCTION = "window"
    CATEGORY = LATENT

    def window(self, latent, seconds, overlap=DEFAULT_OVERLAP_FRAMES):
        clip = to_av_latents(latent)
        window = extend_window(clip, plan_extend(clip, seconds, overlap))
        # the noise record stays: a sampler with the clip's seed continues its stream (each segment new noise)
        info = latent_info(latent).replace(conditions=())
        return (from_av_latents(window, info),)


class LTX2ExtendJoin:
    DESCRIPTION = ("Extend, step 2 of 2: the clip followed by the new part of its sampled window (from LTX-2 Extend "
                   "Window on this clip, then a sampler): one latent with continuous video and sound, ready to decode "
                   "or to extend again.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("LATENT",), "window": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "join"
    CATEGORY = LATENT

    def join(self, clip, window):
        joined = join_extension(to_av_latents(clip), to_av_latents(window))
        info = latent_info(clip).replace(noise=latent_info(window).noise, conditions=())
        return (from_av_latents(joined, info),)


class LTX2Retake:
    DESCRIPTION = ("Retake: marks the time window start..end seconds of a clip's latent (e.g. from LTX-2 Video "
                   "Encode) to be regenerated by the next sampler -- video, audio or both -- and keeps everything "
                   "else exactly (the reference retake pipeline's region mask). The clip must be 8k+1 frames with "
                   "sides multiples of 32 (Video Encode's 'fit' does that).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "start_seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
            "end_seconds": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
            "video": ("BOOLEAN", {"default": True, "tooltip": "regenerate the video in the window"}),
            "audio": ("BOOLEAN", {"default": True, "tooltip": "regenerate the audio in the window"}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "retake"
    CATEGORY = LATENT

    def retake(self, latent, start_seconds, end_seconds, video=True, audio=True):
        av = retake_window(to_av_latents(latent), start_seconds, end_seconds, video, audio)
        return (from_av_latents(av, latent_info(latent), base=latent),)
