"""Tiled VAE encode: what it refuses (its parity with the reference is in test_golden_video_vae.py)."""

from __future__ import annotations

import pytest
import torch

from ltx2_nodes.errors import InputError
from ltx2_nodes.model.vae_tiling import TilingConfig, plan_encode_tiles, tiled_encode
from ltx2_nodes.model.video_vae import VideoEncoder, VideoVAEConfig


def test_tiled_encode_refuses_overlaps_the_encoder_cannot_hide():
    """The reference asks for 64 px / 16 frames of overlap on tiled axes (tile-edge padding artefacts)."""
    with torch.device("meta"):
        encoder = VideoEncoder(VideoVAEConfig())
    pixels = torch.zeros(1, 3, 9, 128, 128)
    with pytest.raises(InputError, match="spatial overlap 32 px is below the 64 px"):
        tiled_encode(encoder, pixels, TilingConfig(96, 32, None, 0))
    with pytest.raises(InputError, match="temporal overlap 8 frames is below the 16 frames"):
        tiled_encode(encoder, pixels, TilingConfig(None, 0, 24, 8))


def test_encode_tiles_cover_the_latent_and_later_chunks_start_with_an_image_frame():
    """Latent spans as for decoding; a later temporal tile re-encodes pixel frame 8k as an image, so its
    first latent weighs 0; with overlaps of at most half a tile the weights of every axis sum to 1."""
    tiles = plan_encode_tiles((41, 64, 256), TilingConfig(128, 64, 32, 16, keep_aspect=False))
    later = [t for t in tiles if t.latent[0].start > 0]
    assert later and all(t.pixels[0].start == 8 * t.latent[0].start and t.masks[0][0] == 0 for t in later)
    assert all(t.pixels[0].stop == 1 + 8 * (t.latent[0].stop - 1) and t.pixels[2].start == 32 * t.latent[2].start
               for t in tiles)
    for axis, length in enumerate((6, 2, 8)):
        total = torch.zeros(length)
        for (start, stop), mask in {(t.latent[axis].start, t.latent[axis].stop): t.masks[axis] for t in tiles}.items():
            total[start:stop] += mask
        assert torch.allclose(total, torch.ones(length), atol=1e-6), (axis, total)
