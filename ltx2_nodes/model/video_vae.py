"""The LTX-2 causal video VAE: pixels [B,3,F,H,W] in [-1,1] <-> normalised latents [B,C,F',H',W'].

Compression is 32x in space and 8x in time with the first frame on its own
(F' = 1 + (F-1)/8), so one image encodes to one latent frame. The size rules (what the encoder
accepts: frames 1 + 8k, sides multiples of 32, a 32-pixel-high video included) live in ``shapes``.
Both halves are built from the checkpoint's ``config.vae`` block lists:

* encoder: 4x4 patchify -> causal conv_in -> ``encoder_blocks`` (res_x stacks and
  space-to-depth downsamplers ``compress_*_res``, multiplier 1 or more) -> PixelNorm, SiLU ->
  conv_out (C means + one shared log-variance, dropped) -> ``(mu - mean_of_means) / std_of_means``.
* decoder: un-normalise -> conv_in -> reversed ``decoder_blocks`` (res_x stacks and
  depth-to-space upsamplers ``compress_time`` / ``compress_space`` / ``compress_all``, the 2.0
  ``compress_all`` with a ``residual`` shortcut, the 2.3 ones plain; each temporal x2 drops its
  first frame) -> PixelNorm, SiLU -> conv_out -> 4x4 unpatchify.

The LTX-2.0 and LTX-2.3 layouts are both configs of these modules. Module and attribute names follow
the released ``vae.encoder.*`` / ``vae.decoder.*`` keys. Config semantics are those of the official
HEAD (Lightricks/LTX-2 @ 400fd31,
``ltx_core.model.video_vae.model_configurator``): the encoder starts ``latent_channels`` wide; the
decoder starts ``decoder_base_channels`` times the product of its ``compress_*`` multipliers wide;
``spatial_padding_mode`` sets both halves' padding. Where HEAD cannot load a file the January
release could (``decoder_base_channels`` absent from a small VAE) we take the release's width
(``latent_channels``), which is the same number for the released 128-channel model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .config_values import check_config
from .shapes import VideoScale, check_video_size

PIXEL_NORM_EPS = 1e-8

# (name, params) as they appear in the released ltx-2-19b config.vae
RELEASE_ENCODER_BLOCKS: tuple[tuple[str, dict], ...] = (
    ("res_x", {"num_layers": 4}), ("compress_space_res", {"multiplier": 2}), ("res_x", {"num_layers": 6}),
    ("compress_time_res", {"multiplier": 2}), ("res_x", {"num_layers": 6}), ("compress_all_res", {"multiplier": 2}),
    ("res_x", {"num_layers": 2}), ("compress_all_res", {"multiplier": 2}), ("res_x", {"num_layers": 2}),
)
RELEASE_DECODER_BLOCKS: tuple[tuple[str, dict], ...] = (
    ("res_x", {"num_layers": 5, "inject_noise": False}), ("compress_all", {"residual": True, "multiplier": 2}),
    ("res_x", {"num_layers": 5, "inject_noise": False}), ("compress_all", {"residual": True, "multiplier": 2}),
    ("res_x", {"num_layers": 5, "inject_noise": False}), ("compress_all", {"residual": True, "multiplier": 2}),
    ("res_x", {"num_layers": 5, "inject_noise": False}),
)

# block name -> (time, height, width) stride
_STRIDES = {"time": (2, 1, 1), "space": (1, 2, 2), "all": (2, 2, 2)}
ENCODER_BLOCK_NAMES = ("res_x", "compress_time", "compress_space", "compress_all",
                       "compress_time_res", "compress_space_res", "compress_all_res")
DECODER_BLOCK_NAMES = ("res_x", "compress_time", "compress_space", "compress_all")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
LOG_VAR_MODES = ("uniform", "per_channel", "constant")  # all three: means are the first C channels


def block_stride(name: str) -> tuple[int, int, int]:
    return _STRIDES[name.split("_")[1]] if name.startswith("compress_") else (1, 1, 1)


def _multiplier(name: str, params: dict) -> int:
    """Channel factor of a decoder block (1 for res_x)."""
    return params.get("multiplier", 1) if name.startswith("compress_") else 1


def _normalise_blocks(blocks, allowed: tuple[str, ...], where: str) -> tuple[tuple[str, dict], ...]:
    out = []
    for entry in blocks:
        try:
            name, params = entry
        except (TypeError, ValueError):
            raise UnsupportedModelError(f"config.vae.{where} entry {entry!r} is not a [name, params] pair.") from None
        if name not in allowed:
            raise UnsupportedModelError(
                f"config.vae.{where} uses block '{name}', which ltx2_nodes does not implement (supported: "
                f"{', '.join(allowed)}). This VAE is not the LTX-2 video VAE; use the VAE of ltx-2-19b-*.safetensors."
            )
        params = {"num_layers": params} if isinstance(params, int) else dict(params or {})
        if params.get("inject_noise"):
            raise UnsupportedModelError(
                f"config.vae.{where} block '{name}' has inject_noise=true (LTX-Video 0.9 decoder noise); "
                "the LTX-2 decoder does not inject noise and ltx2_nodes does not implement it.")
        out.append((name, params))
    return tuple(out)


def _flatten_nested_encoder(meta: dict) -> dict:
    """The flat equivalent of a nested ``config.vae.encoder`` section (the decoder keeps the released values)."""
    enc = meta["encoder"]
    flat = {k: v for k, v in meta.items() if k not in ("encoder", "decoder")}
    renames = {"blocks": "encoder_blocks", "out_channels": "latent_channels", "dims": "dims",
               "in_channels": "in_channels", "patch_size": "patch_size", "norm_layer": "norm_layer",
               "latent_log_var": "latent_log_var", "spatial_padding_mode": "encoder_spatial_padding_mode"}
    flat.update({renames[k]: v for k, v in enc.items() if k in renames})
    if "encoder_blocks" in enc:
        flat["encoder_blocks"] = enc["encoder_blocks"]
    return flat


def _scale_of(blocks: tuple[tuple[str, dict], ...], patch_size: int) -> VideoScale:
    time, space = 1, patch_size
    for name, _ in blocks:
        t, s, _ = block_stride(name)
        time, space = time * t, space * s
    return VideoScale(time=time, height=space, width=space)


@dataclass(frozen=True)
class VideoVAEConfig:
    """``config.vae`` of the checkpoint; defaults are the released LTX-2 19B values."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    patch_size: int = 4
    encoder_blocks: tuple[tuple[str, dict], ...] = RELEASE_ENCODER_BLOCKS
    decoder_blocks: tuple[tuple[str, dict], ...] = RELEASE_DECODER_BLOCKS
    encoder_spatial_padding_mode: str = "zeros"
    decoder_spatial_padding_mode: str = "reflect"
    causal_decoder: bool = False
    latent_log_var: str = "uniform"
    decoder_base_channels: int = 128

    # metadata key -> values this implementation runs (absent keys take the released value)
    _REQUIRED = {"dims": (3,), "norm_layer": ("pixel_norm",), "timestep_conditioning": (False,),
                 "use_quant_conv": (False,)}

    def __post_init__(self):
        check_config(self, "config.vae")

    @classmethod
    def from_metadata(cls, meta: dict) -> "VideoVAEConfig":
        """From ``config.vae``: the flat LTX-2 / LTX-2.3 layout, or the LTX-2.5 ``CausalDiffusionVAE`` one whose
        encoder settings are nested under ``encoder`` (``blocks``, ``out_channels`` = the latent width; reference
        ``_prepare_video_encoder_kwargs``). Its decoder is :mod:`.diffusion_vae`'s, not described here."""
        if isinstance(meta.get("encoder"), dict):
            meta = _flatten_nested_encoder(meta)
        for key, allowed in cls._REQUIRED.items():
            if key in meta and meta[key] not in allowed:
                hint = (" (the LTX-Video 0.9.x timestep-conditioned decoder)" if key == "timestep_conditioning" else "")
                raise UnsupportedModelError(
                    f"config.vae has {key}={meta[key]!r}{hint}; ltx2_nodes runs the LTX-2 video VAE, which has "
                    f"{key} in {list(allowed)}.")
        # HEAD: ``spatial_padding_mode`` sets both halves; without it the encoder reads
        # ``encoder_spatial_padding_mode`` and the decoder pads with reflect (``decoder_spatial_padding_mode``
        # is no longer read; the released 2.0 files have reflect there anyway).
        shared_padding = meta.get("spatial_padding_mode")
        latent_channels = meta.get("latent_channels", cls.latent_channels)
        values = {
            "in_channels": meta.get("in_channels", cls.in_channels),
            "out_channels": meta.get("out_channels", cls.out_channels),
            "latent_channels": latent_channels,
            "patch_size": meta.get("patch_size", cls.patch_size),
            "encoder_blocks": _normalise_blocks(meta.get("encoder_blocks", RELEASE_ENCODER_BLOCKS),
                                                ENCODER_BLOCK_NAMES, "encoder_blocks"),
            "decoder_blocks": _normalise_blocks(meta.get("decoder_blocks", RELEASE_DECODER_BLOCKS),
                                                DECODER_BLOCK_NAMES, "decoder_blocks"),
            "encoder_spatial_padding_mode": shared_padding or meta.get("encoder_spatial_padding_mode", "zeros"),
            "decoder_spatial_padding_mode": shared_padding or "reflect",
            "causal_decoder": bool(meta.get("causal_decoder", False)),
            "latent_log_var": meta.get("latent_log_var", "uniform"),
            # absent: the January release's width (HEAD would use 128 and fail to load a small VAE)
            "decoder_base_channels": meta.get("decoder_base_channels", latent_channels),
        }
        for key in ("spatial_padding_mode", "encoder_spatial_padding_mode"):
            if meta.get(key, "zeros") not in PADDING_MODES:
                raise UnsupportedModelError(f"config.vae {key}={meta[key]!r}; expected one of {list(PADDING_MODES)}.")
        if values["latent_log_var"] not in LOG_VAR_MODES:
            raise UnsupportedModelError(
                f"config.vae latent_log_var={values['latent_log_var']!r}; ltx2_nodes supports {list(LOG_VAR_MODES)}.")
        return cls(**values)

    @property
    def encoder_scale(self) -> VideoScale:
        return _scale_of(self.encoder_blocks, self.patch_size)

    @property
    def decoder_scale(self) -> VideoScale:
        return _scale_of(self.decoder_blocks, self.patch_size)

    def decoder_widths(self) -> list[int]:
        """Channel width entering each decoder block (reversed list order), then the final width:
        ``decoder_base_channels x prod(compress_* multipliers)`` at conv_in, each ``compress_*``
        dividing by its multiplier, so the last width is ``decoder_base_channels``."""
        width = self.decoder_base_channels * math.prod(_multiplier(n, p) for n, p in self.decoder_blocks)
        widths = [width]
        for name, params in reversed(self.decoder_blocks):
            width //= _multiplier(name, params)
            widths.append(width)
        return widths


def video_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """Decoder output [B,3,F,H,W] (about [-1,1]) -> [B,F,H,W,3] uint8, truncating like the reference."""
    return (((video.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 4, 1)


def uint8_to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """[F,H,W,3] or [B,F,H,W,3] uint8 frames -> encoder input [B,3,F,H,W] float32 in [-1,1]."""
    if frames.dim() == 4:
        frames = frames.unsqueeze(0)
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------
# Layout ops (einops patterns in the comments; implemented as view/permute)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``b c f (h q) (w r) -> b (c r q) f h w``: channel = c*p*p + p*w_off + h_off."""
    b, c, f, h, w = x.shape
    x = x.reshape(b, c, f, h // p, p, w // p, p)
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, f, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b, c, f, h, w = x.shape
    c //= p * p
    x = x.reshape(b, c, p, p, f, h, w)  # (c, r=w_off, q=h_off)
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c, f, h * p, w * p)


def space_to_depth(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """``b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w``."""
    b, c, d, h, w = x.shape
    p1, p2, p3 = stride
    x = x.reshape(b, c, d // p1, p1, h // p2, p2, w // p3, p3)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * p1 * p2 * p3, d // p1, h // p2, w // p3)


def depth_to_space(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """``b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)``."""
    b, c, d, h, w = x.shape
    p1, p2, p3 = stride
    c //= p1 * p2 * p3
    x = x.reshape(b, c, p1, p2, p3, d, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, d * p1, h * p2, w * p3)


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + PIXEL_NORM_EPS)


# ------------------------------------------------------------------------------------------------
# Modules


class PerChannelStatistics(nn.Module):
    """Dataset statistics of the latent channels; diffusion runs in the normalised space.

    Only the two statistics the reference reads are buffers; LTX-2.0 files also store
    :data:`UNREAD` ones, which loaders skip (LTX-2.3 files do not have them)."""

    UNREAD = ("mean-of-stds", "mean-of-stds_over_std-of-means", "channel")

    def __init__(self, channels: int):
        super().__init__()
        for name in ("std-of-means", "mean-of-means"):
            self.register_buffer(name, torch.empty(channels))

    @property
    def channels(self) -> int:
        return self.get_buffer("mean-of-means").shape[0]

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] != self.channels:
            raise InputError(f"latent has {x.shape[1]} channels but the VAE statistics have {self.channels}; "
                             "the latent comes from a different model.")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (self.get_buffer("mean-of-means").view(shape).to(x), self.get_buffer("std-of-means").view(shape).to(x))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def un_normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean


class CausalConv3d(nn.Module):
    """3x3x3 conv with spatial padding by ``padding_mode`` and time padding by frame replication.

    ``causal``: two copies of the first frame in front (a frame never sees the future);
    otherwise one copy of the first frame in front and one of the last behind.
    """

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str,
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=(0, 1, 1), padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        if causal:
            x = torch.cat((x[:, :, :1], x[:, :, :1], x), dim=2)
        else:
            x = torch.cat((x[:, :, :1], x, x[:, :, -1:]), dim=2)
        if self.conv.padding_mode == "zeros":
            return self.conv(x)
        # pad here (what nn.Conv3d would do) so the time-padded copy is freed before the conv runs
        x = F.pad(x, (1, 1, 1, 1, 0, 0), mode=self.conv.padding_mode)
        return F.conv3d(x, self.conv.weight, self.conv.bias, self.conv.stride)


class ResnetBlock3D(nn.Module):
    """x + conv2(SiLU(PN(conv1(SiLU(PN(x))))))."""

    def __init__(self, channels: int, padding_mode: str):
        super().__init__()
        self.conv1 = CausalConv3d(channels, channels, padding_mode)
        self.conv2 = CausalConv3d(channels, channels, padding_mode)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        # in-place SiLU on fresh tensors: one activation-sized buffer less at the peak
        h = self.conv1(F.silu(pixel_norm(x), inplace=True), causal)
        h = self.conv2(F.silu(pixel_norm(h), inplace=True), causal)
        return h.add_(x)


class ResBlockStack(nn.Module):
    """A ``res_x`` block: ``num_layers`` resnet blocks at constant width (key ``res_blocks.N``)."""

    def __init__(self, channels: int, num_layers: int, padding_mode: str):
        super().__init__()
        self.res_blocks = nn.ModuleList(ResnetBlock3D(channels, padding_mode) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x, causal)
        return x


class SpaceToDepthDownsample(nn.Module):
    """``compress_*_res``: conv to out/prod(stride) channels then space-to-depth, plus a parameter-free
    residual (space-to-depth of the input averaged over channel groups). A temporal stride first
    duplicates frame 0 so 1 + 2k frames become 1 + k."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], padding_mode: str):
        super().__init__()
        self.stride = stride
        self.group_size = in_channels * math.prod(stride) // out_channels
        self.conv = CausalConv3d(in_channels, out_channels // math.prod(stride), padding_mode)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        if self.stride[0] == 2:
            x = torch.cat((x[:, :, :1], x), dim=2)
        residual = space_to_depth(x, self.stride)
        b, c, d, h, w = residual.shape
        residual = residual.reshape(b, c // self.group_size, self.group_size, d, h, w).mean(dim=2)
        return space_to_depth(self.conv(x, causal), self.stride) + residual


class DepthToSpaceUpsample(nn.Module):
    """Decoder ``compress_*``: conv to prod(stride)*in/reduction channels then depth-to-space; with
    ``residual`` the input's depth-to-space, channel-tiled, is added. A temporal x2 drops the first
    output frame (T -> 2T - 1)."""

    def __init__(self, in_channels: int, stride: tuple[int, int, int], residual: bool, reduction: int,
                 padding_mode: str):
        super().__init__()
        self.stride = stride
        self.residual = residual
        self.repeats = math.prod(stride) // reduction
        self.conv = CausalConv3d(in_channels, math.prod(stride) * in_channels // reduction, padding_mode)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        drop = 1 if self.stride[0] == 2 else 0
        out = depth_to_space(self.conv(x, causal), self.stride)[:, :, drop:]
        if self.residual:
            out += depth_to_space(x, self.stride).repeat(1, self.repeats, 1, 1, 1)[:, :, drop:]
        return out


class VideoEncoder(nn.Module):
    """Pixels [B,3,1+8k,32m,32n] in [-1,1] -> normalised latent means [B,C,1+k,m,n]."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        self.config = config
        self.scale = config.encoder_scale
        pad = config.encoder_spatial_padding_mode
        width = config.latent_channels
        self.per_channel_statistics = PerChannelStatistics(config.latent_channels)
        self.conv_in = CausalConv3d(config.in_channels * config.patch_size**2, width, pad)
        blocks = []
        for name, params in config.encoder_blocks:
            stride = block_stride(name)
            if name == "res_x":
                blocks.append(ResBlockStack(width, params["num_layers"], pad))
            elif name.endswith("_res"):
                out = width * params.get("multiplier", 2)
                blocks.append(SpaceToDepthDownsample(width, out, stride, pad))
                width = out
            else:  # plain compress_*: one strided causal conv (key ``conv.weight``)
                blocks.append(CausalConv3d(width, width, pad, stride))
        self.down_blocks = nn.ModuleList(blocks)
        extra = {"uniform": 1, "constant": 1, "per_channel": config.latent_channels}[config.latent_log_var]
        self.conv_out = CausalConv3d(width, config.latent_channels + extra, pad)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 5 or pixels.shape[1] != self.config.in_channels:
            raise InputError(f"VAE encode expects pixels [B,{self.config.in_channels},F,H,W] in [-1,1], "
                             f"got {list(pixels.shape)}.")
        _, _, frames, height, width = pixels.shape
        check_video_size(frames, height, width, self.scale)
        pixels = pixels.to(self.conv_in.conv.weight)  # runs in the module's dtype, on its device
        x = self.conv_in(patchify(pixels, self.config.patch_size), True)
        for block in self.down_blocks:
            x = block(x, True)
        x = self.conv_out(F.silu(pixel_norm(x), inplace=True), True)
        # log-variance channel(s) are dropped: the pipelines use the posterior mean
        return self.per_channel_statistics.normalize(x[:, : self.config.latent_channels])


class VideoDecoder(nn.Module):
    """Normalised latent [B,C,F',H',W'] -> video [B,3,8(F'-1)+1,32H',32W'], about [-1,1], un-clamped."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        self.config = config
        self.scale = config.decoder_scale
        pad = config.decoder_spatial_padding_mode
        widths = config.decoder_widths()
        self.per_channel_statistics = PerChannelStatistics(config.latent_channels)
        self.conv_in = CausalConv3d(config.latent_channels, widths[0], pad)
        blocks = []
        for (name, params), width in zip(reversed(config.decoder_blocks), widths):
            if name == "res_x":
                blocks.append(ResBlockStack(width, params["num_layers"], pad))
            else:  # compress_*: the reference reads ``residual`` for compress_all only
                residual = name == "compress_all" and bool(params.get("residual", False))
                blocks.append(DepthToSpaceUpsample(width, block_stride(name), residual, _multiplier(name, params), pad))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels * config.patch_size**2, pad)

    def check_latent(self, latent: torch.Tensor) -> None:
        c = self.config.latent_channels
        if latent.dim() != 5 or latent.shape[1] != c:
            raise InputError(f"VAE decode expects a video latent [B,{c},F,H,W], got {list(latent.shape)}; "
                             "audio latents go to the audio VAE, AV latents must be separated first.")
        if self.config.decoder_spatial_padding_mode == "reflect" and min(latent.shape[3:]) < 2:
            raise InputError(
                f"latent is {latent.shape[3]}x{latent.shape[4]} cells; the decoder's reflect padding needs at least "
                f"2 latent cells ({2 * self.scale.height} px) per side. For tiled decoding use a spatial overlap of "
                f"at least {self.scale.height} px.")

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        self.check_latent(latent)
        causal = self.config.causal_decoder
        latent = latent.to(self.conv_in.conv.weight)  # runs in the module's dtype, on its device
        x = self.conv_in(self.per_channel_statistics.un_normalize(latent), causal)
        for block in self.up_blocks:
            x = block(x, causal)
        x = self.conv_out(F.silu(pixel_norm(x), inplace=True), causal)
        return unpatchify(x, self.config.patch_size)
