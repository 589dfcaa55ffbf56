"""The LTX-2.5 diffusion video VAE decoder: a neighborhood-attention transformer that denoises pixels.

Reference: ``ltx_core.model.video_vae.diffusion_video_decoder.DiffusionVideoDecoder`` and
``...video_vae.transformer`` (Lightricks/LTX-2 @ 400fd31, v1.2.0). The file's ``config.vae`` has
``_class_name: "CausalDiffusionVAE"``; its encoder is the conv encoder of :mod:`.video_vae` (nested
``vae.encoder`` config), its decoder this one:

* stages 1-4 (deterministic): un-normalise, ``conv_in`` (a channel Linear), then per stage NA blocks
  (RMSNorm -> 3-D neighborhood attention with absolute RoPE -> RMSNorm -> SwiGLU, residual) and a
  Linear + pixel-shuffle upsample (each temporal x2 drops its duplicate leading frame). The latent is
  first floored to the size every stage's window needs (time: last frame repeated; space: edges
  replicated on both sides) and its last frame is repeated ``(K_t // 2) * 2`` more times (NATTEN's
  last-frame border), an appendix cropped off the stage-5 context again.
* stage 5 (diffusion): seeded pixel noise ``x_t`` (one ``torch.randn`` on the floored canvas with a CPU
  generator seeded with the noise seed) is patchified, projected and run through ``diff_blocks``: each
  adds ``context_proj(context)``, then AdaLN-modulated (shared table + per-block ``scale_shift_table``,
  no gates) NA and SwiGLU residuals. ``default_num_inference_steps`` Euler steps on
  ``linspace(1, 1/N, N)``, the last one to t = 0; the network sees ``timestep_scale_multiplier * t``.

Two pathways (``pathway``): ``"chunked"``, the reference's default pipeline preset ``CHUNKED_EAGER``,
runs stage-5 attention on four W slabs with ``kw // 2`` halo columns; halo columns beyond the true
left/right edges are copies of the edge column with RoPE positions continuing (-1, -2 ... / W, W+1 ...),
while T/H, and every deterministic stage, shift the window inward. ``"combined"`` (the reference's
``COMBINED_COMPILE``) shifts the window inward everywhere. They differ within ~20 px of the left and
right edges only. The attention kernel is :mod:`.neighborhood_attention` (natten or tiled SDPA).

Checkpoint keys are the released ones (fused ``attn.qkv``, ``t_embedder.mlp.{0,2}``); the static
``gate_{msa,mlp,ctx}`` vectors of the release are folded into ``attn.proj`` / ``mlp.w_down`` /
``context_proj`` by :func:`fold_static_gates` at load, rounded to the file's dtype as the reference does.
Deviations: the context for stage 5 is always materialised at full resolution (the reference's chunked
preset defers the stage-4 upsample into each block; same values), the fused QKV is sliced at run time
instead of split at load.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from .config_values import as_tuple, check_config
from .layers import timestep_sinusoid
from .neighborhood_attention import neighborhood_attention
from .shapes import VideoScale
from .video_vae import PerChannelStatistics, patchify, unpatchify

CLASS_NAME = "CausalDiffusionVAE"
PATHWAYS = ("chunked", "combined")
W_CHUNKS = 4  # the reference's fixed W split of the chunked presets
MLP_TOKENS = 16384  # tokens per SwiGLU call (the reference's DEFAULT_SWIGLU_TILE_SIZE)
ADALN_ROWS = 7  # scale_msa, shift_msa, gate_msa, scale_mlp, shift_mlp, gate_mlp, gate_ctx (gates unused)
GATE_FOLDS = {"gate_msa": ("attn.proj.weight", "attn.proj.bias"), "gate_mlp": ("mlp.w_down.weight",),
              "gate_ctx": ("context_proj.weight", "context_proj.bias")}


def is_diffusion_vae(vae_config: dict) -> bool:
    """Whether ``config.vae`` describes this decoder (reference: ``vae._class_name`` decides; absent means the
    conv VAE, ``CausalVideoAutoencoder``)."""
    return vae_config.get("_class_name") == CLASS_NAME


@dataclass(frozen=True)
class DiffusionDecoderConfig:
    """``config.vae`` (+ its ``decoder`` section) of a ``CausalDiffusionVAE`` file.

    The production ladder lives only in the gated checkpoints' metadata; the defaults are the reference
    constructor's (``_L_STAGE_*`` of ``diffusion_video_decoder.py``), every file we know sets its own."""

    in_channels: int = 128
    out_channels: int = 3
    patch_size: int = 4
    head_dim: int = 64
    stage_channels: tuple[int, ...] = (1024, 512, 256, 256, 128)
    stage_depths: tuple[int, ...] = (4, 6, 4, 2, 8)
    stage_kernels: tuple[tuple[int, int, int], ...] = ((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5), (3, 3, 3))
    upsamples: tuple[tuple[tuple[int, int, int], int], ...] = (((1, 2, 2), 2), ((2, 1, 1), 2), ((2, 2, 2), 1),
                                                               ((2, 2, 2), 2))
    stage5_kernel: tuple[int, int, int] = (3, 7, 7)
    stage5_channels: int | None = None
    t_emb_dim: int = 384
    num_inference_steps: int = 2
    timestep_scale_multiplier: float = 1.0
    model_output_type: str = "v"

    _KNOWN = ("in_channels", "out_channels", "patch_size", "head_dim", "na_head_dim", "stage_channels",
              "stage_depths", "stage_kernels", "upsamples", "stage5_kernel", "stage5_channels", "t_emb_dim",
              "default_num_inference_steps", "timestep_scale_multiplier")

    @classmethod
    def from_metadata(cls, vae: dict) -> "DiffusionDecoderConfig":
        """From ``config.vae``; refuses settings this implementation does not run, naming them."""
        if vae.get("_class_name") != CLASS_NAME:
            raise UnsupportedModelError(
                f"config.vae._class_name is {vae.get('_class_name')!r}, not {CLASS_NAME!r}; this VAE has the conv "
                "decoder (load it with the conv video VAE).")
        dec = vae.get("decoder", vae)
        if not isinstance(dec, dict):
            raise UnsupportedModelError(f"config.vae.decoder is {type(dec).__name__}, expected a JSON object.")
        unknown = sorted(k for k in dec if k not in cls._KNOWN and not k.startswith("_"))
        if "decoder" in vae and unknown:
            raise UnsupportedModelError(
                f"config.vae.decoder has settings {unknown} that ltx2_nodes does not implement (it runs "
                f"{list(cls._KNOWN)}). The file is a newer diffusion VAE; update ltx2_nodes.")
        kinds = ("v", "x0")
        output_type = vae.get("model_output_type", cls.model_output_type)
        if output_type not in kinds:
            raise UnsupportedModelError(f"config.vae.model_output_type is {output_type!r}; supported: {list(kinds)}.")
        values = dict(
            in_channels=dec.get("in_channels", vae.get("latent_channels", cls.in_channels)),
            out_channels=dec.get("out_channels", cls.out_channels),
            patch_size=dec.get("patch_size", cls.patch_size),
            head_dim=dec.get("head_dim", dec.get("na_head_dim", cls.head_dim)),
            stage_channels=dec.get("stage_channels", cls.stage_channels),
            stage_depths=dec.get("stage_depths", cls.stage_depths),
            stage_kernels=dec.get("stage_kernels", cls.stage_kernels),
            upsamples=dec.get("upsamples", cls.upsamples),
            stage5_kernel=dec.get("stage5_kernel", cls.stage5_kernel),
            stage5_channels=dec.get("stage5_channels", cls.stage5_channels),
            t_emb_dim=dec.get("t_emb_dim", cls.t_emb_dim),
            num_inference_steps=dec.get("default_num_inference_steps", cls.num_inference_steps),
            timestep_scale_multiplier=dec.get("timestep_scale_multiplier", cls.timestep_scale_multiplier),
            model_output_type=output_type)
        return cls(**{k: as_tuple(v) for k, v in values.items()})

    def __post_init__(self):
        check_config(self, "config.vae.decoder")
        self.validate()

    def validate(self) -> None:
        problems = []
        stages = len(self.stage_channels)
        if not (len(self.stage_depths) == len(self.stage_kernels) == stages == len(self.upsamples) + 1 == 5):
            problems.append(f"{stages} stage_channels, {len(self.stage_depths)} stage_depths, "
                            f"{len(self.stage_kernels)} stage_kernels and {len(self.upsamples)} upsamples "
                            "(need 5, 5, 5 and 4)")
        for c in self.stage_channels + (self.stage5_width,):
            if c % self.head_dim:
                problems.append(f"width {c} is not a multiple of head_dim {self.head_dim}")
        for i, (stride, reduction) in enumerate(self.upsamples):
            if len(stride) != 3 or stride[0] not in (1, 2) or min(stride) < 1 or reduction < 1:
                problems.append(f"upsample {list(stride)} / {reduction} (temporal stride 1 or 2 only)")
            elif i + 1 < stages and self.stage_channels[i] != self.stage_channels[i + 1] * reduction:
                problems.append(f"stage_channels {list(self.stage_channels)} do not follow the upsample channel "
                                f"reductions {[r for _, r in self.upsamples]}")
        if self.head_dim % 8 or self.num_inference_steps < 1:
            problems.append(f"head_dim {self.head_dim} (multiple of 8) / steps {self.num_inference_steps} (>= 1)")
        if problems:
            raise UnsupportedModelError("config.vae.decoder is not a diffusion decoder ltx2_nodes can build: "
                                        + "; ".join(problems) + ". The file's metadata is damaged or from a newer "
                                        "model; use the released LTX-2.5 VAE file.")

    @property
    def stage5_width(self) -> int:
        return int(self.stage5_channels) if self.stage5_channels is not None else self.stage_channels[-1]

    @property
    def scale(self) -> VideoScale:
        """Pixels per latent cell: the product of the upsample strides times the patch."""
        t = math.prod(s[0] for s, _ in self.upsamples)
        h = math.prod(s[1] for s, _ in self.upsamples) * self.patch_size
        w = math.prod(s[2] for s, _ in self.upsamples) * self.patch_size
        return VideoScale(time=t, height=h, width=w)

    @property
    def trailing_pad_frames(self) -> int:
        """Latent frames appended (last frame repeated) before stages 1-4, cropped before stage 5."""
        return (self.stage_kernels[0][0] // 2) * 2

    @property
    def min_latent_size(self) -> tuple[int, int, int]:
        """Latent (T, H, W) floor so every stage's window fits (reference ``all_stages_min_tile_size``)."""
        mins, strides = [1, 1, 1], (1, 1, 1)
        for kernel, (stride, _) in zip(self.stage_kernels, self.upsamples + (((1, 1, 1), 1),)):
            mins = [max(m, -(-k // s)) for m, k, s in zip(mins, kernel, strides)]
            strides = tuple(a * b for a, b in zip(strides, stride))
        return tuple(max(m, -(-k // s)) for m, k, s in zip(mins, self.stage5_kernel, strides))

    @property
    def feature_scale(self) -> tuple[int, int, int]:
        """Pixels / frames per stage-4-input cell (T, H, W): the last upsample times the patch."""
        st, sh, sw = self.upsamples[3][0]
        return st, sh * self.patch_size, sw * self.patch_size

    @property
    def feature_tile_min(self) -> tuple[int, int, int]:
        """Smallest stage-4-input tile (T, H, W) so stages 4 and 5 see whole windows (``compute_tile_min_size``)."""
        k4, k5, stride = self.stage_kernels[3], self.stage5_kernel, self.upsamples[3][0]
        return tuple(max(k4[a], -(-k5[a] // stride[a])) for a in range(3))

    @property
    def min_tile_overlaps(self) -> tuple[int, int]:
        """(frames, pixels) neighbouring tiles must overlap to cover the stage-4/5 receptive halos
        (reference ``compute_tile_halos`` + ``recommended_pixel_overlaps``)."""
        k4, k5, stride = self.stage_kernels[3], self.stage5_kernel, self.upsamples[3][0]
        d4, d5 = self.stage_depths[3], self.stage_depths[4]
        halo = [max(d4 * (k4[a] // 2), -(-(d5 * (k5[a] // 2)) // stride[a])) for a in range(3)]
        ft, fh, _ = self.feature_scale
        return -(-halo[0] * ft // 8) * 8, -(-max(halo[1], halo[2]) * fh // 32) * 32

    def timesteps(self) -> list[float]:
        """``linspace(1, 1/N, N)`` in float32 (the reference's ``default_inference_timesteps``)."""
        n = self.num_inference_steps
        return torch.linspace(1.0, 1.0 / n, n).tolist()


def rope_dim_split(head_dim: int) -> tuple[int, int, int]:
    """Head channels rotated by T, H and W positions (reference ``default_rope_dim_split``)."""
    d_t = (head_dim // 4) // 2 * 2
    d_hw = (head_dim - d_t) // 2
    if d_hw % 2:
        d_t -= 2
        d_hw = (head_dim - d_t) // 2
    return d_t, d_hw, d_hw


@functools.lru_cache(maxsize=None)
def _inv_freqs(dim: int) -> torch.Tensor:
    return torch.from_numpy(1.0 / np.power(10000.0, np.arange(0, dim, 2, dtype=np.float64) / dim)).float()


def _rotate(x: torch.Tensor, pos: torch.Tensor, axis: int) -> torch.Tensor:
    """Absolute RoPE on interleaved pairs of ``x[..., D]`` (B,T,H,W,heads,D) along ``axis`` (1, 2 or 3)."""
    inv = _inv_freqs(x.shape[-1]).to(x.device)
    shape = [1] * 6
    shape[axis], shape[-1] = pos.shape[0], inv.shape[0]
    angle = (pos.to(x.device, torch.float32)[:, None] * inv[None, :]).reshape(shape)
    cos, sin = angle.cos(), angle.sin()
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).to(x.dtype)


def apply_abs_rope(x: torch.Tensor, w_pos: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate ``(B,T,H,W,heads,D)`` by positions 0.. along T and H and ``w_pos`` (default 0..) along W."""
    d_t, d_h, _ = rope_dim_split(x.shape[-1])
    t, h, w = x.shape[1:4]
    w_pos = torch.arange(w, dtype=torch.float32) if w_pos is None else w_pos
    return torch.cat([_rotate(x[..., :d_t], torch.arange(t, dtype=torch.float32), 1),
                      _rotate(x[..., d_t:d_t + d_h], torch.arange(h, dtype=torch.float32), 2),
                      _rotate(x[..., d_t + d_h:], w_pos, 3)], dim=-1)


class NeighborhoodAttention3D(nn.Module):
    """Fused ``qkv`` -> per-head RMSNorm q/k, scaled q, absolute RoPE -> 3-D NA -> ``proj`` (channels-last)."""

    def __init__(self, dim: int, kernel: tuple[int, int, int], head_dim: int):
        super().__init__()
        self.dim, self.heads, self.head_dim, self.kernel = dim, dim // head_dim, head_dim, tuple(kernel)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6)

    def forward(self, y: torch.Tensor, w_pos: torch.Tensor | None = None) -> torch.Tensor:
        t, h, w = y.shape[1:4]
        if t < self.kernel[0] or h < self.kernel[1] or w < self.kernel[2]:
            raise InputError(f"neighborhood attention needs a volume of at least {list(self.kernel)} (T,H,W), "
                             f"got {[t, h, w]}; the latent is smaller than the decoder's size floor.")
        shape = y.shape[:4] + (self.heads, self.head_dim)
        d, weight, bias = self.dim, self.qkv.weight, self.qkv.bias
        q = self.q_norm(F.linear(y, weight[:d], bias[:d]).view(shape)) * self.head_dim**-0.5
        k = self.k_norm(F.linear(y, weight[d:2 * d], bias[d:2 * d]).view(shape))
        v = F.linear(y, weight[2 * d:], bias[2 * d:]).view(shape)
        out = neighborhood_attention(apply_abs_rope(q, w_pos), apply_abs_rope(k, w_pos), v, self.kernel)
        return self.proj(out.reshape(y.shape[:4] + (d,)))


class SwiGLU(nn.Module):
    """``w_down(silu(w_gate(x)) * w_up(x))``, hidden width ``4 * dim`` rounded up to 16."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = (dim * 4 + 15) // 16 * 16
        self.w_up = nn.Linear(dim, hidden, bias=False)
        self.w_gate = nn.Linear(dim, hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs :data:`MLP_TOKENS` tokens at a time: the 4x-wide hidden activations stay bounded (reference
        ``swiglu_tiled``)."""
        flat = x.reshape(-1, x.shape[-1])
        out = torch.empty_like(flat)
        for i in range(0, flat.shape[0], MLP_TOKENS):
            part = flat[i:i + MLP_TOKENS]
            out[i:i + MLP_TOKENS] = self.w_down(F.silu(self.w_gate(part)) * self.w_up(part))
        return out.view(x.shape)


class NABlock(nn.Module):
    """Deterministic-stage block: ``x += NA(norm1(x)); x += SwiGLU(norm2(x))``."""

    def __init__(self, dim: int, kernel: tuple[int, int, int], head_dim: int):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.attn = NeighborhoodAttention3D(dim, kernel, head_dim)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DiffusionNABlock(NABlock):
    """Stage-5 block: ``x += context_proj(ctx)``, then AdaLN-modulated NA and SwiGLU residuals."""

    def __init__(self, dim: int, kernel: tuple[int, int, int], head_dim: int, context_channels: int):
        super().__init__(dim, kernel, head_dim)
        self.context_proj = nn.Linear(context_channels, dim)
        self.scale_shift_table = nn.Parameter(torch.empty(ADALN_ROWS, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, modulation: torch.Tensor,
                pathway: str) -> torch.Tensor:
        rows = modulation + self.scale_shift_table.to(modulation.dtype)  # [B, 7, C]
        scale_msa, shift_msa, scale_mlp, shift_mlp = (rows[:, i, None, None, None, :] for i in (0, 1, 3, 4))
        x = x + self.context_proj(context)
        y = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + (self._w_chunked_attention(y) if pathway == "chunked" else self.attn(y))
        return x + self.mlp(self.norm2(x) * (1 + scale_mlp) + shift_mlp)

    def _w_chunked_attention(self, y: torch.Tensor) -> torch.Tensor:
        """NA on ``W_CHUNKS`` W slabs with ``kw // 2`` halo columns (reference ``chunked.attn``): a slab sees
        its neighbours' columns, and copies of the edge column beyond the true edges (RoPE positions go on)."""
        width, halo = y.shape[3], self.attn.kernel[2] // 2
        chunk = -(-width // W_CHUNKS)
        outs = []
        for start in range(0, width, chunk):
            stop = min(start + chunk, width)
            if start == 0:
                parts = [y[:, :, :, :1].expand(-1, -1, -1, halo, -1)]
            else:  # the previous slab's last columns; slots it cannot fill stay zero, as in the reference
                take = min(halo, chunk)
                parts = [y.new_zeros(y.shape[:3] + (halo - take, y.shape[4])), y[:, :, :, start - take:start]]
            right = min(stop + halo, width) if stop < width else stop
            parts.append(y[:, :, :, start:right])
            missing = chunk + halo - (right - start)
            if missing > 0:
                parts.append(y[:, :, :, stop - 1:stop].expand(-1, -1, -1, missing, -1))
            w_pos = torch.arange(chunk + 2 * halo, dtype=torch.float32) + (start - halo)
            out = self.attn(torch.cat(parts, dim=3), w_pos)
            outs.append(out[:, :, :, halo:halo + stop - start])
        return torch.cat(outs, dim=3)


class PixelShuffleUpsample(nn.Module):
    """``proj`` (Linear to ``prod(stride) * C / reduction``) then channels-last depth-to-space
    (``b t h w (c p1 p2 p3) -> b (t p1) (h p2) (w p3) c``); a temporal x2 drops its duplicate first frame
    when the volume starts at the video's first frame (``drop_leading_frame``)."""

    def __init__(self, channels: int, stride: tuple[int, int, int], reduction: int):
        super().__init__()
        self.stride = tuple(stride)
        self.proj = nn.Linear(channels, math.prod(stride) * channels // reduction)

    def forward(self, x: torch.Tensor, drop_leading_frame: bool = True) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        p1, p2, p3 = self.stride
        x = self.proj(x)
        x = x.view(b, t, h, w, -1, p1, p2, p3).permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, t * p1, h * p2, w * p3, -1)
        return x[:, 1:] if p1 == 2 and drop_leading_frame else x


def resize_axis(x: torch.Tensor, dim: int, size: int, symmetric: bool) -> tuple[torch.Tensor, int]:
    """Pad (edge copies) or crop ``dim`` to ``size``; returns the tensor and the count added/removed in front.
    ``symmetric``: ``need // 2`` in front, the rest behind; else everything at the end (reference
    ``resize_axis`` modes ``symmetric`` / ``repeat_last``)."""
    length = x.shape[dim]
    need = abs(size - length)
    before = need // 2 if symmetric else 0
    if length >= size:
        return x.narrow(dim, before, size), before
    parts = [x.narrow(dim, 0, 1).expand(*x.shape[:dim], before, *x.shape[dim + 1:])] if before else []
    parts += [x, x.narrow(dim, length - 1, 1).expand(*x.shape[:dim], need - before, *x.shape[dim + 1:])]
    return torch.cat(parts, dim=dim), before


class DiffusionVideoDecoder(nn.Module):
    """Normalised latent [B,C,F',H',W'] + noise seed -> video [B,3,8(F'-1)+1,32H',32W'], about [-1,1]."""

    def __init__(self, config: DiffusionDecoderConfig):
        super().__init__()
        cfg = self.config = config
        self.scale = config.scale
        widths = cfg.stage_channels
        self.per_channel_statistics = PerChannelStatistics(cfg.in_channels)
        self.conv_in = nn.Linear(cfg.in_channels, widths[0])
        self.det_stages = nn.ModuleList(
            nn.ModuleList(NABlock(widths[i], cfg.stage_kernels[i], cfg.head_dim) for _ in range(cfg.stage_depths[i]))
            for i in range(len(widths) - 1))
        self.upsamples = nn.ModuleList(PixelShuffleUpsample(widths[i], stride, reduction)
                                       for i, (stride, reduction) in enumerate(cfg.upsamples))
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, cfg.t_emb_dim), nn.SiLU(),
                                            nn.Linear(cfg.t_emb_dim, cfg.t_emb_dim))
        pixel_channels = cfg.out_channels * cfg.patch_size**2
        c5 = cfg.stage5_width
        self.conv_in_x_t = nn.Linear(pixel_channels, c5)
        self.shared_adaln = nn.Module()
        self.shared_adaln.proj = nn.Linear(cfg.t_emb_dim, ADALN_ROWS * c5)
        self.diff_blocks = nn.ModuleList(DiffusionNABlock(c5, cfg.stage5_kernel, cfg.head_dim, widths[-1])
                                         for _ in range(cfg.stage_depths[-1]))
        self.norm_out = nn.RMSNorm(c5, eps=1e-6)
        self.conv_out = nn.Linear(c5, pixel_channels)

    # -- geometry ------------------------------------------------------------------------------------

    def check_latent(self, latent: torch.Tensor) -> None:
        c = self.config.in_channels
        if latent.dim() != 5 or latent.shape[1] != c:
            raise InputError(f"VAE decode expects a video latent [B,{c},F,H,W], got {list(latent.shape)}; "
                             "audio latents go to the audio VAE, AV latents must be separated first.")

    def prepare_latent(self, latent: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Floor the latent to :attr:`DiffusionDecoderConfig.min_latent_size` (time: last frame repeated, space:
        edges on both sides), then append the NATTEN trailing pad (last frame ``trailing_pad_frames`` more
        times; reference ``ensure_min_latent_shape`` + ``pad_trailing_latent_for_natten_border``). Returns it
        and the (H, W) cells added in front."""
        min_t, min_h, min_w = self.config.min_latent_size
        x = resize_axis(latent, 2, max(min_t, latent.shape[2]), symmetric=False)[0]
        x, h_front = resize_axis(x, 3, max(min_h, x.shape[3]), symmetric=True)
        x, w_front = resize_axis(x, 4, max(min_w, x.shape[4]), symmetric=True)
        x = resize_axis(x, 2, x.shape[2] + self.config.trailing_pad_frames, symmetric=False)[0]
        return x, (h_front, w_front)

    def noise_shape(self, latent_shape) -> tuple[int, ...]:
        """Shape of the one noise draw: the pixel canvas of the size-floored latent."""
        floor = self.config.min_latent_size
        b, _, t, h, w = latent_shape
        t, h, w = (max(a, m) for a, m in zip((t, h, w), floor))
        return (b, self.config.out_channels, (t - 1) * self.scale.time + 1, h * self.scale.height,
                w * self.scale.width)

    # -- stages --------------------------------------------------------------------------------------

    def features(self, padded: torch.Tensor) -> torch.Tensor:
        """Stages 1-3 on a :meth:`prepare_latent` latent -> the channels-last stage-4 input."""
        padded = padded.to(self.conv_in.weight)
        x = self.conv_in(self.per_channel_statistics.un_normalize(padded).permute(0, 2, 3, 4, 1))
        for stage in range(3):
            x = self._det_stage(x, stage, True)
        return x

    def _det_stage(self, x: torch.Tensor, stage: int, drop_leading_frame: bool) -> torch.Tensor:
        for block in self.det_stages[stage]:
            x = block(x)
        return self.upsamples[stage](x, drop_leading_frame)

    def stage5_context(self, features: torch.Tensor, drop_leading_frame: bool = True,
                       pad_trailing: bool = True) -> torch.Tensor:
        """Stage 4 -> the stage-5 context; with ``pad_trailing`` the NATTEN appendix is cropped, keeping at
        least ``stage5_kernel[0]`` frames (reference ``forward_stage_4``)."""
        x = self._det_stage(features, 3, drop_leading_frame)
        if pad_trailing and self.config.trailing_pad_frames:
            ghost = self.config.trailing_pad_frames * self.scale.time
            keep = min(x.shape[1], max(x.shape[1] - ghost, 1, self.config.stage5_kernel[0]))
            x = x[:, :keep]
        return x

    def velocity(self, context: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, pathway: str) -> torch.Tensor:
        """One stage-5 network evaluation (reference ``forward_diff_step``): pixels ``x_t`` [B,3,F,H,W] at
        time ``t`` [B] -> the model output in pixel space (velocity, or x0 for ``model_output_type`` x0)."""
        cfg = self.config
        x = self.conv_in_x_t(patchify(x_t.to(self.conv_in_x_t.weight), cfg.patch_size).permute(0, 2, 3, 4, 1))
        features = timestep_sinusoid(cfg.timestep_scale_multiplier * t.float().reshape(-1)).to(x.dtype)
        emb = self.t_embedder.mlp(features)
        modulation = self.shared_adaln.proj(F.silu(emb)).unflatten(-1, (ADALN_ROWS, -1))
        context = context.to(x.dtype)
        for block in self.diff_blocks:
            x = block(x, context, modulation, pathway)
        x = self.conv_out(self.norm_out(x)).permute(0, 4, 1, 2, 3)
        return unpatchify(x, cfg.patch_size)

    def denoise(self, context: torch.Tensor, x_t: torch.Tensor, pathway: str = "chunked") -> torch.Tensor:
        """The Euler loop of stage 5 from the noise ``x_t`` (reference ``_decode_one_tile``)."""
        steps = self.config.timesteps() + [0.0]
        x_t = x_t.to(self.conv_in_x_t.weight)
        for i in range(len(steps) - 1):
            t = torch.full((x_t.shape[0],), steps[i], device=x_t.device)
            out = self.velocity(context, x_t, t, pathway).float()
            if self.config.model_output_type == "x0":
                if steps[i + 1] == 0.0:
                    return out.to(x_t.dtype)
                out = (x_t.float() - out) / steps[i]
            x_t = (x_t.float() - (steps[i] - steps[i + 1]) * out).to(x_t.dtype)
        return x_t

    def decode_features(self, features: torch.Tensor, noise: torch.Tensor, origin: bool = True,
                        trailing: bool = True, pathway: str = "chunked") -> torch.Tensor:
        """Stages 4-5 of one stage-4-input tile in isolation (reference ``_decode_one_tile``): ``origin``: the tile
        holds the first frame (its temporal x2 drops the duplicate frame); ``trailing``: it holds the last one
        and the NATTEN appendix (cropped from the context). ``noise`` is the tile's part of the noise canvas;
        frames the stage-5 floor needs beyond it repeat its last frame and are cropped off the result."""
        if pathway not in PATHWAYS:
            raise InputError(f"diffusion decoder pathway {pathway!r}; choose one of {list(PATHWAYS)}.")
        context = self.stage5_context(features, origin, trailing)
        frames = noise.shape[2]
        x_t = resize_axis(noise.to(context.device), 2, max(frames, context.shape[1]), symmetric=False)[0]
        return self.denoise(context, x_t, pathway)[:, :, :frames]

    def seeded_noise(self, latent_shape, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The reference's one draw: ``torch.randn`` of :meth:`noise_shape` from a CPU generator seeded ``seed``."""
        return torch.randn(self.noise_shape(latent_shape), dtype=dtype,
                           generator=torch.Generator().manual_seed(int(seed)))

    def crop_to_content(self, video: torch.Tensor, latent_shape, fronts: tuple[int, int]) -> torch.Tensor:
        """Crop the floored canvas back to the latent's own video (reference ``crop_pixels_to_content``)."""
        _, _, t, h, w = latent_shape
        frames = (t - 1) * self.scale.time + 1
        return video[:, :, :frames].narrow(3, fronts[0] * self.scale.height, h * self.scale.height) \
            .narrow(4, fronts[1] * self.scale.width, w * self.scale.width)

    def forward(self, latent: torch.Tensor, seed: int = 0, *, noise: torch.Tensor | None = None,
                pathway: str = "chunked") -> torch.Tensor:
        """Untiled decode from the noise of ``seed`` (:meth:`seeded_noise`), or from ``noise`` (shape
        :meth:`noise_shape`). The memory-bounded tiled decode is ``vae_tiling.diffusion_decode_chunks``."""
        self.check_latent(latent)
        noise = self.seeded_noise(latent.shape, seed, latent.dtype) if noise is None else noise
        padded, fronts = self.prepare_latent(latent)
        video = self.decode_features(self.features(padded), noise, pathway=pathway)
        return self.crop_to_content(video, latent.shape, fronts)


def fold_static_gates(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold the release's static per-channel ``diff_blocks.N.gate_{msa,mlp,ctx}`` into the Linear they scale
    (``W <- g W``, ``b <- g b`` in float32, rounded back to the stored dtype as the reference loader does)
    and drop them. ``state`` has decoder module keys (``diff_blocks.0.gate_msa`` ...)."""
    out = dict(state)
    for key in [k for k in state if k.rsplit(".", 1)[-1] in GATE_FOLDS]:
        prefix, gate_name = key.rsplit(".", 1)
        gate = out.pop(key).float()
        for target in GATE_FOLDS[gate_name]:
            name = f"{prefix}.{target}"
            if name in out:
                value = out[name]
                scaled = value.float() * (gate[:, None] if value.dim() == 2 else gate)
                out[name] = scaled.to(value.dtype)
    return out
