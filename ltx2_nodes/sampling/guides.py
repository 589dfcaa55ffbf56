"""IC-LoRA reference-video guides: a control video (depth, pose, edges, any reference) appended as clean tokens.

Reference: ``ltx_core/conditioning/types/reference_video_cond.py`` (``VideoConditionByReferenceLatent``),
``attention_strength_wrapper.py`` and ``ltx_pipelines/iclora_utils.py``. An IC-LoRA is trained on sequences of
reference tokens followed by target tokens; at inference the encoded reference video is appended after the video
grid (denoise mask ``1 - strength``: kept clean at strength 1) and dropped from the output like every appended
token (``LatentState.to_grid``), so guide frames never reach the decoded video.

* ``downscale_factor`` (the LoRA's ``reference_downscale_factor`` metadata): the reference is encoded at
  ``1/factor`` of the video's pixel size and its token positions' height and width are multiplied by the factor,
  so it covers the same area as the target.
* ``temporal_scale_factor`` (``reference_temporal_scale_factor``): a reference at ``fps / S``; its time positions
  are spaced by ``S / fps`` and shifted so its last token ends with the target's last, the causal first token
  clamped to start at 0.
* ``attention`` (``conditioning_attention_strength``, or per-token weights ``[B|1, M]``): how much the grid and
  the reference tokens attend each other (``sampling.tokens``; 1 = no mask, as the reference passes none).

Deviation (shared with the keyframe guides): the appended noisy tokens start as the reference latent, not zeros;
noising mixes ``latent * (1 - mask * sigma)`` where the reference mixes ``clean * (1 - mask)``. The two agree
whenever the guide is kept clean (strength 1) or noised from sigma 1 (every stage-1 run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.patchify import patchify_video, video_positions
from ..model.shapes import VideoScale, reference_frames
from .conditioning import _video_condition
from .state import LatentState
from .tokens import append_tokens


@dataclass
class ReferenceVideoGuide:
    """Append the reference video latent ``[B|1, C, F_r, H_r, W_r]`` as guide tokens (module docstring)."""

    latent: torch.Tensor
    downscale_factor: int = 1
    temporal_scale_factor: int = 1
    strength: float = 1.0
    attention: float | torch.Tensor = 1.0

    @property
    def tokens(self) -> int:
        """How many tokens this guide appends."""
        return self.latent.shape[2] * self.latent.shape[3] * self.latent.shape[4]

    def attention_weights(self) -> float | torch.Tensor | None:
        """The weights the tokens get (None: full attention, no mask, as the reference at strength 1)."""
        if isinstance(self.attention, torch.Tensor):
            return self.attention
        if not 0.0 <= float(self.attention) <= 1.0:
            raise InputError(f"conditioning attention strength must be in [0, 1], got {self.attention}.")
        return None if float(self.attention) >= 1.0 else float(self.attention)

    def positions(self, state: LatentState) -> torch.Tensor:
        """Token bounds ``[B, 3, M, 2]`` in the target's frame (reference ``VideoConditionByReferenceLatent``)."""
        grid, (frames, height, width) = state.grid, self.latent.shape[2:]
        positions = video_positions(state.batch, frames, height, width, grid.fps / self.temporal_scale_factor,
                                    grid.scale, device=state.positions.device)
        if self.temporal_scale_factor != 1:
            first_end = state.positions[:, 0, 0:1, 1:2].float()  # 1 / fps: the causal first token's end
            positions[:, 0] = (positions[:, 0] - (self.temporal_scale_factor - 1) * first_end).clamp(min=0)
        positions[:, 1:] *= self.downscale_factor
        return positions

    def apply(self, state: LatentState) -> LatentState:
        grid, latent = _video_condition(self, state, "reference video")
        for name in ("downscale_factor", "temporal_scale_factor"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if latent.shape[1] != grid.channels:
            raise InputError(f"the reference video latent has {latent.shape[1]} channels, the video latent "
                             f"{grid.channels}; encode the control video with the same model's video VAE.")
        if (latent.shape[3] * self.downscale_factor, latent.shape[4] * self.downscale_factor) != (grid.height,
                                                                                                   grid.width):
            raise InputError(f"the reference video latent is {latent.shape[3]} x {latent.shape[4]} (height x width); "
                             f"with downscale factor {self.downscale_factor} a {grid.height} x {grid.width} video "
                             f"latent needs {grid.height // self.downscale_factor} x "
                             f"{grid.width // self.downscale_factor}. Encode the control video for the size this "
                             "sampler runs at (the IC-LoRA Guide node right before it does).")
        if grid.start != 0:
            raise InputError("a reference-video guide conditions a clip from its first frame; this latent is a "
                             "window of a longer clip (extend). Guide the whole clip instead.")
        tokens = patchify_video(latent).to(state.latent.dtype)
        mask = torch.full((*tokens.shape[:2], 1), 1.0 - self.strength, device=state.mask.device)
        return append_tokens(state, tokens, tokens, mask, self.positions(state), marked=False,
                             attention=self.attention_weights())


def mask_token_weights(mask: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """A pixel-space attention mask ``[B|1, F_p, H_p, W_p]`` in [0, 1] as per-token weights ``[B|1, frames * height *
    width]`` of a ``frames x height x width`` reference latent (reference ``downsample_mask_video_to_latent``): each
    frame area-averaged to the latent grid, pixel frame 0 is latent frame 0 (the causal VAE's), every later latent
    frame the mean of its ``(F_p - 1) / (frames - 1)`` pixel frames."""
    if mask.ndim != 4:
        raise InputError(f"the attention mask must be [B, F, H, W] (a MASK per frame), got {list(mask.shape)}.")
    batch, pixel_frames = mask.shape[:2]
    cells = F.interpolate(mask.float().reshape(-1, 1, *mask.shape[2:]), size=(height, width), mode="area")
    cells = cells.reshape(batch, pixel_frames, height, width)
    if pixel_frames > 1 and frames > 1:
        if (pixel_frames - 1) % (frames - 1):
            raise InputError(f"an attention mask of {pixel_frames} frames does not map onto {frames} latent frames "
                             f"((frames - 1) must divide by {frames - 1}); give the mask the control video's frames.")
        step = (pixel_frames - 1) // (frames - 1)
        rest = cells[:, 1:].reshape(batch, frames - 1, step, height, width).mean(dim=2)
        cells = torch.cat([cells[:, :1], rest], dim=1)
    else:
        cells = cells[:, :1]
    return cells.reshape(batch, -1)


@dataclass
class ControlVideo:
    """An IC-LoRA control video to guide a run's first stage with (``generate``): IMAGE ``frames`` ``[F, H, W, 3]``,
    the guide's ``strength`` and its ``attention`` strength (``conditioning_attention_strength``); ``stage2``: guide
    the refinement stage too, encoded again at its size (Dub-It: the clip guides both stages; the IC-LoRA pipeline
    refines without the guide)."""

    frames: torch.Tensor
    strength: float = 1.0
    attention: float = 1.0
    stage2: bool = False


def reference_scale_factors(loras: Sequence) -> tuple[int, int]:
    """The ``(downscale, temporal)`` factors of the reference video for these ``LoRA``s (``loading.lora``; 1 where
    none says), refusing two LoRAs trained with different ones (as the reference pipeline)."""
    found = {"reference_downscale_factor": 1, "reference_temporal_scale_factor": 1}
    for lora in loras:
        for key in found:
            value = getattr(lora, key, 1)
            if value != 1 and found[key] not in (1, value):
                raise InputError(f"the applied LoRAs disagree on {key}: {found[key]} and {value} ({lora.name}); "
                                 "IC-LoRAs trained with different reference sizes cannot guide one run together. "
                                 "Apply only one of them.")
            found[key] = value if value != 1 else found[key]
    return found["reference_downscale_factor"], found["reference_temporal_scale_factor"]


def guide_pixel_size(height: int, width: int, downscale_factor: int, scale: VideoScale = VideoScale()
                     ) -> tuple[int, int]:
    """The pixel size a control video is encoded at for a ``height x width`` video: ``1/factor`` of it (both sides
    must divide, as the reference requires, into whole latent cells)."""
    size = (height // downscale_factor, width // downscale_factor)
    if height % downscale_factor or width % downscale_factor or size[0] % scale.height or size[1] % scale.width:
        raise InputError(f"the video size {width}x{height} divided by the IC-LoRA's reference downscale factor "
                         f"{downscale_factor} is not a whole number of latent cells ({scale.width}x{scale.height} "
                         f"pixels); choose a width and height that are multiples of "
                         f"{scale.height * downscale_factor}.")
    return size


def control_frames(images: torch.Tensor, pixel_frames: int, temporal_scale_factor: int = 1,
                   scale: VideoScale = VideoScale()) -> torch.Tensor:
    """The control video's frames the reference encodes (reference ``iclora_utils``): IMAGE ``[F, H, W, 3]`` (or its
    MASK ``[F, H, W]``), at most the video's ``pixel_frames``, then frame 0 and every ``temporal_scale_factor``-th
    after it, cut to the longest ``1 + 8k`` (the VAE encoder crops the same way)."""
    if not (images.ndim == 3 or images.ndim == 4 and images.shape[-1] in (3, 4)) or images.shape[0] == 0:
        raise InputError(f"the control video must be IMAGE frames [F, H, W, 3] (its mask: MASK [F, H, W]), got "
                         f"{list(images.shape)}.")
    frames = images[:pixel_frames, ..., :3] if images.ndim == 4 else images[:pixel_frames]
    count = reference_frames(frames.shape[0], temporal_scale_factor, scale)
    return frames[[0, *range(1, frames.shape[0], temporal_scale_factor)]][:count]
