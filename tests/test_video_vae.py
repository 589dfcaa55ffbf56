"""Video VAE: config handling, released layout, layouts and error messages (size rules: test_shapes.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_video_decoder, load_video_encoder
from ltx2_nodes.model.video_vae import (VideoDecoder, VideoEncoder, VideoVAEConfig, patchify, uint8_to_pixels,
                                        unpatchify, video_to_uint8)


def test_released_layout_on_meta_device():
    """Widths derived from the default (released 19B) config give the published sizes."""
    with torch.device("meta"):
        encoder, decoder = VideoEncoder(VideoVAEConfig()), VideoDecoder(VideoVAEConfig())
    assert round(sum(p.numel() for p in encoder.parameters()) / 1e5) == 6941  # 694.1M
    assert round(sum(p.numel() for p in decoder.parameters()) / 1e5) == 5284  # 528.4M
    enc, dec = encoder.state_dict(), decoder.state_dict()
    assert enc["conv_in.conv.weight"].shape == (128, 48, 3, 3, 3)
    assert enc["down_blocks.1.conv.conv.weight"].shape == (64, 128, 3, 3, 3)
    assert enc["down_blocks.7.conv.conv.weight"].shape == (256, 1024, 3, 3, 3)
    assert enc["conv_out.conv.weight"].shape == (129, 2048, 3, 3, 3)
    assert dec["conv_in.conv.weight"].shape == (1024, 128, 3, 3, 3)
    assert dec["up_blocks.1.conv.conv.weight"].shape == (4096, 1024, 3, 3, 3)
    assert dec["conv_out.conv.weight"].shape == (48, 128, 3, 3, 3)
    assert "per_channel_statistics.mean-of-means" in enc and "per_channel_statistics.std-of-means" in dec
    assert (decoder.scale.time, decoder.scale.height, decoder.scale.width) == (8, 32, 32)


def test_config_reads_metadata_and_refuses_what_it_cannot_run():
    cfg = VideoVAEConfig.from_metadata({"latent_channels": 16, "spatial_padding_mode": "zeros"})
    assert (cfg.encoder_spatial_padding_mode, cfg.decoder_spatial_padding_mode) == ("zeros", "zeros")
    # HEAD semantics: spatial_padding_mode sets both halves; decoder_spatial_padding_mode is not read
    cfg = VideoVAEConfig.from_metadata({"spatial_padding_mode": "zeros", "decoder_spatial_padding_mode": "reflect",
                                        "encoder_spatial_padding_mode": "reflect"})
    assert (cfg.encoder_spatial_padding_mode, cfg.decoder_spatial_padding_mode) == ("zeros", "zeros")
    cfg = VideoVAEConfig.from_metadata({"encoder_spatial_padding_mode": "replicate",
                                        "decoder_spatial_padding_mode": "zeros"})
    assert (cfg.encoder_spatial_padding_mode, cfg.decoder_spatial_padding_mode) == ("replicate", "reflect")
    assert VideoVAEConfig.from_metadata({}).decoder_spatial_padding_mode == "reflect"
    blocks = VideoVAEConfig.from_metadata({"encoder_blocks": [["res_x", 3]]}).encoder_blocks
    assert blocks == (("res_x", {"num_layers": 3}),)
    with pytest.raises(UnsupportedModelError, match="timestep_conditioning=True .*LTX-Video 0.9"):
        VideoVAEConfig.from_metadata({"timestep_conditioning": True})
    with pytest.raises(UnsupportedModelError, match="uses block 'attn_res_x', which ltx2_nodes does not implement"):
        VideoVAEConfig.from_metadata({"decoder_blocks": [["attn_res_x", {"num_layers": 1}]]})
    with pytest.raises(UnsupportedModelError, match="inject_noise=true"):
        VideoVAEConfig.from_metadata({"decoder_blocks": [["res_x", {"num_layers": 1, "inject_noise": True}]]})
    with pytest.raises(UnsupportedModelError, match="norm_layer='group_norm'"):
        VideoVAEConfig.from_metadata({"norm_layer": "group_norm"})
    with pytest.raises(UnsupportedModelError, match="spatial_padding_mode='mirror'; expected one of"):
        VideoVAEConfig.from_metadata({"spatial_padding_mode": "mirror"})


def test_decoder_widths_start_at_base_channels_times_every_compress_multiplier():
    """LTX-2.3 layout: compress_space / compress_time / compress_all each divide the width by their
    multiplier (1 allowed); the decoder ends at decoder_base_channels (absent: latent_channels)."""
    blocks = [["res_x", {"num_layers": 1}], ["compress_space", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
              ["compress_time", {"multiplier": 2}], ["compress_all", {"multiplier": 1}],
              ["compress_all", {"multiplier": 2}], ["res_x", {"num_layers": 1}]]
    cfg = VideoVAEConfig.from_metadata({"latent_channels": 4, "decoder_base_channels": 8, "decoder_blocks": blocks})
    assert cfg.decoder_widths() == [64, 64, 32, 32, 16, 16, 8, 8]
    assert VideoVAEConfig.from_metadata({"latent_channels": 4, "decoder_blocks": blocks}).decoder_widths()[-1] == 4
    decoder = VideoDecoder(cfg)
    assert decoder.up_blocks[1].conv.conv.out_channels == 8 * 64 // 2 and not decoder.up_blocks[1].residual
    assert decoder(torch.randn(1, 4, 2, 2, 2)).shape == (1, 3, 9, 64, 64)


def test_patchify_channel_order():
    """channel = c*16 + 4*w_offset + h_offset (w before h), and unpatchify inverts it."""
    x = torch.arange(2 * 3 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 3, 1, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 48, 1, 2, 2)
    c, h_off, w_off, hh, ww = 2, 1, 3, 1, 0
    assert p[1, c * 16 + 4 * w_off + h_off, 0, hh, ww] == x[1, c, 0, 4 * hh + h_off, 4 * ww + w_off]
    assert torch.equal(unpatchify(p, 4), x)


def test_uint8_conversions():
    video = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    frames = video_to_uint8(video)
    assert frames.shape == (1, 5, 1, 1, 3) and frames.dtype == torch.uint8
    assert frames[0, :, 0, 0, 0].tolist() == [0, 0, 127, 254, 255]  # truncation, like the reference
    pixels = uint8_to_pixels(frames[0])
    assert pixels.shape == (1, 3, 5, 1, 1) and pixels.min() == -1.0 and pixels.max() == 1.0


@pytest.fixture(scope="module")
def tiny_vae():
    ckpt = LTX2Checkpoint(find_golden("video_vae").weights_path)
    return load_video_encoder(ckpt, torch.float32), load_video_decoder(ckpt, torch.float32)


def test_single_image_encodes_to_one_latent_frame(tiny_vae):
    encoder, decoder = tiny_vae
    image = torch.rand(1, 3, 1, 64, 96) * 2 - 1
    with torch.no_grad():
        latent = encoder(image)
        assert latent.shape == (1, encoder.config.latent_channels, 1, 2, 3)
        assert decoder(latent).shape == (1, 3, 1, 64, 96)


def test_a_32_pixel_high_video_encodes_to_a_one_cell_high_latent(tiny_vae):
    """The reference encoder takes any multiple of 32 (one latent cell); the 2.0 decoder's reflect padding
    needs two cells per side, a zero-padded decoder (LTX-2.3) decodes one."""
    encoder, decoder = tiny_vae
    video = torch.rand(1, 3, 9, 32, 96) * 2 - 1
    with torch.no_grad():
        latent = encoder(video)
        assert latent.shape == (1, encoder.config.latent_channels, 2, 1, 3) and latent.isfinite().all()
        zeros = VideoDecoder(dataclasses.replace(decoder.config, decoder_spatial_padding_mode="zeros"))
        zeros.load_state_dict(decoder.state_dict())
        assert zeros(latent).shape == (1, 3, 9, 32, 96)
        if decoder.config.decoder_spatial_padding_mode == "reflect":
            with pytest.raises(InputError, match="reflect padding needs at least 2 latent cells"):
                decoder(latent)


def test_encode_decode_input_errors(tiny_vae):
    encoder, decoder = tiny_vae
    with pytest.raises(InputError, match="8 frames"):
        encoder(torch.zeros(1, 3, 8, 64, 64))
    with pytest.raises(InputError, match=r"VAE encode expects pixels \[B,3,F,H,W\]"):
        encoder(torch.zeros(1, 64, 64, 3))
    channels = decoder.config.latent_channels
    with pytest.raises(InputError, match="expects a video latent .*AV latents must be separated"):
        decoder(torch.zeros(1, channels + 1, 2, 2, 2))
    with pytest.raises(InputError, match="reflect padding needs at least 2 latent cells"):
        decoder(torch.zeros(1, channels, 2, 1, 4))
