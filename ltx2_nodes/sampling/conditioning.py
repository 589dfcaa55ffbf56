"""Conditioning a video on given latents (images, keyframes) and images -> latents.

Two mechanisms, as in the reference (``ltx_core/conditioning/types``):

* ``LatentAtIndex`` overwrites the grid tokens of latent frames ``latent_index ...`` with the given
  latent (in both the noisy and the clean state) and sets their denoise mask to ``1 - strength``;
  with strength 1 they are never noised and stay exactly as given (image-to-video, first frame).
* ``KeyframeAtFrame`` appends the given latent's tokens after the grid with their own positions,
  shifted to start at pixel frame ``frame_index`` (the causal first-frame fix only at frame 0),
  mask ``1 - strength``; the model attends to them as guides; they are dropped from the output.
  Given content is never keyframe-marked (reference ``extend_keyframes_mask(marked=False)``).
* ``GeneratedKeyframeSlots`` (LTX-2.5) appends one latent frame of empty tokens per requested pixel
  frame, positioned on that single pixel frame and keyframe-marked; the model generates them with
  the video and they come back separately (``LatentState.slot_latents``), never in the video.

Audio-to-video / video-to-audio need no item: give that modality's latent with a zero mask
(``initial_state(..., mask=zeros)``) and it is kept clean while the other one is generated.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.patchify import keyframe_slot_positions, patchify_video, video_positions
from .state import LatentState, SlotLayout, VideoGrid
from .tokens import append_tokens

# The reference passes conditioning images through one H.264 frame at this CRF before encoding, so
# they carry the compression look of the training videos (0 = skip).
DEFAULT_IMAGE_CRF = 33
# Long side (pixels) above which a conditioning image is scaled down before that compression (see
# ``compress_images``): keeps the codec's work bounded by this size instead of the input's.
CRF_MAX_SIDE = 4096


class ConditioningItem(Protocol):
    def apply(self, state: LatentState) -> LatentState:
        """Return the video state with the conditioning applied (appended tokens go at the end)."""


def _video_condition(item, state: LatentState, what: str) -> tuple[VideoGrid, torch.Tensor]:
    """The video grid of ``state`` and ``item.latent`` expanded to its batch, after the checks every video
    conditioning item shares (video state, strength in [0, 1], a 5-D latent of batch 1 or the state's)."""
    if not isinstance(state.grid, VideoGrid):
        raise InputError(f"{type(item).__name__} conditions video latents; it was applied to audio.")
    if not 0.0 <= item.strength <= 1.0:
        raise InputError(f"conditioning strength must be in [0, 1] (1 = keep exactly), got {item.strength}.")
    latent, batch = item.latent, state.batch
    if latent.ndim != 5:
        raise InputError(f"{what} latent must be [B, C, F, H, W], got shape {list(latent.shape)}.")
    if latent.shape[0] not in (1, batch):
        raise InputError(f"{what} latent has batch {latent.shape[0]}; the generation has batch {batch} "
                         "(give one latent shared by all items, or one per item).")
    return state.grid, latent.expand(batch, *latent.shape[1:])


@dataclass
class LatentAtIndex:
    """Replace latent frames ``latent_index ... latent_index + F_c - 1`` by ``latent`` ``[B|1, C, F_c, H, W]``."""

    latent: torch.Tensor
    latent_index: int = 0
    strength: float = 1.0

    def apply(self, state: LatentState) -> LatentState:
        grid, latent = _video_condition(self, state, "conditioning")
        _, channels, frames, height, width = latent.shape
        if (channels, height, width) != (grid.channels, grid.height, grid.width):
            raise InputError(
                f"conditioning latent is {channels} x {height} x {width} (channels x height x width) but the video "
                f"latent is {grid.channels} x {grid.height} x {grid.width}; encode the image at the generation size "
                f"({grid.width * grid.scale.width}x{grid.height * grid.scale.height}).")
        if not 0 <= self.latent_index <= grid.frames - frames:
            raise InputError(f"latent index {self.latent_index} with {frames} conditioning frame(s) does not fit a "
                             f"video of {grid.frames} latent frames (valid: 0..{grid.frames - frames}).")
        tokens = patchify_video(latent).to(state.latent.dtype)
        start = self.latent_index * grid.height * grid.width
        stop = start + tokens.shape[1]
        latent_tokens, clean, mask = state.latent.clone(), state.clean.clone(), state.mask.clone()
        latent_tokens[:, start:stop] = tokens
        clean[:, start:stop] = tokens
        mask[:, start:stop] = 1.0 - self.strength
        return state.replace(latent=latent_tokens, clean=clean, mask=mask)


@dataclass
class KeyframeAtFrame:
    """Append ``latent`` ``[B|1, C, F_k, H_k, W_k]`` as guide tokens placed at pixel frame ``frame_index``."""

    latent: torch.Tensor
    frame_index: int
    strength: float = 1.0

    def apply(self, state: LatentState) -> LatentState:
        grid, latent = _video_condition(self, state, "keyframe")
        batch, channels, frames, height, width = latent.shape
        if channels != grid.channels:
            raise InputError(f"keyframe latent has {channels} channels, the video latent {grid.channels}.")
        if not 0 <= self.frame_index < grid.pixel_frames:
            raise InputError(f"keyframe frame index {self.frame_index} is outside the video "
                             f"(0..{grid.pixel_frames - 1}).")
        tokens = patchify_video(latent).to(state.latent.dtype)
        positions = video_positions(batch, frames, height, width, grid.fps, grid.scale,
                                    frame_offset=grid.first_pixel_frame + self.frame_index,
                                    device=state.positions.device)
        mask = torch.full((*tokens.shape[:2], 1), 1.0 - self.strength, device=state.mask.device)
        return append_tokens(state, tokens, tokens, mask, positions, marked=False)


def keyframe_slot_frames(request: int | tuple[int, ...] | list[int], pixel_frames: int) -> tuple[int, ...]:
    """Pixel frames of the generated keyframe slots a request asks for (reference ``resolve_generated_keyframes``):
    a count gives that many evenly spaced interior frames (``round(linspace(0, F-1, n+2))[1:-1]``), a sequence
    the frames themselves (sorted, duplicates dropped); 0 / empty is none."""
    if isinstance(request, int):
        if request < 0:
            raise InputError(f"the number of generated keyframes must be >= 0, got {request}.")
        if request == 0:
            return ()
        if pixel_frames < request + 2:
            raise InputError(f"{request} generated keyframe(s) need a video of at least {request + 2} frames (they "
                             f"sit strictly between the first and the last); this one has {pixel_frames}.")
        spaced = torch.linspace(0, pixel_frames - 1, request + 2).round().to(torch.int64).tolist()
        return tuple(spaced[1:-1])
    frames = tuple(sorted({int(f) for f in request}))
    if frames and (frames[0] < 0 or frames[-1] >= pixel_frames):
        raise InputError(f"generated keyframe frames must lie in 0..{pixel_frames - 1} (the video's frames), got "
                         f"{list(request)}.")
    return frames


@dataclass
class GeneratedKeyframeSlots:
    """Append empty, keyframe-marked slots at pixel frames ``pixel_frames`` (strictly increasing), generated with
    the video (denoise mask 1, zero latent before noising; reference ``VideoGeneratedKeyframeSlots``). Needs an
    LTX-2.5 transformer (``use_keyframes_abs_pos_embedding``); apply it once, after the other items."""

    pixel_frames: tuple[int, ...]

    def apply(self, state: LatentState) -> LatentState:
        if not isinstance(state.grid, VideoGrid):
            raise InputError("generated keyframe slots belong to the video; they were applied to audio.")
        grid, frames = state.grid, tuple(int(f) for f in self.pixel_frames)
        if not frames or any(b <= a for a, b in zip(frames, frames[1:])) or frames[0] < 0:
            raise InputError(f"generated keyframe frames must be non-empty and strictly increasing, got {frames}.")
        if frames[-1] >= grid.pixel_frames:
            raise InputError(f"generated keyframe at pixel frame {frames[-1]} is outside the video's "
                             f"{grid.pixel_frames} frames.")
        if state.slots is not None:
            raise InputError("generated keyframe slots were already added to this generation; request them once.")
        per_slot = grid.height * grid.width
        batch, count = state.batch, per_slot * len(frames)
        device = state.latent.device
        zeros = torch.zeros(batch, count, state.latent.shape[2], device=device, dtype=state.latent.dtype)
        positions = torch.cat([keyframe_slot_positions(batch, f, grid.height, grid.width, grid.fps, grid.scale,
                                                       device=device) for f in frames], dim=2)
        mask = torch.ones(batch, count, 1, device=state.mask.device, dtype=state.mask.dtype)
        layout = SlotLayout(frames, state.latent.shape[1], per_slot)
        return append_tokens(state, zeros, zeros.clone(), mask, positions, marked=True).replace(slots=layout)


def frame_condition(latent: torch.Tensor, frame_index: int, strength: float = 1.0) -> ConditioningItem:
    """The reference's choice for an image at a pixel frame: replace latent frame 0 for frame 0,
    otherwise guide tokens at that frame (a latent frame spans 8 pixel frames, so replacing one
    would pin 8 frames to a single image)."""
    if frame_index == 0:
        return LatentAtIndex(latent, 0, strength)
    return KeyframeAtFrame(latent, frame_index, strength)


def apply_conditionings(state: LatentState, items) -> LatentState:
    for item in items:
        state = item.apply(state)
    return state


# ------------------------------------------------------------------------------------------------
# Images -> latents


class VideoEncoder(Protocol):
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, F, H, W]`` in [-1, 1] (F = 1 + 8k) -> normalized latent ``[B, C, F', H', W']``."""


def resize_and_center_crop(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, H, W, 3]`` -> ``[B, 3, height, width]``: scale to cover (bilinear), then crop the centre.

    The reference rule: scale = max(height/H, width/W), new size = ceil(side * scale) (ceil so
    rounding never leaves the image a pixel short), crop offsets (new - target) // 2.
    """
    src_h, src_w = images.shape[1:3]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = math.ceil(src_h * scale), math.ceil(src_w * scale)
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[:, :, top:top + height, left:left + width]


def h264_roundtrip(image: torch.Tensor, crf: float) -> torch.Tensor:
    """One ``[H, W, 3]`` image in [0, 1] through a single-frame libx264 encode/decode at ``crf``
    (as uint8 RGB, cropped to even sides as the codec needs), back in [0, 1]."""
    import av  # a hard dependency, imported here so the sampling package loads without it

    pixels = (image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2].clamp(0, 1) * 255).round()
    array = pixels.to(torch.uint8).cpu().numpy()
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        stream.height, stream.width = array.shape[:2]
        container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")))
        container.mux(stream.encode())
    with av.open(io.BytesIO(buffer.getvalue())) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return torch.from_numpy(decoded).to(image.dtype) / 255.0


def _image_batch(images: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, 3|4]`` or ``[H, W, 3|4]`` (ComfyUI IMAGE) -> ``[B, H, W, 3]`` float, refusing other shapes."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise InputError(f"image must be [B, H, W, 3] (ComfyUI IMAGE), got shape {list(images.shape)}.")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise InputError(f"the image batch is empty (shape {list(images.shape)}); connect an image with at least "
                         "one frame.")
    return images[..., :3].float()


def compress_images(images: torch.Tensor, crf: float = DEFAULT_IMAGE_CRF) -> torch.Tensor:
    """The reference's H.264 look: each image ``[B, H, W, 3]`` (or ``[H, W, 3]``) in [0, 1] through one
    libx264 frame at ``crf`` (0: unchanged), at the image's own size, before any resize to the video
    size -- as ``ltx_pipelines``' ``load_image_and_preprocess`` does, so the result is the same for every
    stage of a run and :class:`ImageCondition` computes it once.

    Deviation: an image larger than :data:`CRF_MAX_SIDE` pixels on its long side is first scaled down
    (bilinear with antialiasing, aspect kept) to that long side; the reference compresses it at full size,
    which for a 12000 x 12000 picture takes gigabytes of RAM and seconds per stage, for a video a fraction
    of that size. Images up to that size (a 4032 x 3024 photo is one) get exactly the reference's pixels.
    """
    images = _image_batch(images)
    if not crf:
        return images
    if min(images.shape[1:3]) < 2:
        raise InputError(f"image of {images.shape[2]}x{images.shape[1]} pixels is too small to condition on.")
    height, width = images.shape[1:3]
    if max(height, width) > CRF_MAX_SIDE:
        scale = CRF_MAX_SIDE / max(height, width)
        size = (max(2, round(height * scale)), max(2, round(width * scale)))
        images = F.interpolate(images.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False,
                               antialias=True).permute(0, 2, 3, 1)
    return torch.stack([h264_roundtrip(image, crf) for image in images])


def encode_images(encoder: VideoEncoder | Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  height: int, width: int, crf: float = DEFAULT_IMAGE_CRF) -> torch.Tensor:
    """Images ``[B, H, W, 3]`` (or ``[H, W, 3]``) in [0, 1] (ComfyUI IMAGE) -> latents ``[B, C, 1, H', W']``.

    As the reference: each image goes through an H.264 frame at ``crf`` (:func:`compress_images`; 0 skips
    it, e.g. for images compressed already), is resized to cover ``width x height`` and centre-cropped,
    mapped to [-1, 1] and encoded as a one-frame video; item ``b`` conditions batch item ``b``.
    """
    pixels = resize_and_center_crop(compress_images(images, crf), height, width) * 2.0 - 1.0
    encode = getattr(encoder, "encode", encoder)
    with torch.no_grad():
        return encode(pixels.unsqueeze(2))


@dataclass
class ImageCondition:
    """An image (``[B|1, H, W, 3]`` in [0, 1]) to pin at pixel frame ``frame_index`` with ``strength``
    (``crf``: H.264 pre-compression, 0 = off)."""

    image: torch.Tensor
    frame_index: int = 0
    strength: float = 1.0
    crf: float = DEFAULT_IMAGE_CRF
    _compressed: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def compressed(self) -> torch.Tensor:
        """The image after :func:`compress_images`, computed on first use and shared by every stage (the
        result does not depend on the stage's size); encode it with ``crf=0``."""
        if self._compressed is None:
            self._compressed = compress_images(self.image, self.crf)
        return self._compressed

