"""The LTX-2 (19B) vocoder: HiFi-GAN V1-style generator, log-mel -> stereo waveform.

Input ``[B, S, T, M]`` (S = 2 stereo channels, M = 64 mel bins) is merged into ``S*M`` conv
channels ordered ``b s c t -> b (s c) t`` (left bins first). conv_pre (k7) -> per stage:
LeakyReLU(0.1), ConvTranspose1d (length x rate exactly), mean of the stage's ResBlock1 outputs
(each applied to the same input) -> LeakyReLU with the *default* slope 0.01 -> conv_post (k7) ->
tanh. ``T`` mel frames become ``T * prod(upsample_rates)`` samples (240 -> 24 kHz for the release).

LTX-2.3 replaced this with a BigVGAN generator plus a bandwidth-extension stage (``bigvgan.py``);
its config (``{"vocoder": {...}, "bwe": {...}}``) is refused here and ``loading.components.vocoder_config``
picks the family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from .config_values import as_tuple, check_config

RESBLOCK_SLOPE = 0.1
FINAL_SLOPE = 0.01  # the reference calls F.leaky_relu without a slope before conv_post
MEL_BINS_PER_CHANNEL = 64  # the reference hard-codes conv_pre's input as 64 bins per stereo channel


def has_bwe_sections(meta: dict) -> bool:
    """Whether a ``config.vocoder`` section has the LTX-2.3 layout (nested ``vocoder`` + ``bwe`` sections,
    see ``bigvgan.py``) rather than this model's flat one."""
    return "bwe" in meta or isinstance(meta.get("vocoder"), dict)


@dataclass(frozen=True)
class VocoderConfig:
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    upsample_rates: tuple[int, ...] = (6, 5, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 15, 8, 4, 4)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_initial_channel: int = 1024
    stereo: bool = True
    output_sample_rate: int = 24000

    def __post_init__(self):
        check_config(self, "config.vocoder")

    @property
    def upsample_factor(self) -> int:
        return math.prod(self.upsample_rates)

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    @classmethod
    def from_metadata(cls, meta: dict) -> "VocoderConfig":
        """Build from a checkpoint's ``config.vocoder`` section, refusing other vocoder families."""
        if has_bwe_sections(meta):
            raise UnsupportedModelError(
                "this checkpoint's vocoder is the LTX-2.3 BigVGAN + bandwidth-extension model (config.vocoder has "
                "'vocoder'/'bwe' sections), not the LTX-2 (19B) HiFi-GAN; build it with model.bigvgan."
                "BWEVocoderConfig (loading.components.load_vocoder picks the right family)."
            )
        if str(meta.get("resblock", "1")) != "1":
            raise UnsupportedModelError(
                f"vocoder config has resblock={meta['resblock']!r}; the LTX-2 (19B) vocoder uses HiFi-GAN ResBlock1 "
                "('1')."
            )
        d = cls()
        cfg = cls(
            resblock_kernel_sizes=as_tuple(meta.get("resblock_kernel_sizes", d.resblock_kernel_sizes)),
            upsample_rates=as_tuple(meta.get("upsample_rates", d.upsample_rates)),
            upsample_kernel_sizes=as_tuple(meta.get("upsample_kernel_sizes", d.upsample_kernel_sizes)),
            resblock_dilation_sizes=as_tuple(meta.get("resblock_dilation_sizes", d.resblock_dilation_sizes)),
            upsample_initial_channel=meta.get("upsample_initial_channel", d.upsample_initial_channel),
            stereo=bool(meta.get("stereo", d.stereo)),
            output_sample_rate=meta.get("output_sample_rate", d.output_sample_rate),
        )
        if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
            raise UnsupportedModelError(
                f"config.vocoder has {len(cfg.upsample_rates)} upsample rates but {len(cfg.upsample_kernel_sizes)} "
                "upsample kernel sizes; they must pair up. The metadata was edited; use the original release file.")
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            if (kernel - rate) % 2:
                raise UnsupportedModelError(
                    f"vocoder upsampling stage with kernel {kernel} and rate {rate} does not upsample by exactly "
                    f"{rate} (kernel - rate must be even)."
                )
        return cfg


class ResBlock1(nn.Module):
    """Three ``x += conv2(lrelu(conv1(lrelu(x))))`` steps; conv1 dilated, both 'same' padded."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            [nn.Conv1d(channels, channels, kernel_size, dilation=d, padding="same") for d in dilations])
        self.convs2 = nn.ModuleList(
            [nn.Conv1d(channels, channels, kernel_size, padding="same") for _ in dilations])

    def radius(self) -> int:
        """Samples on each side that influence one output sample."""
        return sum((c1.kernel_size[0] - 1) // 2 * c1.dilation[0] + (c2.kernel_size[0] - 1) // 2
                   for c1, c2 in zip(self.convs1, self.convs2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(F.leaky_relu(conv1(F.leaky_relu(x, RESBLOCK_SLOPE)), RESBLOCK_SLOPE))
        return x


def upsample_convs(initial_channels: int, rates, kernel_sizes) -> nn.ModuleList:
    """The generators' transposed-conv upsamplers (HiFi-GAN and BigVGAN): the width halves at each stage."""
    return nn.ModuleList([
        nn.ConvTranspose1d(initial_channels // 2**i, initial_channels // 2 ** (i + 1), k, u, padding=(k - u) // 2)
        for i, (u, k) in enumerate(zip(rates, kernel_sizes, strict=True))
    ])


def mean_of_blocks(blocks, x: torch.Tensor) -> torch.Tensor:
    """The mean of one stage's residual blocks on ``x`` (a running sum: one stage buffer less than stacking)."""
    total = blocks[0](x)
    for block in blocks[1:]:
        total = total + block(x)
    return total / len(blocks)


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        init = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(MEL_BINS_PER_CHANNEL * cfg.channels, init, 7, padding=3)
        self.ups = upsample_convs(init, cfg.upsample_rates, cfg.upsample_kernel_sizes)
        self.resblocks = nn.ModuleList([
            ResBlock1(init // 2 ** (i + 1), k, tuple(d))
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
        ])
        self.conv_post = nn.Conv1d(init // 2 ** len(self.ups), cfg.channels, 7, padding=3)

    @property
    def upsample_factor(self) -> int:
        return self.cfg.upsample_factor

    @property
    def sample_rate(self) -> int:
        return self.cfg.output_sample_rate

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, S, T, 64]`` log-mel -> ``[B, S, T * upsample_factor]`` waveform in (-1, 1)."""
        b, s, t, m = mel.shape
        x = self.conv_pre(mel.transpose(2, 3).reshape(b, s * m, t))
        kernels = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = mean_of_blocks(self.resblocks[i * kernels:(i + 1) * kernels], up(F.leaky_relu(x, RESBLOCK_SLOPE)))
        return torch.tanh(self.conv_post(F.leaky_relu(x, FINAL_SLOPE)))

    @property
    def frame_alignment(self) -> int:
        """Chunked decoding may start a chunk at any mel frame."""
        return 1

    def context_frames(self) -> int:
        """Mel frames on each side of a frame that influence its samples (the receptive radius, rounded up)."""
        kernels = len(self.cfg.resblock_kernel_sizes)
        stages = [(u, k, max(block.radius() for block in self.resblocks[i * kernels:(i + 1) * kernels]))
                  for i, (u, k) in enumerate(zip(self.cfg.upsample_rates, self.cfg.upsample_kernel_sizes))]
        return math.ceil(receptive_radius_frames(stages, head=3, tail=3))  # conv_pre, conv_post: k7


def receptive_radius_frames(stages: list[tuple[int, int, int]], head: int, tail: int) -> float:
    """Input frames on either side of a frame that reach one output sample of an upsampling generator.

    ``stages``: ``(rate, kernel, radius)`` of each transposed conv and the widest residual block after
    it (in samples at the stage's rate); ``head`` / ``tail``: radii in samples of the layers before the
    first stage and after the last. Walks the layers at their own sample rate: a transposed conv of
    kernel k and rate u reaches ceil(k / u) input samples.
    """
    frames, scale = float(head), 1
    for rate, kernel, radius in stages:
        frames += math.ceil(kernel / rate) / scale
        scale *= rate
        frames += radius / scale
    return frames + tail / scale
