"""Seam-free tiled video decoding with bounded memory, streamed in temporal chunks.

The latent is cut into overlapping tiles (spatially, and temporally into chunks); each tile is
decoded on its own, weighted by a separable trapezoid (linear ramps over the overlaps, 1 inside)
and accumulated with the weights; the output is ``sum(mask * tile) / sum(mask)``. This is the
reference's ``VideoDecoder.tiled_decode`` (Lightricks/LTX-2 @ 5cb97a9): the same tile list, the
same masks and the same chunking, so the result matches it to float rounding.

Causality: temporal tiles after the first start one latent frame early. Their first decoded
frame is a "first frame" (an image decode of that latent, not a continuation), so their left
ramp starts at weight exactly 0 and covers one extra latent frame; the previous chunk owns that
frame.

Memory: how large a tile may be for a budget is decided in ``memory/vae.py`` (the one VAE memory
model); this module takes explicit tile sizes. Only the current temporal group (all spatial tiles
of one chunk, full frame size) and the previous one are held; finished frames are yielded as soon as
no later tile can touch them, so a muxer can encode while decoding continues and the peak does not
grow with clip length.

Over several processes (the reference's distributed decoder, docs/multigpu/distributed-decoder.md): given a
``world`` (``ltx2_nodes.distributed.World``: ``rank``, ``size``, ``group``), tile ``i`` of the same plan is decoded
on rank ``i % size``; the other ranks send their decoded tiles to rank 0 (point to point, in tile order, one send
in flight per rank), which blends them exactly as one process does and alone yields frames; the other ranks'
decodes yield nothing. Rank 0 decodes its tiles while the others decode theirs, so a group of ``size`` tiles costs
about one tile's time. Deviation: the reference ships tiles over a CUDA-IPC ``mp.Queue`` (one machine); we use the
process group's own send/recv (NCCL or gloo), which also spans machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count, product
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist

from ..errors import InputError
from .shapes import VideoScale, check_video_size
from .diffusion_vae import DiffusionDecoderConfig, DiffusionVideoDecoder
from .video_vae import VideoDecoder, VideoEncoder


@dataclass(frozen=True)
class TilingConfig:
    """Tile sizes in output pixels / frames; ``None`` disables tiling on that axis.

    Field names and rules follow the reference ``TilingConfig`` (spatial: tile >= 64, multiples of
    32; temporal: tile >= 16, multiples of 8; overlap < tile). ``keep_aspect``: spatial tiles are
    rescaled per axis to keep the video's aspect ratio (the long side gets ``tile_size_in_pixels``;
    the January release's ``TilingConfig`` and HEAD's pipeline layout ``TileSizeConfig.from_long_side``);
    without it both axes get ``tile_size_in_pixels`` (HEAD's plain ``TileSizeConfig`` with
    ``height = width``).
    """

    tile_size_in_pixels: int | None = 512
    tile_overlap_in_pixels: int = 64
    tile_size_in_frames: int | None = 64
    tile_overlap_in_frames: int = 24
    keep_aspect: bool = True

    def __post_init__(self) -> None:
        for what, size, overlap, minimum, step in (
            ("spatial", self.tile_size_in_pixels, self.tile_overlap_in_pixels, 64, 32),
            ("temporal", self.tile_size_in_frames, self.tile_overlap_in_frames, 16, 8),
        ):
            if size is None:
                continue
            unit = "pixels" if what == "spatial" else "frames"
            if size < minimum or size % step or overlap < 0 or overlap % step or overlap >= size:
                raise InputError(
                    f"{what} tiling {size} {unit} with overlap {overlap}: the tile must be a multiple of {step} "
                    f"and at least {minimum}, the overlap a multiple of {step} smaller than the tile "
                    f"(e.g. {minimum * 4 if what == 'spatial' else 64} / {2 * step if what == 'spatial' else 24}).")

    @classmethod
    def default(cls) -> "TilingConfig":
        """The reference default: 512 px tiles with 64 px overlap, 64-frame chunks with 24 overlap."""
        return cls()

    @classmethod
    def from_dict(cls, values: dict, keep_aspect: bool = True) -> "TilingConfig":
        """From the reference's field names (absent sizes disable that axis)."""
        return cls(tile_size_in_pixels=values.get("tile_size_in_pixels"),
                   tile_overlap_in_pixels=values.get("tile_overlap_in_pixels", 0),
                   tile_size_in_frames=values.get("tile_size_in_frames"),
                   tile_overlap_in_frames=values.get("tile_overlap_in_frames", 0), keep_aspect=keep_aspect)


# ------------------------------------------------------------------------------------------------
# Tile plan


@dataclass(frozen=True)
class Span:
    """One tile along one axis: latent cells [start, end), blend ramps in latent cells."""

    start: int
    end: int
    left_ramp: int = 0
    right_ramp: int = 0


def split_axis(length: int, size: int | None, overlap: int, temporal: bool) -> list[Span]:
    """Cut ``length`` latent cells into tiles of ``size`` overlapping by ``overlap``; the last tile
    ends at ``length``. Temporal tiles after the first start one cell early (causal overlap)."""
    if size is None or length <= size:
        return [Span(0, length)]
    count = (length + size - 2 * overlap - 1) // (size - overlap)
    spans = []
    for i in range(count):
        start = i * (size - overlap)
        end = length if i == count - 1 else start + size
        left = overlap if i else 0
        if temporal and i:
            start, left = start - 1, left + 1
        spans.append(Span(start, end, left, overlap if i < count - 1 else 0))
    return spans


def trapezoid(length: int, left: int, right: int, left_from_zero: bool) -> torch.Tensor:
    """1-D blend weights: ``left`` samples ramping up, ``right`` ramping down, ones between.

    Ramps exclude their end points (neighbouring ramps sum to 1); ``left_from_zero`` makes the
    left ramp start at exactly 0 (the causal first frame of a later temporal tile)."""
    left, right = max(0, min(left, length)), max(0, min(right, length))
    mask = torch.ones(length)
    if left:
        ramp = torch.linspace(0.0, 1.0, left + 1 if left_from_zero else left + 2)[:-1]
        mask[:left] *= ramp if left_from_zero else ramp[1:]
    if right:
        mask[-right:] *= torch.linspace(1.0, 0.0, right + 2)[1:-1]
    return mask.clamp_(0, 1)


def _pixel_span(span: Span, scale: int, temporal: bool) -> tuple[slice, tuple[int, int]]:
    """Output slice and (left, right) ramp lengths of a latent span."""
    if temporal:  # latent frame k covers pixel frames 8k-7 .. 8k; frame 0 is alone
        return (slice(span.start * scale, 1 + (span.end - 1) * scale),
                (1 + (span.left_ramp - 1) * scale, span.right_ramp * scale))
    return slice(span.start * scale, span.end * scale), (span.left_ramp * scale, span.right_ramp * scale)


@dataclass(frozen=True)
class Tile:
    """Latent slices (F, H, W) to decode, where the result goes (pixel slices) and how it blends
    (per-axis ramp lengths in output units)."""

    latent: tuple[slice, slice, slice]
    pixels: tuple[slice, slice, slice]
    ramps: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    def masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """1-D weights per axis; the temporal left ramp starts at 0 (causal first frame)."""
        return tuple(trapezoid(s.stop - s.start, left, right, axis == 0)
                     for axis, (s, (left, right)) in enumerate(zip(self.pixels, self.ramps)))

    def weigh(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T, H, W]`` times the separable mask (:func:`weigh`)."""
        return weigh(x, self.masks())


def weigh(x: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``x [B, C, T, H, W]`` times separable 1-D (T, H, W) masks, one axis after the other (as the reference)."""
    t, h, w = (m.to(x.device) for m in masks)
    return x * t[:, None, None] * h[:, None] * w


def masks_are_complementary(placed: Iterable[tuple[Sequence[slice], Sequence[torch.Tensor]]],
                            extent: Sequence[int]) -> bool:
    """Whether the distinct ``(slices, 1-D masks)`` of the tiles sum to 1 (atol 1e-5) along every axis of
    the output ``extent`` (F, H, W); then the blend needs no division (reference ``masks_are_complementary``)."""
    placed = list(placed)
    for axis, length in enumerate(extent):
        total, seen = torch.zeros(length), set()
        for slices, masks in placed:
            span = slices[axis]
            if (span.start, span.stop) not in seen:
                seen.add((span.start, span.stop))
                total[span] += masks[axis]
        if not torch.allclose(total, torch.ones(length), atol=1e-5, rtol=0.0):
            return False
    return True


def _axis_spans(latent_fhw: Sequence[int], tiling: TilingConfig | None, scale: VideoScale) -> list[list[Span]]:
    """Per axis (F, H, W): the latent spans of the tiles."""
    frames, height, width = latent_fhw
    tiling = tiling or TilingConfig(None, 0, None, 0)
    long_side = max(height, width)

    def spatial(length: int, factor: int) -> list[Span]:
        if tiling.tile_size_in_pixels is None:
            return [Span(0, length)]
        size, overlap = tiling.tile_size_in_pixels // factor, tiling.tile_overlap_in_pixels // factor
        if tiling.keep_aspect:  # the short axis gets proportionally smaller tiles (Python round: half to even)
            size = round(size * length / long_side)
        size = max(max(2, overlap + 1), size)
        return split_axis(length, size, overlap, temporal=False)

    t_size = None if tiling.tile_size_in_frames is None else tiling.tile_size_in_frames // scale.time
    return [split_axis(frames, t_size, tiling.tile_overlap_in_frames // scale.time, temporal=True),
            spatial(height, scale.height), spatial(width, scale.width)]


def plan_tiles(latent_fhw: Sequence[int], tiling: TilingConfig | None, scale: VideoScale = VideoScale()) -> list[Tile]:
    """Tiles for a latent of (frames, height, width) cells, time-major then height, then width."""
    f_spans, h_spans, w_spans = _axis_spans(latent_fhw, tiling, scale)
    axes = ([(t, *_pixel_span(t, scale.time, True)) for t in f_spans],
            [(t, *_pixel_span(t, scale.height, False)) for t in h_spans],
            [(t, *_pixel_span(t, scale.width, False)) for t in w_spans])
    return [Tile(latent=(slice(ft.start, ft.end), slice(ht.start, ht.end), slice(wt.start, wt.end)),
                 pixels=(fp, hp, wp), ramps=(fr, hr, wr))
            for ft, fp, fr in axes[0] for ht, hp, hr in axes[1] for wt, wp, wr in axes[2]]


def largest_tile(latent_fhw: Sequence[int], tiling: TilingConfig | None,
                 scale: VideoScale = VideoScale()) -> tuple[int, int, int]:
    """Output (frames, height, width) of the largest tile, without building the tile list."""
    f_spans, h_spans, w_spans = _axis_spans(latent_fhw, tiling, scale)
    return (max((t.end - t.start - 1) * scale.time + 1 for t in f_spans),
            max(t.end - t.start for t in h_spans) * scale.height, max(t.end - t.start for t in w_spans) * scale.width)


def _temporal_groups(tiles: list[Tile]) -> list[list[Tile]]:
    groups: list[list[Tile]] = []
    for tile in tiles:
        if groups and groups[-1][0].pixels[0] == tile.pixels[0]:
            groups[-1].append(tile)
        else:
            groups.append([tile])
    return groups


def chunk_frame_counts(latent_fhw: Sequence[int], tiling: TilingConfig | None,
                       scale: VideoScale = VideoScale()) -> list[int]:
    """Frames in each chunk :func:`tiled_decode` yields (without decoding anything)."""
    starts = [g[0].pixels[0] for g in _temporal_groups(plan_tiles(latent_fhw, tiling, scale))]
    counts = [b.start - a.start for a, b in zip(starts, starts[1:])]
    return counts + [starts[-1].stop - starts[-1].start]


# ------------------------------------------------------------------------------------------------
# Encoding

# the reference's smallest overlaps for a tiled encode (edge artefacts of each tile's padding)
ENCODE_MIN_OVERLAP_PIXELS = 64
ENCODE_MIN_OVERLAP_FRAMES = 16


@dataclass(frozen=True)
class EncodeTile:
    """Pixel slices (F, H, W) to encode, the latent cells the result covers, and its 1-D blend weights
    per latent axis (the temporal ramp of a later tile starts at 0: its first latent is an image encode)."""

    pixels: tuple[slice, slice, slice]
    latent: tuple[slice, slice, slice]
    masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def plan_encode_tiles(pixel_fhw: Sequence[int], tiling: TilingConfig | None,
                      scale: VideoScale = VideoScale()) -> list[EncodeTile]:
    """Tiles of a tiled encode (reference ``prepare_tiles_for_encoding``): the latent grid is split as
    for decoding, each latent span maps to the pixels that encode to it."""
    frames, height, width = pixel_fhw
    latent_fhw = (1 + (frames - 1) // scale.time, height // scale.height, width // scale.width)
    tiles = []
    for spans in product(*_axis_spans(latent_fhw, tiling, scale)):
        pixels = tuple(_pixel_span(span, step, axis == 0)[0]
                       for axis, (span, step) in enumerate(zip(spans, (scale.time, scale.height, scale.width))))
        masks = tuple(trapezoid(s.end - s.start, s.left_ramp, s.right_ramp, axis == 0) for axis, s in enumerate(spans))
        tiles.append(EncodeTile(pixels, tuple(slice(s.start, s.end) for s in spans), masks))
    return tiles


def tiled_encode(encoder: VideoEncoder, pixels: torch.Tensor, tiling: TilingConfig | None,
                 prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Encode ``pixels`` [B,3,F,H,W] tile by tile (reference ``VideoEncoder.tiled_encode``): the latent
    tiles are blended with trapezoidal weights, divided by their sum unless the weights sum to 1.
    Tiled axes need overlaps of at least 64 px / 16 frames. Returns the float32 latent on the
    pixels' device (the encoder moves each tile to its own device and dtype). ``prepare`` maps each
    tile's pixels before encoding (e.g. ComfyUI's [0, 1] frames, passed as a view, to [-1, 1] one tile at a
    time, so the whole clip is never copied)."""
    if pixels.dim() != 5:
        raise InputError(f"tiled VAE encode expects pixels [B,3,F,H,W], got {list(pixels.shape)}.")
    check_video_size(*pixels.shape[2:], encoder.scale)
    for what, size, overlap, minimum, unit in (
            ("spatial", tiling and tiling.tile_size_in_pixels, tiling and tiling.tile_overlap_in_pixels,
             ENCODE_MIN_OVERLAP_PIXELS, "px"),
            ("temporal", tiling and tiling.tile_size_in_frames, tiling and tiling.tile_overlap_in_frames,
             ENCODE_MIN_OVERLAP_FRAMES, "frames")):
        if size is not None and overlap < minimum:
            raise InputError(f"tiled encode: {what} overlap {overlap} {unit} is below the {minimum} {unit} the "
                             f"encoder needs to hide tile edges; use an overlap of at least {minimum} {unit}.")
    tiles = plan_encode_tiles(pixels.shape[2:], tiling, encoder.scale)
    extent = tuple(max(t.latent[axis].stop for t in tiles) for axis in range(3))
    divide = not masks_are_complementary(((t.latent, t.masks) for t in tiles), extent)
    out = torch.zeros(pixels.shape[0], encoder.config.latent_channels, *extent, device=pixels.device)
    weights = torch.zeros(1, 1, *extent, device=pixels.device) if divide else None
    for tile in tiles:
        chunk = pixels[(slice(None), slice(None)) + tile.pixels]
        encoded = encoder(prepare(chunk) if prepare is not None else chunk).to(pixels.device, torch.float32)
        where = (slice(None), slice(None)) + tile.latent
        out[where] += weigh(encoded, tile.masks)
        if divide:
            weights[where] += weigh(torch.ones(1, 1, *encoded.shape[2:], device=pixels.device), tile.masks)
        del encoded
    return out / weights.clamp(min=1e-8) if divide else out


# ------------------------------------------------------------------------------------------------
# Decoding


def tiled_decode(decoder: VideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                 output_device: torch.device | str | None = None, world=None) -> Iterator[torch.Tensor]:
    """Decode ``latent`` [B,C,F',H',W'] tile by tile, yielding float32 frame chunks [B,3,n,H,W]
    in order (their concatenation along dim 2 is the whole video).

    The decoder moves each tile to its own device/dtype, so the latent may stay on the CPU;
    blending happens in float32 on ``output_device`` (default: the latent's device). As in the
    reference HEAD, when the weights sum to 1 (:func:`masks_are_complementary`) the weighted sum is
    the result; otherwise it is divided by the summed weights. ``world``: tiles spread over its ranks, frames
    on rank 0 only (module docstring).
    """
    decoder.check_latent(latent)
    out_device = torch.device(output_device) if output_device is not None else latent.device
    batch, _, *fhw = latent.shape
    scale = decoder.scale
    height, width = fhw[1] * scale.height, fhw[2] * scale.width
    channels = decoder.config.out_channels
    tiles = plan_tiles(fhw, tiling, scale)
    divide = not masks_are_complementary(((t.pixels, t.masks()) for t in tiles),
                                         (1 + (fhw[0] - 1) * scale.time, height, width))

    def decode(tile: Tile) -> torch.Tensor:
        return decoder(latent[(slice(None), slice(None)) + tile.latent]).to(out_device, torch.float32)

    yield from _blend_groups(tiles, decode, Tile.masks, (batch, channels), (tiles[-1].pixels[0].stop, height, width),
                             divide, out_device, world)


def decode_chunks(decoder: VideoDecoder | DiffusionVideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                  output_device: torch.device | str | None = None, seed: int = 0, world=None) -> Iterator[torch.Tensor]:
    """Decode to float32 frame chunks. ``tiling``: a :class:`TilingConfig`, or ``None`` (one untiled
    decode, one chunk). The tile size for a memory budget is chosen in ``memory/vae.py`` (``auto_tiling``).
    ``seed``: the noise seed of a diffusion decoder (:func:`diffusion_decode_chunks`); the conv decoder has none.
    ``world``: tiles spread over its ranks, frames on rank 0 only (module docstring; untiled: rank 0 decodes)."""
    if isinstance(tiling, str):
        raise InputError(f"tiling must be a TilingConfig or None, got {tiling!r} (ltx2_nodes.memory.vae.auto_tiling "
                         "picks one for a memory budget).")
    if isinstance(decoder, DiffusionVideoDecoder):
        yield from diffusion_decode_chunks(decoder, latent, tiling, seed, output_device, world=world)
        return
    if tiling is None:
        if world is not None and world.rank != 0:
            return
        out_device = torch.device(output_device) if output_device is not None else latent.device
        yield decoder(latent).to(out_device, torch.float32)
        return
    yield from tiled_decode(decoder, latent, tiling, output_device, world)


def decode_video(decoder: VideoDecoder | DiffusionVideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                 output_device: torch.device | str | None = None, seed: int = 0) -> torch.Tensor:
    """The whole video [B,3,F,H,W] float32 (concatenated :func:`decode_chunks`)."""
    return torch.cat(list(decode_chunks(decoder, latent, tiling, output_device, seed)), dim=2)


# ------------------------------------------------------------------------------------------------
# Diffusion decoder (LTX-2.5): stages 1-3 once, stages 4-5 per tile of the stage-4 input


@dataclass(frozen=True)
class FeatureTile:
    """A tile of the diffusion decoder: stage-4-input cells (T, H, W), the canvas pixels it decodes, its 1-D
    blend masks, and whether it holds the first frame (``origin``) / the last one (``trailing``)."""

    features: tuple[slice, slice, slice]
    pixels: tuple[slice, slice, slice]
    masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    origin: bool
    trailing: bool


def _split_with_floor(length: int, size: int | None, overlap: int, minimum: int) -> list[Span]:
    """:func:`split_axis` (not causal) whose short last tile grows leftwards to ``minimum`` cells, the overlap with
    the one before widening to match (reference ``split_by_size(min_tile_size=)``)."""
    if size is None or length < minimum:
        return [Span(0, length)]
    spans = split_axis(length, max(size, overlap + 1, 2), overlap, temporal=False)
    last = spans[-1]
    if len(spans) > 1 and last.end - last.start < minimum:
        start = last.end - minimum
        prev = spans[-2]
        spans[-2:] = [Span(prev.start, prev.end, prev.left_ramp, prev.end - start),
                      Span(start, last.end, prev.end - start, 0)]
    return spans


def plan_feature_tiles(feature_thw: Sequence[int], tiling: TilingConfig | None,
                       config: DiffusionDecoderConfig) -> list[FeatureTile]:
    """Tiles of a diffusion decode (reference ``diffusion_tiling.prepare_tile_schedule``): each axis of the
    stage-4 input is split by the tile size (pixels // the stage-4 -> pixel scale; spatial sizes follow
    ``keep_aspect`` on the 32-px latent grid as in :func:`plan_tiles`), short last tiles grown to
    ``feature_tile_min``; pixel spans follow the last upsample (a temporal x2 after the first tile starts one
    frame early) and blend with symmetric trapezoids. Overlaps below ``config.min_tile_overlaps`` are refused."""
    min_frames, min_pixels = config.min_tile_overlaps
    tiling = tiling or TilingConfig(None, 0, None, 0)
    for size, overlap, floor, unit in ((tiling.tile_size_in_pixels, tiling.tile_overlap_in_pixels, min_pixels, "px"),
                                       (tiling.tile_size_in_frames, tiling.tile_overlap_in_frames, min_frames,
                                        "frames")):
        if size is not None and overlap < floor:
            raise InputError(f"diffusion VAE decode: tile overlap {overlap} {unit} is below the {floor} {unit} this "
                             f"decoder's attention reaches across tile edges; use an overlap of at least {floor}.")
    scale_t, scale_h, scale_w = config.feature_scale
    latent = config.scale
    sizes = [None if tiling.tile_size_in_frames is None else tiling.tile_size_in_frames // scale_t]
    long_cells = max(feature_thw[1] * scale_h // latent.height, feature_thw[2] * scale_w // latent.width, 1)
    for cells, factor in ((feature_thw[1], scale_h), (feature_thw[2], scale_w)):
        if tiling.tile_size_in_pixels is None:
            sizes.append(None)
            continue
        size_cells = tiling.tile_size_in_pixels // latent.height
        if tiling.keep_aspect:
            size_cells = round(size_cells * (cells * factor // latent.height) / long_cells)
        sizes.append(max(size_cells * latent.height, 2 * latent.height) // factor)
    overlaps = (tiling.tile_overlap_in_frames // scale_t, tiling.tile_overlap_in_pixels // scale_h,
                tiling.tile_overlap_in_pixels // scale_w)
    axes = []
    for axis, (length, size, overlap, minimum, factor) in enumerate(
            zip(feature_thw, sizes, overlaps, config.feature_tile_min, config.feature_scale)):
        entries = []
        for span in _split_with_floor(length, size, overlap, minimum):
            start, stop = span.start * factor, span.end * factor
            if axis == 0 and factor == 2:  # pixel-shuffle x2 drops the duplicate first frame of the origin tile
                start, stop = start - (1 if span.start else 0), stop - 1
            mask = trapezoid(stop - start, span.left_ramp * factor, span.right_ramp * factor, False)
            entries.append((slice(span.start, span.end), slice(start, stop), mask, span.start == 0,
                            span.end == length))
        axes.append(entries)
    return [FeatureTile((t[0], h[0], w[0]), (t[1], h[1], w[1]), (t[2], h[2], w[2]), t[3], t[4])
            for t, h, w in product(*axes)]


def diffusion_decode_chunks(decoder: DiffusionVideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                            seed: int, output_device: torch.device | str | None = None, pathway: str = "chunked",
                            on_tile: Callable[[bool], None] | None = None, world=None) -> Iterator[torch.Tensor]:
    """Decode ``latent`` with the diffusion decoder, yielding float32 frame chunks [B,3,n,H,W] in order.

    Stages 1-3 run once on the whole (floored, trailing-padded) latent; each :func:`plan_feature_tiles` tile
    runs stages 4-5 in isolation on its slice of the one seeded noise canvas; tiles blend as in
    :func:`tiled_decode` (weights divided out unless they sum to 1) and finished frames are yielded once no
    later tile touches them. Untiled (``tiling=None``) this is the decoder's ``forward``. ``on_tile(done)`` is
    called before (False) and after (True) every tile this rank decodes (cancellation, progress). ``world``:
    stages 1-3 on every rank, the tiles spread over them, frames on rank 0 only (module docstring)."""
    decoder.check_latent(latent)
    out_device = torch.device(output_device) if output_device is not None else latent.device
    noise = decoder.seeded_noise(latent.shape, seed, latent.dtype)
    padded, fronts = decoder.prepare_latent(latent)
    features = decoder.features(padded)
    pad = decoder.config.trailing_pad_frames * decoder.scale.time // decoder.config.feature_scale[0]
    content = (features.shape[1] - pad, features.shape[2], features.shape[3])
    tiles = plan_feature_tiles(content, tiling, decoder.config)
    extent = tuple(noise.shape[2:])
    divide = not masks_are_complementary(((t.pixels, t.masks) for t in tiles), extent)
    frames = (latent.shape[2] - 1) * decoder.scale.time + 1
    emitted = 0

    def decode(tile: FeatureTile) -> torch.Tensor:
        t, h, w = tile.features
        part = features[:, t.start:(features.shape[1] if tile.trailing else t.stop), h, w]
        if on_tile is not None:
            on_tile(False)
        pixels = decoder.decode_features(part, noise[(slice(None), slice(None)) + tile.pixels], tile.origin,
                                         tile.trailing, pathway).to(out_device, torch.float32)
        if on_tile is not None:
            on_tile(True)
        return pixels

    for chunk in _blend_groups(tiles, decode, lambda tile: tile.masks, noise.shape[:2], extent, divide, out_device,
                               world):
        chunk = decoder.crop_to_content(chunk, latent.shape, fronts)  # spatially; the frames below
        keep = min(chunk.shape[2], frames - emitted)
        if keep > 0:
            yield chunk[:, :, :keep]
        emitted += chunk.shape[2]


def _blend_groups(tiles: list, decode: Callable, masks: Callable, batch_channels: tuple[int, int],
                  extent: Sequence[int], divide: bool, out_device: torch.device, world=None) -> Iterator[torch.Tensor]:
    """Accumulate ``decode(tile) * masks(tile)`` per temporal group (tiles sharing a pixel time span), carry the
    overlap into the next group and yield each group's finished frames (divided by the summed weights when
    ``divide``). ``world`` of several ranks: rank 0 blends (decoding its tiles, receiving the others'), the
    other ranks decode and send their tiles and yield nothing."""
    if world is not None and world.size > 1:
        if world.rank != 0:
            _send_tiles(tiles, decode, world)
            return
        decode = _received(decode, world, batch_channels, out_device)
    previous = None
    for group in _temporal_groups(tiles):
        span = group[0].pixels[0]
        shape = (span.stop - span.start, *extent[1:])
        values = torch.zeros(*batch_channels, *shape, device=out_device)
        weights = torch.zeros(1, 1, *shape, device=out_device) if divide else None
        for tile in group:
            decoded, tile_masks = decode(tile), masks(tile)
            where = (slice(None), slice(None), slice(None)) + tuple(tile.pixels[1:])
            values[where] += weigh(decoded, tile_masks)
            if divide:
                weights[where] += weigh(torch.ones(1, 1, *decoded.shape[2:], device=out_device), tile_masks)
            del decoded
        if previous is not None:
            prev_values, prev_weights, prev_span = previous
            offset, overlap = span.start - prev_span.start, prev_span.stop - span.start
            if overlap > 0:
                prev_values[:, :, offset:] += values[:, :, :overlap]
                values[:, :, :overlap] = prev_values[:, :, offset:]
                if divide:
                    prev_weights[:, :, offset:] += weights[:, :, :overlap]
                    weights[:, :, :overlap] = prev_weights[:, :, offset:]
            yield prev_values[:, :, :offset] / prev_weights[:, :, :offset].clamp(min=1e-8) if divide \
                else prev_values[:, :, :offset]
        previous = (values, weights, span)
    if previous is not None:
        yield previous[0] / previous[1].clamp(min=1e-8) if divide else previous[0]


def _exchange_device(world) -> torch.device:
    """Where the process group moves tensors: this process's CUDA device under NCCL, else the CPU."""
    if dist.get_backend(world.group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _send_tiles(tiles: list, decode: Callable, world) -> None:
    """A worker rank's part: decode tiles ``rank, rank + size, ...`` and send each to rank 0 in order, keeping one
    send in flight (the next tile decodes while rank 0 receives the last)."""
    device, pending = _exchange_device(world), None  # (work, tensor): the tensor lives until its send is done
    for number in range(world.rank, len(tiles), world.size):
        pixels = decode(tiles[number]).to(device).contiguous()
        if pending is not None:
            pending[0].wait()
        pending = (dist.isend(pixels, group=world.group, group_dst=0), pixels)
    if pending is not None:
        pending[0].wait()


def _received(decode: Callable, world, batch_channels: tuple[int, int], out_device: torch.device) -> Callable:
    """Rank 0's ``decode``: its own tiles (``number % size == 0``) decoded here, the others received from their
    rank, in the plan's order (the order the workers send them)."""
    device, numbers = _exchange_device(world), count()  # _blend_groups asks for each tile once, in order

    def get(tile) -> torch.Tensor:
        number = next(numbers)
        if number % world.size == 0:
            return decode(tile)
        pixels = torch.empty(*batch_channels, *(s.stop - s.start for s in tile.pixels), device=device)
        dist.recv(pixels, group=world.group, group_src=number % world.size)
        return pixels.to(out_device)

    return get
