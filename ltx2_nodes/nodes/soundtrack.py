"""Sound-side nodes: a soundtrack for a given video (video-to-audio), and text-to-audio on the DiT's audio
stream alone (the reference ``t2a_one_stage``: the video weights are never loaded)."""

from __future__ import annotations

import dataclasses

from .. import stages
from ..errors import InputError
from ..latents import empty_latents
from ..model.shapes import MAX_FRAMES, frames_for_seconds
from .common import LATENT, LOADERS, engine, require
from .comfy_types import LatentInfo, fit_empty_channels, from_av_latents, latent_info, pixel_frames, to_av_latents
from .latent import MAX_SECONDS, VAE_HINT

# the reference's placeholder pixel size of an audio-only run (t2a_one_stage): only frames and fps matter
AUDIO_ONLY_PLACEHOLDER = 512


def largest_fitting_frames(available: int) -> int:
    """The longest 8k+1 clip ``available`` frames hold (0 when fewer than one frame)."""
    return 0 if available < 1 else 1 + 8 * ((min(available, MAX_FRAMES) - 1) // 8)


class LTX2VideoToAudioLatent:
    DESCRIPTION = ("Video-to-audio: encodes the given frames (from start_frame, as many as the latent's video) into "
                   "the video latent and marks it to be kept unchanged while the sampler generates the sound for "
                   "it. Set the Empty AV Latent's frames and fps to the clip's. The 'images' output is those very "
                   "frames, untouched: connect it to the Save node to mux the original picture with the new sound.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "video_vae": ("LTX2_VIDEO_VAE",), "images": ("IMAGE",)},
                "optional": {"start_frame": ("INT", {"default": 0, "min": 0, "max": 1_000_000})}}

    RETURN_TYPES = ("LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "images")
    FUNCTION = "encode"
    CATEGORY = LATENT

    def encode(self, latent, video_vae, images, start_frame=0):
        video_vae = require(video_vae, "video VAE", VAE_HINT)
        info = latent_info(latent)
        av = fit_empty_channels(to_av_latents(latent), video_channels=video_vae.latent_channels)
        frames = pixel_frames(av, info)
        if av.video is None or av.audio is None or frames is None:
            raise InputError("video-to-audio needs an audio+video latent: connect LTX-2 Empty AV Latent with audio "
                             "on, sized like the clip.")
        clip = images[start_frame:start_frame + frames]
        if clip.shape[0] < frames:
            fits = largest_fitting_frames(images.shape[0] - start_frame)
            raise InputError(
                f"the latent is {frames} frames long but the video has {max(images.shape[0] - start_frame, 0)} from "
                f"frame {start_frame}. " + (f"Set the Empty AV Latent's frames to {fits} (8k+1 frames that fit), "
                                            "or lower start_frame." if fits else
                                            f"start_frame must be below {images.shape[0]}."))
        encoded = stages.encode_video_clip(video_vae, clip, av.video_grid(), engine())
        encoded = encoded.expand(av.batch, *encoded.shape[1:]).contiguous()
        av = dataclasses.replace(av, video=encoded).keep_video()
        return from_av_latents(av, info, base=latent), clip


class LTX2EmptyAudioLatent:
    DESCRIPTION = ("Text-to-audio: an empty audio latent of the given length (no video). Sample it with the model "
                   "from 'LTX-2 Audio-Only Model', decode it with LTX-2 Audio Decode.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seconds": ("FLOAT", {"default": 5.0, "min": 0.05, "max": MAX_SECONDS, "step": 0.05}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.01,
                              "tooltip": "the length is counted in frames of this rate, as the reference"}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "create"
    CATEGORY = LATENT

    def create(self, seconds, fps, batch_size):
        frames = frames_for_seconds(seconds, fps)
        av = empty_latents(batch_size, frames, AUDIO_ONLY_PLACEHOLDER, AUDIO_ONLY_PLACEHOLDER, fps, video=False)
        return (from_av_latents(av, LatentInfo(fps=float(fps), frames=frames)),)


class LTX2AudioOnlyModel:
    DESCRIPTION = ("Text-to-audio: the model's audio stream alone. The video blocks, the audio<->video "
                   "cross-attention and their weights are never loaded, read or moved (half the DiT's memory and "
                   "time saved). Samples audio-only latents (LTX-2 Empty Audio Latent).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("LTX2_MODEL",)}}

    RETURN_TYPES = ("LTX2_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "audio_only"
    CATEGORY = LOADERS

    def audio_only(self, model):
        model = require(model, "LTX-2 model", "connect the model output of an LTX-2 Checkpoint Loader.")
        return (model.audio_stream(),)


__all__ = ["LTX2VideoToAudioLatent", "LTX2EmptyAudioLatent", "LTX2AudioOnlyModel"]
