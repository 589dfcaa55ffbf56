"""End to end (the CLI's ``generate``): prompt(s) -> Gemma features -> text conditioning -> [stage 1,
x2 upscale, stage 2 | one stage] -> audio decode -> tiled video decode streamed into an MP4 with the audio.

The sampling follows ``sampling.recipe`` (presets, two-stage recipe); ``sample_stages`` runs it at the
latent level through the same stage functions (``stages``) the nodes call, so a node graph built as the
shipped workflows are built gives the same latents (tests/test_nodes.py checks it). ``precheck``
refuses a run that cannot fit before anything is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .media.mux import MP4Writer
from .memory import MemoryEngine
from .memory.estimates import DecoderShape
from .memory.precheck import RunEstimate, RunRequest, checkpoint_weights, stage_weights
from .memory.selection import default_engine
from .model.connector import TextConditioning
from .model.vae_tiling import TilingConfig
from .handles import DiTHandle, GemmaHandle, LTX2Models, UpscalerHandle, VideoVAEHandle
from .latents import AVLatents, GenerationSettings, empty_latents
from .sampling.conditioning import ImageCondition
from .sampling.guidance import plan_passes
from .sampling.loop import Callback
from .sampling.noise import SeededNoise
from .model.shapes import stage1_size
from .sampling.recipe import DEFAULT_SEED, Recipe, recipe_for
from .stages import (audio_latent_for_clip, connect_text, decode_audio, decode_video_chunks,
                     encode_conditioning_images, encode_prompts, pixels_to_images, run_sampler, split_text, upscale)

log = logging.getLogger("ltx2_nodes")


@dataclass
class GenerateRequest:
    """What to generate. ``width``/``height`` are the final size (two-stage: stage 1 runs at half).

    ``mode``: the stage-1 preset of ``family``'s recipe (``sampling.recipe``; None: the loaded checkpoint's
    family in :func:`generate` / :func:`precheck`, see :meth:`for_model`, else the default family),
    "distilled" (fixed list, no guidance) or "dev" (``steps``, None: the preset's; reference guidance, needs
    the negative prompt); ``stage1`` overrides the settings ``mode`` implies. ``images``: image conditions
    (re-encoded at each stage's size); ``audio``: an AUDIO dict to keep as the soundtrack (audio-to-video),
    starting at ``audio_start_seconds``.
    """

    prompt: str
    negative_prompt: str | None = None  # None: the family's (``Recipe.negative_prompt``)
    width: int = 1536
    height: int = 1024
    frames: int = 121
    fps: float = 24.0
    seed: int = DEFAULT_SEED
    mode: str = "distilled"
    steps: int | None = None
    two_stage: bool = True
    stage1: GenerationSettings | None = None
    images: Sequence[ImageCondition] = ()
    audio: dict | None = None
    audio_start_seconds: float = 0.0
    tiling: TilingConfig | str | None = "auto"
    metadata: dict = field(default_factory=dict)  # more MP4 tags (JSON-encoded when not strings)
    family: str | None = None

    def describe(self) -> dict:
        """What the MP4's ``ltx2_generate`` tag records (ComfyUI's own ``prompt`` tag means an API graph)."""
        settings = self.stage1_settings()
        return {"prompt": self.prompt, "negative_prompt": self.negative() if _needs_negative(settings) else "",
                "width": self.width, "height": self.height, "frames": self.frames, "fps": self.fps, "seed": self.seed,
                "mode": self.mode, "sampler": settings.sampler, "steps": settings.steps, "two_stage": self.two_stage,
                "images": len(self.images), "audio_to_video": self.audio is not None}

    def recipe(self) -> Recipe:
        return recipe_for(self.family)

    def negative(self) -> str:
        """The negative prompt: the one given, else the family's."""
        return self.recipe().negative_prompt if self.negative_prompt is None else self.negative_prompt

    def for_model(self, ltx2: LTX2Models) -> "GenerateRequest":
        """This request with ``family`` set to the checkpoint's (``ckpt.family.version``) when none was given:
        the presets follow the loaded model."""
        if self.family is not None:
            return self
        return dataclasses.replace(self, family=ltx2.ckpt.family.version)

    def stage1_settings(self) -> GenerationSettings:
        if self.stage1 is not None:
            return self.stage1
        return GenerationSettings.from_preset(self.recipe().preset(self.mode), seed=self.seed, steps=self.steps)

    def stage_size(self) -> tuple[int, int]:
        """(height, width) of the first stage."""
        return stage1_size(self.height, self.width) if self.two_stage else (self.height, self.width)


def precheck(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, engine: MemoryEngine | None = None,
             upscaler: UpscalerHandle | None = None) -> RunEstimate:
    """``engine.precheck`` for the whole run from file headers (nothing loaded): raises
    ``OutOfMemoryError`` naming what would fit when the run cannot."""
    from .model.gemma3 import GemmaConfig
    from .model.transformer import TransformerConfig

    engine = engine if engine is not None else default_engine()
    request = request.for_model(ltx2)
    weights = checkpoint_weights(ltx2.pack or ltx2.ckpt, dtype=ltx2.dtype, fp8=ltx2.fp8 == "cast bf16 to fp8")
    weights["gemma"] = stage_weights("gemma", gemma.files.raw_state(), dtype=gemma.dtype)
    if upscaler is not None and request.two_stage:
        from .loading.safetensors_file import SafetensorsFile

        file = SafetensorsFile(upscaler.path)
        weights["upscaler"] = stage_weights("upscaler", {k: file.info(k) for k in file.keys()},
                                            dtype=upscaler.dtype, streamable=False)
    settings = request.stage1_settings()
    passes = len(plan_passes(settings.video_guidance, settings.audio_guidance))
    tile = request.tiling if isinstance(request.tiling, TilingConfig) else None
    run = RunRequest(request.width, request.height, request.frames, request.fps,
                     batch=passes if settings.batched_guidance else 1,
                     prompts=2 if _needs_negative(settings) else 1, two_stage=request.two_stage,
                     vae_tile=((tile.tile_size_in_pixels or 4096, tile.tile_size_in_frames or 4096) if tile
                               else (512, 64)),
                     dtype=ltx2.dtype)
    text_shape = DecoderShape.of(GemmaConfig.from_hf(gemma.files.text_config, source=gemma.name))
    dit_config = TransformerConfig.from_metadata(ltx2.ckpt.component_config("transformer"))
    estimate = engine.precheck(weights, run, dit_config=dit_config, text_shape=text_shape)
    log.info("pre-check:\n%s", estimate.table())
    return estimate


def _needs_negative(settings: GenerationSettings) -> bool:
    return settings.video_guidance.needs_negative or settings.audio_guidance.needs_negative


def sample_stages(dit: DiTHandle, video_vae: VideoVAEHandle, positive: TextConditioning, latents: AVLatents,
                  settings: GenerationSettings, recipe: Recipe, engine: MemoryEngine | None = None, *,
                  negative: TextConditioning | None = None, images: Sequence[ImageCondition] = (),
                  upscaler: UpscalerHandle | None = None, loras: Sequence = (), stage2_loras: Sequence = (),
                  callback: Callback | None = None) -> AVLatents:
    """Stage 1 with ``settings`` from ``latents``; with an ``upscaler`` the two-stage recipe follows: x2
    upscale, then ``recipe.refine`` at the final size on the same noise stream, the input's masks kept and
    the images encoded again at that size, ``stage2_loras`` added to ``loras``. Latents on the CPU."""
    noise = SeededNoise(settings.seed, latents.batch)
    items = encode_conditioning_images(video_vae, images, latents.video_grid(), engine)
    result = run_sampler(dit, positive, latents, settings, engine, negative=negative, conditioning=items,
                         loras=list(loras), noise=noise, callback=callback)
    if upscaler is None:
        return result
    kept = dataclasses.replace(result, video_mask=latents.video_mask, audio_mask=latents.audio_mask)
    second_in = upscale(kept, upscaler, video_vae.stats, engine)
    items = encode_conditioning_images(video_vae, images, second_in.video_grid(), engine)
    stage2 = GenerationSettings.from_preset(recipe.refine, seed=settings.seed)
    return run_sampler(dit, positive, second_in, stage2, engine, negative=negative, conditioning=items,
                       loras=list(loras) + list(stage2_loras), noise=noise, callback=callback)


def request_text(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, engine: MemoryEngine,
                 gemma_cache_dir: str | Path | None = None) -> tuple[TextConditioning, TextConditioning | None]:
    """The request's prompt, and its negative prompt when its stage-1 guidance needs one, through Gemma and the
    connectors: (positive, negative or None)."""
    negative_needed = _needs_negative(request.stage1_settings())
    prompts = [request.prompt] + ([request.negative()] if negative_needed else [])
    text = connect_text(ltx2.text_connector, encode_prompts(gemma, prompts, engine, cache_dir=gemma_cache_dir), engine)
    return split_text(text, 0), (split_text(text, 1) if negative_needed else None)


def require_parts(ltx2: LTX2Models, images: bool = False, audio: bool = False) -> None:
    """Refuse now (``CheckpointError``), before any prompt is encoded or any step sampled, a file that lacks a
    part a generation needs: text connectors, video VAE, audio VAE and vocoder, plus the video encoder when
    ``images`` condition the run and the audio encoder for audio-to-video (``audio``)."""
    for handle in ("text_connector", "video_vae", "audio_vae"):  # making a handle checks its parts
        getattr(ltx2, handle)
    for needed, component, what in ((images, "video_encoder", "video VAE encoder (image conditioning)"),
                                    (audio, "audio_encoder", "audio VAE encoder (audio-to-video)")):
        if needed:
            ltx2.require_part(component, what)


def generate(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, out_path: str | Path, *,
             upscaler: UpscalerHandle | None = None, engine: MemoryEngine | None = None,
             loras: Sequence = (), stage2_loras: Sequence = (), callback: Callback | None = None,
             gemma_cache_dir: str | Path | None = None) -> Path:
    """Text (+ images / audio) -> MP4 with video and audio, end to end. ``loras``: ``[(LoRA, strength)]``
    for every stage; ``stage2_loras`` added for the refinement stage (the dev recipe passes the distilled
    LoRA at ``recipe.stage2_lora_strength``). Returns the MP4 path."""
    engine = engine if engine is not None else default_engine()
    if request.two_stage and upscaler is None:
        raise InputError("a two-stage run needs the latent upscaler (ltx-2-spatial-upscaler-x2-1.0.safetensors, "
                         "ltx-2.3-spatial-upscaler-x2-1.1.safetensors for LTX-2.3).")
    request = request.for_model(ltx2)
    require_parts(ltx2, images=bool(request.images), audio=request.audio is not None)
    log.info("%s: LTX-%s presets (sampling/recipe.py)", ltx2.name, request.family)
    settings = request.stage1_settings()
    height, width = request.stage_size()
    precheck(ltx2, gemma, request, engine, upscaler)

    positive, negative = request_text(ltx2, gemma, request, engine, gemma_cache_dir)

    video_vae, audio_vae = ltx2.video_vae, ltx2.audio_vae
    latents = empty_latents(1, request.frames, height, width, request.fps, video_channels=video_vae.latent_channels,
                            audio_channels=audio_vae.latent_channels, audio_mel_bins=audio_vae.latent_mel_bins,
                            video_scale=video_vae.scale, audio_timing=audio_vae.timing)
    if request.audio is not None:
        audio = audio_latent_for_clip(audio_vae, request.audio, request.audio_start_seconds,
                                      request.frames / request.fps, latents.audio.shape[2], engine)
        latents = dataclasses.replace(latents, audio=audio).keep_audio()

    result = sample_stages(ltx2.dit, video_vae, positive, latents, settings, request.recipe(), engine,
                           negative=negative, images=request.images, upscaler=upscaler if request.two_stage else None,
                           loras=loras, stage2_loras=stage2_loras, callback=callback)

    return write_clip(ltx2, result, out_path, request.fps, {"ltx2_generate": request.describe(), **request.metadata},
                      engine, request.tiling)


def write_clip(ltx2: LTX2Models, result: AVLatents, out_path: str | Path, fps: float, metadata: dict,
               engine: MemoryEngine | None = None, tiling: TilingConfig | str | None = "auto") -> Path:
    """Decode ``result`` (its first sample: the tiled video streamed into the file, the audio cut to the video's
    duration) into an MP4 at ``out_path``; returns its path."""
    frames = result.video_grid().pixel_frames
    sound = decode_audio(result.audio, ltx2.audio_vae, engine, frames=frames, fps=fps)
    writer = MP4Writer(out_path, fps, audio_sample_rate=sound["sample_rate"], metadata=metadata)
    with writer, contextlib.closing(decode_video_chunks(result.video, ltx2.video_vae, engine, tiling)) as chunks:
        for chunk in chunks:
            writer.add_frames(pixels_to_images(chunk[:1]))
        writer.set_audio(sound["waveform"][0])
    return writer.path

