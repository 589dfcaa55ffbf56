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
of one chunk, full frame size) and the previous one are held; finished frames are yielded as soon as no later tile can touch them, so
a muxer can encode while decoding continues and the peak does not grow with clip length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..errors import InputError
from .shapes import VideoScale
from .video_vae import VideoDecoder


@dataclass(frozen=True)
class TilingConfig:
    """Tile sizes in output pixels / frames; ``None`` disables tiling on that axis.

    Field names and rules follow the reference ``TilingConfig`` (spatial: tile >= 64, multiples of
    32; temporal: tile >= 16, multiples of 8; overlap < tile). Spatial tiles are rescaled per axis
    to keep the video's aspect ratio (the long side gets ``tile_size_in_pixels``).
    """

    tile_size_in_pixels: int | None = 512
    tile_overlap_in_pixels: int = 64
    tile_size_in_frames: int | None = 64
    tile_overlap_in_frames: int = 24

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
    def from_dict(cls, values: dict) -> "TilingConfig":
        """From the reference's field names (absent sizes disable that axis)."""
        return cls(tile_size_in_pixels=values.get("tile_size_in_pixels"),
                   tile_overlap_in_pixels=values.get("tile_overlap_in_pixels", 0),
                   tile_size_in_frames=values.get("tile_size_in_frames"),
                   tile_overlap_in_frames=values.get("tile_overlap_in_frames", 0))


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

    def blend_mask(self) -> torch.Tensor:
        """Separable mask ``[1, 1, T, H, W]`` (time x height, then x width, as the reference)."""
        t, h, w = self.masks()
        return (t[:, None, None] * h[None, :, None] * w[None, None, :])[None, None]


def _axis_spans(latent_fhw: Sequence[int], tiling: TilingConfig | None, scale: VideoScale) -> list[list[Span]]:
    """Per axis (F, H, W): the latent spans of the tiles."""
    frames, height, width = latent_fhw
    tiling = tiling or TilingConfig(None, 0, None, 0)
    long_side = max(height, width)

    def spatial(length: int, factor: int) -> list[Span]:
        if tiling.tile_size_in_pixels is None:
            return [Span(0, length)]
        size, overlap = tiling.tile_size_in_pixels // factor, tiling.tile_overlap_in_pixels // factor
        # keep the aspect ratio: the short axis gets proportionally smaller tiles (Python round: half to even)
        size = max(max(2, overlap + 1), round(size * length / long_side))
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
# Decoding


def tiled_decode(decoder: VideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                 output_device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Decode ``latent`` [B,C,F',H',W'] tile by tile, yielding float32 frame chunks [B,3,n,H,W]
    in order (their concatenation along dim 2 is the whole video).

    The decoder moves each tile to its own device/dtype, so the latent may stay on the CPU;
    blending happens in float32 on ``output_device`` (default: the latent's device).
    """
    decoder.check_latent(latent)
    out_device = torch.device(output_device) if output_device is not None else latent.device
    batch, _, *fhw = latent.shape
    scale = decoder.scale
    height, width = fhw[1] * scale.height, fhw[2] * scale.width
    channels = decoder.config.out_channels

    previous: tuple[torch.Tensor, torch.Tensor, slice] | None = None
    for group in _temporal_groups(plan_tiles(fhw, tiling, scale)):
        span = group[0].pixels[0]
        values = torch.zeros(batch, channels, span.stop - span.start, height, width, device=out_device)
        weights = torch.zeros(1, 1, span.stop - span.start, height, width, device=out_device)
        for tile in group:
            decoded = decoder(latent[(slice(None), slice(None)) + tile.latent]).to(out_device, torch.float32)
            mask = tile.blend_mask().to(out_device)
            where = (slice(None), slice(None), slice(None)) + tile.pixels[1:]
            values[where] += decoded * mask
            weights[where] += mask
            del decoded
        if previous is not None:
            prev_values, prev_weights, prev_span = previous
            offset = span.start - prev_span.start
            overlap = prev_span.stop - span.start
            if overlap > 0:
                # the overlap's sums end up in the current group, which carries them forward
                prev_values[:, :, offset:] += values[:, :, :overlap]
                prev_weights[:, :, offset:] += weights[:, :, :overlap]
                values[:, :, :overlap] = prev_values[:, :, offset:]
                weights[:, :, :overlap] = prev_weights[:, :, offset:]
            yield prev_values[:, :, :offset] / prev_weights[:, :, :offset].clamp(min=1e-8)
        previous = (values, weights, span)
        del values, weights
    if previous is not None:
        yield previous[0] / previous[1].clamp(min=1e-8)


def decode_chunks(decoder: VideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                  output_device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Decode to float32 frame chunks. ``tiling``: a :class:`TilingConfig`, or ``None`` (one untiled
    decode, one chunk). The tile size for a memory budget is chosen in ``memory/vae.py`` (``auto_tiling``)."""
    if isinstance(tiling, str):
        raise InputError(f"tiling must be a TilingConfig or None, got {tiling!r} (ltx2_nodes.memory.vae.auto_tiling "
                         "picks one for a memory budget).")
    if tiling is None:
        out_device = torch.device(output_device) if output_device is not None else latent.device
        yield decoder(latent).to(out_device, torch.float32)
        return
    yield from tiled_decode(decoder, latent, tiling, output_device)


def decode_video(decoder: VideoDecoder, latent: torch.Tensor, tiling: TilingConfig | None,
                 output_device: torch.device | str | None = None) -> torch.Tensor:
    """The whole video [B,3,F,H,W] float32 (concatenated :func:`decode_chunks`)."""
    return torch.cat(list(decode_chunks(decoder, latent, tiling, output_device)), dim=2)
