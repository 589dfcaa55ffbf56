"""Audio VAE and vocoder parity with the reference outputs, and chunked == whole decoding.

Generic over fixture sets: every dimension comes from the fixture tensors and metadata.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_audio_decoder, load_audio_encoder, load_vocoder
from ltx2_nodes.errors import UnsupportedModelError
from ltx2_nodes.media.audio_codec import check_pair, decode_audio, decode_mel, vocode
from ltx2_nodes.media.lengths import decoded_samples


@pytest.fixture(scope="module")
def golden_vae():
    return find_golden("audio_vae")


@pytest.fixture(scope="module")
def golden_vocoder():
    return find_golden("vocoder")


@pytest.fixture(scope="module")
def ckpt(golden_vae):
    return LTX2Checkpoint(golden_vae.weights_path)


@pytest.fixture(scope="module")
def decoder(ckpt):
    return load_audio_decoder(ckpt, dtype=torch.float32)


@pytest.fixture(scope="module")
def vocoder(golden_vocoder):
    return load_vocoder(LTX2Checkpoint(golden_vocoder.weights_path), dtype=torch.float32)


def test_encode_matches_reference(golden_vae, ckpt):
    encoder = load_audio_encoder(ckpt, dtype=torch.float32)
    with torch.no_grad():
        latent = encoder(golden_vae["encode.mel"])
    assert_close(latent, golden_vae["encode.latent"], "encode.latent")


def test_decode_matches_reference(golden_vae, decoder):
    with torch.no_grad():
        mel = decoder(golden_vae["decode.latent"])
    assert_close(mel, golden_vae["decode.mel"], "decode.mel")


def test_decode_audio_chain_matches_reference(golden_vae, decoder, vocoder):
    if "decode_audio.waveform" not in golden_vae.tensors:
        pytest.skip("this fixture set has no decode_audio output (mel_bins != 64 or batch > 1)")
    latent = golden_vae["decode.latent"]
    waveform, rate = decode_audio(latent, decoder, vocoder)
    expected = golden_vae["decode_audio.waveform"]
    assert_close(waveform.reshape(expected.shape), expected, "decode_audio.waveform")
    assert rate == vocoder.cfg.output_sample_rate
    assert waveform.shape[-1] == decoded_samples(latent.shape[2], vocoder.upsample_factor)


def test_vocoder_matches_reference(golden_vocoder, vocoder):
    with torch.no_grad():
        waveform = vocoder(golden_vocoder["mel"])
    assert_close(waveform, golden_vocoder["waveform"], "vocoder.waveform")
    assert vocoder.upsample_factor == golden_vocoder.call["upsample_factor"]
    assert vocoder.sample_rate == golden_vocoder.call["output_sample_rate"]


def _latent_like(golden_vae, frames: int, seed: int = 0) -> torch.Tensor:
    b, c, _, f = golden_vae["decode.latent"].shape
    return torch.randn(1, c, frames, f, generator=torch.Generator().manual_seed(seed))


def test_chunked_decode_equals_whole(golden_vae, decoder, vocoder):
    """Chunks barely longer than the receptive field force every join to rely on the computed context."""
    chunk = decoder.past_context_latents() + 3
    latent = _latent_like(golden_vae, 2 * chunk + 5)
    whole_mel = decode_mel(latent, decoder, chunk_latents=None)
    chunked_mel = decode_mel(latent, decoder, chunk_latents=chunk)
    assert_close(chunked_mel, whole_mel, "chunked mel", tol=1e-5)

    try:
        check_pair(decoder, vocoder)
    except UnsupportedModelError:
        pytest.skip("this fixture set's vocoder does not read its decoder's mel layout")
    mel_chunk = vocoder.context_frames() + 7
    whole = vocode(whole_mel, vocoder, chunk_frames=None)
    chunked = vocode(chunked_mel, vocoder, chunk_frames=mel_chunk)
    assert_close(chunked, whole, "chunked waveform", tol=1e-5)
    # no click: the sample-to-sample step at every join is no larger than anywhere else in the whole decode
    joins = torch.arange(mel_chunk, whole_mel.shape[2], mel_chunk) * vocoder.upsample_factor
    steps = chunked.diff(dim=-1).abs()
    assert steps[..., joins - 1].max() <= whole.diff(dim=-1).abs().max() + 1e-5


def _reach(outputs: torch.Tensor, index_to_unit) -> tuple[int, int]:
    changed = outputs.abs().amax(dim=tuple(d for d in range(outputs.dim()) if d != 2)).nonzero().flatten()
    return index_to_unit(changed.min().item()), index_to_unit(changed.max().item())


def test_decoder_context_covers_receptive_field(golden_vae, decoder):
    """Perturb one latent step; the computed history bound must reach at least as far as the effect."""
    dec64 = load_audio_decoder(LTX2Checkpoint(golden_vae.weights_path), dtype=torch.float64)
    context = dec64.past_context_latents()
    latent = _latent_like(golden_vae, context + 12).double()
    bumped = latent.clone()
    bumped[:, :, 2] += 1.0
    with torch.no_grad():
        diff = dec64.decode_raw(bumped) - dec64.decode_raw(latent)
    step = dec64.cfg.time_upsample
    first, last = _reach(diff, lambda frame: (frame + step - 1) // step)  # raw mel frame -> owning latent
    assert first == 2, "the decoder must be causal: nothing before the perturbed step may change"
    assert last - 2 <= context <= last - 2 + 3


def test_vocoder_context_covers_receptive_field(golden_vocoder):
    voc64 = load_vocoder(LTX2Checkpoint(golden_vocoder.weights_path), dtype=torch.float64)
    radius = voc64.context_frames()
    b, s, _, m = golden_vocoder["mel"].shape
    mel = torch.randn(1, s, 2 * radius + 3, m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bumped = mel.clone()
    centre = radius + 1
    bumped[:, :, centre] += 1.0
    with torch.no_grad():
        diff = voc64(bumped) - voc64(mel)
    factor = voc64.upsample_factor
    first, last = _reach(diff, lambda sample: sample // factor)
    reach = max(centre - first, last - centre)
    assert reach <= radius <= reach + 4


def test_chunked_vocode_equals_whole_on_reference_mel(golden_vocoder, vocoder):
    mel = golden_vocoder["mel"]
    whole = vocode(mel, vocoder, chunk_frames=None)
    assert_close(vocode(mel, vocoder, chunk_frames=max(mel.shape[2] // 3, 1)), whole, "chunked vocoder", tol=1e-5)
