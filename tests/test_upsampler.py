"""Latent upscaler: file validation, config inference, variants and the statistics sandwich."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_close, find_golden
from ltx2_nodes.errors import CheckpointError, InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import build_module
from ltx2_nodes.loading.components import load_latent_upsampler
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.model.upsampler import LatentUpsampler, UpsamplerConfig, upsample_latent
from ltx2_nodes.model.video_vae import PerChannelStatistics


@pytest.fixture(scope="module")
def golden():
    return find_golden("spatial_upsampler_x2")


def test_refuses_the_main_checkpoint_and_other_models(tmp_path):
    main = find_golden("video_vae").weights_path
    with pytest.raises(CheckpointError, match="is an LTX-2 model checkpoint .*ltx-2-spatial-upscaler-x2-1.0"):
        load_latent_upsampler(main)
    other = tmp_path / "some_vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(other))
    with pytest.raises(CheckpointError, match="some_vae.safetensors is not an LTX-2 latent upscaler"):
        load_latent_upsampler(other)


def test_foreign_config_is_refused(golden, tmp_path):
    file = SafetensorsFile(golden.weights_path)
    path = tmp_path / "other.safetensors"
    save_file({k: file.tensor(k).clone() for k in file.keys()}, str(path),
              metadata={"config": '{"_class_name": "AutoencoderKL"}'})
    with pytest.raises(CheckpointError, match="describes 'AutoencoderKL', not a LatentUpsampler"):
        load_latent_upsampler(path)
    with pytest.raises(UnsupportedModelError, match="rational latent upscaler with spatial_scale=3.0"):
        UpsamplerConfig.from_metadata({"rational_resampler": True, "spatial_scale": 3.0})
    with pytest.raises(UnsupportedModelError, match="rational latent upscaler .*temporal_upsample=True"):
        UpsamplerConfig.from_metadata({"rational_resampler": True, "spatial_scale": 1.5, "temporal_upsample": True})
    with pytest.raises(UnsupportedModelError, match="rational_resampler=False, spatial_scale=1.5"):
        UpsamplerConfig.from_metadata({"spatial_scale": 1.5})


def test_rational_upscaler_sizes_and_refusals():
    """x1.5: H -> floor((3H - 1) / 2) + 1, exact for even sizes; odd latent sizes are refused before a
    stage uses it (the result would be rounded up)."""
    cfg = UpsamplerConfig(in_channels=4, mid_channels=32, num_blocks_per_stage=1, spatial_scale=1.5,
                          rational_resampler=True)
    with torch.no_grad():
        out = _random(cfg)(torch.randn(1, 4, 2, 4, 6))
    assert out.shape == (1, 4, 2, 6, 9) and cfg.output_size(2, 4, 6) == (2, 6, 9)
    assert cfg.output_size(3, 5, 7) == (3, 8, 11)
    cfg.check_input_size(4, 6)
    with pytest.raises(InputError, match=r"x1.5 latent upscaler .*latent width 7.*multiples of 64"):
        cfg.check_input_size(4, 7)
    UpsamplerConfig().check_input_size(5, 7)  # x2 takes any size


def _random(config: UpsamplerConfig) -> LatentUpsampler:
    with torch.device("meta"):
        shapes = LatentUpsampler(config).state_dict()
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in shapes.items()}
    return build_module(lambda: LatentUpsampler(config), state, what="upsampler", source="test")


@pytest.mark.parametrize("spatial, temporal, dims, expected", [
    (True, False, 3, (3, 8, 10)),
    (False, True, 3, (5, 4, 5)),  # temporal x2 drops the duplicated first frame: F -> 2F - 1
    (True, True, 3, (5, 8, 10)),
    (True, False, 2, (3, 8, 10)),
])
def test_variants_shapes(spatial, temporal, dims, expected):
    cfg = UpsamplerConfig(in_channels=4, mid_channels=32, num_blocks_per_stage=1, dims=dims,
                          spatial_upsample=spatial, temporal_upsample=temporal)
    with torch.no_grad():
        out = _random(cfg)(torch.randn(1, 4, 3, 4, 5))
    assert out.shape == (1, 4) + expected


def test_2d_upsampler_works_per_frame():
    cfg = UpsamplerConfig(in_channels=4, mid_channels=32, num_blocks_per_stage=1, dims=2)
    model, latent = _random(cfg), torch.randn(1, 4, 3, 4, 5)
    with torch.no_grad():
        whole = model(latent)
        one = model(latent[:, :, 1:2])
    assert torch.allclose(whole[:, :, 1:2], one, atol=1e-6)


def test_upsample_latent_keeps_the_latent_dtype(golden):
    """A bf16 upsampler on a float32 latent: statistics in float32, result back in float32, close to
    the float32 run (bf16 weights and activations)."""
    upsampler = load_latent_upsampler(golden.weights_path)  # file dtype: bf16
    assert next(upsampler.parameters()).dtype == torch.bfloat16
    stats = PerChannelStatistics(upsampler.config.in_channels)
    stats.get_buffer("mean-of-means").fill_(0.1)
    stats.get_buffer("std-of-means").fill_(2.0)
    with torch.no_grad():
        out = upsample_latent(golden["latent"], upsampler, stats)
        reference = upsample_latent(golden["latent"], upsampler.float(), stats)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert (out - reference).abs().max() < 0.1 * reference.abs().max()


def test_statistics_must_match(golden):
    upsampler = load_latent_upsampler(golden.weights_path, torch.float32)
    stats = PerChannelStatistics(upsampler.config.in_channels + 1)
    with pytest.raises(InputError, match="belong to different models"):
        upsample_latent(golden["latent"], upsampler, stats)
    with pytest.raises(InputError, match="latent upscaler expects a video latent"):
        upsampler(golden["latent"][:, :-1])


def test_golden_temporal_upsampler_matches_the_official_class():
    """The temporal x2 upsampler (F -> 2F - 1) against the official ``LatentUpsampler`` on tiny random weights
    (``tests/fixtures/temporal_upsampler``: every size and the config come from the files)."""
    g = find_golden("temporal_upsampler_x2", "temporal_upsampler")
    upsampler = load_latent_upsampler(g.weights_path, dtype=torch.float32)
    assert upsampler.config.temporal_upsample and upsampler.config.upscale.temporal
    latent = g["latent"]
    with torch.no_grad():
        out = upsampler(latent)
    frames = latent.shape[2]
    assert upsampler.config.output_size(*latent.shape[2:]) == tuple(out.shape[2:]) == (2 * frames - 1,
                                                                                      *latent.shape[3:])
    diff = assert_close(out, g["output"], "temporal upsampler output")
    print(f"temporal upsampler max |diff| {diff:.3g}")
