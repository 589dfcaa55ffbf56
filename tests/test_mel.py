"""Waveform -> log-mel front end.

No fixture holds a waveform -> mel pair (the reference harness had no torchaudio), so the pure-torch
path is checked piece by piece against closed forms: the slaney filterbank against an independent
float64 construction, the STFT magnitude against the exact DFT of a Hann-windowed sine, the
resampler against analytic sines (pass band) and an out-of-band tone (stop band), frame counts
against the centred-STFT formula, and the whole front end by running its output through the golden
encoder. Not covered in CI: bit-equality with torchaudio itself (the test below does that where
torchaudio is installed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_audio_encoder
from ltx2_nodes.media.audio_codec import encode_audio
from ltx2_nodes.media.lengths import encoded_latent_count, mel_frames_for_samples
from ltx2_nodes.media.mel import (LOG_FLOOR, MelConfig, audio_to_mel, hz_to_mel, log_mel, mel_filterbank, mel_to_hz,
                                  resample, to_stereo, torchaudio_module)

CFG = MelConfig()


def _sine(freq: float, rate: int, seconds: float, amplitude: float = 1.0, channels: int = 2) -> torch.Tensor:
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float().expand(1, channels, -1).contiguous()


# ------------------------------------------------------------------------------------------------
# Mel scale and filterbank


def test_slaney_scale_closed_form():
    assert hz_to_mel(0.0) == 0.0
    assert hz_to_mel(500.0) == pytest.approx(7.5)  # linear part: 3 mels per 200 Hz
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(8000.0) == pytest.approx(15 + 27 * math.log(8) / math.log(6.4))
    mels = torch.tensor([0.0, 7.5, 15.0, 30.0, 45.0], dtype=torch.float64)
    back = torch.tensor([hz_to_mel(f) for f in mel_to_hz(mels).tolist()], dtype=torch.float64)
    assert torch.allclose(back, mels, atol=1e-9)


def _reference_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_max: float) -> np.ndarray:
    """Independent float64 slaney filterbank (librosa's construction, written out from its definition)."""
    def to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))

    def to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(0, to_mel(f_max), n_mels + 2))
    fb = np.zeros((len(bins), n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m:m + 3]
        rising = (bins - lo) / (mid - lo)
        falling = (hi - bins) / (hi - mid)
        fb[:, m] = np.maximum(0, np.minimum(rising, falling)) * 2 / (hi - lo)
    return fb


def test_filterbank_matches_closed_form():
    fb = mel_filterbank(CFG)
    assert fb.shape == (CFG.n_freqs, CFG.n_mels) and fb.dtype == torch.float32
    expected = _reference_filterbank(CFG.sample_rate, CFG.n_fft, CFG.n_mels, CFG.f_max)
    # float32 band edges near 8 kHz carry ~1e-3 Hz of rounding: a few 1e-6 of the peak weight
    assert np.abs(fb.double().numpy() - expected).max() <= 1e-5 * expected.max()
    # slaney norm: every triangle has unit area in Hz (up to the bin-grid sampling of narrow bands)
    bin_hz = CFG.sample_rate / CFG.n_fft
    areas = fb.double().sum(0) * bin_hz
    wide = torch.from_numpy(np.diff(mel_to_hz(torch.linspace(0, hz_to_mel(CFG.f_max), CFG.n_mels + 2)).numpy()))
    assert torch.allclose(areas[wide[:-1] > 4 * bin_hz], torch.ones(1, dtype=torch.float64), atol=0.02)


# ------------------------------------------------------------------------------------------------
# STFT magnitude and log-mel


def test_log_mel_of_bin_centred_sine_is_exact():
    """A sine with exactly k periods per 1024-sample window has a 3-bin Hann spectrum: A*N/4 at k, A*N/8 beside."""
    k, amplitude = 40, 0.5
    wave = _sine(k * CFG.sample_rate / CFG.n_fft, CFG.sample_rate, 1.0, amplitude)
    mel = log_mel(wave, CFG, backend="torch")
    assert mel.shape == (1, 2, mel_frames_for_samples(wave.shape[-1], CFG.hop_length), CFG.n_mels)
    fb = mel_filterbank(CFG).double()
    n = CFG.n_fft
    expected = amplitude * (n / 4 * fb[k] + n / 8 * (fb[k - 1] + fb[k + 1]))
    expected = torch.log(expected.clamp(min=LOG_FLOOR))
    interior = mel[0, :, 10:-10].double()  # frames whose window lies inside the signal
    assert (interior - expected).abs().max() < 1e-4


def test_silence_gives_the_log_floor_everywhere():
    mel = audio_to_mel({"waveform": torch.zeros(1, 2, 16000), "sample_rate": 16000})
    assert torch.all(mel == math.log(LOG_FLOOR))


def test_loud_input_is_not_clamped():
    """|x| > 1 is kept: doubling the amplitude adds exactly log 2 wherever the mel is above the floor."""
    wave = _sine(440, 16000, 0.5, amplitude=0.9) + 0.3 * torch.randn(1, 2, 8000, generator=torch.Generator()
                                                                        .manual_seed(0))
    quiet = audio_to_mel({"waveform": wave, "sample_rate": 16000})
    loud = audio_to_mel({"waveform": 2 * wave, "sample_rate": 16000})  # peaks near 3
    above = quiet > math.log(LOG_FLOOR) + 1
    assert (2 * wave).abs().max() > 1.5
    assert torch.allclose(loud[above], quiet[above] + math.log(2), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Resampling


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_reproduces_a_sine(rate):
    seconds = 0.5
    wave = _sine(1000, rate, seconds, channels=1)[0]
    out = resample(wave, rate, 16000, backend="torch")
    assert out.shape == (1, math.ceil(16000 * wave.shape[-1] / rate))
    expected = _sine(1000, 16000, out.shape[-1] / 16000, channels=1)[0]
    edge = 200  # the first/last ~12 ms see zero padding
    assert (out - expected)[:, edge:-edge].abs().max() < 2e-3


def test_resample_removes_content_above_the_new_nyquist():
    wave = _sine(12000, 44100, 0.5, channels=1)[0]
    out = resample(wave, 44100, 16000, backend="torch")
    assert out[:, 200:-200].pow(2).mean().sqrt() < 5e-3  # a 12 kHz tone cannot exist at 16 kHz


def test_irregular_rate_is_refused_clearly():
    with pytest.raises(InputError, match="47999 Hz cannot be resampled"):
        resample(torch.zeros(1, 1000), 47999, 16000, backend="torch")


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_same_duration_same_frames_at_any_rate(rate):
    mel = audio_to_mel({"waveform": _sine(440, rate, 1.0), "sample_rate": rate})
    assert mel.shape == (1, 2, 101, CFG.n_mels)


@pytest.mark.skipif(torchaudio_module() is None, reason="torchaudio not installed (optional)")
@pytest.mark.parametrize("rate", [16000, 44100, 48000, 8000])
def test_pure_torch_path_matches_torchaudio(rate):
    wave = torch.randn(2, 2, rate, generator=torch.Generator().manual_seed(rate)) * 0.3
    audio = {"waveform": wave, "sample_rate": rate}
    ours = audio_to_mel(audio, backend="torch")
    theirs = audio_to_mel(audio, backend="torchaudio")
    assert (ours - theirs).abs().max() < 1e-4


# ------------------------------------------------------------------------------------------------
# Channels and bad input


def test_channel_rules():
    mono = torch.randn(1, 1, 100)
    assert torch.equal(to_stereo(mono), mono.expand(1, 2, 100))
    six = torch.randn(1, 6, 100)
    fl, fr, fc, lfe, bl, br = six[0]
    c = 1 / math.sqrt(2)
    assert torch.allclose(to_stereo(six)[0], torch.stack([fl + c * fc + c * bl, fr + c * fc + c * br]))
    with pytest.raises(InputError, match="clip.wav has 3 channels"):
        to_stereo(torch.randn(1, 3, 100), source="clip.wav")


def test_mono_input_gives_identical_channels():
    mel = audio_to_mel({"waveform": _sine(440, 44100, 0.5, channels=1), "sample_rate": 44100})
    assert mel.shape[1] == 2 and torch.equal(mel[:, 0], mel[:, 1])


@pytest.mark.parametrize("audio, message", [
    ({"waveform": torch.zeros(1, 2, 0), "sample_rate": 16000}, "is empty"),
    ({"waveform": torch.zeros(1, 2, 100), "sample_rate": 16000}, "too short: 100 samples"),
    ({"waveform": torch.full((1, 2, 4000), float("nan")), "sample_rate": 16000}, "NaN or infinite"),
    ({"waveform": torch.zeros(2, 4000), "sample_rate": 16000}, r"\[batch, channels, samples\]"),
    ({"waveform": torch.zeros(1, 2, 4000), "sample_rate": 0}, "positive integer"),
    ({"samples": torch.zeros(1, 2, 4000)}, "must be an AUDIO dict"),
])
def test_bad_audio_is_refused_with_a_clear_message(audio, message):
    with pytest.raises(InputError, match=message):
        audio_to_mel(audio, source="voice.wav")


# ------------------------------------------------------------------------------------------------
# Through the golden encoder


def test_front_end_output_runs_through_the_golden_encoder():
    golden = find_golden("audio_vae")
    encoder = load_audio_encoder(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    rate, seconds = 44100, 0.37
    audio = {"waveform": _sine(440, rate, seconds, amplitude=0.5), "sample_rate": rate}
    latent = encode_audio(audio, encoder)
    samples = math.ceil(encoder.cfg.sample_rate * round(rate * seconds) / rate)
    frames = encoded_latent_count(mel_frames_for_samples(samples, encoder.cfg.hop_length), encoder.cfg.levels)
    expected_shape = golden["encode.latent"].shape[1:2] + (frames,) + golden["encode.latent"].shape[3:]
    assert tuple(latent.shape) == (1,) + tuple(expected_shape)
    assert torch.isfinite(latent).all()
    silent = encode_audio({"waveform": torch.zeros(1, 1, 8000), "sample_rate": 8000}, encoder)
    assert torch.isfinite(silent).all()


def test_a_torchaudio_that_imports_but_cannot_run_is_not_used(monkeypatch):
    """ComfyUI test harnesses install an import-only torchaudio stand-in; it must not be picked."""
    import sys
    import types

    from ltx2_nodes.media import mel

    stub = types.ModuleType("torchaudio")

    def broken(*args, **kwargs):
        raise RuntimeError("stubbed dependency")

    stub.functional = types.SimpleNamespace(resample=broken)
    monkeypatch.setitem(sys.modules, "torchaudio", stub)
    mel.torchaudio_module.cache_clear()
    try:
        assert mel.torchaudio_module() is None
    finally:
        mel.torchaudio_module.cache_clear()
