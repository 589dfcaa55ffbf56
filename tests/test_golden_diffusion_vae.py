"""LTX-2.5 video VAE file (diffusion decoder + conv encoder) against the reference, generic over fixture sets.

Every dimension, ladder and schedule setting comes from the VAE file's ``config.vae`` and the fixture
(``noise_seed`` from the ``call`` metadata). Decoded video: max |diff| <= max(1e-4, 1e-5 * max|x|)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.components import load_latent_statistics, load_video_decoder, load_video_encoder
from ltx2_nodes.loading.family import LTX_2_5
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.loading.split import SPLIT_KINDS, ComponentFile
from ltx2_nodes.model.diffusion_vae import DiffusionVideoDecoder


@pytest.fixture(scope="module")
def golden():
    return find_golden("video_vae", "2.5")


@pytest.fixture(scope="module")
def vae_file(golden) -> ComponentFile:
    """The split pack's video VAE file (bare ``encoder.*`` / ``decoder.*`` keys) as the pack opens it."""
    return ComponentFile(SafetensorsFile(golden.weights_path), SPLIT_KINDS["video_vae"], LTX_2_5)


@pytest.fixture(scope="module")
def decoder(vae_file) -> DiffusionVideoDecoder:
    return load_video_decoder(vae_file, torch.float32)


def _video_tol(expected: torch.Tensor) -> float:
    return max(1e-4, 1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("pathway,key", [("chunked", "decode.video"), ("combined", "decode.video_combined")],
                         ids=["golden-chunked", "golden-combined"])
def test_golden_diffusion_decode_from_the_seed_matches_the_reference(golden, decoder, pathway, key):
    latent = golden["decode.latent"]
    with torch.no_grad():
        video = decoder(latent, golden.call["noise_seed"], pathway=pathway)
    assert_close(video, golden[key], key, _video_tol(golden[key]))


def test_golden_diffusion_decode_draws_the_reference_noise(golden, decoder):
    latent = golden["decode.latent"]
    shape = decoder.noise_shape(latent.shape)
    noise = torch.randn(shape, dtype=latent.dtype, generator=torch.Generator().manual_seed(golden.call["noise_seed"]))
    assert_close(noise, golden["decode.noise"], "decode.noise", 0.0)
    with torch.no_grad():  # the recorded noise passed explicitly gives the same video
        video = decoder(latent, noise=golden["decode.noise"])
    assert_close(video, golden["decode.video"], "decode.video (noise=)", _video_tol(golden["decode.video"]))


def test_golden_diffusion_decode_of_a_latent_below_the_size_floor(golden, decoder):
    """decode_b: a latent smaller than the stage windows is floored (edge-padded), decoded and cropped back."""
    with torch.no_grad():
        padded, _ = decoder.prepare_latent(golden["decode_b.latent"])
        video = decoder(golden["decode_b.latent"], golden.call["noise_seed"])
    assert_close(padded, golden["decode_b.debug.latent_padded"], "decode_b.latent_padded", 0.0)
    assert_close(video, golden["decode_b.video"], "decode_b.video", _video_tol(golden["decode_b.video"]))


def test_golden_diffusion_decoder_intermediates(golden, decoder):
    with torch.no_grad():
        padded, _ = decoder.prepare_latent(golden["decode.latent"])
        features = decoder.features(padded)
        context = decoder.stage5_context(features)
    assert_close(padded, golden["decode.debug.latent_padded"], "latent_padded", 0.0)
    assert_close(features, golden["decode.debug.stage4_input"], "stage4_input")
    assert_close(context, golden["decode.debug.stage5_context"], "stage5_context")


def test_golden_diffusion_decoder_single_network_step(golden, decoder):
    with torch.no_grad():
        out = decoder.velocity(golden["diff_step.context"], golden["diff_step.x_t"], golden["diff_step.t"],
                               "combined")
    assert_close(out, golden["diff_step.model_out"], "diff_step.model_out")


def test_golden_conv_encoder_of_the_split_vae_file(golden, vae_file):
    encoder = load_video_encoder(vae_file, torch.float32)
    with torch.no_grad():
        latent = encoder(golden["encode.pixels"])
    assert_close(latent, golden["encode.latent"], "encode.latent")


def test_golden_latent_statistics_of_the_split_vae_file(vae_file, decoder):
    stats = load_latent_statistics(vae_file)
    for name in ("mean-of-means", "std-of-means"):
        assert torch.equal(stats.get_buffer(name), decoder.per_channel_statistics.get_buffer(name))
