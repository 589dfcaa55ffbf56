"""The video VAE's memory model: activation bytes of a decode (or encode), the decode budget, the tile choice.

One model serves the pre-check (``precheck.estimate_run``'s ``video_vae`` stage), the decode stage's
activation reserve and its automatic tiling (``stages.resolve_tiling``), and the encoder stage.
``model/vae_tiling.py`` only cuts and blends tiles of the size it is given; it never measures memory.

Activations: a decoder stage of width ``c`` whose cells span ``t`` frames and ``s x s`` pixels of the
output holds ``c / (t s^2)`` elements per output voxel; the widest stage (for LTX-2 the last one: 128
channels at 4x4 pixels = 8) times :data:`LIVE_ACTIVATIONS` tensors times the element size::

    bytes/voxel = LIVE_ACTIVATIONS * itemsize * max_stage(c / (t * s_h * s_w))

LTX-2 19B in bf16: 9 * 2 * 8 = 144 bytes per output voxel (a 512x512 tile of 65 frames: 2.5 GB).

The encoder (:func:`encode_device_bytes`), per input voxel of an ``f``-frame tile: the same
:data:`LIVE_ACTIVATIONS` tensors of its densest stage (from ``conv_in``: the latent width on the
patches, then each ``compress_*_res`` multiplying it), one of them the causal time-padded copy, ``(f + 2) / f``
of a tensor, plus the pixels: their copy on the device in the module's dtype, the patchified copy
and its time-padded copy (``in_channels`` each)::

    bytes/voxel = itemsize * [ in_channels * (2 + pad) + (LIVE_ACTIVATIONS - 1 + pad) * max_stage(c / (t s^2)) ]

LTX-2 19B in bf16 (many frames): 2 * (3 * 3 + 9 * 8) = 162 bytes per input voxel. The padding term
matters for images (one frame: ``pad`` = 3). Weights are not included.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from ..model.shapes import video_latent_size
from ..model.diffusion_vae import DiffusionDecoderConfig
from ..model.vae_tiling import TilingConfig, largest_tile, plan_feature_tiles
from ..model.video_vae import VideoVAEConfig, block_stride
from .devices import host_ram_available

log = logging.getLogger("ltx2_nodes")

# Activation tensors of the widest decoder stage alive at once (resnet block input, its
# activation held by the caller, time-padded and spatially padded copies, conv output, conv
# scratch). Measured by ``benchmarks/vae_decode.py --calibrate`` (CPU float32): 7.0-7.2 live,
# 7.3-9.7 counting glibc's heap retention; 9 leaves a margin. ComfyUI's LTX VAE estimate
# (900 * 512 elements per latent voxel) is 56 elements per output voxel; 9 * 8 = 72 here.
LIVE_ACTIVATIONS = 9
PIXEL_COPIES = 2  # an encoded tile's pixels on the device and their patchified copy (+ the time-padded copy)
HOST_DECODE_SHARE = 2  # without a device budget (decoding on the CPU) a decode may use 1/2 of the available RAM
OUTPUT_BYTES = 4  # decoded tiles are float32


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def activation_bytes_per_voxel(config: VideoVAEConfig, itemsize: int) -> float:
    """Peak decoder activation bytes per decoded output voxel (frame x pixel); see the module doc."""
    scale = config.decoder_scale
    t, s = scale.time, scale.height
    widths = config.decoder_widths()
    density = widths[0] / (t * s * s)
    for (name, _), width in zip(reversed(config.decoder_blocks), widths[1:]):
        st, ss, _ = block_stride(name)
        t, s = t // st, s // ss
        density = max(density, width / (t * s * s))
    return LIVE_ACTIVATIONS * itemsize * density


def tile_device_bytes(config: VideoVAEConfig | DiffusionDecoderConfig, latent_shape: Sequence[int],
                      tiling: TilingConfig | None, dtype: torch.dtype = torch.bfloat16) -> int:
    """Device bytes of decoding the largest tile (the whole latent untiled): its activations and its
    float32 output; the blending happens on the output device (the CPU in the decode stage). For the
    diffusion decoder: :func:`diffusion_tile_device_bytes`."""
    if isinstance(config, DiffusionDecoderConfig):
        return diffusion_tile_device_bytes(config, latent_shape, tiling, dtype)
    batch, _, *fhw = latent_shape
    frames, height, width = largest_tile(fhw, tiling, config.decoder_scale)
    voxels = frames * height * width
    per_voxel = activation_bytes_per_voxel(config, _itemsize(dtype))
    return int(batch * (per_voxel * voxels + config.out_channels * voxels * OUTPUT_BYTES))


def encode_bytes_per_voxel(config: VideoVAEConfig, itemsize: int, frames: int) -> float:
    """Peak encoder bytes per input voxel of a ``frames``-frame tile; see the module doc."""
    pad = (frames + 2) / frames  # causal convs put two copies of the first frame in front
    t, s, width = 1, config.patch_size, config.latent_channels
    density = width / (s * s)
    for name, params in config.encoder_blocks:
        st, ss, _ = block_stride(name)
        t, s = t * st, s * ss
        if name.endswith("_res"):
            width *= params.get("multiplier", 2)
        density = max(density, width / (t * s * s))
    return itemsize * (config.in_channels * (PIXEL_COPIES + pad) + (LIVE_ACTIVATIONS - 1 + pad) * density)


def encode_device_bytes(config: VideoVAEConfig, frames: int, height: int, width: int,
                        dtype: torch.dtype = torch.bfloat16, tiling: TilingConfig | None = None) -> int:
    """Device bytes of encoding a ``frames x height x width`` clip: its largest tile's (the whole clip untiled;
    ``tiling`` as :func:`encode_tiling` makes it), see :func:`encode_bytes_per_voxel`. The latent it makes, 1/48
    of the pixels' size, is blended on the CPU."""
    latent = video_latent_size(frames, height, width, config.encoder_scale)
    tile_frames, tile_height, tile_width = largest_tile(latent, tiling, config.encoder_scale)
    per_voxel = encode_bytes_per_voxel(config, _itemsize(dtype), tile_frames)
    return int(per_voxel * tile_frames * tile_height * tile_width)


def estimate_decode_bytes(config: VideoVAEConfig | DiffusionDecoderConfig, latent_shape: Sequence[int],
                          tiling: TilingConfig | None, dtype: torch.dtype = torch.bfloat16) -> int:
    """Peak bytes of a decode blended on the same device: the largest tile's activations plus float32
    outputs. Untiled (``tiling=None``): the video and the consumer's copy of it (``2C`` channels). Tiled:

    * per tile: the decoded tile, its masked product and the mask (``2C + 1`` channels of the tile);
    * per chunk: values + weights of two temporal groups, the chunk being yielded and the one the
      consumer still holds (``2(C + 1) + 2C`` channels of the largest group, full frame size).
    """
    if isinstance(config, DiffusionDecoderConfig):
        return diffusion_decode_bytes(config, latent_shape, tiling, dtype)
    batch, _, *fhw = latent_shape
    scale = config.decoder_scale
    group_frames, tile_h, tile_w = largest_tile(fhw, tiling, scale)
    tile_voxels = group_frames * tile_h * tile_w
    per_voxel = activation_bytes_per_voxel(config, _itemsize(dtype))
    channels = batch * config.out_channels
    if tiling is None:
        return int(batch * per_voxel * tile_voxels + 2 * channels * tile_voxels * OUTPUT_BYTES)
    group_voxels = group_frames * fhw[1] * scale.height * fhw[2] * scale.width
    blending = ((2 * channels + 1) * tile_voxels + (2 * (channels + 1) + 2 * channels) * group_voxels) * OUTPUT_BYTES
    return int(batch * per_voxel * tile_voxels + blending)


# ------------------------------------------------------------------------------------------------
# Tile choice

_SPATIAL_CANDIDATES = (None, 1024, 768, 512, 384, 256, 192, 128)
_TEMPORAL_CANDIDATES = (None, 128, 96, 64, 48, 32, 24, 16)
SMALLEST_TILE = (_SPATIAL_CANDIDATES[-1], _TEMPORAL_CANDIDATES[-1])  # what "auto" tiling falls back to at worst


def tiling_with_overlaps(spatial: int | None, temporal: int | None,
                         minimum: tuple[int, int] = (0, 0)) -> TilingConfig | None:
    """Tiles of ``spatial`` pixels / ``temporal`` frames (None: that axis untiled) with the default overlaps:
    64 px spatially (32 px for tiles under 192 px), 24 frames temporally (8 for chunks under 48 frames), raised
    to ``minimum`` (frames, pixels; the diffusion decoder's ``min_tile_overlaps``). None when a tile would not
    exceed its overlap."""
    if spatial is None and temporal is None:
        return None
    pixels = max((64 if spatial >= 192 else 32), minimum[1]) if spatial else 0
    frames = max((24 if temporal >= 48 else 8), minimum[0]) if temporal else 0
    if (spatial and pixels >= spatial) or (temporal and frames >= temporal):
        return None
    return TilingConfig(spatial, pixels, temporal, frames)


def auto_tiling(config: VideoVAEConfig | DiffusionDecoderConfig, latent_shape: Sequence[int], memory_budget_bytes: int,
                dtype: torch.dtype = torch.bfloat16) -> TilingConfig | None:
    """The tiling with the largest tiles whose :func:`estimate_decode_bytes` fits the budget.

    ``None`` when the untiled decode fits; overlaps as :func:`tiling_with_overlaps`. When nothing
    fits, the smallest tiling (128 px, 16 frames) is returned with a warning.
    """
    best: tuple[int, TilingConfig | None] | None = None
    smallest = None
    diffusion = isinstance(config, DiffusionDecoderConfig)
    for spatial in _SPATIAL_CANDIDATES:
        for temporal in _TEMPORAL_CANDIDATES:
            tiling = tiling_with_overlaps(spatial, temporal, config.min_tile_overlaps if diffusion else (0, 0))
            if tiling is None and (spatial or temporal):
                continue
            smallest = tiling
            if estimate_decode_bytes(config, latent_shape, tiling, dtype) > memory_budget_bytes:
                continue
            volume = (_largest_feature_tile(config, latent_shape, tiling)[0] if diffusion
                      else math.prod(largest_tile(latent_shape[2:], tiling, config.decoder_scale)))
            if best is None or volume > best[0]:
                best = (volume, tiling)
    if best is None:
        log.warning("VAE decode: even %s needs about %.1f GB, more than the %.1f GB budget; trying it anyway.",
                    smallest, estimate_decode_bytes(config, latent_shape, smallest, dtype) / 1e9,
                    memory_budget_bytes / 1e9)
        return smallest
    return best[1]


_ENCODE_SPATIAL = (None, 1024, 768, 512, 384, 256, 192)  # the encoder needs 64 px of overlap: no smaller tiles
_ENCODE_TEMPORAL = (None, 128, 96, 64, 48, 32)
SMALLEST_ENCODE_TILE = (_ENCODE_SPATIAL[-1], _ENCODE_TEMPORAL[-1])  # what "auto" encode tiling falls back to


def encode_tiling(spatial: int | None, temporal: int | None) -> TilingConfig | None:
    """Encode tiles of ``spatial`` pixels / ``temporal`` frames (None: that axis untiled; both: None) with the
    overlaps the encoder needs: 64 px, 24 frames (16 for chunks under 48 frames)."""
    if spatial is None and temporal is None:
        return None
    return TilingConfig(spatial, 64 if spatial else 0, temporal, (24 if temporal >= 48 else 16) if temporal else 0)


def auto_encode_tiling(config: VideoVAEConfig, frames: int, height: int, width: int, memory_budget_bytes: int,
                       dtype: torch.dtype = torch.bfloat16) -> TilingConfig | None:
    """The tiling of a video encode: the largest tiles whose :func:`encode_device_bytes` fits the budget, with the
    encoder's overlaps (:func:`encode_tiling`). ``None`` when the whole clip fits; the smallest tiling
    (:data:`SMALLEST_ENCODE_TILE`) with a warning when nothing does. Memory then stays that of one tile however
    long the clip is (its latent, 1/48 of the pixels' size, is the only thing that grows)."""
    latent = video_latent_size(frames, height, width, config.encoder_scale)
    best, smallest = None, None
    for spatial in _ENCODE_SPATIAL:
        for temporal in _ENCODE_TEMPORAL:
            tiling = smallest = encode_tiling(spatial, temporal)
            if encode_device_bytes(config, frames, height, width, dtype, tiling) > memory_budget_bytes:
                continue
            volume = math.prod(largest_tile(latent, tiling, config.encoder_scale))
            if best is None or volume > best[0]:
                best = (volume, tiling)
    if best is None:
        log.warning("VAE encode: even %s needs about %.1f GB, more than the %.1f GB budget; trying it anyway.",
                    smallest, encode_device_bytes(config, frames, height, width, dtype, smallest) / 1e9,
                    memory_budget_bytes / 1e9)
        return smallest
    return best[1]


def decode_budget(device_budget: int | None, weight_bytes: int) -> int:
    """Bytes a decode may use: the engine's device budget (``MemoryEngine.budget()``) less the decoder's
    weights, or, on a host device (no budget), half of the available RAM."""
    if device_budget is None:
        return host_ram_available() // HOST_DECODE_SHARE
    return max(device_budget - weight_bytes, 0)


# ------------------------------------------------------------------------------------------------
# The LTX-2.5 diffusion decoder (``model/diffusion_vae.py``)

# Live activations per stage-5 token, in stage-5 widths, besides the context: the block input and output,
# the modulated input, attention output and projection, Q/K/V of one W slab, RoPE copies and the pixel
# buffers of the Euler step; the SwiGLU runs in bounded token chunks. Checked by benchmarks/diffusion_decode.py.
STAGE5_LIVE_WIDTHS = 9


def feature_extent(config: DiffusionDecoderConfig, latent_shape: Sequence[int]) -> tuple[int, int, int]:
    """Stage-4 input (T, H, W) of a latent (size-floored, without the trailing pad): what tiles split."""
    t, h, w = (max(a, m) for a, m in zip(latent_shape[2:], config.min_latent_size))
    st, sh, sw = config.feature_scale
    frames = (t - 1) * config.scale.time + 1
    return (frames + st - 1) // st, h * config.scale.height // sh, w * config.scale.width // sw


def _largest_feature_tile(config: DiffusionDecoderConfig, latent_shape: Sequence[int],
                          tiling: TilingConfig | None) -> tuple[int, tuple[int, int, int]]:
    """(stage-5 tokens, stage-4 feature extent T/H/W) of the largest tile of a decode of ``latent_shape``."""
    content = feature_extent(config, latent_shape)
    tokens = 0
    for tile in plan_feature_tiles(content, tiling, config):
        f, y, x = (s.stop - s.start for s in tile.pixels)
        tokens = max(tokens, max(f, config.stage5_kernel[0]) * (y // config.patch_size) * (x // config.patch_size))
    return tokens, content


def diffusion_decode_bytes(config: DiffusionDecoderConfig, latent_shape: Sequence[int], tiling: TilingConfig | None,
                           dtype: torch.dtype = torch.bfloat16) -> int:
    """Peak bytes of a diffusion decode: the stage-4 features of the whole video (stages 1-3 run untiled, with
    the trailing pad), the largest tile's stage-5 activations (:data:`STAGE5_LIVE_WIDTHS` + its context), and
    float32 pixels: the noise canvas and the blend buffers of two temporal groups (full frame)."""
    itemsize = _itemsize(dtype)
    batch = latent_shape[0]
    tokens, (ft, fh, fw) = _largest_feature_tile(config, latent_shape, tiling)
    ghost = config.trailing_pad_frames * config.scale.time // config.feature_scale[0]
    features = (ft + ghost) * fh * fw * config.stage_channels[3] * itemsize
    stage5 = tokens * (config.stage_channels[-1] + STAGE5_LIVE_WIDTHS * config.stage5_width) * itemsize
    canvas = ft * config.feature_scale[0] * fh * config.feature_scale[1] * fw * config.feature_scale[2]
    group = canvas if tiling is None or tiling.tile_size_in_frames is None else \
        canvas * tiling.tile_size_in_frames // max(ft * config.feature_scale[0], 1)
    pixels = config.out_channels * (canvas + 4 * group) * OUTPUT_BYTES
    return int(batch * (features + stage5 + pixels))


def diffusion_tile_device_bytes(config: DiffusionDecoderConfig, latent_shape: Sequence[int],
                                tiling: TilingConfig | None, dtype: torch.dtype = torch.bfloat16) -> int:
    """Device bytes of a diffusion decode whose blending happens on the CPU (features + the largest tile)."""
    itemsize = _itemsize(dtype)
    tokens, (ft, fh, fw) = _largest_feature_tile(config, latent_shape, tiling)
    ghost = config.trailing_pad_frames * config.scale.time // config.feature_scale[0]
    features = (ft + ghost) * fh * fw * config.stage_channels[3] * itemsize
    stage5 = tokens * (config.stage_channels[-1] + STAGE5_LIVE_WIDTHS * config.stage5_width) * itemsize
    return int(latent_shape[0] * (features + stage5))
