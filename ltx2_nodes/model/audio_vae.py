"""The LTX-2 audio VAE: log-mel spectrogram <-> latent, causal along time.

Spectrograms are ``[B, C, T, M]`` (stereo channels, mel frames, mel bins); time is the conv
"height" axis and every convolution is causal along it (3x3 kernels pad 2 rows before, none
after; 1 column each side along mel). The encoder halves time and mel once per level except the
last (stride-2 conv after padding 2 rows before / 1 mel column after); the decoder mirrors it
with nearest x2 upsampling followed by a causal conv and dropping the first time row, so ``T``
latents decode to ``2^(levels-1) * (T - 1) + 1`` mel frames. PixelNorm (eps 1e-6) everywhere, no
attention. Latents are normalised with per-channel statistics in the token layout
``b c t f -> b (t) (c f)``.

Every width comes from the checkpoint's ``config.audio_vae`` metadata; the dataclass defaults are
the released LTX-2 19B values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .config_values import as_tuple, check_config
from .patchify import patchify_audio, unpatchify_audio
from .shapes import AudioTiming

# The reference fixes the time ratio between mel frames and latents at 4 when it sizes the decoder
# output, independently of the number of levels.
LATENT_DOWNSAMPLE = 4
PIXEL_NORM_EPS = 1e-6


def decoded_mel_frames(latent_frames: int) -> int:
    """Mel frames the causal decoder delivers for ``latent_frames`` steps (the reference's crop/pad target)."""
    return max(latent_frames * LATENT_DOWNSAMPLE - (LATENT_DOWNSAMPLE - 1), 1)


@dataclass(frozen=True)
class AudioVAEConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    in_channels: int = 2
    out_ch: int = 2
    mel_bins: int = 64
    sample_rate: int = 16000
    hop_length: int = 160
    n_fft: int = 1024
    causal: bool = True

    def __post_init__(self):
        check_config(self, "config.audio_vae")

    @property
    def levels(self) -> int:
        return len(self.ch_mult)

    @property
    def time_upsample(self) -> int:
        """Mel frames per latent step produced by the decoder's upsampling path."""
        return 2 ** (self.levels - 1)

    @property
    def latent_mel_bins(self) -> int:
        """Mel bins of the latent: ``mel_bins`` halved by each of the encoder's downsampling levels (64 -> 16)."""
        return self.mel_bins // 2 ** (self.levels - 1)

    @property
    def timing(self) -> AudioTiming:
        return AudioTiming(self.sample_rate, self.hop_length, LATENT_DOWNSAMPLE, self.causal)

    @classmethod
    def from_metadata(cls, meta: dict) -> "AudioVAEConfig":
        """Build from a checkpoint's ``config.audio_vae`` section (``model.params.ddconfig`` + ``preprocessing``)."""
        params = meta.get("model", {}).get("params", {})
        dd = params.get("ddconfig", {})
        stft = meta.get("preprocessing", {}).get("stft", {})
        mel = meta.get("preprocessing", {}).get("mel", {})
        _refuse_unsupported(dd)
        d = cls()
        return cls(
            ch=dd.get("ch", d.ch),
            ch_mult=as_tuple(dd.get("ch_mult", d.ch_mult)),
            num_res_blocks=dd.get("num_res_blocks", d.num_res_blocks),
            z_channels=dd.get("z_channels", d.z_channels),
            in_channels=dd.get("in_channels", d.in_channels),
            out_ch=dd.get("out_ch", d.out_ch),
            mel_bins=dd.get("mel_bins") or mel.get("n_mel_channels") or d.mel_bins,
            sample_rate=params.get("sampling_rate", d.sample_rate),
            hop_length=stft.get("hop_length", d.hop_length),
            n_fft=stft.get("filter_length", d.n_fft),
            causal=bool(stft.get("causal", d.causal)),
        )


def _refuse_unsupported(dd: dict) -> None:
    """LTX-2 uses pixel norm, time-causal convs, strided-conv resampling and no attention."""
    problems = []
    if dd.get("norm_type", "pixel") != "pixel":
        problems.append(f"norm_type={dd['norm_type']!r} (expected 'pixel')")
    if dd.get("causality_axis", "height") != "height":
        problems.append(f"causality_axis={dd['causality_axis']!r} (expected 'height')")
    if dd.get("mid_block_add_attention", False):
        problems.append("mid_block_add_attention=true (LTX-2 has no attention in the audio VAE)")
    levels, resolution = dd.get("ch_mult", (1, 2, 4)), dd.get("resolution", 256)
    level_resolutions = ({resolution // 2 ** i for i in range(len(levels))}
                         if isinstance(levels, list | tuple) and isinstance(resolution, int) else set())
    if level_resolutions & set(dd.get("attn_resolutions") or ()):
        problems.append(f"attn_resolutions={dd['attn_resolutions']} (LTX-2 has no attention in the audio VAE)")
    if not dd.get("double_z", True):
        problems.append("double_z=false (LTX-2 predicts mean and log-variance)")
    if not dd.get("resamp_with_conv", True):
        problems.append("resamp_with_conv=false (LTX-2 resamples with strided convolutions)")
    if problems:
        raise UnsupportedModelError("audio VAE config not supported: " + "; ".join(problems) + ".")


# ------------------------------------------------------------------------------------------------
# Building blocks


def pixel_norm(x: torch.Tensor, eps: float = PIXEL_NORM_EPS) -> torch.Tensor:
    """RMS normalisation over channels at every (time, mel) position."""
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + eps)


class CausalConv2d(nn.Module):
    """Conv2d padded only *before* along time (and symmetrically along mel); key ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        half = (kernel_size - 1) // 2
        self.padding = (half, kernel_size - 1 - half, kernel_size - 1, 0)  # (mel left, right, time top, bottom)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding) if any(self.padding) else x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = CausalConv2d(in_channels, out_channels, 3)
        self.conv2 = CausalConv2d(out_channels, out_channels, 3)
        self.nin_shortcut = CausalConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(pixel_norm(x)))
        h = self.conv2(F.silu(pixel_norm(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding 2 time rows before and 1 mel column after (key ``.conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 2, 0)))


class Upsample(nn.Module):
    """Nearest x2 in time and mel, causal conv, then drop the first time row (T -> 2T - 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        # Rows 0 and 1 both see only input row 0; dropping row 0 keeps the causal 1 + 2n length.
        return x[:, :, 1:, :]


class MidBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.block_1(x))


class Level(nn.Module):
    """One resolution level: ``block.N`` ResNet blocks plus an optional ``downsample``/``upsample``."""

    def __init__(self, channels: list[tuple[int, int]], resample: nn.Module | None, resample_name: str):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(i, o) for i, o in channels])
        self.resample_name = resample_name
        if resample is not None:
            self.add_module(resample_name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        resample = getattr(self, self.resample_name, None)
        return resample(x) if resample is not None else x


class PerChannelStatistics(nn.Module):
    """Latent mean/std per token feature (``c * latent_bins + f``), stored with the VAE."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("std-of-means", torch.empty(size))
        self.register_buffer("mean-of-means", torch.empty(size))

    def _transform(self, latent: torch.Tensor, fn) -> torch.Tensor:
        _, channels, _, bins = latent.shape
        tokens = patchify_audio(latent)
        std, mean = self.get_buffer("std-of-means"), self.get_buffer("mean-of-means")
        if tokens.shape[-1] != std.shape[0]:
            raise InputError(f"audio latent has {channels} channels x {bins} bins = {tokens.shape[-1]} features per "
                             f"step but this audio VAE works on {std.shape[0]}; the latent comes from another model.")
        return unpatchify_audio(fn(tokens, std.to(tokens), mean.to(tokens)), channels, bins)

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        return self._transform(latent, lambda x, std, mean: (x - mean) / std)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        return self._transform(latent, lambda x, std, mean: x * std + mean)


# ------------------------------------------------------------------------------------------------
# Encoder / decoder


class AudioEncoder(nn.Module):
    """Log-mel ``[B, in_channels, T, mel_bins]`` -> normalised latent means ``[B, z, T', mel_bins / 2^(L-1)]``."""

    def __init__(self, cfg: AudioVAEConfig):
        super().__init__()
        self.cfg = cfg
        ch, mult = cfg.ch, cfg.ch_mult
        self.per_channel_statistics = PerChannelStatistics(ch)
        self.conv_in = CausalConv2d(cfg.in_channels, ch, 3)
        levels = []
        for i, m in enumerate(mult):
            widths = [ch * (mult[i - 1] if i else 1)] + [ch * m] * cfg.num_res_blocks
            last = i == len(mult) - 1
            levels.append(Level(list(zip(widths[:-1], widths[1:])), None if last else Downsample(ch * m),
                                "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(ch * mult[-1])
        self.conv_out = CausalConv2d(ch * mult[-1], 2 * cfg.z_channels, 3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(mel)
        for level in self.down:
            h = level(h)
        h = self.conv_out(F.silu(pixel_norm(self.mid(h))))
        means = h[:, : self.cfg.z_channels]  # the other half is the log-variance
        return self.per_channel_statistics.normalize(means)


class AudioDecoder(nn.Module):
    """Normalised latent ``[B, z, T, F]`` -> log-mel ``[B, out_ch, max(4T - 3, 1), mel_bins]``."""

    def __init__(self, cfg: AudioVAEConfig):
        super().__init__()
        self.cfg = cfg
        ch, mult = cfg.ch, cfg.ch_mult
        self.per_channel_statistics = PerChannelStatistics(ch)
        top = ch * mult[-1]
        self.conv_in = CausalConv2d(cfg.z_channels, top, 3)
        self.mid = MidBlock(top)
        levels: list[Level] = [None] * len(mult)  # type: ignore[list-item]
        block_in = top
        for i in reversed(range(len(mult))):
            widths = [block_in] + [ch * mult[i]] * (cfg.num_res_blocks + 1)
            block_in = widths[-1]
            levels[i] = Level(list(zip(widths[:-1], widths[1:])), Upsample(block_in) if i else None, "upsample")
        self.up = nn.ModuleList(levels)
        self.conv_out = CausalConv2d(block_in, cfg.out_ch, 3)

    def decode_raw(self, latent: torch.Tensor) -> torch.Tensor:
        """The network output before the crop/pad to :func:`decoded_mel_frames` (``2^(L-1)(T-1)+1`` frames)."""
        h = self.conv_in(self.per_channel_statistics.denormalize(latent))
        h = self.mid(h)
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(pixel_norm(h)))

    def fit_output(self, raw: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """Crop, then zero-pad, to ``out_ch`` x :func:`decoded_mel_frames` x ``mel_bins`` like the reference."""
        frames, bins = decoded_mel_frames(latent_frames), self.cfg.mel_bins
        raw = raw[:, : self.cfg.out_ch, :frames, :bins]
        return F.pad(raw, (0, bins - raw.shape[3], 0, frames - raw.shape[2]))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.fit_output(self.decode_raw(latent), latent.shape[2])

    def past_context_latents(self) -> int:
        """How many earlier latent steps can influence the mel frames of a latent step.

        Every causal 3-tap conv looks 2 rows back at its own time resolution; an upsampler adds
        its conv plus one row of alignment (it keeps row 2k+1 of a window that starts a row
        early). Summed in latent units this bounds the receptive field, so decoding a window with
        this much extra history reproduces the whole-sequence output exactly.
        """
        rows_per_block = 2 * 2  # two 3-tap causal convs per ResNet block
        context = 2.0 + 2 * rows_per_block  # conv_in + mid
        scale = 1
        for i in reversed(range(self.cfg.levels)):
            context += len(self.up[i].block) * rows_per_block / scale
            if i:
                scale *= 2
                context += 3 / scale
        context += 2 / scale  # conv_out
        return math.ceil(context)
