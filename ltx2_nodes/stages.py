"""One function per pipeline stage, each running its model(s) inside ``engine.stage(...)``.

The ComfyUI nodes and the CLI call these (no ComfyUI import here). Every function takes the
memory engine that places the stage's weights (``memory.selection.default_engine()`` when None:
ComfyUI's engine inside ComfyUI, a process-wide headless one otherwise) and returns its results on
the CPU, so nothing of a stage stays on the compute device after it, also when it raises or is
interrupted.

Engine stages do not nest, so work that needs another model is done before a stage starts:
conditioning images are encoded (video VAE encoder stage) before the DiT stage, the latent
preview projection is fitted (video VAE decoder) before sampling, LoRAs are installed on the
shared DiT around its stage (as buffers, so the engine moves them with the blocks) and removed
afterwards.

``generate`` (its own module) composes the stages end to end for the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import from_rank0, world
from .errors import InputError, NonFiniteError
from .finite import check_finite
from .loading.lora import applied_loras
from .media.audio_codec import decode_audio as _decode_audio_modules
from .media.audio_codec import decode_mel
from .media.audio_codec import encode_audio as _encode_audio_module
from .media.audio_clip import audio_segment, fit_latent_frames
from .memory import MemoryEngine, StageProfile, decoder_profile, dit_profile, selection
from .memory.estimates import (DecoderShape, audio_decode_activation_bytes, connector_activation_bytes,
                               upscaler_activation_bytes)
from .memory.placement import module_tensors, tensor_bytes
from .memory.precheck import RunEstimate, RunRequest, StageWeights
from .memory.vae import (SMALLEST_ENCODE_TILE, SMALLEST_TILE, auto_encode_tiling, auto_tiling, decode_budget,
                         encode_device_bytes, feature_extent, tile_device_bytes)
from .model.compiling import compiled_blocks
from .model.connector import TextConditioning
from .model.shapes import (TEMPORAL_FACTOR, AudioTiming, VideoScale, checked_latent_size, clamped_frames_for_seconds,
                           pixel_frames)
from .model.upsampler import upsample_latent
from .model.dit_tiling import RefineTiles, TiledDiT, plan_refine_tiles
from .model.sequence_parallel import SequenceParallelDiT
from .model.vae_tiling import (TilingConfig, decode_chunks, diffusion_decode_chunks, plan_encode_tiles,
                               plan_feature_tiles, plan_tiles, tiled_encode)
from .handles import (AudioVAEHandle, ConnectorHandle, DiTHandle, DurationHeadHandle, GemmaHandle, UpscalerHandle,
                      VideoVAEHandle)
from .latents import AVLatents, GenerationSettings, sample
from .progress import ProgressBar, check_interrupted
from .sampling.conditioning import (ConditioningItem, ImageCondition, KeyframeAtFrame, encode_images,
                                    frame_condition, resize_and_center_crop)
from .sampling.guidance import plan_passes
from .sampling.guides import ReferenceVideoGuide, control_frames, guide_pixel_size, mask_token_weights
from .sampling.loop import Callback
from .sampling.noise import SeededNoise
from .sampling.recipe import DEFAULT_SEED
from .sampling.state import VideoGrid
from .text.cache import SESSION_CACHE, cache_key
from .text.gemma import GemmaFeatures

log = logging.getLogger("ltx2_nodes")


# ------------------------------------------------------------------------------------------------
# The engine


def _engine(engine: MemoryEngine | None) -> MemoryEngine:
    return engine if engine is not None else selection.default_engine()


def _module_dtype(module: nn.Module) -> torch.dtype:
    floating = [p.dtype for p in module.parameters() if p.is_floating_point() and p.element_size() > 1]
    return floating[0] if floating else torch.bfloat16


def _interrupt_hooks(module: nn.Module, bar: ProgressBar | None = None) -> list:
    """Cancel polling before and a progress tick after every call of ``module`` (decode tiles)."""
    hooks = [module.register_forward_pre_hook(lambda *_: check_interrupted("while decoding"))]
    if bar is not None:
        hooks.append(module.register_forward_hook(lambda *_: bar.update(1)))
    return hooks


def precheck_stage(engine: MemoryEngine, weights: StageWeights, video_shape: Sequence[int] | None,
                   scale: VideoScale, *, what: str, dtype: torch.dtype, fps: float = 24.0, batch: int = 1,
                   vae_tile: tuple[int | None, int | None] | None = None, dit_config=None, ranks: int = 1,
                   audio_latents: int = 0, **request) -> RunEstimate:
    """``engine.precheck`` (the one pre-check, ``memory.precheck``) of one stage, ``weights.name``, at the size
    of its video latent ``[B, C, F', H', W']``, before anything of the stage is built or allocated: a stage
    that cannot fit is refused with ``OutOfMemoryError`` saying what would (the CLI's ``generate`` checks the
    whole run the same way). ``fps``: read for the audio length only; ``batch``: samples per model call;
    ``vae_tile``: (pixels, frames) of a decode tile; ``ranks``: processes the DiT's video tokens are split over
    (each checks its share). ``video_shape`` None: an audio-only stage of ``audio_latents`` latent frames (checked
    as the frames at ``fps`` that make at least that many). ``request``: more ``RunRequest`` fields (what is
    encoded, guide tokens, the guides' attention mask)."""
    if video_shape is None:
        frames = math.ceil(audio_latents * fps / AudioTiming().latents_per_second)
        run = RunRequest(0, 0, frames, fps, batch=batch, prompts=1, dtype=dtype, audio_only=True)
    else:
        run = RunRequest(video_shape[4] * scale.width, video_shape[3] * scale.height,
                         pixel_frames(video_shape[2], scale), fps, batch=batch, prompts=1, vae_tile=vae_tile,
                         dtype=dtype, ranks=ranks, **request)
    return engine.precheck({weights.name: weights}, run, dit_config=dit_config, what=what)


@contextlib.contextmanager
def _hooked(module: nn.Module, bar: ProgressBar | None = None):
    hooks = _interrupt_hooks(module, bar)
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


# ------------------------------------------------------------------------------------------------
# Text


def _all_cached(encoder, prompts: list[str], cache_dir) -> bool:
    """Whether every prompt's Gemma states are in the prompt cache (then Gemma need not be placed)."""
    tokens = encoder.tokenize(prompts)
    total = tokens.ids.shape[1]
    for row, count in enumerate(tokens.mask.sum(dim=1).tolist()):
        key = cache_key(encoder.fingerprint, tokens.ids[row, total - count:].tolist(), total)
        if SESSION_CACHE.get(key, cache_dir) is None:
            return False
    return True


@contextlib.contextmanager
def _gemma_stage(gemma: GemmaHandle, engine: MemoryEngine, tokens: int, batch: int):
    """Gemma's decoder layers stream through the device; its 2 GB embedding table stays on the host
    (only the looked-up rows move)."""
    encoder = gemma.encoder
    profile = decoder_profile(DecoderShape.of(encoder.config), max(tokens, 1), batch=batch, dtype=encoder.dtype)
    host_device = encoder.compute_device
    with engine.stage("gemma", encoder.lm, blocks=encoder.decoder_layers, profile=profile,
                      keep_on_host=[encoder.lm.model.embed_tokens]) as stage:
        encoder.compute_device = stage.device
        try:
            yield encoder
        finally:
            encoder.compute_device = host_device


def encode_prompts(gemma: GemmaHandle, prompts: str | Sequence[str], engine: MemoryEngine | None = None, *,
                   cache_dir: str | Path | None = None) -> GemmaFeatures:
    """Prompts -> Gemma's stacked hidden states (CPU); cached prompts skip Gemma (and its placement)."""
    engine = _engine(engine)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    encoder = gemma.encoder
    if _all_cached(encoder, prompts, cache_dir):
        features = encoder.encode(prompts, cache_dir=cache_dir)
    else:
        tokens = encoder.tokenize(prompts)
        bar = ProgressBar(len(encoder.decoder_layers))
        with torch.no_grad(), _gemma_stage(gemma, engine, int(tokens.mask.sum(dim=1).max()), len(prompts)) as enc:
            features = enc.encode(prompts, cache_dir=cache_dir,
                                  progress=lambda done, total: bar.update_absolute(done, total))
    check_finite([features.hidden_states], stage="text encoder (Gemma)", model=gemma.name)
    return features


def enhance_prompt(gemma: GemmaHandle, prompt: str, engine: MemoryEngine | None = None, *, mode: str = "t2v",
                   seed: int = 42, max_new_tokens: int = 512) -> str:
    """Gemma rewrites ``prompt`` into a detailed one (deterministic per seed); one token per progress step."""
    from .text.enhance import enhance_prompt as enhance

    engine = _engine(engine)
    bar = ProgressBar(max_new_tokens)
    context = gemma.encoder.max_length + max_new_tokens  # system prompt + user text + the answer, at most
    with torch.no_grad(), _gemma_stage(gemma, engine, context, 1) as encoder:
        return enhance(encoder, prompt, mode=mode, seed=seed, max_new_tokens=max_new_tokens,
                       progress=lambda done, total: bar.update_absolute(done, total))


def connect_text(connector: ConnectorHandle, features: GemmaFeatures, engine: MemoryEngine | None = None
                 ) -> TextConditioning:
    """Gemma features -> the DiT's video/audio text contexts (CPU). Features of another Gemma than an LTX-2.5
    transformer's own are refused (its Gemma version lock) before anything runs."""
    engine = _engine(engine)
    connector.check_text_encoder(features.source, features.gemma_version)
    module = connector.connectors
    batch, tokens, width, layers = features.hidden_states.shape
    profile = StageProfile(connector_activation_bytes(width, layers - 1, (module.video_width, module.audio_width),
                                                      tokens=tokens, batch=batch, dtype=_module_dtype(module)))
    with torch.no_grad(), engine.stage("connectors", module, profile=profile,
                                       release_pages=connector.release_pages):
        text = module.connect(features.hidden_states, features.mask)
        check_finite([text.video_context, text.audio_context], stage="text connectors",
                     model=connector.models.name, inputs=[features.hidden_states])
        return text.to("cpu")


def split_text(text: TextConditioning, index: int) -> TextConditioning:
    """Item ``index`` of a batch of encoded prompts (e.g. positive 0, negative 1)."""
    pick = slice(index, index + 1)
    return TextConditioning(text.video_context[pick], text.audio_context[pick], text.mask[pick])


# ------------------------------------------------------------------------------------------------
# Conditioning media


def encode_conditioning_images(video_vae: VideoVAEHandle, conds: Sequence[ImageCondition], grid: VideoGrid,
                               engine: MemoryEngine | None = None) -> list[ConditioningItem]:
    """Encode images at ``grid``'s pixel size (one stage of the VAE encoder) into conditioning items
    (frame 0 replaces latent frame 0, other frames become guide tokens)."""
    if not conds:
        return []
    engine = _engine(engine)
    _precheck_encode(engine, video_vae, (1, grid.height, grid.width), "encoding the images at", images=len(conds))
    encoder = video_vae.encoder
    height, width = grid.height * grid.scale.height, grid.width * grid.scale.width
    profile = StageProfile(encode_device_bytes(video_vae.config, 1, height, width, _module_dtype(encoder)))
    items = []
    with torch.no_grad(), engine.stage("video_encoder", encoder, profile=profile,
                                       release_pages=video_vae.release_pages):
        for cond in conds:
            check_interrupted("while encoding the conditioning images")
            latent = encode_images(encoder, cond.compressed(), height, width, crf=0).float()
            check_finite([latent], stage="video VAE encoder", model=video_vae.models.name,
                         inputs=[torch.as_tensor(cond.image)])
            latent = latent.cpu()
            items.append(frame_condition(latent, cond.frame_index, cond.strength))
    return items


def _precheck_encode(engine: MemoryEngine, video_vae: VideoVAEHandle, latent_fhw: Sequence[int], what: str,
                     **encodes) -> None:
    """:func:`precheck_stage` of the video VAE encoder (``encodes``: ``RunRequest``'s ``images`` /
    ``encode_video`` / ``encode_tile``) at a latent grid's size, before the encoder is built."""
    weights = video_vae.models.stage_weights.get("video_encoder")
    if weights is not None:
        precheck_stage(engine, weights, (1, video_vae.latent_channels, *latent_fhw), video_vae.scale, what=what,
                       dtype=video_vae.models.dtype, **encodes)


def encode_video(video_vae: VideoVAEHandle, images: torch.Tensor, engine: MemoryEngine | None = None,
                 tiling: TilingConfig | str | None = "auto") -> torch.Tensor:
    """Frames ``[F, H, W, 3]`` in [0, 1] (ComfyUI IMAGE: a loaded video; F = 8k+1, H and W multiples of 32) ->
    normalised video latent ``[1, C, F', H', W']`` (float32, CPU), tile by tile (``"auto"``: the largest tiles
    the engine's budget holds, ``memory.vae.auto_encode_tiling``; each tile is mapped to [-1, 1] on its own)."""
    engine = _engine(engine)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"video encode expects IMAGE frames [F, H, W, 3], got {list(images.shape)}.")
    frames, height, width = images.shape[:3]
    tile = None if tiling is None else SMALLEST_ENCODE_TILE if isinstance(tiling, str) else (
        tiling.tile_size_in_pixels, tiling.tile_size_in_frames)  # "auto" picks a tile that fits, at worst this one
    _precheck_encode(engine, video_vae, checked_latent_size(frames, height, width, video_vae.scale),
                     "encoding the video of", encode_video=True, encode_tile=tile)
    encoder = video_vae.encoder
    dtype = _module_dtype(encoder)
    if isinstance(tiling, str):
        budget = decode_budget(engine.budget(), tensor_bytes(module_tensors(encoder)))
        tiling = auto_encode_tiling(video_vae.config, frames, height, width, budget, dtype)
    pixels = images.permute(3, 0, 1, 2).unsqueeze(0)  # a view: [1, 3, F, H, W]
    bar = ProgressBar(len(plan_encode_tiles((frames, height, width), tiling, encoder.scale)))
    profile = StageProfile(encode_device_bytes(video_vae.config, frames, height, width, dtype, tiling))

    def prepare(tile: torch.Tensor) -> torch.Tensor:
        check_interrupted("while encoding the video")
        bar.update(1)
        return tile.float() * 2.0 - 1.0

    with torch.no_grad(), engine.stage("video_encoder", encoder, profile=profile,
                                       release_pages=video_vae.release_pages):
        return tiled_encode(encoder, pixels, tiling, prepare=prepare).cpu()


def encode_video_clip(video_vae: VideoVAEHandle, images: torch.Tensor, grid: VideoGrid,
                      engine: MemoryEngine | None = None) -> torch.Tensor:
    """IMAGE frames ``[F, H, W, 3]`` in [0, 1] (``F`` = ``grid.pixel_frames``) -> the normalised video latent
    ``[1, C, F', H', W']`` at ``grid``'s size: each frame resized to cover it and centre-cropped (as the
    conditioning images), then :func:`encode_video` (tiled; video-to-audio)."""
    height, width = grid.height * grid.scale.height, grid.width * grid.scale.width
    if images.shape[0] != grid.pixel_frames:
        raise InputError(f"{images.shape[0]} frames given for a {grid.pixel_frames}-frame latent.")
    return encode_video(video_vae, resize_and_center_crop(images, height, width).permute(0, 2, 3, 1), engine)


def encode_reference_guide(video_vae: VideoVAEHandle, images: torch.Tensor, grid: VideoGrid,
                           engine: MemoryEngine | None = None, *, downscale_factor: int = 1,
                           temporal_scale_factor: int = 1, strength: float = 1.0,
                           attention: float = 1.0, attention_mask: torch.Tensor | None = None
                           ) -> ReferenceVideoGuide:
    """An IC-LoRA control video (IMAGE frames ``[F, H, W, 3]``: depth, pose, edges, any reference) as the guide of a
    sampler running at ``grid``: its frames as the reference takes them (``sampling.guides.control_frames``), each
    resized to cover ``1/downscale_factor`` of the video's pixel size and centre-cropped, then :func:`encode_video`
    (tiled). ``attention``: the attention strength; ``attention_mask`` (MASK ``[F, H, W]`` in [0, 1], framed like
    the control video): where it applies, averaged per reference token and multiplied by ``attention``."""
    height, width = guide_pixel_size(grid.height * grid.scale.height, grid.width * grid.scale.width,
                                     downscale_factor, grid.scale)
    frames = control_frames(images, grid.pixel_frames, temporal_scale_factor, grid.scale)
    latent = encode_video(video_vae, resize_and_center_crop(frames, height, width).permute(0, 2, 3, 1), engine)
    check_finite([latent], stage="video VAE encoder (control video)", model=video_vae.models.name, inputs=[frames])
    weights: float | torch.Tensor = attention
    if attention_mask is not None:
        mask = control_frames(attention_mask.float(), grid.pixel_frames, temporal_scale_factor, grid.scale)
        mask = resize_and_center_crop(mask.unsqueeze(-1), height, width)[:, 0].unsqueeze(0)  # [1, F, h, w]
        weights = mask_token_weights(mask.clamp(0, 1), *latent.shape[2:]) * attention
    return ReferenceVideoGuide(latent, downscale_factor, temporal_scale_factor, strength, weights)


def encode_audio_latent(audio_vae: AudioVAEHandle, audio: dict, engine: MemoryEngine | None = None) -> torch.Tensor:
    """AUDIO dict -> normalised audio latent ``[B, C, T, M]`` (float32, CPU)."""
    engine = _engine(engine)
    encoder = audio_vae.encoder
    seconds = audio["waveform"].shape[-1] / max(int(audio["sample_rate"]), 1)
    latents = math.ceil(seconds * audio_vae.timing.latents_per_second)
    profile = StageProfile(audio_decode_activation_bytes(latents))  # the encoder mirrors the decoder
    with torch.no_grad(), engine.stage("audio_encoder", encoder, profile=profile,
                                       release_pages=audio_vae.release_pages):
        latent = _encode_audio_module(audio, encoder)
        check_finite([latent], stage="audio VAE encoder", model=audio_vae.models.name, inputs=[audio["waveform"]])
        return latent.cpu()


def audio_latent_for_clip(audio_vae: AudioVAEHandle, audio: dict, start_seconds: float, seconds: float,
                          latent_frames: int, engine: MemoryEngine | None = None) -> torch.Tensor:
    """Encode ``[start, start + seconds)`` of ``audio`` to exactly ``latent_frames`` latents (audio-to-video)."""
    encoded = encode_audio_latent(audio_vae, audio_segment(audio, start_seconds, seconds), engine)
    return fit_latent_frames(encoded, latent_frames)


# ------------------------------------------------------------------------------------------------
# Sampling


def appended_tokens(items: Sequence[ConditioningItem]) -> int:
    """Guide tokens keyframe and reference-video items append after the video grid."""
    return sum(math.prod(item.latent.shape[2:]) for item in items
               if isinstance(item, (KeyframeAtFrame, ReferenceVideoGuide)))


def _on_cpu(latents: AVLatents) -> AVLatents:
    def cpu(t):
        return None if t is None else t.detach().to("cpu", torch.float32)

    return dataclasses.replace(latents, video=cpu(latents.video), audio=cpu(latents.audio),
                               video_mask=cpu(latents.video_mask), audio_mask=cpu(latents.audio_mask),
                               keyframes=cpu(latents.keyframes))


def run_sampler(dit: DiTHandle, positive: TextConditioning, latents: AVLatents, settings: GenerationSettings,
                engine: MemoryEngine | None = None, *, negative: TextConditioning | None = None,
                conditioning: Sequence[ConditioningItem] = (), loras: Sequence | None = None,
                noise: SeededNoise | None = None, callback: Callback | None = None,
                tiles: RefineTiles | None = None, audio_conditioning: Sequence[ConditioningItem] = ()) -> AVLatents:
    """One sampling stage of ``latents.sample`` with the DiT placed by the engine.

    ``conditioning``: already encoded items (``encode_conditioning_images``); ``audio_conditioning``: items for
    the audio stream (Dub-It's ``ReferenceAudio``, appended after the audio tokens); ``loras``:
    ``[(LoRA, strength)]``, default the handle's list, applied around the stage only; ``noise``:
    a ``SeededNoise`` to continue (two-stage runs), default a fresh one from ``settings.seed``.
    ``tiles``: refine the video tile by tile (``model.dit_tiling``; the stage-2 refinement of large
    videos): with more than one tile the audio is kept as given (the stage-1 audio, refined once, as the
    reference advises) and the DiT's activations are one tile's; under ``torch.distributed``
    (``distributed.world()`` of several ranks) the tiles are spread over the ranks, one ``all_reduce`` per
    model call (tiled data parallel, ``TiledDiT(world=)``), and every rank returns the same latents.
    Returns the latents on the CPU in float32.
    """
    engine = _engine(engine)
    if latents.video is not None and not dit.config.has_video:
        raise InputError("this is the audio-only model (LTX-2 Audio-Only Model / --audio-only): it has no video "
                         "stream, so it samples audio-only latents. Use LTX-2 Empty Audio Latent, or connect the "
                         "Checkpoint Loader's model to generate video.")
    passes = len(plan_passes(settings.video_guidance, settings.audio_guidance, latents.video is not None,
                             latents.audio is not None))
    batch = latents.batch * (passes if settings.batched_guidance else 1)
    plan = None
    masked = any(isinstance(item, ReferenceVideoGuide) and item.attention_weights() is not None
                 for item in conditioning)  # the guides' weights become a T x T self-attention mask
    if latents.video is not None:
        fhw = tuple(latents.video.shape[2:])
        tiles = from_rank0(tiles)
        plan = plan_refine_tiles(fhw, tiles) if tiles is not None and tiles.count > 1 else None
        # tiled: the DiT's activations are the largest tile's (the blend buffers are latent-sized, small); split
        # over ranks (sequence parallel): this rank's share of the tokens
        checked = max((t.shape for t in plan), key=math.prod) if plan else fhw
        slots = len(latents.keyframe_slots) * fhw[1] * fhw[2]
        precheck_stage(engine, dit.stage_weights, (*latents.video.shape[:2], *checked), latents.video_scale,
                       what="sampling the latent of", dtype=dit.models.dtype, fps=latents.fps, batch=batch,
                       dit_config=dit.config, ranks=1 if plan else world().size,
                       guide_tokens=appended_tokens(conditioning) + slots, attention_mask=masked)
    elif latents.audio is not None:  # the audio-only DiT (or the full one on an audio-only latent)
        precheck_stage(engine, dit.stage_weights, None, latents.video_scale, what="sampling the audio latent of",
                       dtype=dit.models.dtype, fps=latents.fps, batch=batch, dit_config=dit.config,
                       audio_latents=latents.audio.shape[2])
    model = dit.model
    loras = dit.lora_list() if loras is None else list(loras)
    cfg = model.config
    video_tokens = appended_tokens(conditioning)
    if latents.video is not None:
        grid = latents.video_grid()
        if plan is not None and len(plan) > 1:
            log.info("refining the %dx%d latent in %s (largest %d of %d tokens)", grid.height, grid.width,
                     tiles.describe(), max(t.tokens for t in plan), grid.tokens)
            model = TiledDiT(model, fhw, plan, tile_positions=tiles.tile_positions, world=world())
            if latents.audio is not None:
                latents = latents.keep_audio()
        elif world().size > 1:  # torchrun: the video tokens split over the ranks (docs/DISTRIBUTED.md)
            model = SequenceParallelDiT(model, world().group)
        video_tokens += (max(t.tokens for t in plan) if plan else grid.tokens) \
            + len(latents.keyframe_slots) * grid.height * grid.width
        if isinstance(model, SequenceParallelDiT):  # this rank's share (the tokens padded to a multiple of ranks)
            video_tokens = -(-video_tokens // world().size)
    audio_tokens = latents.audio.shape[2] + sum(item.latent.shape[2] for item in audio_conditioning) \
        if latents.audio is not None else 0
    profile = dit_profile(cfg, video_tokens, audio_tokens, text_tokens=positive.video_context.shape[1], batch=batch,
                          dtype=model.compute_dtype, masked_tokens=video_tokens if masked else 0)
    module = dit.model
    compiled = (compiled_blocks(module.transformer_blocks, dit.compiled) if dit.compiled is not None
                else contextlib.nullcontext())
    with torch.no_grad(), applied_loras(module, loras), \
            engine.stage("dit", module, blocks=module.transformer_blocks, profile=profile,
                         release_pages=dit.release_pages) as stage, compiled:
        out = sample(model, positive, latents, settings, negative=negative, conditioning=list(conditioning),
                     audio_conditioning=list(audio_conditioning), noise=noise, callback=callback, device=stage.device)
        given = [latents.video, latents.audio, positive.video_context, positive.audio_context]
        given += [negative.video_context, negative.audio_context] if negative is not None else []
        check_finite([out.video, out.audio], stage="sampler (DiT)", model=dit.describe(),
                     inputs=given + [item.latent for item in (*conditioning, *audio_conditioning)])
        return _on_cpu(out)


def _scaled_mask(mask: torch.Tensor | None, grid: VideoGrid) -> torch.Tensor | None:
    if mask is None:
        return None
    return F.interpolate(mask.float(), size=(grid.frames, grid.height, grid.width), mode="nearest")


def predict_frames(duration_head: DurationHeadHandle, text: TextConditioning, fps: float) -> int:
    """"auto" length (LTX-2.5): the duration head's seconds for the prompt's connector outputs (video and
    audio, as the reference's ``resolve_num_frames``) as 1 + 8k frames at ``fps``, clamped to [1 s, 20 s]
    (``model.shapes.clamped_frames_for_seconds``). Runs on the CPU in float32 (the head is a few MB). One
    prompt: the reference predicts one length per generation."""
    if text.video_context.shape[0] != 1:
        raise InputError(f"auto length predicts one clip length from one prompt; the conditioning holds "
                         f"{text.video_context.shape[0]} prompts. Connect a single prompt's conditioning, or set "
                         "frames / seconds instead.")
    head = duration_head.model
    with torch.no_grad():
        seconds = float(head(video=text.video_context.detach().float().cpu(),
                             audio=text.audio_context.detach().float().cpu()).item())
    frames = clamped_frames_for_seconds(seconds, fps)
    log.info("duration head %s: %.2f s predicted -> %d frames at %g fps", duration_head.name, seconds, frames, fps)
    return frames


def upscale(latents: AVLatents, upsampler: UpscalerHandle, stats: nn.Module, engine: MemoryEngine | None = None
            ) -> AVLatents:
    """Grow the video latent with the latent upscaler: height and width x2, or x1.5 with the rational LTX-2.3
    upscaler, which refuses odd latent sizes (``check_input_size``); the temporal x2 upscaler makes F frames
    2F - 1 (``model.shapes.temporal_upscaled_frames``) at twice the frame rate, the same duration. Audio passes
    through."""
    if latents.video is None:
        raise InputError("the latent upscaler works on video latents; this latent holds audio only.")
    engine = _engine(engine)
    precheck_stage(engine, upsampler.stage_weights, latents.video.shape, latents.video_scale, fps=latents.fps,
                   what="upscaling the latent of", dtype=upsampler.dtype, batch=latents.batch)
    model = upsampler.model
    model.config.check_input_size(*latents.video.shape[3:])
    voxels = math.prod(latents.video.shape[2:]) * latents.batch
    profile = StageProfile(upscaler_activation_bytes(voxels, _module_dtype(model)))
    with torch.no_grad(), engine.stage("upscaler", model, profile=profile):
        video = upsample_latent(latents.video.float(), model, stats)
        check_finite([video], stage="latent upscaler", model=upsampler.name, inputs=[latents.video])
        video = video.cpu()
    fps = latents.fps * TEMPORAL_FACTOR if model.config.temporal_upsample else latents.fps
    upscaled = dataclasses.replace(latents, video=video, fps=fps)
    return dataclasses.replace(upscaled, video_mask=_scaled_mask(latents.video_mask, upscaled.video_grid()))


# ------------------------------------------------------------------------------------------------
# Decoding


def resolve_tiling(video_vae: VideoVAEHandle, latent_shape: Sequence[int], engine: MemoryEngine,
                   tiling: TilingConfig | str | None = "auto") -> TilingConfig | None:
    """``"auto"``: the largest tiles whose decode fits what the engine can give the decoder (``memory.vae``)."""
    if not isinstance(tiling, str):
        return tiling
    if tiling != "auto":
        raise InputError(f"tiling must be a TilingConfig, None or 'auto', got {tiling!r}.")
    decoder = video_vae.decoder
    budget = decode_budget(engine.budget(), tensor_bytes(module_tensors(decoder)))
    return auto_tiling(_decoder_config(video_vae), tuple(latent_shape), budget, _module_dtype(decoder))


def _decoder_config(video_vae: VideoVAEHandle):
    """The config the VAE memory model takes: the diffusion decoder's (LTX-2.5) or the conv VAE's."""
    return video_vae.diffusion_config or video_vae.config


def decode_video_chunks(latent: torch.Tensor, video_vae: VideoVAEHandle, engine: MemoryEngine | None = None,
                        tiling: TilingConfig | str | None = "auto", seed: int | None = None) -> Iterator[torch.Tensor]:
    """Video latent ``[B, C, F', H', W']`` -> float32 CPU chunks ``[B, 3, n, H, W]`` in [-1, 1] (about),
    in order, decoded tile by tile (progress per tile). The decoder's stage stays open while the
    caller consumes chunks, so run no other stage in between (e.g. mux them into a file).

    ``seed``: the noise seed of the LTX-2.5 diffusion decoder (None: the recipe's ``DEFAULT_SEED``, so a decode
    is reproducible without one); the conv decoder has no noise and ignores it.

    Under ``torch.distributed`` (``distributed.world()`` of several ranks, every rank calling this with the same
    latent) the tiles are decoded round robin over the ranks and assembled on rank 0, the only rank that yields
    chunks (``model.vae_tiling``); the others yield nothing but must still consume the iterator (their decodes
    run while it is consumed)."""
    engine = _engine(engine)
    ranks = world()
    weights = video_vae.models.stage_weights["video_vae"]
    tile = None if tiling is None else SMALLEST_TILE if isinstance(tiling, str) else (
        tiling.tile_size_in_pixels, tiling.tile_size_in_frames)  # "auto" picks a tile that fits, at worst this one
    precheck_stage(engine, weights, latent.shape, video_vae.scale, what="decoding the video of",
                   dtype=video_vae.models.dtype, batch=latent.shape[0], vae_tile=tile)
    decoder = video_vae.decoder
    decoder.check_latent(latent)
    resolved = resolve_tiling(video_vae, latent.shape, engine, tiling)
    tiling = from_rank0(resolved) if isinstance(tiling, str) else resolved  # "auto" follows each rank's budget
    diffusion = video_vae.diffusion_config
    if diffusion is not None:
        tiles = len(plan_feature_tiles(feature_extent(diffusion, latent.shape), tiling, diffusion))
    else:
        tiles = len(plan_tiles(latent.shape[2:], tiling, video_vae.scale)) if tiling is not None else 1
    bar = ProgressBar(len(range(ranks.rank, tiles, ranks.size)))  # the tiles this rank decodes
    # device activations of one tile (outputs are blended on the CPU)
    profile = StageProfile(tile_device_bytes(_decoder_config(video_vae), latent.shape, tiling, _module_dtype(decoder)))
    with torch.no_grad(), engine.stage("video_vae", decoder, profile=profile, release_pages=video_vae.release_pages):
        if diffusion is not None:
            def on_tile(done: bool) -> None:
                if done:
                    bar.update(1)
                else:
                    check_interrupted("while decoding")

            chunks = diffusion_decode_chunks(decoder, latent, tiling, DEFAULT_SEED if seed is None else seed,
                                             output_device="cpu", on_tile=on_tile, world=ranks)
            hooks = contextlib.nullcontext()
        else:
            chunks = decode_chunks(decoder, latent, tiling, output_device="cpu", world=ranks)
            hooks = _hooked(decoder, bar)
        with hooks:
            for chunk in chunks:
                check_finite([chunk], stage="video VAE decoder", model=video_vae.models.name, inputs=[latent])
                yield chunk


def decode_video(latent: torch.Tensor, video_vae: VideoVAEHandle, engine: MemoryEngine | None = None,
                 tiling: TilingConfig | str | None = "auto", seed: int | None = None) -> torch.Tensor | None:
    """The whole video ``[B, 3, F, H, W]`` float32 on the CPU (``seed``: see :func:`decode_video_chunks`); None on
    the ranks other than 0 of a distributed run (they decode their tiles for rank 0)."""
    with contextlib.closing(decode_video_chunks(latent, video_vae, engine, tiling, seed)) as chunks:
        frames = list(chunks)
    return torch.cat(frames, dim=2) if frames else None


def pixels_to_images(video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` in [-1, 1] -> ComfyUI IMAGE ``[B*F, H, W, 3]`` in [0, 1]."""
    return ((video.permute(0, 2, 3, 4, 1).flatten(0, 1) + 1.0) / 2.0).clamp(0.0, 1.0)


class _AudioDecodeModules(nn.Module):
    def __init__(self, decoder: nn.Module, vocoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.vocoder = vocoder


def decode_audio(audio_latent: torch.Tensor, audio_vae: AudioVAEHandle, engine: MemoryEngine | None = None, *,
                 frames: int | None = None, fps: float | None = None) -> dict:
    """Audio latent -> AUDIO ``{"waveform": [B, 2, N] float32 CPU, "sample_rate"}``; with ``frames``/``fps``
    exactly ``frames / fps`` seconds long (the video's duration)."""
    engine = _engine(engine)
    decoder, vocoder = audio_vae.decoder, audio_vae.vocoder
    profile = StageProfile(audio_decode_activation_bytes(audio_latent.shape[2]))
    with torch.no_grad(), _hooked(decoder), engine.stage("audio_vae", _AudioDecodeModules(decoder, vocoder),
                                                        profile=profile,
                                                        release_pages=audio_vae.release_pages):
        waveform, rate = _decode_audio_modules(audio_latent, decoder, vocoder, frames, fps)
        name = audio_vae.models.name
        try:
            check_finite([waveform], stage="vocoder", model=name, inputs=[audio_latent])
        except NonFiniteError:  # which of the two: the mel between them tells (on this failure path only)
            check_finite([decode_mel(audio_latent, decoder)], stage="audio VAE decoder", model=name,
                         inputs=[audio_latent])
            raise
        return {"waveform": waveform.cpu(), "sample_rate": int(rate)}

