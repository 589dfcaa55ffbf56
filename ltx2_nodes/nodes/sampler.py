"""The dual-stream sampler node."""

from __future__ import annotations

import dataclasses
import logging

from .. import stages, worker_pool
from ..errors import InputError
from ..model.audio_vae import AudioVAEConfig
from ..latents import GenerationSettings
from ..sampling.conditioning import frame_condition
from ..sampling.guidance import GuidanceParams
from ..sampling.loop import SAMPLERS
from ..sampling.noise import SeededNoise
from ..sampling.recipe import DEFAULT_SEED, SCHEDULES, TOKEN_SHIFTED, SamplerPreset, recipe_for, start_at
from .common import MAX_SEED, SAMPLING, engine
from .dubit import reference_audio_items
from .preview import previewer_for
from .comfy_types import fit_empty_channels, from_av_latents, from_conditioning, latent_info, to_av_latents

GUIDANCE_PASSES = ("sequential", "batched")
AUTO_BLOCKS = "auto"
SAME_RESCALE = -1.0  # audio_rescale: the audio's rescale is the rescale widget's (every preset but HQ)
MAX_GPUS = 16
log = logging.getLogger("ltx2_nodes")


def preset_widgets(preset: SamplerPreset, stg_blocks: tuple[int, ...]) -> dict:
    """The sampler widget values of a ``sampling.recipe`` preset (all but seed). One widget drives both
    modalities' modality scale and STG, so a preset must agree on them; rescale: ``rescale`` the video's,
    ``audio_rescale`` the audio's where they differ (HQ: 0.45 / 1.0), else ``SAME_RESCALE``; ``stg_blocks``:
    shown also when STG is off (the family's STG blocks)."""
    video, audio = preset.video_guidance, preset.audio_guidance
    for shared in ("modality", "stg", "stg_blocks"):
        if getattr(video, shared) != getattr(audio, shared):
            raise ValueError(f"preset {preset}: video and audio {shared} differ; the sampler has one widget for it")
    return dict(steps=preset.steps, schedule=preset.schedule, sigmas="", sampler=preset.sampler, video_cfg=video.cfg,
                audio_cfg=audio.cfg, modality_scale=video.modality, stg_scale=video.stg,
                stg_blocks=", ".join(str(b) for b in (video.stg_blocks or stg_blocks)), rescale=video.rescale,
                start_sigma=preset.start_sigma, guidance_passes=GUIDANCE_PASSES[0],
                audio_rescale=SAME_RESCALE if audio.rescale == video.rescale else audio.rescale)


def parse_blocks(text: str, family_blocks: tuple[int, ...] = ()) -> tuple[int, ...]:
    """``stg_blocks`` -> block numbers; "auto": ``family_blocks`` (the loaded model family's STG blocks)."""
    if text.strip().lower() == AUTO_BLOCKS:
        return tuple(family_blocks)
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"stg_blocks {text!r}: write block numbers separated by commas, e.g. '29' or '28, 29', "
                         "or 'auto' for the model family's block.") \
            from None


class LTX2Sampler:
    DESCRIPTION = (
        f"Samples video and audio together. schedule: ltx2 (dev model, steps), distilled (fixed "
        f"{recipe_for().distilled.steps} steps), distilled stage 2 ({recipe_for().refine.steps} refinement steps), "
        "custom (sigmas). Guidance per modality: video/audio CFG need the "
        "negative prompt, STG perturbs the self-attention of stg_blocks, modality_scale strengthens the audio<->video "
        "exchange, rescale tames over-saturation; all at 1/0 = off (distilled). start_sigma cuts the schedule: the "
        "input latent is noised to the first remaining sigma where its masks allow "
        f"({recipe_for().stage2_start_sigma:g} for the stage-2 refinement of an upscaled latent). A stage-2 sampler "
        "with the same seed as stage 1 continues its noise stream, like the reference pipeline. Model families: "
        "the widget defaults are the LTX-2 (19B) dev preset (40 steps, STG block 29); the LTX-2.3 (22B) dev preset "
        "is 30 steps with STG on block 28 (its shipped workflows set them); LTX-2.5 keeps that dev preset and "
        "samples the distilled stage 1 with euler_ancestral (eta 1, fresh noise seeded seed + 10000). HQ preset "
        "(the reference's two-stage HQ pipeline, dev model): stage 1 res_2s, schedule 'ltx2 by tokens' (the shift "
        "of the latent's token count) 15 steps, video/audio CFG 3/7, modality 3, STG off, rescale 0.45 with "
        "audio_rescale 1.0, the distilled LoRA at 0.25; stage 2 res_2s on the distilled stage-2 list, no "
        "guidance, the LoRA at 0.5. audio_rescale -1: the audio uses rescale too. stg_blocks "
        "'auto' takes the loaded model family's STG block; each run logs the family, its dev preset and the "
        "settings used.")

    @classmethod
    def INPUT_TYPES(cls):
        dev = preset_widgets(recipe_for().dev, recipe_for().stg_blocks)  # the widget defaults: the dev preset
        return {"required": {
            "model": ("LTX2_MODEL",),
            "positive": ("CONDITIONING",),
            "latent": ("LATENT",),
            "seed": ("INT", {"default": DEFAULT_SEED, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
            "steps": ("INT", {"default": dev["steps"], "min": 1, "max": 200, "tooltip": "ltx2 schedule only"}),
            "schedule": (list(SCHEDULES), {"default": dev["schedule"]}),
            "sigmas": ("STRING", {"default": dev["sigmas"],
                                  "tooltip": "custom schedule, e.g. 1.0, 0.725, 0.4219, 0.0"}),
            "sampler": (list(SAMPLERS), {"default": dev["sampler"]}),
            "video_cfg": ("FLOAT", {"default": dev["video_cfg"], "min": 0.0, "max": 30.0, "step": 0.1}),
            "audio_cfg": ("FLOAT", {"default": dev["audio_cfg"], "min": 0.0, "max": 30.0, "step": 0.1}),
            "modality_scale": ("FLOAT", {"default": dev["modality_scale"], "min": 0.0, "max": 30.0, "step": 0.1}),
            "stg_scale": ("FLOAT", {"default": dev["stg_scale"], "min": 0.0, "max": 30.0, "step": 0.1}),
            "stg_blocks": ("STRING", {"default": dev["stg_blocks"]}),
            "rescale": ("FLOAT", {"default": dev["rescale"], "min": 0.0, "max": 1.0, "step": 0.01}),
            "start_sigma": ("FLOAT", {"default": dev["start_sigma"], "min": 0.0, "max": 1.0, "step": 0.0001}),
            "guidance_passes": (list(GUIDANCE_PASSES), {"default": dev["guidance_passes"], "tooltip": "batched: one "
                                "forward for all guidance passes (faster on big GPUs, more memory); same result"}),
        }, "optional": {
            "negative": ("CONDITIONING",),
            "audio_rescale": ("FLOAT", {"default": dev["audio_rescale"], "min": SAME_RESCALE, "max": 1.0,
                                        "step": 0.01, "tooltip": "the audio's rescale; -1 = the rescale widget's "
                                        "(HQ preset: 1.0 with rescale 0.45)"}),
            "gpus": ("INT", {"default": 1, "min": 1, "max": MAX_GPUS, "tooltip": "GPUs to sample on: 1 = in "
                             "ComfyUI's process; N = one worker process per GPU (cuda:0..N-1), the video tokens "
                             "split over them (tiles of a tiled stage 2 spread over them). The workers stay up "
                             "with the model loaded between runs; each holds its own copy in RAM. Same result "
                             "up to float rounding."}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = SAMPLING

    def sample(self, model, positive, latent, seed, steps, schedule, sigmas, sampler, video_cfg, audio_cfg,
               modality_scale, stg_scale, stg_blocks, rescale, start_sigma, guidance_passes="sequential",
               negative=None, audio_rescale=SAME_RESCALE, gpus=1):
        video_width = model.config.context_width("video")
        text, frame_rate = from_conditioning(positive, "positive conditioning", video_width)
        negative_text = (from_conditioning(negative, "negative conditioning", video_width)[0]
                         if negative is not None else None)
        info = latent_info(latent)
        av = to_av_latents(latent, fps=frame_rate)
        if start_sigma <= 0.0:
            return (latent,)  # nothing to denoise: like ComfyUI's samplers at denoise 0
        av = fit_empty_channels(av, video_channels=model.config.in_channels, audio_shape=_audio_shape(model))
        if gpus > 1:  # refused before anything is encoded or started
            worker_pool.check_gpus(gpus, engine().device.device, model.config)
        recipe = recipe_for(model.family.version)
        blocks = parse_blocks(stg_blocks, recipe.stg_blocks)
        _log_preset(model, recipe, steps if schedule in ("ltx2", TOKEN_SHIFTED) else None, stg_scale, blocks)
        if schedule == "distilled" and start_sigma >= 1.0 and sampler != recipe.distilled.sampler:
            log.info("LTX2 Sampler: the %s distilled preset samples stage 1 with %s; this run uses %s",
                     model.family.name, recipe.distilled.sampler, sampler)
        video = GuidanceParams(video_cfg, stg_scale, blocks, rescale, modality_scale)
        audio = GuidanceParams(audio_cfg, stg_scale, blocks, rescale if audio_rescale < 0 else audio_rescale,
                               modality_scale)
        grid = av.video_grid()
        tokens = grid.frames * grid.height * grid.width if grid is not None else None
        schedule_sigmas = recipe.schedule(schedule, steps, sigmas, tokens=tokens)
        settings = GenerationSettings(start_at(schedule_sigmas, start_sigma), seed=seed,
                                      sampler=sampler, video_guidance=video, audio_guidance=audio,
                                      batched_guidance=guidance_passes == "batched")
        run_engine = engine()
        items = self._conditioning(info, av, run_engine) + list(info.guides)  # IC-LoRA guides last, as the reference
        audio_items = reference_audio_items(info, av)
        noise = SeededNoise.resume(info.noise, seed, av.batch)  # stage 2 with stage 1's seed continues its stream
        video_vae = model.models.optional("video_vae") if av.video is not None else None
        preview = previewer_for(video_vae, run_engine)
        out, noise = worker_pool.sample_on(gpus, model, text, av, settings, run_engine, negative=negative_text,
                                           conditioning=items, noise=noise, callback=preview,
                                           tiles=info.refine_tiles, audio_conditioning=audio_items)
        # the masks stay: a kept audio (audio-to-video) is kept in stage 2 as well
        out = dataclasses.replace(out, video_mask=av.video_mask, audio_mask=av.audio_mask)
        # guides and a Dub-It reference condition this sampler only (the reference's IC-LoRA stage 2 has no guide;
        # Dub-It's stage 2 references the stage-1 audio: nodes.dubit)
        return (from_av_latents(out, info.replace(noise=noise.record(), refine_tiles=None, guides=(),
                                                  audio_reference=None), base=latent),)

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


def _log_preset(model, recipe, steps: int | None, stg_scale: float, blocks: tuple[int, ...]) -> None:
    """One line naming the model family, its dev preset and what this sampler runs (a hint when they differ)."""
    family = model.family
    dev = recipe.dev
    line = (f"LTX2 Sampler: {family.name} model, its dev preset {dev.steps} steps with STG on block "
            f"{', '.join(map(str, recipe.stg_blocks))}; this run: "
            + (f"{steps} steps" if steps is not None else "a fixed schedule")
            + (f", STG {stg_scale:g} on block {', '.join(map(str, blocks))}" if stg_scale else ", no STG"))
    if stg_scale and blocks != recipe.stg_blocks:
        line += " (not the family's STG block: stg_blocks 'auto' picks it)"
    log.info(line)


def _audio_shape(model) -> tuple[int, int] | None:
    """(channels, mel bins) of the model's audio latent: from its audio VAE, else the released channel count."""
    audio_vae = model.models.optional("audio_vae")
    if audio_vae is not None:
        return audio_vae.latent_channels, audio_vae.latent_mel_bins
    features, channels = model.config.audio_in_channels, AudioVAEConfig().z_channels
    return (channels, features // channels) if features % channels == 0 else None

