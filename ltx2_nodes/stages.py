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

from .errors import InputError
from .loading.lora import applied_loras
from .media.audio_codec import decode_audio as _decode_audio_modules
from .media.audio_codec import encode_audio as _encode_audio_module
from .media.audio_clip import audio_segment, fit_latent_frames
from .memory import MemoryEngine, StageProfile, decoder_profile, dit_profile, selection
from .memory.estimates import (DecoderShape, audio_decode_activation_bytes, connector_activation_bytes,
                               upscaler_activation_bytes)
from .memory.placement import module_tensors, tensor_bytes
from .memory.vae import auto_encode_tiling, auto_tiling, decode_budget, encode_device_bytes, tile_device_bytes
from .model.connector import TextConditioning
from .model.shapes import clamped_frames_for_seconds, video_latent_size
from .model.upsampler import upsample_latent
from .model.vae_tiling import TilingConfig, decode_chunks, plan_encode_tiles, plan_tiles, tiled_encode
from .handles import (AudioVAEHandle, ConnectorHandle, DiTHandle, DurationHeadHandle, GemmaHandle, UpscalerHandle,
                      VideoVAEHandle)
from .latents import AVLatents, GenerationSettings, sample
from .progress import ProgressBar, check_interrupted
from .sampling.conditioning import (ConditioningItem, ImageCondition, KeyframeAtFrame, encode_images,
                                    frame_condition)
from .sampling.guidance import plan_passes
from .sampling.loop import Callback
from .sampling.noise import SeededNoise
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
        return encoder.encode(prompts, cache_dir=cache_dir)
    tokens = encoder.tokenize(prompts)
    bar = ProgressBar(len(encoder.decoder_layers))
    with torch.no_grad(), _gemma_stage(gemma, engine, int(tokens.mask.sum(dim=1).max()), len(prompts)) as enc:
        return enc.encode(prompts, cache_dir=cache_dir, progress=lambda done, total: bar.update_absolute(done, total))


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
    """Gemma features -> the DiT's video/audio text contexts (CPU)."""
    engine = _engine(engine)
    module = connector.connectors
    batch, tokens, width, layers = features.hidden_states.shape
    profile = StageProfile(connector_activation_bytes(width, layers - 1, (module.video_width, module.audio_width),
                                                      tokens=tokens, batch=batch, dtype=_module_dtype(module)))
    with torch.no_grad(), engine.stage("connectors", module, profile=profile,
                                       release_pages=connector.release_pages):
        text = module.connect(features.hidden_states, features.mask)
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
    encoder = video_vae.encoder
    height, width = grid.height * grid.scale.height, grid.width * grid.scale.width
    profile = StageProfile(encode_device_bytes(video_vae.config, 1, height, width, _module_dtype(encoder)))
    items = []
    with torch.no_grad(), engine.stage("video_encoder", encoder, profile=profile,
                                       release_pages=video_vae.release_pages):
        for cond in conds:
            check_interrupted("while encoding the conditioning images")
            latent = encode_images(encoder, cond.compressed(), height, width, crf=0).float().cpu()
            items.append(frame_condition(latent, cond.frame_index, cond.strength))
    return items


def encode_video(video_vae: VideoVAEHandle, images: torch.Tensor, engine: MemoryEngine | None = None,
                 tiling: TilingConfig | str | None = "auto") -> torch.Tensor:
    """Frames ``[F, H, W, 3]`` in [0, 1] (ComfyUI IMAGE: a loaded video; F = 8k+1, H and W multiples of 32) ->
    normalised video latent ``[1, C, F', H', W']`` (float32, CPU), tile by tile (``"auto"``: the largest tiles
    the engine's budget holds, ``memory.vae.auto_encode_tiling``; each tile is mapped to [-1, 1] on its own)."""
    engine = _engine(engine)
    encoder = video_vae.encoder
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"video encode expects IMAGE frames [F, H, W, 3], got {list(images.shape)}.")
    frames, height, width = images.shape[:3]
    dtype = _module_dtype(encoder)
    if isinstance(tiling, str):
        budget = decode_budget(engine.budget(), tensor_bytes(module_tensors(encoder)))
        tiling = auto_encode_tiling(video_vae.config, frames, height, width, budget, dtype)
    pixels = images.permute(3, 0, 1, 2).unsqueeze(0)  # a view: [1, 3, F, H, W]
    bar = ProgressBar(len(plan_encode_tiles((frames, height, width), tiling, encoder.scale)))
    latent_shape = (1, video_vae.latent_channels, *video_latent_size(frames, height, width, encoder.scale))
    profile = StageProfile(tile_device_bytes(video_vae.config, latent_shape, tiling, dtype))

    def prepare(tile: torch.Tensor) -> torch.Tensor:
        check_interrupted("while encoding the video")
        bar.update(1)
        return tile.float() * 2.0 - 1.0

    with torch.no_grad(), engine.stage("video_encoder", encoder, profile=profile,
                                       release_pages=video_vae.release_pages):
        return tiled_encode(encoder, pixels, tiling, prepare=prepare).cpu()


def encode_audio_latent(audio_vae: AudioVAEHandle, audio: dict, engine: MemoryEngine | None = None) -> torch.Tensor:
    """AUDIO dict -> normalised audio latent ``[B, C, T, M]`` (float32, CPU)."""
    engine = _engine(engine)
    encoder = audio_vae.encoder
    seconds = audio["waveform"].shape[-1] / max(int(audio["sample_rate"]), 1)
    latents = math.ceil(seconds * audio_vae.timing.latents_per_second)
    profile = StageProfile(audio_decode_activation_bytes(latents))  # the encoder mirrors the decoder
    with torch.no_grad(), engine.stage("audio_encoder", encoder, profile=profile,
                                       release_pages=audio_vae.release_pages):
        return _encode_audio_module(audio, encoder).cpu()


def audio_latent_for_clip(audio_vae: AudioVAEHandle, audio: dict, start_seconds: float, seconds: float,
                          latent_frames: int, engine: MemoryEngine | None = None) -> torch.Tensor:
    """Encode ``[start, start + seconds)`` of ``audio`` to exactly ``latent_frames`` latents (audio-to-video)."""
    encoded = encode_audio_latent(audio_vae, audio_segment(audio, start_seconds, seconds), engine)
    return fit_latent_frames(encoded, latent_frames)


# ------------------------------------------------------------------------------------------------
# Sampling


def appended_tokens(items: Sequence[ConditioningItem]) -> int:
    """Guide tokens keyframe items append after the video grid."""
    return sum(math.prod(item.latent.shape[2:]) for item in items if isinstance(item, KeyframeAtFrame))


def _on_cpu(latents: AVLatents) -> AVLatents:
    def cpu(t):
        return None if t is None else t.detach().to("cpu", torch.float32)

    return dataclasses.replace(latents, video=cpu(latents.video), audio=cpu(latents.audio),
                               video_mask=cpu(latents.video_mask), audio_mask=cpu(latents.audio_mask),
                               keyframes=cpu(latents.keyframes))


def run_sampler(dit: DiTHandle, positive: TextConditioning, latents: AVLatents, settings: GenerationSettings,
                engine: MemoryEngine | None = None, *, negative: TextConditioning | None = None,
                conditioning: Sequence[ConditioningItem] = (), loras: Sequence | None = None,
                noise: SeededNoise | None = None, callback: Callback | None = None) -> AVLatents:
    """One sampling stage of ``latents.sample`` with the DiT placed by the engine.

    ``conditioning``: already encoded items (``encode_conditioning_images``); ``loras``:
    ``[(LoRA, strength)]``, default the handle's list, applied around the stage only; ``noise``:
    a ``SeededNoise`` to continue (two-stage runs), default a fresh one from ``settings.seed``.
    Returns the latents on the CPU in float32.
    """
    engine = _engine(engine)
    model = dit.model
    loras = dit.lora_list() if loras is None else list(loras)
    cfg = model.config
    video_tokens = appended_tokens(conditioning)
    if latents.video is not None:
        grid = latents.video_grid()
        video_tokens += grid.tokens + len(latents.keyframe_slots) * grid.height * grid.width
    audio_tokens = latents.audio.shape[2] if latents.audio is not None else 0
    passes = len(plan_passes(settings.video_guidance, settings.audio_guidance, latents.video is not None,
                             latents.audio is not None))
    batch = latents.batch * (passes if settings.batched_guidance else 1)
    profile = dit_profile(cfg, video_tokens, audio_tokens, text_tokens=positive.video_context.shape[1], batch=batch,
                          dtype=model.compute_dtype)
    with torch.no_grad(), applied_loras(model, loras), \
            engine.stage("dit", model, blocks=model.transformer_blocks, profile=profile,
                         release_pages=dit.release_pages) as stage:
        out = sample(model, positive, latents, settings, negative=negative, conditioning=list(conditioning),
                     noise=noise, callback=callback, device=stage.device)
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
    """Grow the video latent's height and width with the latent upscaler: x2, or x1.5 with the rational
    LTX-2.3 upscaler, which refuses odd latent sizes (``check_input_size``). Audio passes through."""
    if latents.video is None:
        raise InputError("the latent upscaler works on video latents; this latent holds audio only.")
    engine = _engine(engine)
    model = upsampler.model
    model.config.check_input_size(*latents.video.shape[3:])
    voxels = math.prod(latents.video.shape[2:]) * latents.batch
    profile = StageProfile(upscaler_activation_bytes(voxels, _module_dtype(model)))
    with torch.no_grad(), engine.stage("upscaler", model, profile=profile):
        video = upsample_latent(latents.video.float(), model, stats).cpu()
    upscaled = dataclasses.replace(latents, video=video)
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
    return auto_tiling(video_vae.config, tuple(latent_shape), budget, _module_dtype(decoder))


def decode_video_chunks(latent: torch.Tensor, video_vae: VideoVAEHandle, engine: MemoryEngine | None = None,
                        tiling: TilingConfig | str | None = "auto") -> Iterator[torch.Tensor]:
    """Video latent ``[B, C, F', H', W']`` -> float32 CPU chunks ``[B, 3, n, H, W]`` in [-1, 1] (about),
    in order, decoded tile by tile (progress per tile). The decoder's stage stays open while the
    caller consumes chunks, so run no other stage in between (e.g. mux them into a file)."""
    engine = _engine(engine)
    decoder = video_vae.decoder
    decoder.check_latent(latent)
    tiling = resolve_tiling(video_vae, latent.shape, engine, tiling)
    tiles = len(plan_tiles(latent.shape[2:], tiling, video_vae.scale)) if tiling is not None else 1
    bar = ProgressBar(tiles)
    # device activations of one tile (outputs are blended on the CPU)
    profile = StageProfile(tile_device_bytes(video_vae.config, latent.shape, tiling, _module_dtype(decoder)))
    with torch.no_grad(), _hooked(decoder, bar), \
            engine.stage("video_vae", decoder, profile=profile, release_pages=video_vae.release_pages):
        yield from decode_chunks(decoder, latent, tiling, output_device="cpu")


def decode_video(latent: torch.Tensor, video_vae: VideoVAEHandle, engine: MemoryEngine | None = None,
                 tiling: TilingConfig | str | None = "auto") -> torch.Tensor:
    """The whole video ``[B, 3, F, H, W]`` float32 on the CPU."""
    with contextlib.closing(decode_video_chunks(latent, video_vae, engine, tiling)) as chunks:
        return torch.cat(list(chunks), dim=2)


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
        return {"waveform": waveform.cpu(), "sample_rate": int(rate)}

