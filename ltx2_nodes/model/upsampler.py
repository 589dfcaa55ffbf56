"""The LTX-2 latent upsamplers (``ltx-2-spatial-upscaler-x2-1.0``, LTX-2.3's x2 and x1.5 files).

Links the two-stage pipelines: stage 1 denoises at a lower resolution, the upsampler grows the
latent's height and width (x2, or x1.5 for the rational upscaler), stage 2 refines. It works on
*un-normalised* latents, so the pipeline call is ``normalize(U(un_normalize(latent)))`` with the
video VAE's per-channel statistics (:func:`upsample_latent`).

Architecture (keys in brackets): Conv3d in->mid [initial_conv] -> GroupNorm(32) [initial_norm] ->
SiLU -> N ResBlocks [res_blocks.i] -> upsampler [upsampler.0] -> N ResBlocks
[post_upsample_res_blocks.i] -> Conv3d mid->in [final_conv]. The spatial x2 upsampler is a
per-frame Conv2d to 4*mid channels plus a 2-D pixel shuffle; the temporal x2 variant
(``ltx-2-temporal-upscaler-x2``) is a Conv3d to 2*mid plus a 1-D shuffle along time that drops the
first output frame (F -> 2F - 1); spatio-temporal uses a Conv3d to 8*mid and a 3-D shuffle.

The rational upsampler (``rational_resampler: true``, reference ``SpatialRationalResampler``) scales
by ``num/den`` (x1.5 = 3/2): per frame a Conv2d to num^2*mid [upsampler.conv], a num x num pixel
shuffle, then a depthwise 5x5 binomial blur with stride ``den`` and zero padding 2
[upsampler.blur_down.kernel, stored in the file], so ``H -> floor((num*H - 1)/den) + 1`` (exactly
1.5H for even H).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .config_values import check_config
from .shapes import Upscale, temporal_upscaled_frames
from .video_vae import PerChannelStatistics, depth_to_space

GROUPS = 32
# spatial_scale -> (up, down) of the rational resampler (the reference's table)
RATIONAL_SCALES = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}
BLUR_SIZE = 5


@dataclass(frozen=True)
class UpsamplerConfig:
    """The file's flat ``config`` metadata; defaults are the released spatial x2 upscaler."""

    in_channels: int = 128
    mid_channels: int = 1024
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False
    spatial_scale: float = 2.0
    rational_resampler: bool = False

    def __post_init__(self):
        check_config(self, "latent upscaler config")

    @classmethod
    def from_metadata(cls, meta: dict, source: str = "upsampler") -> "UpsamplerConfig":
        names = {f.name for f in fields(cls)}
        try:
            cfg = cls(**{k: v for k, v in meta.items() if k in names})
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{source}: {exc}") from None
        scale = float(cfg.spatial_scale)
        if cfg.rational_resampler and (scale not in RATIONAL_SCALES or cfg.temporal_upsample or cfg.dims != 3
                                       or not cfg.spatial_upsample):
            raise UnsupportedModelError(
                f"{source}: rational latent upscaler with spatial_scale={cfg.spatial_scale}, dims={cfg.dims}, "
                f"spatial_upsample={cfg.spatial_upsample}, temporal_upsample={cfg.temporal_upsample}; ltx2_nodes "
                f"runs rational upscalers that are spatial only, dims=3, scale in {sorted(RATIONAL_SCALES)} "
                "(e.g. ltx-2.3-spatial-upscaler-x1.5).")
        if not cfg.rational_resampler and scale != 2.0:
            raise UnsupportedModelError(
                f"{source}: latent upscaler with rational_resampler=False, spatial_scale={cfg.spatial_scale}; "
                "without the rational resampler only x2 exists (ltx-2-spatial-upscaler-x2-1.0 / "
                "ltx-2-temporal-upscaler-x2-1.0); a x1.5 file must say rational_resampler: true.")
        if cfg.dims not in (2, 3):
            raise UnsupportedModelError(f"{source}: upsampler dims={cfg.dims}; expected 2 or 3.")
        if not (cfg.spatial_upsample or cfg.temporal_upsample):
            raise UnsupportedModelError(f"{source}: upsampler config enables neither spatial nor temporal upsampling.")
        if cfg.temporal_upsample and cfg.dims == 2:
            raise UnsupportedModelError(f"{source}: a temporal upsampler needs dims=3, the config has dims=2.")
        return cfg

    @property
    def stride(self) -> tuple[int, int, int]:
        """(time, height, width) shuffle factors of the integer upsamplers."""
        s = 2 if self.spatial_upsample else 1
        return (2 if self.temporal_upsample else 1, s, s)

    @property
    def rational(self) -> tuple[int, int]:
        """(up, down) spatial factors: (3, 2) for x1.5, (2, 1) for x2, (1, 1) when not spatial."""
        if self.rational_resampler:
            return RATIONAL_SCALES[float(self.spatial_scale)]
        return (2, 1) if self.spatial_upsample else (1, 1)

    @property
    def upscale(self) -> Upscale:
        """What this upsampler does between two stages, in ``model.shapes`` terms (the owner of the size rules)."""
        up, down = self.rational
        return Upscale((up // math.gcd(up, down), down // math.gcd(up, down)), self.temporal_upsample)

    def output_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Latent (F, H, W) the upsampler returns for an input of (F, H, W)."""
        up, down = self.rational
        return ((temporal_upscaled_frames(frames) if self.temporal_upsample else frames),
                (up * height - 1) // down + 1, (up * width - 1) // down + 1)

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse latent sizes the spatial factor does not scale exactly (x1.5: odd sizes, whose
        result would be rounded up and change the aspect ratio)."""
        up, down = self.rational
        bad = [f"{name} {value}" for name, value in (("height", height), ("width", width)) if up * value % down]
        if bad:
            raise InputError(
                f"the x{self.spatial_scale:g} latent upscaler needs latent sizes it scales exactly (multiples of "
                f"{down // math.gcd(up, down)}); got latent {' and '.join(bad)}. Generate the first stage at a size "
                f"whose latent height and width are multiples of {down // math.gcd(up, down)} (pixel sizes: "
                f"multiples of {32 * down // math.gcd(up, down)} for the 32x VAE).")


class ResBlock(nn.Module):
    """SiLU(x + GN(conv2(SiLU(GN(conv1(x))))))."""

    def __init__(self, channels: int, conv: type[nn.Module]):
        super().__init__()
        self.conv1 = conv(channels, channels, kernel_size=3, padding=1)
        self.norm1 = nn.GroupNorm(GROUPS, channels)
        self.conv2 = conv(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + x)


class BlurDownsample(nn.Module):
    """Depthwise ``BLUR_SIZE``-tap binomial blur with stride ``stride`` and zero padding (per 2-D frame)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        taps = torch.tensor([math.comb(BLUR_SIZE - 1, k) for k in range(BLUR_SIZE)], dtype=torch.float32)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None])  # the file stores it too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        weight = self.kernel.to(x.dtype).expand(x.shape[1], 1, BLUR_SIZE, BLUR_SIZE)
        return F.conv2d(x, weight, stride=self.stride, padding=BLUR_SIZE // 2, groups=x.shape[1])


class RationalResampler(nn.Module):
    """Spatial x up/down per frame: Conv2d to up^2*mid, pixel shuffle x up, blur-downsample / down."""

    def __init__(self, channels: int, up: int, down: int):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(channels, up * up * channels, kernel_size=3, padding=1)
        self.blur_down = BlurDownsample(down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] frames
        return self.blur_down(F.pixel_shuffle(self.conv(x), self.up))


class LatentUpsampler(nn.Module):
    """Un-normalised latent [B,C,F,H,W] -> [B,C,F',2H,2W] (spatial; x1.5 rational) / [B,C,2F-1,H,W] (temporal)."""

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        self.config = config
        mid = config.mid_channels
        conv = nn.Conv2d if config.dims == 2 else nn.Conv3d
        self.initial_conv = conv(config.in_channels, mid, kernel_size=3, padding=1)
        self.initial_norm = nn.GroupNorm(GROUPS, mid)
        self.res_blocks = nn.ModuleList(ResBlock(mid, conv) for _ in range(config.num_blocks_per_stage))
        if config.temporal_upsample:
            factor = 8 if config.spatial_upsample else 2
            self.upsampler = nn.Sequential(nn.Conv3d(mid, factor * mid, kernel_size=3, padding=1))
        elif config.rational_resampler:
            self.upsampler = RationalResampler(mid, *config.rational)
        else:
            self.upsampler = nn.Sequential(nn.Conv2d(mid, 4 * mid, kernel_size=3, padding=1))
        self.post_upsample_res_blocks = nn.ModuleList(ResBlock(mid, conv) for _ in range(config.num_blocks_per_stage))
        self.final_conv = conv(mid, config.in_channels, kernel_size=3, padding=1)

    def _per_frame(self, x: torch.Tensor, fn) -> torch.Tensor:
        """Apply a 2-D op to every frame of [B,C,F,H,W]."""
        b, _, f, _, _ = x.shape
        y = fn(x.transpose(1, 2).flatten(0, 1))
        return y.unflatten(0, (b, f)).transpose(1, 2)

    def _shuffle_2d(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.rational_resampler:
            return self.upsampler(x)
        return F.pixel_shuffle(self.upsampler(x), 2)  # b (c p1 p2) h w -> b c (h p1) (w p2)

    def _upsample_3d(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.temporal_upsample:
            # the first latent frame encodes a single pixel frame, so its duplicate is dropped
            return depth_to_space(self.upsampler(x), self.config.stride)[:, :, 1:]
        return self._per_frame(x, self._shuffle_2d)

    def _body(self, x: torch.Tensor, upsample) -> torch.Tensor:
        x = F.silu(self.initial_norm(self.initial_conv(x)))
        for block in self.res_blocks:
            x = block(x)
        x = upsample(x)
        for block in self.post_upsample_res_blocks:
            x = block(x)
        return self.final_conv(x)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.dim() != 5 or latent.shape[1] != self.config.in_channels:
            raise InputError(f"latent upscaler expects a video latent [B,{self.config.in_channels},F,H,W], "
                             f"got {list(latent.shape)}.")
        if self.config.dims == 2:  # every layer runs per frame
            return self._per_frame(latent, lambda x: self._body(x, self._shuffle_2d))
        return self._body(latent, self._upsample_3d)


def upsample_latent(latent: torch.Tensor, upsampler: LatentUpsampler, stats: PerChannelStatistics) -> torch.Tensor:
    """Upscale a *normalised* video latent: ``normalize(U(un_normalize(latent)))``.

    ``stats`` is the video VAE's ``per_channel_statistics`` (encoder's or decoder's: the file
    stores one copy). The statistics are applied in float32, the upsampler runs in its own
    dtype on its own device, and the result comes back in ``latent``'s dtype on its device, so a
    float32 CPU latent can go through a bf16 GPU upsampler.
    """
    if stats.channels != upsampler.config.in_channels:
        raise InputError(f"the latent upscaler works on {upsampler.config.in_channels}-channel latents but the VAE "
                         f"statistics have {stats.channels} channels; they belong to different models.")
    param = next(upsampler.parameters())
    raw = stats.un_normalize(latent.float()).to(device=param.device, dtype=param.dtype)
    upscaled = upsampler(raw).to(device=latent.device, dtype=torch.float32)
    return stats.normalize(upscaled).to(latent.dtype)
