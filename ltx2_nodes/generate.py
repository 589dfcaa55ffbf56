"""End to end (the CLI's ``generate``): prompt(s) -> Gemma features -> text conditioning -> [stage 1,
x2 (or x1.5) upscale, optional temporal x2 upscale, stage 2 | one stage] -> audio decode -> tiled video decode
streamed into an MP4 with the audio.

The sampling follows ``sampling.recipe`` (presets, two-stage recipe); ``sample_stages`` runs it at the
latent level through the same stage functions (``stages``) the nodes call, so a node graph built as the
shipped workflows are built gives the same latents (tests/test_nodes.py checks it). ``precheck``
refuses a run that cannot fit before anything is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .distributed import world
from .errors import InputError
from .media.audio_clip import audio_segment
from .media.mux import MP4Writer
from .memory import MemoryEngine
from .memory.estimates import DecoderShape
from .memory.precheck import RunEstimate, RunRequest
from .memory.selection import default_engine
from .model.connector import TextConditioning
from .model.dit_tiling import RefineTiles
from .model.sequence_parallel import check_heads
from .model.vae_tiling import TilingConfig
from .handles import DiTHandle, GemmaHandle, LTX2Models, UpscalerHandle, VideoVAEHandle
from .latents import AVLatents, GenerationSettings, empty_latents
from .sampling.conditioning import ImageCondition
from .sampling.guidance import plan_passes
from .sampling.guides import ControlVideo, reference_scale_factors
from .sampling.loop import Callback
from .sampling.noise import SeededNoise
from .sampling.reference_audio import ReferenceAudio
from .model.shapes import (AudioTiming, Upscale, VideoScale, clamped_frames_for_seconds, stage1_frames,
                           stage1_size, video_latent_size)
from .sampling.recipe import DEFAULT_SEED, Recipe, SamplerPreset, recipe_for
from .stages import (audio_latent_for_clip, connect_text, decode_audio, decode_video, decode_video_chunks,
                     encode_audio_latent, encode_conditioning_images, encode_prompts, encode_reference_guide,
                     pixels_to_images, predict_frames, run_sampler, split_text, upscale)

log = logging.getLogger("ltx2_nodes")
_LONGER_THAN_ANY_CLAMP = 1e6  # seconds


@dataclass
class GenerateRequest:
    """What to generate. ``width``/``height`` are the final size (two-stage: stage 1 runs at half).

    ``mode``: the stage-1 preset of ``family``'s recipe (``sampling.recipe``; None: the loaded checkpoint's
    family in :func:`generate` / :func:`precheck`, see :meth:`for_model`, else the default family),
    "distilled" (fixed list, no guidance), "dev" (``steps``, None: the preset's; reference guidance, needs
    the negative prompt) or "hq" (the dev model's HQ recipe: res_2s, its own stage 2, the distilled LoRA in
    both stages -- the caller passes it, ``Recipe.stage_lora_strengths``); ``stage1`` overrides the settings
    ``mode`` implies. ``upscale``: what the upscalers between the stages do (set from the upscaler files by
    :func:`generate` / :func:`precheck`): stage 1's size and frames follow it (``model.shapes``). ``images``:
    image conditions (re-encoded at each stage's size); ``audio``: an AUDIO dict to keep as the soundtrack
    (audio-to-video), starting at ``audio_start_seconds``. ``refine_tiles``: stage 2 tile by tile
    (``model.dit_tiling``): None untiled (the reference's single-GPU recipe), "auto" (the pre-check chooses: the
    whole frame up to a 1280x704 area, else the fewest tiles of at most that area, more if the memory budget
    needs it), "N" or "RxC".

    Dub-It (the reference ``DubItPipeline``): ``control`` is the clip (guiding both stages), ``reference_audio`` the
    voice, the Dub-It IC-LoRA in :func:`generate`'s ``loras`` (both stages).

    LTX-2.5: ``frames`` None is "auto", the length the model's duration head predicts for the prompt
    (``stages.predict_frames``); ``keyframes`` (a count of evenly spaced frames, or the pixel frames) asks stage 1 to
    generate standalone keyframes too, written next to the MP4 (:func:`keyframes_path`).
    """

    prompt: str
    negative_prompt: str | None = None  # None: the family's (``Recipe.negative_prompt``)
    width: int = 1536
    height: int = 1024
    frames: int | None = 121
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
    keyframes: int | tuple[int, ...] = 0
    refine_tiles: RefineTiles | str | None = None
    refine_tile_positions: bool = False  # tiles' positions start at 0 (``RefineTiles.tile_positions``)
    upscale: Upscale = Upscale()
    control: ControlVideo | None = None  # IC-LoRA control video guiding stage 1 (``generate(stage1_loras=...)``)
    # Dub-It: the voice (AUDIO) as frozen reference audio tokens of stage 1, the stage-1 audio kept and referenced
    # in stage 2 (``sample_stages``); the clip is ``control`` (``stage2`` on), the Dub-It IC-LoRA in ``loras``
    reference_audio: dict | None = None

    def describe(self) -> dict:
        """What the MP4's ``ltx2_generate`` tag records (ComfyUI's own ``prompt`` tag means an API graph)."""
        settings = self.stage1_settings()
        return {"prompt": self.prompt, "negative_prompt": self.negative() if _needs_negative(settings) else "",
                "width": self.width, "height": self.height, "frames": self.frames, "fps": self.fps, "seed": self.seed,
                "mode": self.mode, "sampler": settings.sampler, "steps": settings.steps, "two_stage": self.two_stage,
                "upscale": self.upscale.describe() if self.two_stage else "none",
                "images": len(self.images), "audio_to_video": self.audio is not None,
                "keyframes": self.keyframes if isinstance(self.keyframes, int) else list(self.keyframes),
                "control_video": self.control is not None, "dub": self.reference_audio is not None}

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
        """Stage 1's settings (a token-shifted schedule, HQ's, is shifted by stage 1's latent; "auto" frames not
        resolved yet: the fixed 4096-token shift, good for what is decided before the length is known)."""
        if self.stage1 is not None:
            return self.stage1
        tokens = None
        if self.frames is not None:
            height, width = self.stage_size()
            tokens = math.prod(video_latent_size(self.stage_frames()[0], height, width))
        return GenerationSettings.from_preset(self.recipe().preset(self.mode), seed=self.seed, steps=self.steps,
                                              tokens=tokens)

    def refine_preset(self) -> SamplerPreset:
        """Stage 2's preset: the recipe's refine, HQ's own for mode "hq"."""
        return self.recipe().refine_preset(self.mode)

    def stage_size(self) -> tuple[int, int]:
        """(height, width) of the first stage."""
        return (stage1_size(self.height, self.width, upscale=self.upscale) if self.two_stage
                else (self.height, self.width))

    def stage_frames(self) -> tuple[int, float]:
        """(frames, fps) of the first stage: half of them (F -> (F + 1) / 2) before the temporal upscaler."""
        return stage1_frames(self.frames, self.fps, self.upscale) if self.two_stage else (self.frames, self.fps)

    def with_upscalers(self, upscaler: UpscalerHandle | None, temporal: UpscalerHandle | None) -> "GenerateRequest":
        """This request with ``upscale`` set from the upscaler files (``upscale_of``)."""
        return dataclasses.replace(self, upscale=upscale_of(upscaler, temporal)) if self.two_stage else self


def upscale_of(upscaler: UpscalerHandle | None, temporal: UpscalerHandle | None) -> Upscale:
    """What a spatial ``upscaler`` (x2, x1.5; None: none) and a ``temporal`` x2 upscaler do between two stages,
    from their files' configs; a file in the other's place is refused."""
    for handle, want_temporal in ((upscaler, False), (temporal, True)):
        if handle is not None and handle.config.upscale.temporal != want_temporal:
            what = "temporal" if want_temporal else "spatial"
            raise InputError(f"{handle.name} is a {handle.config.upscale.describe()} latent upscaler, not a {what} "
                             f"one; pass it as the {'spatial' if want_temporal else 'temporal'} upscaler "
                             f"(generate --{'upscaler' if want_temporal else 'temporal-upscaler'}).")
        if handle is not None and want_temporal and handle.config.spatial_upsample:
            raise InputError(f"{handle.name} upscales space and time together; the temporal stage option takes a "
                             "temporal-only file (ltx-2-temporal-upscaler-x2-1.0 / LTX-2.3's / LTX-2.5's).")
    spatial = upscaler.config.upscale.spatial if upscaler is not None else (1, 1)
    return Upscale(spatial, temporal is not None)


def precheck(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, engine: MemoryEngine | None = None,
             upscaler: UpscalerHandle | None = None, temporal_upscaler: UpscalerHandle | None = None, *,
             loras: Sequence = (), audio_only: bool = False, encode_video: bool = False,
             decode_video: bool = True) -> RunEstimate:
    """``engine.precheck`` for the whole run from file headers (nothing loaded): raises
    ``OutOfMemoryError`` naming what would fit when the run cannot. What is encoded is checked too: the
    request's images, its control video (at the reference size of the IC-LoRA among ``loras``, in stage 1 and, for
    Dub-It, stage 2, with the self-attention mask an attention strength below 1 makes; Dub-It's reference audio
    tokens) and, with ``encode_video``, a clip of the request's size and frames (a retake's source,
    video-to-audio). ``audio_only``: text-to-audio on the audio-only DiT
    (``DiTHandle.audio_stream``), the request's frames at its fps the length. ``decode_video`` False: the run
    decodes no video (video-to-audio keeps the given frames), so no video decode is priced."""
    from .model.transformer import TransformerConfig

    engine = engine if engine is not None else default_engine()
    request = request.for_model(ltx2).with_upscalers(upscaler, temporal_upscaler)
    if request.frames is None:  # "auto": the longest clip the duration head can ask for (any longer duration clamps)
        request = dataclasses.replace(request, frames=clamped_frames_for_seconds(_LONGER_THAN_ANY_CLAMP, request.fps))
    weights = dict(ltx2.audio_stage_weights if audio_only else ltx2.stage_weights, gemma=gemma.stage_weights)
    if not decode_video:
        weights.pop("video_vae", None)
    if upscaler is not None and request.two_stage:
        weights["upscaler"] = upscaler.stage_weights
    if temporal_upscaler is not None and request.two_stage:
        weights["temporal_upscaler"] = dataclasses.replace(temporal_upscaler.stage_weights, name="temporal_upscaler")
    settings = request.stage1_settings()
    passes = len(plan_passes(settings.video_guidance, settings.audio_guidance))
    tile = request.tiling if isinstance(request.tiling, TilingConfig) else None
    # stage 1's appended tokens: one latent frame per image past frame 0 and per generated keyframe slot
    slots = request.keyframes if isinstance(request.keyframes, int) else len(request.keyframes)
    cells = math.prod(video_latent_size(1, *request.stage_size())[1:])
    appended = (sum(c.frame_index > 0 for c in request.images) + slots) * cells
    run = RunRequest(request.width, request.height, request.frames, request.fps,
                     batch=passes if settings.batched_guidance else 1,
                     prompts=2 if _needs_negative(settings) else 1, two_stage=request.two_stage,
                     vae_tile=((tile.tile_size_in_pixels or 4096, tile.tile_size_in_frames or 4096) if tile
                               else (512, 64)),
                     dtype=ltx2.dtype, refine_tiles=request.refine_tiles,
                     tile_positions=request.refine_tile_positions, upscale=request.upscale, ranks=world().size,
                     audio_only=audio_only, images=len(request.images), encode_video=encode_video,
                     guide_tokens=0 if audio_only else appended,
                     attention_mask=request.control is not None and request.control.attention < 1.0,
                     **({} if audio_only else _control_sizes(request, loras)))
    text_shape = DecoderShape.of(gemma.files.model_config())
    dit_config = TransformerConfig.from_metadata(ltx2.ckpt.component_config("transformer"))
    if audio_only:
        dit_config = dataclasses.replace(dit_config, has_video=False)
    if world().size > 1:  # torchrun: refuse a process count the DiT's heads do not split into, before loading
        check_heads(dit_config, world().size)
    # the video decode at the loaded decoder's cost (LTX-2.5's diffusion decoder; None: the conv VAE's)
    decoder = ltx2.video_vae.diffusion_config if "video_vae" in weights else None
    estimate = engine.precheck(weights, run, dit_config=dit_config, text_shape=text_shape, decoder_config=decoder)
    log.info("pre-check:\n%s", estimate.table())
    return estimate


def _control_sizes(request: GenerateRequest, loras: Sequence) -> dict:
    """``RunRequest``'s control fields: the control video's reference scale (the IC-LoRA among ``loras``) and the
    stages it guides (both for Dub-It), and the audio latents of Dub-It's reference audio (25 per second)."""
    sizes = {}
    if request.control is not None:
        sizes = {"control": reference_scale_factors([lora for lora, _ in loras]),
                 "control_stages": 2 if request.control.stage2 else 1}
    if request.reference_audio is not None:
        seconds = request.reference_audio["waveform"].shape[-1] / max(int(request.reference_audio["sample_rate"]), 1)
        sizes["reference_audio"] = math.ceil(seconds * AudioTiming().latents_per_second)
    return sizes


def _needs_negative(settings: GenerationSettings) -> bool:
    return settings.video_guidance.needs_negative or settings.audio_guidance.needs_negative


def sample_stages(dit: DiTHandle, video_vae: VideoVAEHandle, positive: TextConditioning, latents: AVLatents,
                  settings: GenerationSettings, recipe: Recipe, engine: MemoryEngine | None = None, *,
                  negative: TextConditioning | None = None, images: Sequence[ImageCondition] = (),
                  upscaler: UpscalerHandle | None = None, loras: Sequence = (), stage2_loras: Sequence = (),
                  callback: Callback | None = None, refine_tiles: RefineTiles | None = None,
                  temporal_upscaler: UpscalerHandle | None = None, refine: SamplerPreset | None = None,
                  stage1_loras: Sequence = (), control: ControlVideo | None = None,
                  reference_audio: torch.Tensor | None = None) -> AVLatents:
    """Stage 1 with ``settings`` from ``latents``; with an ``upscaler`` and/or a ``temporal_upscaler`` the
    two-stage recipe follows: the spatial upscale (x2 / x1.5), the temporal one (F -> 2F - 1 frames at twice the
    frame rate), then ``refine`` (None: ``recipe.refine``) at the final size on the same noise stream, the input's
    masks kept and the images encoded again at that size (stage 1 of a temporal run pins an image at half its
    frame); ``stage1_loras`` / ``stage2_loras`` added to ``loras`` in their stage; ``refine_tiles``: that
    refinement tile by tile (``stages.run_sampler``). IC-LoRA control (the reference ``ICLoraPipeline``): the
    IC-LoRA comes in ``stage1_loras`` and ``control`` guides stage 1 only, encoded at the LoRAs' reference size
    (``stages.encode_reference_guide``); stage 2 refines without either. Dub-It (the reference ``DubItPipeline``):
    the IC-LoRA in ``loras``, ``control`` with ``stage2`` guides both stages, ``reference_audio`` (a normalised
    audio latent ``[1, C, T, M]``) is appended to stage 1's audio (``sampling.reference_audio``) and stage 2 keeps
    the stage-1 audio and references it, as the node graph does (``nodes.dubit``). Latents on the CPU."""
    noise = SeededNoise(settings.seed, latents.batch)
    first_images = _stage1_images(images, temporal_upscaler is not None)
    items = encode_conditioning_images(video_vae, first_images, latents.video_grid(), engine)
    if control is not None:
        items.append(_guide(video_vae, control, latents.video_grid(), [*loras, *stage1_loras], engine))
    audio_items = [ReferenceAudio(reference_audio)] if reference_audio is not None else []
    result = run_sampler(dit, positive, latents, settings, engine, negative=negative, conditioning=items,
                         loras=list(loras) + list(stage1_loras), noise=noise, callback=callback,
                         audio_conditioning=audio_items)
    if upscaler is None and temporal_upscaler is None:
        return result
    second_in = dataclasses.replace(result, video_mask=latents.video_mask, audio_mask=latents.audio_mask)
    for handle in (upscaler, temporal_upscaler):
        if handle is not None:
            second_in = upscale(second_in, handle, video_vae.stats, engine)
    items = encode_conditioning_images(video_vae, images, second_in.video_grid(), engine)
    if control is not None and control.stage2:
        items.append(_guide(video_vae, control, second_in.video_grid(), [*loras, *stage2_loras], engine))
    if reference_audio is not None:  # Dub-It's stage 2: the stage-1 audio kept as it is and referenced
        second_in = second_in.keep_audio()
        audio_items = [ReferenceAudio(second_in.audio.clone())]
    stage2 = GenerationSettings.from_preset(recipe.refine if refine is None else refine, seed=settings.seed)
    return run_sampler(dit, positive, second_in, stage2, engine, negative=negative, conditioning=items,
                       loras=list(loras) + list(stage2_loras), noise=noise, callback=callback, tiles=refine_tiles,
                       audio_conditioning=audio_items)


def _guide(video_vae: VideoVAEHandle, control: ControlVideo, grid, loras: Sequence, engine: MemoryEngine | None):
    """``control`` encoded as the guide of a stage sampling ``grid`` with ``loras`` (their reference scale)."""
    downscale, temporal = reference_scale_factors([lora for lora, _ in loras])
    return encode_reference_guide(video_vae, control.frames, grid, engine, downscale_factor=downscale,
                                  temporal_scale_factor=temporal, strength=control.strength,
                                  attention=control.attention)


def _stage1_images(images: Sequence[ImageCondition], temporal: bool) -> Sequence[ImageCondition]:
    """The image conditions of stage 1: as given, or before the temporal upscaler at half their frame (which must
    be even: stage 1's frame k becomes frame 2k)."""
    if not temporal:
        return images
    odd = [c.frame_index for c in images if c.frame_index % 2]
    if odd:
        raise InputError(f"image conditions at frames {odd}: with the temporal x2 upscaler stage 1 samples every "
                         "second frame (its frame k becomes frame 2k), so pin images at even frames.")
    return [dataclasses.replace(c, frame_index=c.frame_index // 2) for c in images]


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
             gemma_cache_dir: str | Path | None = None, compile_dit: bool = False,
             temporal_upscaler: UpscalerHandle | None = None, stage1_loras: Sequence = ()) -> Path:
    """Text (+ images / audio) -> MP4 with video and audio, end to end (audio-to-video muxes the given audio
    itself, not the audio VAE's re-synthesis of it). ``loras``: ``[(LoRA, strength)]``
    for every stage; ``stage1_loras`` / ``stage2_loras`` added for stage 1 / the refinement stage (the dev recipe
    passes the distilled LoRA at ``recipe.stage2_lora_strength`` in stage 2, the HQ recipe in both stages at
    ``Recipe.stage_lora_strengths``); ``upscaler``: the spatial one (x2, x1.5), ``temporal_upscaler``: the
    temporal x2 (either or both between the stages of a two-stage run); ``compile_dit``: DiT blocks through
    ``torch.compile`` (``DiTHandle.with_compile``); ``request.control``: an IC-LoRA control video
    guiding stage 1, the IC-LoRA passed in ``stage1_loras``; Dub-It: ``request.control`` (``stage2`` on) and
    ``request.reference_audio``, the Dub-It IC-LoRA in ``loras`` (``sample_stages``). Returns the MP4 path."""
    engine = engine if engine is not None else default_engine()
    if request.two_stage and upscaler is None and temporal_upscaler is None:
        raise InputError("a two-stage run needs the latent upscaler (ltx-2-spatial-upscaler-x2-1.0.safetensors, "
                         "ltx-2.3-spatial-upscaler-x2-1.1.safetensors for LTX-2.3).")
    if request.mode == "hq" and not request.two_stage:
        raise InputError("the HQ recipe is a two-stage recipe (stage 1 at reduced size, the distilled LoRA at "
                         "0.25 / 0.5 in its two stages); drop the single-stage option, or use mode 'dev'.")
    if temporal_upscaler is not None and request.keyframes:
        raise InputError("generated keyframes are placed on stage 1's frames; they do not combine with the "
                         "temporal upscaler here. Drop one of them.")
    request = request.for_model(ltx2).with_upscalers(upscaler, temporal_upscaler)
    require_parts(ltx2, images=bool(request.images) or request.control is not None,
                  audio=request.audio is not None or request.reference_audio is not None)
    log.info("%s: LTX-%s presets (sampling/recipe.py), mode %s, upscalers %s", ltx2.name, request.family,
             request.mode, request.upscale.describe() if request.two_stage else "none")
    tiles = precheck(ltx2, gemma, request, engine, upscaler, temporal_upscaler,
                     loras=[*loras, *stage1_loras]).request.tiles()

    positive, negative = request_text(ltx2, gemma, request, engine, gemma_cache_dir)
    if request.frames is None:
        request = dataclasses.replace(request, frames=predict_frames(ltx2.duration_head, positive, request.fps))
    settings = request.stage1_settings()  # the length is known: a token-shifted schedule gets its latent's shift
    height, width = request.stage_size()
    frames, fps = request.stage_frames()

    video_vae, audio_vae = ltx2.video_vae, ltx2.audio_vae
    latents = empty_latents(1, frames, height, width, fps, video_channels=video_vae.latent_channels,
                            audio_channels=audio_vae.latent_channels, audio_mel_bins=audio_vae.latent_mel_bins,
                            video_scale=video_vae.scale, audio_timing=audio_vae.timing)
    if request.audio is not None:
        audio = audio_latent_for_clip(audio_vae, request.audio, request.audio_start_seconds,
                                      request.frames / request.fps, latents.audio.shape[2], engine)
        latents = dataclasses.replace(latents, audio=audio).keep_audio()
    if request.keyframes:
        latents = latents.with_keyframe_slots(request.keyframes)
    reference = (encode_audio_latent(audio_vae, request.reference_audio, engine)
                 if request.reference_audio is not None else None)  # Dub-It's voice

    dit = ltx2.dit.with_compile(compile_dit)
    two = request.two_stage
    result = sample_stages(dit, video_vae, positive, latents, settings, request.recipe(), engine,
                           negative=negative, images=request.images, upscaler=upscaler if two else None,
                           temporal_upscaler=temporal_upscaler if two else None, refine=request.refine_preset(),
                           loras=loras, stage1_loras=stage1_loras, stage2_loras=stage2_loras, callback=callback,
                           refine_tiles=tiles, control=request.control, reference_audio=reference)

    sound = (audio_segment(request.audio, request.audio_start_seconds, request.frames / request.fps)
             if request.audio is not None else None)  # a2v: the input sound itself, as the reference a2vid returns
    return write_clip(ltx2, result, out_path, request.fps, {"ltx2_generate": request.describe(), **request.metadata},
                      engine, request.tiling, sound=sound)


def write_clip(ltx2: LTX2Models, result: AVLatents, out_path: str | Path, fps: float, metadata: dict,
               engine: MemoryEngine | None = None, tiling: TilingConfig | str | None = "auto",
               sound: dict | None = None) -> Path:
    """Decode ``result`` (its first sample: the tiled video streamed into the file, the audio cut to the video's
    duration; ``sound``: an AUDIO to mux instead of the decoded one) into an MP4 at ``out_path``; returns its
    path."""
    frames = result.video_grid().pixel_frames
    if sound is None:
        sound = decode_audio(result.audio, ltx2.audio_vae, engine, frames=frames, fps=fps)
    writer = MP4Writer(out_path, fps, audio_sample_rate=sound["sample_rate"], metadata=metadata)
    with writer, contextlib.closing(decode_video_chunks(result.video, ltx2.video_vae, engine, tiling)) as chunks:
        for chunk in chunks:
            writer.add_frames(pixels_to_images(chunk[:1]))
        writer.set_audio(sound["waveform"][0])
    if result.keyframes is not None:
        _write_keyframes(result, ltx2.video_vae, engine, keyframes_path(writer.path))
    return writer.path


def keyframes_path(mp4: str | Path) -> Path:
    """Where :func:`generate` writes the generated keyframes of ``mp4``: ``<name>_keyframes.mp4`` beside it."""
    mp4 = Path(mp4)
    return mp4.with_name(mp4.stem + "_keyframes.mp4")


def _write_keyframes(result: AVLatents, video_vae: VideoVAEHandle, engine: MemoryEngine | None, path: Path) -> None:
    """The generated keyframes of the first sample, each decoded on its own, as one frame each of a silent MP4."""
    clips = result.keyframe_clips()[:len(result.keyframe_frames)]
    pixels = decode_video(clips, video_vae, engine)  # [K, 3, 1, H, W]
    if pixels is None:  # a rank other than 0 of a distributed run: it decoded its tiles for rank 0
        return
    with MP4Writer(path, 1.0, metadata={"ltx2_keyframes": list(result.keyframe_frames)}) as writer:
        writer.add_frames(pixels_to_images(pixels))
    log.info("generated keyframes at frames %s: %s", list(result.keyframe_frames), path)


def generate_sound(ltx2: LTX2Models, gemma: GemmaHandle, request: GenerateRequest, out_path: str | Path, *,
                   video=None, engine: MemoryEngine | None = None, loras: Sequence = (),
                   callback: Callback | None = None, gemma_cache_dir: str | Path | None = None) -> Path:
    """Sound alone, one stage of ``request``'s preset (the images / audio / two-stage fields do not apply).

    ``video`` None: text to audio (the reference ``t2a_one_stage``) on the DiT's audio stream alone (the video
    weights are never loaded), written as an audio file (``out_path``'s suffix: .flac, .wav, .mp3, .m4a).
    ``video``: IMAGE frames ``[request.frames, H, W, 3]``: video to audio -- the frames are encoded at
    ``request.width x height`` and kept exactly while the sound is generated; the MP4 holds the ORIGINAL frames
    with it."""
    from .media.audio_io import write_audio_file
    from .stages import encode_video_clip

    engine = engine if engine is not None else default_engine()
    request = request.for_model(ltx2)
    settings = request.stage1_settings()
    # one stage: at the clip's size, its frames encoded (video to audio), or the audio-only DiT (text to audio)
    precheck(ltx2, gemma, dataclasses.replace(request, two_stage=False), engine, audio_only=video is None,
             encode_video=video is not None, decode_video=False)
    audio_vae = ltx2.audio_vae
    positive, negative = request_text(ltx2, gemma, request, engine, gemma_cache_dir)
    video_vae = ltx2.video_vae if video is not None else None
    latents = empty_latents(1, request.frames, request.height, request.width, request.fps, video=video is not None,
                            video_channels=video_vae.latent_channels if video_vae else 128,
                            audio_channels=audio_vae.latent_channels, audio_mel_bins=audio_vae.latent_mel_bins,
                            video_scale=video_vae.scale if video_vae else VideoScale(), audio_timing=audio_vae.timing)
    dit = ltx2.dit
    if video is None:
        dit = dit.audio_stream()
    else:
        encoded = encode_video_clip(video_vae, video, latents.video_grid(), engine)
        latents = dataclasses.replace(latents, video=encoded).keep_video()
    result = run_sampler(dit, positive, latents, settings, engine, negative=negative, loras=list(loras),
                         callback=callback)
    sound = decode_audio(result.audio, audio_vae, engine, frames=request.frames, fps=request.fps)
    if video is None:
        return write_audio_file(out_path, sound)
    writer = MP4Writer(out_path, request.fps, audio_sample_rate=sound["sample_rate"],
                       metadata={"ltx2_generate": {**request.describe(), "video_to_audio": True}, **request.metadata})
    with writer:
        writer.add_frames(video)
        writer.set_audio(sound["waveform"][0])
    return writer.path
