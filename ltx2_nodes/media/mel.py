"""Waveform -> log-mel front end of the audio VAE encoder (audio conditioning).

The reference (``ltx_core.model.audio_vae.ops.AudioProcessor``) does, with torchaudio:
``resample(waveform, src_rate, 16000)`` (``torchaudio.functional.resample`` defaults: Hann-windowed
sinc, 6 zero crossings, rolloff 0.99), then ``MelSpectrogram(sample_rate=16000, n_fft=1024,
win_length=1024, hop_length=160, f_min=0, f_max=sample_rate/2, n_mels=64, window=hann (periodic),
center=True, pad_mode="reflect", power=1.0, mel_scale="slaney", norm="slaney")``, then
``log(clamp(mel, 1e-5))`` and the layout ``[B, C, T, n_mels]``. ``f_max`` is derived from the
sample rate there, not read from ``preprocessing.mel.mel_fmax`` (both are 8000 in the release).

torchaudio cannot be installed beside CPU-only torch on every machine, so this module carries a
pure-torch path that performs the same float32 operations in the same order (``torch.stft`` for
the spectrogram, the slaney filterbank and the polyphase sinc resampler re-derived from their
definitions); torchaudio is used when importable (``backend="auto"``).

Channel rule (the VAE is stereo): 1 channel is duplicated; 2 are kept; 6 are taken as 5.1 in
FFmpeg/WAV order (FL, FR, FC, LFE, BL|SL, BR|SR) and downmixed with ITU-R BS.775 coefficients
(L = FL + 0.7071 FC + 0.7071 BL, R = FR + 0.7071 FC + 0.7071 BR, LFE dropped, no normalisation);
any other count is refused (``load_audio_file`` already downmixes such files with FFmpeg, which
knows their layout). Amplitudes above 1 are kept as they are: the log-mel is scale-covariant and
clamping would add distortion that the source does not have. Unlike ComfyUI core, no DC removal
or peak normalisation is applied (ltx-core has neither).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..errors import InputError
from ..model.audio_vae import AudioVAEConfig

LOG_FLOOR = 1e-5
MAX_RESAMPLE_KERNEL = 1 << 25  # elements; beyond this the rate ratio is too irregular to resample in one pass
BS775 = 1 / math.sqrt(2)
BACKENDS = ("auto", "torch", "torchaudio")


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0

    @property
    def f_max(self) -> float:
        return self.sample_rate / 2.0

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @classmethod
    def from_audio_vae(cls, cfg: AudioVAEConfig) -> "MelConfig":
        return cls(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.mel_bins)


@lru_cache(maxsize=1)
def torchaudio_module():
    """torchaudio if it imports *and works* on this machine, else None (probed once).

    Importing is not enough: a torchaudio built for another torch, or the import-only stand-in some
    test harnesses install, imports fine and fails when called; a tiny resample tells them apart.
    """
    try:
        ta = importlib.import_module("torchaudio")
        ta.functional.resample(torch.zeros(1, 32), 16000, 8000)
        return ta
    except Exception:  # noqa: BLE001 - any failure (missing, ABI mismatch, stub) means "not available"
        return None


def _use_torchaudio(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return None
    ta = torchaudio_module()
    if ta is None and backend == "torchaudio":
        raise RuntimeError("backend='torchaudio' requested but torchaudio cannot be imported")
    return ta


# ------------------------------------------------------------------------------------------------
# Slaney mel scale and filterbank


_SLANEY_HZ_PER_MEL = 200.0 / 3  # linear part below 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL  # 15
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # 27 mels per factor 6.4 above the break


def hz_to_mel(freq: float) -> float:
    """Slaney mel of a frequency in Hz (linear below 1 kHz, logarithmic above)."""
    if freq >= _SLANEY_BREAK_HZ:
        return _SLANEY_BREAK_MEL + math.log(freq / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return freq / _SLANEY_HZ_PER_MEL


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`, element-wise, in the tensor's dtype."""
    linear = _SLANEY_HZ_PER_MEL * mels
    log_part = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mels - _SLANEY_BREAK_MEL))
    return torch.where(mels >= _SLANEY_BREAK_MEL, log_part, linear)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """``[n_freqs, n_mels]`` slaney-scale triangles, each divided by its width in Hz / 2 (slaney norm).

    Float32 throughout, mirroring torchaudio's ``melscale_fbanks`` so both paths produce the
    same bits: STFT bin centres ``linspace(0, sr // 2, n_freqs)``, ``n_mels + 2`` band edges
    equally spaced in mel between ``f_min`` and ``f_max``.
    """
    bins = torch.linspace(0, cfg.sample_rate // 2, cfg.n_freqs)
    edges = mel_to_hz(torch.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    widths = edges[1:] - edges[:-1]
    offsets = edges.unsqueeze(0) - bins.unsqueeze(1)  # [n_freqs, n_mels + 2]: edge minus bin frequency
    rising = (-1.0 * offsets[:, :-2]) / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    triangles = torch.max(torch.zeros(1), torch.min(rising, falling))
    return triangles * (2.0 / (edges[2:cfg.n_mels + 2] - edges[:cfg.n_mels])).unsqueeze(0)


# ------------------------------------------------------------------------------------------------
# Resampling


def _sinc_kernels(up: int, down: int, width: int, base_freq: float, zero_crossings: int,
                  dtype: torch.dtype, device) -> torch.Tensor:
    """``[up, 1, 2*width + down]`` polyphase filters: output phase j reads inputs around j*down/up."""
    taps = torch.arange(-width, width + down, dtype=dtype, device=device)[None, None] / down
    t = torch.arange(0, -up, -1, dtype=dtype, device=device)[:, None, None] / up + taps
    t *= base_freq
    t = t.clamp_(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2  # Hann over +-zero_crossings
    t *= math.pi
    sinc = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    return sinc * (window * (base_freq / down))


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, backend: str = "auto",
             zero_crossings: int = 6, rolloff: float = 0.99, source: str = "audio") -> torch.Tensor:
    """Band-limited resampling of ``[..., N]`` (torchaudio.functional.resample with its defaults).

    Output length ``ceil(N * new / orig)``; the low-pass sits at ``rolloff`` x the lower Nyquist.
    """
    if orig_rate == new_rate:
        return waveform
    ta = _use_torchaudio(backend)
    if ta is not None:
        return ta.functional.resample(waveform, orig_rate, new_rate)
    gcd = math.gcd(orig_rate, new_rate)
    down, up = orig_rate // gcd, new_rate // gcd
    base_freq = min(down, up) * rolloff
    width = math.ceil(zero_crossings * down / base_freq)
    if up * (2 * width + down) > MAX_RESAMPLE_KERNEL:
        raise InputError(
            f"{source}: a sample rate of {orig_rate} Hz cannot be resampled to {new_rate} Hz in one pass (the rate "
            f"ratio only reduces to {down}:{up}). Convert the audio to a standard rate such as 48000 or 44100 Hz."
        )
    kernels = _sinc_kernels(up, down, width, base_freq, zero_crossings, waveform.dtype, waveform.device)
    shape = waveform.shape
    flat = torch.nn.functional.pad(waveform.reshape(-1, shape[-1]), (width, width + down))
    out = torch.nn.functional.conv1d(flat[:, None], kernels, stride=down)  # [n, up, frames]: phases interleave
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, : math.ceil(up * shape[-1] / down)]
    return out.reshape(*shape[:-1], out.shape[-1])


# ------------------------------------------------------------------------------------------------
# Spectrogram


def log_mel(waveform: torch.Tensor, cfg: MelConfig = MelConfig(), backend: str = "auto") -> torch.Tensor:
    """``[B, C, N]`` waveform at ``cfg.sample_rate`` -> ``[B, C, 1 + N // hop, n_mels]`` natural-log mel."""
    ta = _use_torchaudio(backend)
    if ta is not None:
        transform = ta.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.n_fft, hop_length=cfg.hop_length,
            f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, window_fn=torch.hann_window, center=True,
            pad_mode="reflect", power=1.0, mel_scale="slaney", norm="slaney").to(waveform.device)
        mel = transform(waveform)
    else:
        b, c, n = waveform.shape
        window = torch.hann_window(cfg.n_fft, dtype=waveform.dtype, device=waveform.device)
        spec = torch.stft(waveform.reshape(b * c, n), cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.n_fft,
                          window=window, center=True, pad_mode="reflect", normalized=False, onesided=True,
                          return_complex=True).abs()
        fb = mel_filterbank(cfg).to(device=waveform.device, dtype=spec.dtype)
        mel = torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2).reshape(b, c, cfg.n_mels, -1)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).permute(0, 1, 3, 2).contiguous()


# ------------------------------------------------------------------------------------------------
# AUDIO dict -> model input


def to_stereo(waveform: torch.Tensor, source: str = "audio") -> torch.Tensor:
    """``[B, C, N]`` -> ``[B, 2, N]`` by the channel rule in the module doc."""
    channels = waveform.shape[1]
    if channels == 2:
        return waveform
    if channels == 1:
        return waveform.expand(-1, 2, -1)
    if channels == 6:
        fl, fr, fc, _lfe, bl, br = waveform.unbind(1)
        return torch.stack([fl + BS775 * fc + BS775 * bl, fr + BS775 * fc + BS775 * br], dim=1)
    raise InputError(
        f"{source} has {channels} channels; the LTX-2 audio encoder takes mono, stereo or 5.1 (6 channels). Downmix "
        "it to stereo first (e.g. ffmpeg -i in.wav -ac 2 out.wav) or load the file with load_audio_file, which "
        "downmixes other layouts itself."
    )


def check_audio(audio: dict, source: str = "audio") -> tuple[torch.Tensor, int]:
    """Validate a ComfyUI AUDIO dict; returns its float32 ``[B, C, N]`` waveform and sample rate."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{source} must be an AUDIO dict with 'waveform' [B, C, N] and 'sample_rate'; "
                         f"got {type(audio).__name__}.")
    waveform, rate = audio["waveform"], audio["sample_rate"]
    if not isinstance(waveform, torch.Tensor) or waveform.dim() != 3:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise InputError(f"{source}: waveform must be a [batch, channels, samples] tensor, got {shape}.")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise InputError(f"{source}: sample_rate must be a positive integer (Hz), got {rate!r}.")
    if waveform.shape[-1] == 0 or waveform.shape[1] == 0:
        raise InputError(f"{source} is empty (waveform shape {tuple(waveform.shape)}); it contains no samples.")
    waveform = waveform.float()
    if not torch.isfinite(waveform).all():
        raise InputError(f"{source} contains NaN or infinite samples; the file or the node that produced it is "
                         "broken.")
    return waveform, rate


def audio_to_mel(audio: dict, cfg: MelConfig = MelConfig(), backend: str = "auto",
                 source: str = "audio") -> torch.Tensor:
    """ComfyUI AUDIO dict (any rate, 1/2/6 channels) -> stereo log-mel ``[B, 2, T, n_mels]`` at ``cfg``."""
    waveform, rate = check_audio(audio, source)
    waveform = resample(to_stereo(waveform, source), rate, cfg.sample_rate, backend, source=source)
    needed = cfg.n_fft // 2 + 1  # a centred STFT reflects n_fft/2 samples at each end
    if waveform.shape[-1] < needed:
        raise InputError(
            f"{source} is too short: {audio['waveform'].shape[-1]} samples at {rate} Hz "
            f"({1000 * audio['waveform'].shape[-1] / rate:.1f} ms); the mel front end needs at least {needed} "
            f"samples at {cfg.sample_rate} Hz ({1000 * needed / cfg.sample_rate:.0f} ms)."
        )
    return log_mel(waveform, cfg, backend)
