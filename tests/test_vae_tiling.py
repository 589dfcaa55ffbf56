"""Tiled video decoding: blend arithmetic, seams, streaming (memory model and tile choice: test_memory_vae.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_video_decoder
from ltx2_nodes.model.shapes import VideoScale
from ltx2_nodes.model.vae_tiling import (TilingConfig, chunk_frame_counts, decode_chunks, decode_video, plan_tiles,
                                         split_axis, tiled_decode)
from ltx2_nodes.model.video_vae import VideoDecoder, VideoVAEConfig, block_stride


class SurrogateDecoder(nn.Module):
    """A decoder stand-in with the VideoDecoder interface and a known, smooth response.

    Pixel frame j interpolates latent frames floor(j/8) and ceil(j/8); frame 0 is transformed
    differently (like the VAE, whose first frame is an image decode, not a continuation), so a
    tile starting one latent early produces a first frame that must get zero weight. ``blur``
    box-filter passes with reflect/replicate padding give tiles genuine border errors (as the
    VAE's padding does); ``mode`` is the spatial upsampling (nearest = every pixel depends on one
    latent cell only).
    """

    check_latent = VideoDecoder.check_latent

    def __init__(self, blur: int = 0, mode: str = "nearest"):
        super().__init__()
        self.config = VideoVAEConfig(latent_channels=3)
        self.scale = VideoScale()
        self.anchor = nn.Parameter(torch.zeros(()))  # device/dtype lookups
        self.blur, self.mode = blur, mode
        self.calls = 0

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = latent
        for _ in range(self.blur):
            x = F.pad(x, (1, 1, 1, 1, 0, 0), mode="reflect")
            x = F.avg_pool3d(torch.cat((x[:, :, :1], x, x[:, :, -1:]), dim=2), 3, stride=1)
        pos = torch.arange(1 + 8 * (x.shape[2] - 1)) / 8
        lo, hi = pos.floor().long(), pos.ceil().long()
        frac = (pos - lo).view(1, 1, -1, 1, 1)
        x = x[:, :, lo] * (1 - frac) + x[:, :, hi] * frac
        x[:, :, 0] = x[:, :, 0] * 0.5 + 1.0
        b, c, f, h, w = x.shape
        x = F.interpolate(x.transpose(1, 2).reshape(b * f, c, h, w), scale_factor=32, mode=self.mode)
        return x.reshape(b, f, c, 32 * h, 32 * w).transpose(1, 2)


def _axis_weight_sums(fhw, tiling) -> list[torch.Tensor]:
    """Per axis, the sum of the distinct tiles' 1-D weights (the N-D sum is their product: the masks
    and the tile grid are separable)."""
    tiles = plan_tiles(fhw, tiling)
    sums = []
    for axis, length in enumerate((1 + 8 * (fhw[0] - 1), 32 * fhw[1], 32 * fhw[2])):
        total = torch.zeros(length)
        spans = {(t.pixels[axis].start, t.pixels[axis].stop): t.masks()[axis] for t in tiles}
        for (start, stop), mask in spans.items():
            total[start:stop] += mask
        sums.append(total)
    return sums


def test_blend_masks_are_a_partition_of_unity():
    """With overlaps at most half a tile the weights sum to exactly 1 (up to rounding); otherwise
    every pixel still has a positive weight and the decode divides by the sum."""
    for fhw, tilings in [
        ((9, 12, 12), [TilingConfig(128, 64, 24, 8), TilingConfig(96, 32, 16, 8), TilingConfig(192, 0, 32, 0)]),
        ((17, 5, 5), [TilingConfig(128, 64, 24, 8), TilingConfig(64, 32, 16, 8), TilingConfig(192, 64, 64, 24)]),
        ((61, 24, 40), [TilingConfig(192, 64, 64, 24), TilingConfig(512, 64, 64, 24), TilingConfig(256, 64, 32, 8)]),
    ]:
        for tiling in tilings:
            for total in _axis_weight_sums(fhw, tiling):
                assert (total - 1).abs().max() < 1e-6, (fhw, tiling)
    # aspect scaling gives the 7-cell side 3-cell tiles with 2-cell ramps on both sides
    assert min(total.min() for total in _axis_weight_sums((9, 7, 12), TilingConfig(128, 64, 24, 8))) > 0.1


def _as_tuples(spans) -> list[tuple[int, int, int, int]]:
    return [(s.start, s.end, s.left_ramp, s.right_ramp) for s in spans]


def test_split_axis_rules():
    assert split_axis(5, 8, 2, temporal=False) == split_axis(5, None, 0, temporal=False)  # fits: one tile
    assert _as_tuples(split_axis(14, 6, 2, temporal=False)) == [(0, 6, 0, 2), (4, 10, 2, 2), (8, 14, 2, 0)]
    # later chunks start one latent frame early, with a one frame longer left ramp
    assert _as_tuples(split_axis(14, 6, 2, temporal=True)) == [(0, 6, 0, 2), (3, 10, 3, 2), (7, 14, 3, 0)]


def test_tiled_equals_untiled_for_a_pointwise_decoder():
    """With a decoder whose pixels depend only on their own latent cell, every tile decodes exactly
    what the full decode has there, so any placement, weighting or causal first-frame error shows."""
    decoder = SurrogateDecoder()
    latent = torch.randn(2, 3, 9, 4, 6, generator=torch.Generator().manual_seed(0))
    full = decoder(latent)
    for tiling in [TilingConfig(96, 32, 24, 8), TilingConfig(128, 64, 64, 24)]:
        tiled = decode_video(decoder, latent, tiling)
        assert (tiled - full).abs().max() < 1e-6, tiling


def _seam_ratio(decoder, latent, tiling, axis: int) -> float:
    """max |discrete derivative| along ``axis`` at tile seams / the same outside them."""
    video = decode_video(decoder, latent, tiling)
    d = (video.narrow(axis, 1, video.shape[axis] - 1) - video.narrow(axis, 0, video.shape[axis] - 1)).abs()
    d = d.amax(dim=[i for i in range(5) if i != axis])  # d[x-1] = |v[x] - v[x-1]|
    coverage = torch.zeros(video.shape[axis])
    edges: set[int] = set()
    spans = {(t.pixels[axis - 2].start, t.pixels[axis - 2].stop) for t in plan_tiles(latent.shape[2:], tiling)}
    for start, stop in spans:
        coverage[start:stop] += 1
        edges.update({start, stop})
    edges -= {0, video.shape[axis]}
    seam = coverage[1:] > 1  # transitions into overlap pixels
    for edge in edges:
        seam[max(edge - 2, 0): edge + 1] = True
    if axis == 2:
        seam[0] = False  # frame 0 -> 1 is the first-frame jump of the surrogate itself, not a seam
        interior = ~seam
        interior[0] = False
    else:
        interior = ~seam
    assert seam.any() and interior.any()
    return (d[seam].max() / d[interior].max()).item()


@pytest.mark.parametrize("axis, shape, tiling, hard_cut", [
    (4, (1, 3, 2, 2, 20), TilingConfig(256, 64, None, 0), TilingConfig(256, 0, None, 0)),
    (3, (1, 3, 2, 20, 2), TilingConfig(256, 128, None, 0), TilingConfig(256, 0, None, 0)),
    (2, (1, 3, 9, 2, 2), TilingConfig(None, 0, 24, 8), TilingConfig(None, 0, 32, 0)),
])
def test_no_step_at_tile_seams(axis, shape, tiling, hard_cut):
    """A smooth-gradient latent decodes without a step at tile borders: the discrete derivative at
    the seams stays within 2x of the derivative elsewhere, while the same tiles cut without blending
    show a step (> 5x), proving the measure sees seams."""
    ramp = torch.linspace(-1.0, 1.0, shape[axis]).view([-1 if i == axis else 1 for i in range(5)])
    latent = (ramp * torch.tensor([1.0, -0.5, 0.8]).view(1, 3, 1, 1, 1)).expand(shape).contiguous()
    decoder = SurrogateDecoder(blur=2, mode="bilinear")
    assert _seam_ratio(decoder, latent, tiling, axis) < 2.0
    assert _seam_ratio(decoder, latent, hard_cut, axis) > 5.0


def _receptive_radius_px(config: VideoVAEConfig) -> int:
    """Output pixels a decoder output pixel can depend on, each side: every 3x3 conv adds one cell
    of its stage; one extra latent cell covers the pixel-to-cell rounding."""
    cell = config.decoder_scale.height
    radius = cell  # conv_in
    for name, params in reversed(config.decoder_blocks):
        if name == "res_x":
            radius += 2 * params["num_layers"] * cell
        else:
            radius += cell
            cell //= block_stride(name)[1]
    return radius + cell + config.decoder_scale.height  # conv_out, rounding


def test_golden_decoder_tiled_vs_untiled():
    """On the fixture's decoder: pixels farther than the receptive field from every inner tile edge
    equal the untiled decode (<= 1e-5); near the seams the blend is a convex mix of the tiles, so its
    error never exceeds the worse tile's own error there (random weights make that error O(1):
    1.8 for the shared tiny decoder; trained decoders see far less)."""
    golden = find_golden("video_vae")
    decoder = load_video_decoder(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    cell = decoder.scale.width
    radius = _receptive_radius_px(decoder.config)
    overlap = 2 * cell
    tile_px = -(-(radius + 2 * cell + overlap) // cell) * cell
    width = -(-(tile_px + radius + 2 * cell) // cell)
    tiling = TilingConfig(tile_px, overlap, None, 0)
    latent = torch.randn(1, decoder.config.latent_channels, 2, 2, width, generator=torch.Generator().manual_seed(1))
    tiles = plan_tiles(latent.shape[2:], tiling, decoder.scale)
    assert len(tiles) == 2
    with torch.no_grad():
        full = decoder(latent)
        tiled = decode_video(decoder, latent, tiling)
        worst_tile_error = torch.zeros_like(full)
        for tile in tiles:
            where = (slice(None), slice(None)) + tile.pixels
            error = (decoder(latent[(slice(None), slice(None)) + tile.latent]) - full[where]).abs()
            worst_tile_error[where] = torch.maximum(worst_tile_error[where], error)
    diff = (tiled - full).abs()
    inner_edges = [tiles[1].pixels[2].start, tiles[0].pixels[2].stop]
    x = torch.arange(full.shape[-1])
    far = (x < inner_edges[0] - radius) | (x >= inner_edges[1] + radius)
    assert far.any()
    assert diff[..., far].max() <= 1e-5
    assert (diff <= worst_tile_error + 1e-5).all()


def test_chunks_stream_and_buffers_stay_chunk_sized(monkeypatch):
    """Each chunk is yielded as soon as the next temporal group is decoded, and no buffer inside the
    generator spans more than one temporal group, however long the clip."""
    decoder = SurrogateDecoder()
    latent = torch.randn(1, 3, 17, 2, 2)
    tiling = TilingConfig(None, 0, 32, 8)
    counts = chunk_frame_counts(latent.shape[2:], tiling)
    allocated_frames = []
    zeros = torch.zeros

    def recording_zeros(*shape, **kwargs):
        if len(shape) == 5:  # frame buffers (the 1-D weight sums of the complementarity check are not)
            allocated_frames.append(shape[2])
        return zeros(*shape, **kwargs)

    monkeypatch.setattr(torch, "zeros", recording_zeros)
    calls_at_yield, chunks = [], []
    for chunk in tiled_decode(decoder, latent, tiling):
        calls_at_yield.append(decoder.calls)
        chunks.append(chunk)
    assert [c.shape[2] for c in chunks] == counts and sum(counts) == 1 + 8 * 16
    assert calls_at_yield == list(range(2, len(counts) + 1)) + [len(counts)]  # one chunk per new tile
    assert allocated_frames and max(allocated_frames) == 1 + 8 * 4  # one 4-latent-frame group, not 129 frames


def test_untiled_path_and_no_budget_guessing_in_the_model_layer():
    """The model layer decodes the tiling it is given; choosing one for a budget is memory/'s job."""
    decoder = SurrogateDecoder()
    latent = torch.randn(1, 3, 3, 2, 3)
    [single] = list(decode_chunks(decoder, latent, None))
    assert single.dtype == torch.float32 and single.shape == (1, 3, 17, 64, 96)
    assert torch.equal(decode_video(decoder, latent, None), single)
    with pytest.raises(InputError, match="tiling must be a TilingConfig or None, got 'auto'.*memory.vae.auto_tiling"):
        next(decode_chunks(decoder, latent, "auto"))


def test_tiling_config_validation():
    with pytest.raises(InputError, match="spatial tiling 100 pixels with overlap 64"):
        TilingConfig(100, 64, 64, 24)
    with pytest.raises(InputError, match="temporal tiling 64 frames with overlap 64"):
        TilingConfig(512, 64, 64, 64)
    temporal_only = {"tile_size_in_frames": 24, "tile_overlap_in_frames": 8}
    assert TilingConfig.from_dict(temporal_only) == TilingConfig(None, 0, 24, 8)
