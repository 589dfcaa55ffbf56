"""The LTX-2.3 vocoder: BigVGAN-v2 generator plus bandwidth extension, log-mel -> 48 kHz stereo.

Reference: ``ltx_core/model/audio_vae/vocoder.py`` (``Vocoder`` with ``resblock="AMP1"``,
``VocoderWithBWE``, ``MelSTFT``, ``UpSample1d``/``DownSample1d``/``Activation1d``) and
docs ``ltx2-architecture.md`` section 12.4. ``config.vocoder`` holds two sections:

* ``vocoder``: the main generator, mel ``[B, 2, T, 64]`` -> 16 kHz waveform. conv_pre (128 -> C,
  k7) -> per stage ConvTranspose1d (length x rate exactly) and the mean of the stage's AMP1
  blocks -> anti-aliased SnakeBeta -> conv_post (C/2^n -> 2, k7, no bias) -> clamp(-1, 1).
  An AMP1 block is three ``x += conv2(act2(conv1(act1(x))))`` steps (conv1 dilated, both "same").
  Every activation is anti-aliased: x2 kaiser-sinc upsample, SnakeBeta
  ``x + sin(x e^alpha)^2 / (e^beta + 1e-9)``, x2 kaiser-sinc low-pass + decimate. The 12-tap
  filters are stored in the file (bf16) and used as stored: recomputing them in float32 moves
  the output by ~1e-2 (golden README).
* ``bwe``: the same generator architecture without final activation (the reference forces
  ``apply_final_activation=False`` whatever the section says), fed with the causal log-mel of
  the 16 kHz waveform; its output is a residual added to an x3 Hann-sinc resampling of that
  waveform, then clamped to [-1, 1].

The causal STFT takes its bases from the file (``mel_stft.stft_fn.forward_basis``,
``mel_stft.mel_basis``); ``mel_stft.stft_fn.inverse_basis`` is stored but never read, so the
loader drops it. The x3 resampler is not in the file and is computed at build time. The whole
module runs in float32 like the reference (which autocasts to float32: bf16 accumulation over
~100 convolutions degrades it audibly), so the loader always builds it in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from .config_values import as_tuple, check_config
from .vocoder import mean_of_blocks, receptive_radius_frames, upsample_convs

MEL_BINS_PER_CHANNEL = 64  # both reference generators hard-code conv_pre's input as 2 x 64 bins
CHANNELS = 2  # stereo in, stereo out (the reference refuses stereo=false)
ANTI_ALIAS_RATIO = 2
ANTI_ALIAS_TAPS = 12
SNAKE_EPS = 1e-9
RESAMPLER_ZERO_CROSSINGS = 6  # torchaudio.functional.resample's defaults, which the reference mirrors
RESAMPLER_ROLLOFF = 0.99
LOG_FLOOR = 1e-5


def _require(meta: dict, key: str, allowed, section: str) -> None:
    value = meta.get(key, allowed)
    if value != allowed:
        raise UnsupportedModelError(
            f"config.vocoder.{section} has {key}={value!r}; the LTX-2.3 vocoder needs {allowed!r}. This is "
            "another vocoder family; use an LTX-2 / LTX-2.3 release checkpoint.")


@dataclass(frozen=True)
class BigVGANConfig:
    """One BigVGAN-v2 generator; defaults are the released LTX-2.3 main generator."""

    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    upsample_rates: tuple[int, ...] = (5, 2, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (11, 4, 4, 4, 4, 4)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_initial_channel: int = 1536
    final_activation: str = "clamp"  # "clamp", "tanh" or "none"
    bias_at_final: bool = False

    def __post_init__(self):
        check_config(self, "config.vocoder (BigVGAN generator)")

    @property
    def upsample_factor(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_metadata(cls, meta: dict, section: str, final_activation: bool) -> "BigVGANConfig":
        """Build from ``config.vocoder.<section>``; ``final_activation`` False is the BWE generator."""
        for key, allowed in (("resblock", "AMP1"), ("activation", "snakebeta"), ("stereo", True)):
            _require(meta, key, allowed, section)
        d = cls()
        cfg = cls(
            resblock_kernel_sizes=as_tuple(meta.get("resblock_kernel_sizes", d.resblock_kernel_sizes)),
            upsample_rates=as_tuple(meta.get("upsample_rates", d.upsample_rates)),
            upsample_kernel_sizes=as_tuple(meta.get("upsample_kernel_sizes", d.upsample_kernel_sizes)),
            resblock_dilation_sizes=as_tuple(meta.get("resblock_dilation_sizes", d.resblock_dilation_sizes)),
            upsample_initial_channel=meta.get("upsample_initial_channel", d.upsample_initial_channel),
            final_activation=("tanh" if meta.get("use_tanh_at_final", True) else "clamp") if final_activation
            else "none",
            bias_at_final=bool(meta.get("use_bias_at_final", True)),
        )
        if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
            raise UnsupportedModelError(
                f"config.vocoder.{section}: {len(cfg.upsample_rates)} upsample rates but "
                f"{len(cfg.upsample_kernel_sizes)} upsample kernel sizes; they must pair up. The metadata was edited.")
        if len(cfg.resblock_kernel_sizes) != len(cfg.resblock_dilation_sizes):
            raise UnsupportedModelError(
                f"config.vocoder.{section}: {len(cfg.resblock_kernel_sizes)} resblock kernel sizes but "
                f"{len(cfg.resblock_dilation_sizes)} dilation lists; they must pair up. The metadata was edited.")
        if any(k % 2 == 0 for k in cfg.resblock_kernel_sizes):
            raise UnsupportedModelError(
                f"config.vocoder.{section}: resblock kernel sizes {list(cfg.resblock_kernel_sizes)} include an even "
                "size, which does not keep the length (the reference fails on it too); use odd sizes.")
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            if (kernel - rate) % 2:
                raise UnsupportedModelError(
                    f"config.vocoder.{section}: upsampling stage with kernel {kernel} and rate {rate} does not "
                    f"upsample by exactly {rate} (kernel - rate must be even).")
        if cfg.upsample_initial_channel % 2 ** len(cfg.upsample_rates):
            raise UnsupportedModelError(
                f"config.vocoder.{section}: upsample_initial_channel {cfg.upsample_initial_channel} does not halve "
                f"{len(cfg.upsample_rates)} times.")
        return cfg


@dataclass(frozen=True)
class BWEVocoderConfig:
    """``config.vocoder`` of LTX-2.3: main generator + bandwidth extension; defaults are the release."""

    vocoder: BigVGANConfig = BigVGANConfig()
    bwe: BigVGANConfig = BigVGANConfig(upsample_rates=(6, 5, 2, 2, 2), upsample_kernel_sizes=(12, 11, 4, 4, 4),
                                       upsample_initial_channel=512, final_activation="none")
    input_sample_rate: int = 16000
    output_sample_rate: int = 48000
    hop_length: int = 80
    n_fft: int = 512
    num_mels: int = MEL_BINS_PER_CHANNEL

    def __post_init__(self):
        check_config(self, "config.vocoder.bwe")

    @property
    def resample_ratio(self) -> int:
        return self.output_sample_rate // self.input_sample_rate

    @property
    def upsample_factor(self) -> int:
        """Output samples per input mel frame (160 x 3 = 480 -> 48 kHz for the release)."""
        return self.vocoder.upsample_factor * self.resample_ratio

    @classmethod
    def from_metadata(cls, meta: dict) -> "BWEVocoderConfig":
        main, bwe = meta.get("vocoder"), meta.get("bwe")
        if not isinstance(main, dict) or not isinstance(bwe, dict):
            raise UnsupportedModelError(
                "config.vocoder must hold both a 'vocoder' and a 'bwe' section for the LTX-2.3 vocoder; found "
                f"{sorted(meta)}. The metadata is damaged; use the original release file.")
        d = cls()
        cfg = cls(
            vocoder=BigVGANConfig.from_metadata(main, "vocoder", final_activation=True),
            bwe=BigVGANConfig.from_metadata(bwe, "bwe", final_activation=False),
            input_sample_rate=bwe.get("input_sampling_rate", d.input_sample_rate),
            output_sample_rate=bwe.get("output_sampling_rate", d.output_sample_rate),
            hop_length=bwe.get("hop_length", d.hop_length),
            n_fft=bwe.get("n_fft", d.n_fft),
            num_mels=bwe.get("num_mels", d.num_mels),
        )
        problems = []
        if cfg.output_sample_rate % cfg.input_sample_rate:
            problems.append(f"output rate {cfg.output_sample_rate} is not a multiple of input rate "
                            f"{cfg.input_sample_rate}")
        if cfg.num_mels != MEL_BINS_PER_CHANNEL:
            problems.append(f"num_mels={cfg.num_mels} but the BWE generator reads {MEL_BINS_PER_CHANNEL} bins")
        if cfg.hop_length * cfg.resample_ratio != cfg.bwe.upsample_factor:
            problems.append(f"the BWE generator upsamples x{cfg.bwe.upsample_factor}, not hop_length x ratio = "
                            f"{cfg.hop_length * cfg.resample_ratio}")
        if problems:
            raise UnsupportedModelError(
                "config.vocoder.bwe describes a bandwidth extension ltx2_nodes does not run: " + "; ".join(problems)
                + ". The released LTX-2.3 vocoder (16 kHz -> 48 kHz, hop 80, 64 mels) is supported.")
        return cfg


# ------------------------------------------------------------------------------------------------
# Anti-aliased SnakeBeta


def kaiser_sinc_taps(cutoff: float, half_width: float, taps: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass (BigVGAN v2 ``kaiser_sinc_filter1d``): the initial value of the
    ``*.filter`` buffers; checkpoints carry their own (bf16) taps, which replace these at load."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95  # Kaiser's design formula, dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    t = torch.arange(-half, half) + 0.5 if taps % 2 == 0 else torch.arange(taps) - half
    h = 2 * cutoff * torch.kaiser_window(taps, periodic=False, beta=beta) * torch.sinc(2 * cutoff * t)
    return (h / h.sum()).view(1, 1, taps)


class FilterTaps(nn.Module):
    """Holds one stored depthwise FIR ``filter`` [1, 1, taps] (key ``...filter``)."""

    def __init__(self, ratio: int = ANTI_ALIAS_RATIO, taps: int = ANTI_ALIAS_TAPS):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_taps(0.5 / ratio, 0.6 / ratio, taps))

    def taps(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        return self.filter.to(like).expand(channels, -1, -1)


class AntiAliasedSnakeBeta(nn.Module):
    """x2 upsample (replicate pad, transposed FIR) -> SnakeBeta -> low-pass + decimate by 2.

    Keys: ``act.alpha``/``act.beta`` (log-scale, [C]), ``upsample.filter``, ``downsample.lowpass.filter``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.act = nn.Module()
        self.act.alpha = nn.Parameter(torch.zeros(channels))
        self.act.beta = nn.Parameter(torch.zeros(channels))
        self.upsample = FilterTaps()
        self.downsample = nn.ModuleDict({"lowpass": FilterTaps()})

    @staticmethod
    def radius() -> int:
        """Input samples on either side that reach one output sample (upsampler + low-pass halves)."""
        return (ANTI_ALIAS_TAPS - 1) // ANTI_ALIAS_RATIO

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, k, c = ANTI_ALIAS_RATIO, ANTI_ALIAS_TAPS, x.shape[1]
        edge = k // r - 1  # replicated input samples per side; the crop keeps exactly r * length outputs
        up = F.conv_transpose1d(F.pad(x, (edge, edge), mode="replicate"), self.upsample.taps(c, x), stride=r, groups=c)
        crop = edge * r + (k - r) // 2
        x = r * up[..., crop:crop + r * x.shape[-1]]
        alpha = self.act.alpha.exp().view(1, -1, 1)
        beta = self.act.beta.exp().view(1, -1, 1)
        x = x + (1.0 / (beta + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)
        x = F.pad(x, (k // 2 - 1, k // 2), mode="replicate")  # even taps: one sample more on the right
        return F.conv1d(x, self.downsample["lowpass"].taps(c, x), stride=r, groups=c)


class AMPBlock(nn.Module):
    """BigVGAN AMP1 block: three ``x += conv2(act2(conv1(act1(x))))`` steps, conv1 dilated."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            [nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size - 1) * d // 2)
             for d in dilations])
        self.convs2 = nn.ModuleList(
            [nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations])
        self.acts1 = nn.ModuleList([AntiAliasedSnakeBeta(channels) for _ in dilations])
        self.acts2 = nn.ModuleList([AntiAliasedSnakeBeta(channels) for _ in dilations])

    def radius(self) -> int:
        """Samples on each side that influence one output sample."""
        return sum(2 * AntiAliasedSnakeBeta.radius() + c1.padding[0] + c2.padding[0]
                   for c1, c2 in zip(self.convs1, self.convs2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, self.acts1, self.acts2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


# ------------------------------------------------------------------------------------------------
# Generator


class BigVGANGenerator(nn.Module):
    """Mel ``[B, 2, T, 64]`` -> waveform ``[B, 2, T * upsample_factor]`` (keys as the reference's ``Vocoder``)."""

    def __init__(self, cfg: BigVGANConfig):
        super().__init__()
        self.cfg = cfg
        init = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(MEL_BINS_PER_CHANNEL * CHANNELS, init, 7, padding=3)
        self.ups = upsample_convs(init, cfg.upsample_rates, cfg.upsample_kernel_sizes)
        self.resblocks = nn.ModuleList([
            AMPBlock(init // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
        ])
        final = init // 2 ** len(self.ups)
        self.act_post = AntiAliasedSnakeBeta(final)
        self.conv_post = nn.Conv1d(final, CHANNELS, 7, padding=3, bias=cfg.bias_at_final)

    def _stage_blocks(self, i: int) -> nn.ModuleList:
        kernels = len(self.cfg.resblock_kernel_sizes)
        return self.resblocks[i * kernels:(i + 1) * kernels]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        b, s, t, m = mel.shape
        x = self.conv_pre(mel.transpose(2, 3).reshape(b, s * m, t))
        for i, up in enumerate(self.ups):
            x = mean_of_blocks(self._stage_blocks(i), up(x))
        x = self.conv_post(self.act_post(x))
        if self.cfg.final_activation == "clamp":
            return x.clamp(-1.0, 1.0)
        return torch.tanh(x) if self.cfg.final_activation == "tanh" else x

    def radius_frames(self) -> float:
        """Input frames on either side that influence one output sample (each layer at its own rate)."""
        stages = [(u, k, max(block.radius() for block in self._stage_blocks(i)))
                  for i, (u, k) in enumerate(zip(self.cfg.upsample_rates, self.cfg.upsample_kernel_sizes))]
        # conv_pre (k7) before; act_post and conv_post (k7) after
        return receptive_radius_frames(stages, head=3, tail=AntiAliasedSnakeBeta.radius() + 3)


# ------------------------------------------------------------------------------------------------
# Bandwidth extension


class CausalLogMel(nn.Module):
    """Log-mel of a waveform with the stored STFT bases, causal (left padding only).

    Keys ``mel_basis`` [mels, n_fft/2+1] and ``stft_fn.forward_basis`` [2 (n_fft/2+1), 1, n_fft]
    (real rows, then imaginary rows, Hann window folded in). Zeros until loaded.
    """

    def __init__(self, n_fft: int, hop_length: int, mels: int):
        super().__init__()
        self.hop_length = hop_length
        bins = n_fft // 2 + 1
        self.stft_fn = nn.Module()
        self.stft_fn.register_buffer("forward_basis", torch.zeros(2 * bins, 1, n_fft))
        self.register_buffer("mel_basis", torch.zeros(mels, bins))

    @property
    def left_pad(self) -> int:
        """Zeros before the first sample: frame j covers samples ``j hop - left_pad`` .. ``+ n_fft - 1``."""
        return max(self.stft_fn.forward_basis.shape[-1] - self.hop_length, 0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, C, N]`` (N a multiple of hop) -> ``[B, C, N / hop, mels]``."""
        b, c, n = wave.shape
        basis = self.stft_fn.forward_basis
        x = F.pad(wave.reshape(b * c, 1, n), (self.left_pad, 0))
        spec = F.conv1d(x, basis, stride=self.hop_length)
        real, imag = spec.chunk(2, dim=1)
        mel = torch.matmul(self.mel_basis, torch.sqrt(real**2 + imag**2))
        return torch.log(mel.clamp(min=LOG_FLOOR)).reshape(b, c, -1, spec.shape[-1]).transpose(2, 3)


def hann_sinc_taps(ratio: int) -> torch.Tensor:
    """Upsampling-by-``ratio`` kernel of ``torchaudio.functional.resample`` (``sinc_interp_hann``,
    6 zero crossings, rolloff 0.99) laid out for a transposed convolution: ``[1, 1, 2 w ratio + 1]``."""
    width = math.ceil(RESAMPLER_ZERO_CROSSINGS / RESAMPLER_ROLLOFF)
    t = (torch.arange(2 * width * ratio + 1) / ratio - width) * RESAMPLER_ROLLOFF
    zc = RESAMPLER_ZERO_CROSSINGS
    window = torch.cos(t.clamp(-zc, zc) * math.pi / zc / 2) ** 2
    return (torch.sinc(t) * window * RESAMPLER_ROLLOFF / ratio).view(1, 1, -1)


class SincResampler(nn.Module):
    """Integer-ratio upsampler equivalent to ``torchaudio.functional.resample`` with replicate edges.

    Not in the checkpoint: the taps are a computed (non-persistent) buffer, rebuilt by the loader
    after a meta-device build (``reset_computed_buffers``).
    """

    def __init__(self, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.width = math.ceil(RESAMPLER_ZERO_CROSSINGS / RESAMPLER_ROLLOFF)
        self.register_buffer("taps", hann_sinc_taps(ratio), persistent=False)

    def reset_computed_buffers(self) -> None:
        device = self.taps.device if not self.taps.is_meta else "cpu"
        self.taps = hann_sinc_taps(self.ratio).to(device)

    def radius(self) -> int:
        """Input samples on either side that reach one output sample."""
        return self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c, n = self.ratio, x.shape[1], x.shape[-1]
        padded = F.pad(x, (self.width, self.width), mode="replicate")
        y = F.conv_transpose1d(padded, self.taps.to(x).expand(c, -1, -1), stride=r, groups=c)
        start = 2 * self.width * r
        return r * y[..., start:start + r * n]


class BWEVocoder(nn.Module):
    """LTX-2.3 ``VocoderWithBWE``: main generator (16 kHz) + bandwidth extension (48 kHz).

    Same interface as the LTX-2 HiFi-GAN :class:`~.vocoder.Vocoder`: ``forward(mel)``,
    ``sample_rate``, ``upsample_factor``, ``context_frames()``, ``conv_pre``.
    """

    def __init__(self, cfg: BWEVocoderConfig):
        super().__init__()
        self.cfg = cfg
        self.vocoder = BigVGANGenerator(cfg.vocoder)
        self.bwe_generator = BigVGANGenerator(cfg.bwe)
        self.mel_stft = CausalLogMel(cfg.n_fft, cfg.hop_length, cfg.num_mels)
        self.resampler = SincResampler(cfg.resample_ratio)

    @property
    def conv_pre(self) -> nn.Conv1d:
        return self.vocoder.conv_pre

    @property
    def upsample_factor(self) -> int:
        return self.cfg.upsample_factor

    @property
    def sample_rate(self) -> int:
        return self.cfg.output_sample_rate

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, 2, T, 64]`` log-mel -> ``[B, 2, T * upsample_factor]`` waveform in [-1, 1] (float32 weights)."""
        low = self.vocoder(mel)
        length = low.shape[-1]
        low = F.pad(low, (0, -length % self.cfg.hop_length))  # whole STFT frames
        residual = self.bwe_generator(self.mel_stft(low))
        return (residual + self.resampler(low)).clamp(-1.0, 1.0)[..., :length * self.cfg.resample_ratio]

    @property
    def frame_alignment(self) -> int:
        """Chunks of mel frames must start at multiples of this for chunked == whole decoding: there the
        first 16 kHz sample also starts an STFT frame of the bandwidth extension (1 for the release)."""
        return self.cfg.hop_length // math.gcd(self.cfg.vocoder.upsample_factor, self.cfg.hop_length)

    def context_frames(self) -> int:
        """Mel frames on each side of a frame that influence its samples (a multiple of ``frame_alignment``).

        The output at 16 kHz position p reads the resampler's taps around p and the BWE generator's
        receptive field of G STFT frames around ``j = p // hop``; frame j reads the ``n_fft`` samples
        from ``j hop - left_pad`` (causal). That span at 16 kHz, converted to mel frames, adds to the
        main generator's own radius.
        """
        hop, n_fft, pad = self.cfg.hop_length, self.cfg.n_fft, self.mel_stft.left_pad
        g = math.ceil(self.bwe_generator.radius_frames())
        samples = max(self.resampler.radius(), (g + 1) * hop + pad, g * hop - pad + n_fft)
        frames = math.ceil(self.vocoder.radius_frames() + samples / self.cfg.vocoder.upsample_factor)
        return -(-frames // self.frame_alignment) * self.frame_alignment
