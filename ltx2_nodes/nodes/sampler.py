"""The dual-stream sampler node."""

from __future__ import annotations

import dataclasses
import math

import torch

from .. import stages
from ..errors import InputError
from ..model.audio_vae import AudioVAEConfig
from ..pipeline import GenerationSettings
from ..preview import previewer_for
from ..sampling.conditioning import frame_condition
from ..sampling.guidance import GuidanceParams
from ..sampling.loop import SAMPLERS
from ..sampling.noise import SeededNoise
from ..sampling.schedules import distilled_sigmas, ltx2_sigmas, parse_sigmas
from .common import MAX_SEED, SAMPLING, engine
from .types import fit_empty_channels, from_av_latents, from_conditioning, latent_info, to_av_latents

SCHEDULES = ("ltx2", "distilled", "distilled stage 2", "custom")
GUIDANCE_PASSES = ("sequential", "batched")


def schedule_sigmas(schedule: str, steps: int, sigmas: str) -> torch.Tensor:
    if schedule == "ltx2":
        return ltx2_sigmas(steps)
    if schedule == "distilled":
        return distilled_sigmas(1)
    if schedule == "distilled stage 2":
        return distilled_sigmas(2)
    if schedule == "custom":
        return parse_sigmas(sigmas)
    raise InputError(f"schedule {schedule!r} is not one of {list(SCHEDULES)}.")


def start_at(sigmas: torch.Tensor, start_sigma: float) -> torch.Tensor:
    """The schedule from the first value <= ``start_sigma``, with ``start_sigma`` itself inserted when absent
    (the input latent is noised to the first value)."""
    if not 0.0 <= start_sigma <= 1.0:
        raise InputError(f"start_sigma {start_sigma} must lie in [0, 1].")
    rest = [float(s) for s in sigmas if float(s) < start_sigma and not math.isclose(float(s), start_sigma)]
    return torch.tensor([float(start_sigma)] + rest, dtype=torch.float32)


def parse_blocks(text: str) -> tuple[int, ...]:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"stg_blocks {text!r}: write block numbers separated by commas, e.g. '29' or '28, 29'.") \
            from None


def _noise_for(record: dict | None, seed: int, batch: int) -> tuple[SeededNoise, list]:
    """A seeded noise stream; when the latent records draws of an earlier sampler with the same seed, the
    stream continues after them (stage 2 of the reference two-stage pipeline draws from stage 1's generator)."""
    noise = SeededNoise(seed, batch)
    draws = []
    if record and record.get("seed") == seed and record.get("batch") == batch:
        draws = [list(map(tuple, shapes)) for shapes in record.get("draws", [])]
        for shapes in draws:
            noise.draw(*shapes)
    return noise, draws


class LTX2Sampler:
    DESCRIPTION = (
        "Samples video and audio together. schedule: ltx2 (dev model, steps), distilled (fixed 8 steps), "
        "distilled stage 2 (3 refinement steps), custom (sigmas). Guidance per modality: video/audio CFG need the "
        "negative prompt, STG perturbs the self-attention of stg_blocks, modality_scale strengthens the audio<->video "
        "exchange, rescale tames over-saturation; all at 1/0 = off (distilled). start_sigma cuts the schedule: the "
        "input latent is noised to the first remaining sigma where its masks allow (0.909375 for the stage-2 "
        "refinement of an upscaled latent). A stage-2 sampler with the same seed as stage 1 continues its noise "
        "stream, like the reference pipeline.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LTX2_MODEL",),
            "positive": ("CONDITIONING",),
            "latent": ("LATENT",),
            "seed": ("INT", {"default": 10, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
            "steps": ("INT", {"default": 40, "min": 1, "max": 200, "tooltip": "ltx2 schedule only"}),
            "schedule": (list(SCHEDULES), {"default": "ltx2"}),
            "sigmas": ("STRING", {"default": "", "tooltip": "custom schedule, e.g. 1.0, 0.725, 0.4219, 0.0"}),
            "sampler": (list(SAMPLERS), {"default": "euler"}),
            "video_cfg": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 30.0, "step": 0.1}),
            "audio_cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.1}),
            "modality_scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 30.0, "step": 0.1}),
            "stg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.1}),
            "stg_blocks": ("STRING", {"default": "29"}),
            "rescale": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01}),
            "start_sigma": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
            "guidance_passes": (list(GUIDANCE_PASSES), {"default": "sequential", "tooltip": "batched: one forward "
                                "for all guidance passes (faster on big GPUs, more memory); same result"}),
        }, "optional": {"negative": ("CONDITIONING",)}}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = SAMPLING

    def sample(self, model, positive, latent, seed, steps, schedule, sigmas, sampler, video_cfg, audio_cfg,
               modality_scale, stg_scale, stg_blocks, rescale, start_sigma, guidance_passes="sequential",
               negative=None):
        text, frame_rate = from_conditioning(positive, "positive conditioning")
        negative_text = from_conditioning(negative, "negative conditioning")[0] if negative is not None else None
        info = latent_info(latent)
        av = to_av_latents(latent, fps=frame_rate)
        if start_sigma <= 0.0:
            return (latent,)  # nothing to denoise: like ComfyUI's samplers at denoise 0
        av = fit_empty_channels(av, video_channels=model.config.in_channels, audio_shape=_audio_shape(model))
        blocks = parse_blocks(stg_blocks)
        video = GuidanceParams(video_cfg, stg_scale, blocks, rescale, modality_scale)
        audio = GuidanceParams(audio_cfg, stg_scale, blocks, rescale, modality_scale)
        settings = GenerationSettings(start_at(schedule_sigmas(schedule, steps, sigmas), start_sigma), seed=seed,
                                      sampler=sampler, video_guidance=video, audio_guidance=audio,
                                      batched_guidance=guidance_passes == "batched")
        run_engine = engine()
        items = self._conditioning(info, av, run_engine)
        noise, draws = _noise_for(info.noise, seed, av.batch)
        video_vae = model.models.optional("video_vae") if av.video is not None else None
        preview = previewer_for(video_vae, run_engine)
        out = stages.run_sampler(model, text, av, settings, run_engine, negative=negative_text, conditioning=items,
                                 noise=noise, callback=preview)
        draws.append(_drawn_shapes(av, items))
        record = {"seed": seed, "batch": av.batch, "draws": [[list(s) for s in shapes] for shapes in draws]}
        # the masks stay: a kept audio (audio-to-video) is kept in stage 2 as well
        out = dataclasses.replace(out, video_mask=av.video_mask, audio_mask=av.audio_mask)
        return (from_av_latents(out, info.replace(noise=record), base=latent),)

    @staticmethod
    def _conditioning(info, av, run_engine) -> list:
        """Items for the image conditions, encoded again when this sampler runs at another size."""
        if not info.conditions:
            return []
        if av.video is None:
            raise InputError("image conditioning needs a video latent; this latent holds audio only.")
        grid = av.video_grid()
        size = (grid.height * grid.scale.height, grid.width * grid.scale.width)
        items = []
        for record in info.conditions:
            cached = record.encoded.get(size)
            if cached is not None:
                items.append(frame_condition(cached, record.condition.frame_index, record.condition.strength))
            else:
                items += stages.encode_conditioning_images(record.video_vae, [record.condition], grid, run_engine)
        return items


def _audio_shape(model) -> tuple[int, int] | None:
    """(channels, mel bins) of the model's audio latent: from its audio VAE, else the released channel count."""
    audio_vae = model.models.optional("audio_vae")
    if audio_vae is not None:
        return audio_vae.latent_channels, audio_vae.latent_mel_bins
    features, channels = model.config.audio_in_channels, AudioVAEConfig().z_channels
    return (channels, features // channels) if features % channels == 0 else None


def _drawn_shapes(av, items) -> list[tuple[int, ...]]:
    """The token shapes ``pipeline.sample`` draws its initial noise with (video tokens incl. keyframes first)."""
    shapes = []
    if av.video is not None:
        shapes.append((av.video_grid().tokens + stages.appended_tokens(items), av.video.shape[1]))
    if av.audio is not None:
        shapes.append((av.audio.shape[2], av.audio.shape[1] * av.audio.shape[3]))
    return shapes
