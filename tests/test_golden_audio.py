"""Audio VAE and vocoder parity with the reference outputs, and chunked == whole decoding.

Generic over fixture sets and flavours: every dimension and call parameter comes from the fixture
tensors and metadata. The "2.0" / "2.0-head" sets carry the LTX-2 HiFi-GAN vocoder (24 kHz), the
"2.3" set the BigVGAN + bandwidth-extension vocoder (48 kHz) together with its intermediate
tensors (``waveform_16k``, ``bwe.*``).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp

from conftest import assert_close, find_golden
from ltx2_nodes import stages
from ltx2_nodes.errors import UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_audio_decoder, load_audio_encoder, load_vocoder
from ltx2_nodes.media.audio_codec import check_pair, decode_audio, decode_mel, vocode
from ltx2_nodes.media.lengths import audio_latent_count, clip_samples, decoded_samples
from ltx2_nodes.model.bigvgan import BWEVocoder
from ltx2_nodes.handles import LTX2Models

FLAVOURS = ("2.0", "2.0-head", "2.3")


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"golden-{f}" for f in FLAVOURS])
def flavour(request):
    return request.param


@pytest.fixture(scope="module")
def golden_vae(flavour):
    return find_golden("audio_vae", flavour)


@pytest.fixture(scope="module")
def golden_vocoder(flavour):
    return find_golden("vocoder", flavour)


@pytest.fixture(scope="module")
def ckpt(golden_vae):
    return LTX2Checkpoint(golden_vae.weights_path)


@pytest.fixture(scope="module")
def decoder(ckpt):
    return load_audio_decoder(ckpt, dtype=torch.float32)


@pytest.fixture(scope="module")
def vocoder(golden_vocoder):
    return load_vocoder(LTX2Checkpoint(golden_vocoder.weights_path), dtype=torch.float32)


def _fixture_rate_and_factor(golden_vocoder) -> tuple[int, int]:
    """Output rate and samples per mel frame as the fixture's ``call`` metadata records them."""
    call = golden_vocoder.call
    if "bwe_upsample_factor" in call:  # VocoderWithBWE: main generator, then x(output / input rate)
        ratio = Fraction(call["output_sampling_rate"], call["input_sampling_rate"])
        return call["output_sampling_rate"], int(call["vocoder_upsample_factor"] * ratio)
    return call["output_sample_rate"], call["upsample_factor"]


def test_encode_matches_reference(golden_vae, ckpt):
    encoder = load_audio_encoder(ckpt, dtype=torch.float32)
    with torch.no_grad():
        latent = encoder(golden_vae["encode.mel"])
    assert_close(latent, golden_vae["encode.latent"], "encode.latent")


def test_decode_matches_reference(golden_vae, decoder):
    with torch.no_grad():
        mel = decoder(golden_vae["decode.latent"])
    assert_close(mel, golden_vae["decode.mel"], "decode.mel")


def test_decode_audio_chain_matches_reference(golden_vae, decoder, ckpt):
    if "decode_audio.waveform" not in golden_vae.tensors:
        pytest.skip("this fixture set has no decode_audio output (mel_bins != 64 or batch > 1)")
    vocoder = load_vocoder(ckpt, dtype=torch.float32)  # the vocoder of the audio VAE's own file
    latent = golden_vae["decode.latent"]
    waveform, rate = decode_audio(latent, decoder, vocoder)
    expected = golden_vae["decode_audio.waveform"]
    assert_close(waveform.reshape(expected.shape), expected, "decode_audio.waveform")
    assert rate == vocoder.sample_rate
    assert waveform.shape[-1] == decoded_samples(latent.shape[2], vocoder.upsample_factor)


def test_vocoder_matches_reference(golden_vocoder, vocoder):
    with torch.no_grad():
        waveform = vocoder(golden_vocoder["mel"])
    assert_close(waveform, golden_vocoder["waveform"], "vocoder.waveform")
    assert (vocoder.sample_rate, vocoder.upsample_factor) == _fixture_rate_and_factor(golden_vocoder)


def test_bandwidth_extension_steps_match_reference(golden_vocoder, vocoder):
    """Each recorded step of ``VocoderWithBWE`` on its own recorded input (2.3 sets only)."""
    if "waveform_16k" not in golden_vocoder.tensors:
        pytest.skip("this fixture set's vocoder has no bandwidth extension")
    assert isinstance(vocoder, BWEVocoder)
    g = golden_vocoder
    hop = g.call["hop_length"]
    with torch.no_grad():
        low = vocoder.vocoder(g["mel"])
        assert_close(low, g["waveform_16k"], "waveform_16k")
        assert_close(F.pad(low, (0, -low.shape[-1] % hop)), g["bwe.padded_16k"], "bwe.padded_16k")
        assert_close(vocoder.mel_stft(g["bwe.padded_16k"]), g["bwe.mel"], "bwe.mel")
        assert_close(vocoder.bwe_generator(g["bwe.mel"]), g["bwe.residual"], "bwe.residual")
        assert_close(vocoder.resampler(g["bwe.padded_16k"]), g["bwe.skip"], "bwe.skip")
    assert vocoder.cfg.hop_length == hop
    assert vocoder.cfg.vocoder.upsample_factor == g.call["vocoder_upsample_factor"]
    assert vocoder.cfg.bwe.upsample_factor == g.call["bwe_upsample_factor"]


def test_decoded_audio_stage_has_the_vocoder_rate_and_exactly_the_clip_length(golden_vae, golden_vocoder):
    """The rate comes from the loaded vocoder (48 kHz for 2.3) through the stage into the AUDIO dict."""
    if golden_vae.weights_path != golden_vocoder.weights_path:
        pytest.skip("this fixture set's audio VAE and vocoder come from different files")
    models = LTX2Models(golden_vae.weights_path, torch.float32, "as stored")
    audio_vae = models.audio_vae
    rate, _ = _fixture_rate_and_factor(golden_vocoder)
    frames, fps = 17, 24
    latents = audio_latent_count(frames, fps, audio_vae.timing)
    _, channels, _, bins = golden_vae["decode.latent"].shape
    latent = torch.randn(1, channels, latents, bins, generator=torch.Generator().manual_seed(0))
    audio = stages.decode_audio(latent, audio_vae, frames=frames, fps=fps)
    assert audio["sample_rate"] == audio_vae.sample_rate == audio_vae.vocoder.sample_rate == rate
    samples = audio["waveform"].shape[-1]
    assert samples == clip_samples(frames, fps, rate)
    assert abs(Fraction(samples, rate) - Fraction(frames, fps)) <= Fraction(1, 2 * rate)  # frames / fps seconds


def _latent_like(golden_vae, frames: int, seed: int = 0) -> torch.Tensor:
    b, c, _, f = golden_vae["decode.latent"].shape
    return torch.randn(1, c, frames, f, generator=torch.Generator().manual_seed(seed))


def test_chunked_decode_equals_whole(golden_vae, decoder, ckpt):
    """Chunks barely longer than the receptive field force every join to rely on the computed context."""
    chunk = decoder.past_context_latents() + 3
    latent = _latent_like(golden_vae, 2 * chunk + 5)
    whole_mel = decode_mel(latent, decoder, chunk_latents=None)
    chunked_mel = decode_mel(latent, decoder, chunk_latents=chunk)
    assert_close(chunked_mel, whole_mel, "chunked mel", tol=1e-5)

    vocoder = load_vocoder(ckpt, dtype=torch.float32)
    try:
        check_pair(decoder, vocoder)
    except UnsupportedModelError:
        pytest.skip("this fixture set's vocoder does not read its decoder's mel layout")
    mel_chunk = vocoder.context_frames() + 7
    repeats = -(-(2 * mel_chunk + 5) // whole_mel.shape[2])
    mel = torch.cat([whole_mel] * repeats, dim=2)[:, :, :2 * mel_chunk + 5]  # two joins, however long the context
    whole = vocode(mel, vocoder, chunk_frames=None)
    chunked = vocode(mel, vocoder, chunk_frames=mel_chunk)
    assert_close(chunked, whole, "chunked waveform", tol=1e-5)
    # no click: the sample-to-sample step at every join is no larger than anywhere else in the whole decode
    joins = torch.arange(mel_chunk, mel.shape[2], mel_chunk) * vocoder.upsample_factor
    assert len(joins) >= 2
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
    """The samples one mel frame reaches (forward-mode derivative, so tails far below the output's float64
    resolution still count) lie within ``context_frames``, and the bound is at most 4 frames loose."""
    voc64 = load_vocoder(LTX2Checkpoint(golden_vocoder.weights_path), dtype=torch.float64)
    radius = voc64.context_frames()
    _, s, _, m = golden_vocoder["mel"].shape
    mel = torch.randn(1, s, 2 * radius + 3, m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    centre = radius + 1
    direction = torch.zeros_like(mel)
    direction[:, :, centre] = 1.0
    with torch.no_grad():
        _, diff = jvp(voc64, (mel,), (direction,))
    factor = voc64.upsample_factor
    first, last = _reach(diff, lambda sample: sample // factor)
    reach = max(centre - first, last - centre)
    assert reach <= radius <= reach + 4


def test_chunked_vocode_equals_whole_on_reference_mel(golden_vocoder, vocoder):
    mel = golden_vocoder["mel"]
    whole = vocode(mel, vocoder, chunk_frames=None)
    assert_close(vocode(mel, vocoder, chunk_frames=max(mel.shape[2] // 3, 1)), whole, "chunked vocoder", tol=1e-5)
