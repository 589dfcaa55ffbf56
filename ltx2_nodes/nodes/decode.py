"""Decode and output nodes: tiled video decode -> IMAGE, audio decode -> AUDIO, IMAGE + AUDIO -> MP4 (VIDEO)."""

from __future__ import annotations

import logging

import torch

from .. import comfy_env, paths, stages
from ..errors import InputError
from ..media.lengths import check_audio_length
from ..media.mux import MP4Writer
from ..model.vae_tiling import TilingConfig
from ..progress import ProgressBar, check_interrupted
from .common import DECODE, OUTPUT, engine, require
from .latent import AUDIO_VAE_HINT, VAE_HINT
from .comfy_types import latent_info, pixel_frames, to_av_latents, video_output

log = logging.getLogger("ltx2_nodes")

FRAMES_PER_WRITE = 8


def tiling_from_widgets(video_vae, latent_shape, run_engine, tile_size: int, tile_overlap: int, temporal_tile: int,
                        temporal_overlap: int) -> TilingConfig | str | None:
    """Widgets -> tiling: 0 = automatic on that axis (the largest tiles the engine's budget allows)."""
    if tile_size == 0 and temporal_tile == 0:
        return "auto"
    auto = stages.resolve_tiling(video_vae, latent_shape, run_engine, "auto")
    spatial, s_overlap = ((tile_size, tile_overlap) if tile_size else
                          ((auto.tile_size_in_pixels, auto.tile_overlap_in_pixels) if auto else (None, 0)))
    temporal, t_overlap = ((temporal_tile, temporal_overlap) if temporal_tile else
                           ((auto.tile_size_in_frames, auto.tile_overlap_in_frames) if auto else (None, 0)))
    return TilingConfig(spatial, s_overlap if spatial else 0, temporal, t_overlap if temporal else 0)


class LTX2VideoDecodeTiled:
    DESCRIPTION = ("Decodes the video latent tile by tile with seamless blending (memory bounded by the tile, not "
                   "the clip). 0 = automatic tile size from the free memory. Progress per tile. An LTX-2.5 diffusion "
                   "VAE denoises from seeded pixel noise: the seed is the recipe's default seed (reproducible).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "video_vae": ("LTX2_VIDEO_VAE",),
            "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32, "tooltip": "pixels, 0 = auto"}),
            "tile_overlap": ("INT", {"default": 64, "min": 0, "max": 2048, "step": 32}),
            "temporal_tile": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 8, "tooltip": "frames, 0 = auto"}),
            "temporal_overlap": ("INT", {"default": 24, "min": 0, "max": 512, "step": 8}),
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "decode"
    CATEGORY = DECODE

    def decode(self, latent, video_vae, tile_size=0, tile_overlap=64, temporal_tile=0, temporal_overlap=24):
        video_vae = require(video_vae, "video VAE", VAE_HINT)
        av = to_av_latents(latent)
        if av.video is None:
            raise InputError("this latent holds audio only; decode it with LTX-2 Audio Decode.")
        run_engine = engine()
        tiling = tiling_from_widgets(video_vae, av.video.shape, run_engine, tile_size, tile_overlap, temporal_tile,
                                     temporal_overlap)
        video = stages.decode_video(av.video, video_vae, run_engine, tiling)
        return (stages.pixels_to_images(video),)


class LTX2AudioDecode:
    DESCRIPTION = "Decodes the audio latent (audio VAE + vocoder) to a waveform exactly as long as the video."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "audio_vae": ("LTX2_AUDIO_VAE",)}}

    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    FUNCTION = "decode"
    CATEGORY = DECODE

    def decode(self, latent, audio_vae):
        audio_vae = require(audio_vae, "audio VAE", AUDIO_VAE_HINT)
        av = to_av_latents(latent)
        if av.audio is None:
            raise InputError("this latent has no audio (LTX-2 Empty AV Latent with audio off); nothing to decode.")
        frames = pixel_frames(av, latent_info(latent))
        return (stages.decode_audio(av.audio, audio_vae, engine(), frames=frames, fps=av.fps if frames else None),)


def _metadata(prompt, extra_pnginfo) -> dict | None:
    """What ComfyUI's SaveVideo stores (unless --disable-metadata): the prompt and the workflow."""
    cli_args = comfy_env.cli_args()
    if cli_args is not None and getattr(cli_args, "disable_metadata", False):
        return None
    metadata = dict(extra_pnginfo or {})
    if prompt is not None:
        metadata["prompt"] = prompt
    return metadata or None


class LTX2AVCombine:
    DESCRIPTION = ("Saves the frames and the sound as an MP4 (H.264 + AAC, the prompt and workflow in its metadata, "
                   "so dropping it on the canvas restores the workflow) and plays it in the node.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE",),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.01}),
            "filename_prefix": ("STRING", {"default": "LTX2"}),
        }, "optional": {"audio": ("AUDIO",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_NODE = True
    FUNCTION = "combine"
    CATEGORY = OUTPUT

    def combine(self, images, fps, filename_prefix="LTX2", audio=None, prompt=None, extra_pnginfo=None):
        if images.ndim != 4 or images.shape[0] == 0:
            raise InputError(f"images must be a non-empty IMAGE batch [frames, height, width, 3], got "
                             f"{list(images.shape)}.")
        height, width = images.shape[1:3]
        warning = None
        if audio is not None:  # before any file exists: a mismatch is refused or shown, never written silently
            warning = check_audio_length(images.shape[0], fps, audio["waveform"].shape[-1], int(audio["sample_rate"]))
            if warning:
                log.warning("LTX-2 AV Combine: %s", warning)
        out = paths.next_output_file(filename_prefix, "mp4", width, height)
        rate = int(audio["sample_rate"]) if audio is not None else None
        channels = min(audio["waveform"].shape[-2], 2) if audio is not None else 2
        bar = ProgressBar(images.shape[0])
        with MP4Writer(out.path, fps, audio_sample_rate=rate, audio_channels=channels,
                       metadata=_metadata(prompt, extra_pnginfo)) as writer:
            for start in range(0, images.shape[0], FRAMES_PER_WRITE):
                check_interrupted()
                writer.add_frames(images[start:start + FRAMES_PER_WRITE])
                bar.update_absolute(min(start + FRAMES_PER_WRITE, images.shape[0]))
            if audio is not None:
                waveform = audio["waveform"]
                writer.set_audio((waveform[0] if waveform.ndim == 3 else waveform)[:2].to(torch.float32))
        entry = out.ui_entry()
        ui = {"images": [entry], "animated": [True], "ltx2_video": [entry], "has_audio": [audio is not None]}
        if warning:
            ui["ltx2_warning"] = [warning]  # shown under the node's player (js/lib/media.js)
        return {"ui": ui, "result": (video_output(out.path),)}
