"""Live preview of the video during sampling: a latent -> RGB linear projection fitted on the VAE.

Decoding a latent every step would cost as much as the final decode, so the preview maps each latent
cell's channels to one RGB colour with a linear projection (plus bias). The projection is fitted once
per loaded video VAE by least squares: a few random normalised latents are decoded, the decoded
pixels are averaged over each latent cell's footprint (8 frames -- the first latent frame is one
frame -- by 32 x 32 pixels) and ``[latent, 1] @ W ~= rgb`` is solved (ridge-regularised). Cheap, and it
shows composition and motion, not detail.

Previews are sent only inside ComfyUI and only when its preview method is not "none" (the frontend's
setting or ``--preview-method``); headless nothing is fitted or drawn.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import weakref

import torch
import torch.nn.functional as F

from .. import comfy_env
from ..progress import ProgressBar

log = logging.getLogger("ltx2_nodes")

FIT_GRID = (3, 6, 6)  # latent frames, height, width of each random fitting latent
FIT_SAMPLES = 2
RIDGE = 1e-3
_PROJECTIONS: "weakref.WeakKeyDictionary[object, torch.Tensor]" = weakref.WeakKeyDictionary()


def cell_means(pixels: torch.Tensor, time: int, height: int, width: int) -> torch.Tensor:
    """``[B, 3, 1 + time*k, H, W]`` pixels -> ``[B, 3, 1 + k, H/height, W/width]`` means over each latent cell."""
    first = pixels[:, :, :1]
    rest = pixels[:, :, 1:]
    b, c, f, h, w = rest.shape
    frames = torch.cat([first, rest.reshape(b, c, f // time, time, h, w).mean(dim=3)], dim=2)
    return F.avg_pool3d(frames, (1, height, width))


def fit_projection(video_vae, engine=None, seed: int = 0) -> torch.Tensor:
    """``[C + 1, 3]`` float32: latent channels (and a bias row) -> RGB in [-1, 1], cached per VAE."""
    cached = _PROJECTIONS.get(video_vae.models)
    if cached is not None:
        return cached
    from ..stages import decode_video

    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(FIT_SAMPLES, video_vae.latent_channels, *FIT_GRID, generator=generator)
    pixels = decode_video(latent, video_vae, engine, tiling=None)
    scale = video_vae.scale
    target = cell_means(pixels, scale.time, scale.height, scale.width)
    x = latent.permute(0, 2, 3, 4, 1).reshape(-1, latent.shape[1])
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1).double()
    y = target.permute(0, 2, 3, 4, 1).reshape(-1, 3).double()
    gram = x.T @ x + RIDGE * x.shape[0] * torch.eye(x.shape[1], dtype=torch.float64)
    projection = torch.linalg.solve(gram, x.T @ y).float()
    residual = float((x.float() @ projection - y.float()).pow(2).mean().sqrt())
    log.info("ltx2_nodes: sampling preview projection fitted on %s (rms error %.3f)", video_vae.models.name, residual)
    _PROJECTIONS[video_vae.models] = projection
    return projection


def project(latent: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` latent frame -> ``[H, W, 3]`` RGB in [0, 1]."""
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), projection[:-1]) + projection[-1]
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def _preview_settings() -> int | None:
    """ComfyUI's preview size when previews are on; None headless or when the preview method is "none"."""
    args = comfy_env.cli_args()
    if args is None or not comfy_env.inside_comfyui():
        return None
    method = getattr(args.preview_method, "value", args.preview_method)
    if method in (None, "none"):
        return None
    return int(getattr(args, "preview_size", 512) or 512)


class LatentPreviewer:
    """A sampling callback ``(step, total, x0_video)`` that shows the middle frame of item 0 on the node."""

    wants_preview = True  # sampler workers (``worker_pool``) send it the estimate of item 0 after each step

    def __init__(self, projection: torch.Tensor, max_size: int = 512):
        from PIL import Image  # ComfyUI ships Pillow; headless previews are never built

        self._image = Image
        self.projection = projection
        self.max_size = max_size
        self.bar: ProgressBar | None = None

    def pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """``[H', W', 3]`` uint8 colours of the middle latent frame of batch item 0."""
        frame = latent[0, :, latent.shape[2] // 2]
        return (project(frame, self.projection) * 255).round().to(torch.uint8)

    def image(self, latent: torch.Tensor):
        image = self._image.fromarray(self.pixels(latent).numpy())
        factor = max(1, self.max_size // max(image.size))
        return image.resize((image.size[0] * factor, image.size[1] * factor), self._image.BILINEAR)

    def __call__(self, step: int, total: int, latent: torch.Tensor) -> None:
        if latent.ndim != 5 or latent.shape[1] != self.projection.shape[0] - 1:
            return  # audio-only runs have nothing to show
        if self.bar is None:
            self.bar = ProgressBar(total)
        self.bar.update_absolute(step, total, ("JPEG", self.image(latent), self.max_size))


def previewer_for(video_vae, engine=None) -> LatentPreviewer | None:
    """A previewer when ComfyUI wants previews and a video VAE is known (fitted now, before the sampler's
    stage: engine stages do not nest); None otherwise."""
    max_size = _preview_settings()
    if max_size is None or video_vae is None:
        return None
    if sys.modules.get("PIL") is None and importlib.util.find_spec("PIL") is None:
        return None
    try:
        return LatentPreviewer(fit_projection(video_vae, engine), max_size)
    except Exception as exc:  # noqa: BLE001 - a preview must never fail a run
        log.warning("ltx2_nodes: no sampling preview (%s: %s)", type(exc).__name__, exc)
        return None
