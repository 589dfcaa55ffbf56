"""What the sampler works on: latent grids and token-level latent states.

The sampler runs in the DiT's token layout. A ``LatentState`` holds, per modality, the current
noisy tokens, the clean tokens conditioned positions are pinned to, the per-token denoise mask
(1 = generate, 0 = keep clean; the model sees timestep ``mask * sigma``) and the RoPE positions.
Conditioning tokens that are not part of the output grid (keyframes) are appended after the grid
tokens and dropped when the result is read back with ``to_grid``; generated keyframe slots (LTX-2.5)
are appended too, located by ``slots`` and read back with ``slot_latents``.

Video states also carry ``keyframes``, the per-token marker of tokens that encode a single pixel
frame (the first latent frame of the causal VAE, always; generated keyframe slots): LTX-2.5 adds its
keyframe embedding there, earlier models ignore it (reference ``LatentState.keyframes_mask``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.patchify import (audio_positions, patchify_audio, patchify_video, unpatchify_audio, unpatchify_video,
                              video_positions)
from ..model.shapes import (AudioTiming, VideoScale, audio_latent_frames, check_video_size, pixel_frames,
                            video_latent_size)


@dataclass(frozen=True)
class VideoGrid:
    """A video latent grid ``[C, F, H, W]`` and how it maps to pixels and seconds.

    ``start``: the grid's first latent frame in the clip's timeline (0; an extend window of a longer clip
    starts later): positions are those the tokens have in one run over the whole clip."""

    channels: int
    frames: int
    height: int
    width: int
    fps: float
    scale: VideoScale = VideoScale()
    start: int = 0

    @property
    def tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.channels, self.frames, self.height, self.width)

    @property
    def pixel_frames(self) -> int:
        return pixel_frames(self.frames, self.scale)

    @property
    def first_pixel_frame(self) -> int:
        """The clip pixel frame the grid starts at: 0, or ``start * 8 - 7`` for a window (the causal VAE's first
        latent frame is one pixel frame, every later one 8)."""
        return 0 if self.start == 0 else pixel_frames(self.start, self.scale)

    @classmethod
    def from_pixels(cls, channels: int, frames: int, height: int, width: int, fps: float,
                    scale: VideoScale = VideoScale()) -> "VideoGrid":
        """The latent grid of a ``frames x height x width`` video (the size rules of ``model.shapes``)."""
        check_video_size(frames, height, width, scale)
        if fps <= 0:
            raise InputError(f"fps must be positive, got {fps}.")
        return cls(channels, *video_latent_size(frames, height, width, scale), float(fps), scale)

    @classmethod
    def of(cls, latent: torch.Tensor, fps: float, scale: VideoScale = VideoScale(), start: int = 0) -> "VideoGrid":
        if latent.ndim != 5:
            raise InputError(f"video latent must be [B, C, F, H, W], got shape {list(latent.shape)}.")
        return cls(*latent.shape[1:], fps=float(fps), scale=scale, start=int(start))

    def patchify(self, latent: torch.Tensor) -> torch.Tensor:
        return patchify_video(latent)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        return unpatchify_video(tokens, self.frames, self.height, self.width)

    def positions(self, batch: int, device=None) -> torch.Tensor:
        return video_positions(batch, self.frames, self.height, self.width, self.fps, self.scale,
                               first_frame=self.start, device=device)

    def upscaled(self, factor: int = 2) -> "VideoGrid":
        return dataclasses.replace(self, height=self.height * factor, width=self.width * factor)


@dataclass(frozen=True)
class AudioGrid:
    """An audio latent grid ``[C, T, M]`` (T latent frames of ``C`` channels x ``M`` mel bins); ``start``: its
    first latent's index in the clip's timeline (as ``VideoGrid.start``)."""

    channels: int
    frames: int
    mel_bins: int
    timing: AudioTiming = AudioTiming()
    start: int = 0

    @property
    def tokens(self) -> int:
        return self.frames

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.frames, self.mel_bins)

    @classmethod
    def for_video(cls, channels: int, mel_bins: int, pixel_frames: int, fps: float,
                  timing: AudioTiming = AudioTiming()) -> "AudioGrid":
        """The audio grid covering ``pixel_frames / fps`` seconds (``round`` as the reference does)."""
        return cls(channels, audio_latent_frames(pixel_frames, fps, timing), mel_bins, timing)

    @classmethod
    def of(cls, latent: torch.Tensor, timing: AudioTiming = AudioTiming(), start: int = 0) -> "AudioGrid":
        if latent.ndim != 4:
            raise InputError(f"audio latent must be [B, C, T, M], got shape {list(latent.shape)}.")
        return cls(*latent.shape[1:], timing=timing, start=int(start))

    def patchify(self, latent: torch.Tensor) -> torch.Tensor:
        return patchify_audio(latent)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        return unpatchify_audio(tokens, self.channels, self.mel_bins)

    def positions(self, batch: int, device=None) -> torch.Tensor:
        return audio_positions(batch, self.frames, self.timing, start=self.start, device=device)


Grid = VideoGrid | AudioGrid


@dataclass(frozen=True)
class SlotLayout:
    """Where generated keyframe slots sit in the token sequence: one latent frame of tokens per slot, from
    ``first_token`` on, in the order of ``pixel_frames``."""

    pixel_frames: tuple[int, ...]
    first_token: int
    tokens_per_slot: int

    @property
    def token_slice(self) -> slice:
        return slice(self.first_token, self.first_token + len(self.pixel_frames) * self.tokens_per_slot)


@dataclass
class LatentState:
    """One modality in token layout: ``latent``/``clean`` ``[B, T, C]``, ``mask`` ``[B, T, 1]`` float32,
    ``positions`` ``[B, P, T, 2]``. Tokens past ``grid.tokens`` are appended conditioning tokens or generated
    keyframe slots (``slots``). ``keyframes``: ``[B, T, 1]`` single-pixel-frame marker (video; None for audio).
    ``attention``: ``[B, T, T]`` self-attention weights in [0, 1] (``sampling.tokens``; None = full attention)."""

    latent: torch.Tensor
    clean: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    grid: VideoGrid | AudioGrid
    keyframes: torch.Tensor | None = None
    slots: SlotLayout | None = None
    attention: torch.Tensor | None = None

    def replace(self, **changes) -> "LatentState":
        return dataclasses.replace(self, **changes)

    @property
    def batch(self) -> int:
        return self.latent.shape[0]

    def timesteps(self, sigma: torch.Tensor) -> torch.Tensor:
        """Per-token noise level the model is told: ``mask * sigma``."""
        return self.mask * sigma

    def sample_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Per-sample noise level ``[B]`` the model is told (the reference's ``Modality.sigma``).

        ``sigma``, or 0 for a sample of a frozen stream. The reference marks a stream frozen
        explicitly (``ModalitySpec.frozen``, e.g. the given audio of audio-to-video, whose denoise
        mask it zeroes); here a sample is frozen when its whole denoise mask is 0, which is how this
        package keeps a stream (``initial_state(..., mask=zeros)``).
        """
        generating = (self.mask.reshape(self.batch, -1) > 0).any(dim=1)
        return torch.where(generating, sigma.to(self.mask.dtype), 0.0)

    def to_grid(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` (default: the current latent) without appended tokens, back in grid layout."""
        tokens = self.latent if tokens is None else tokens
        return self.grid.unpatchify(tokens[:, : self.grid.tokens])

    def slot_latents(self) -> torch.Tensor | None:
        """The generated keyframe slots as ``[B, C, K, H, W]`` (one latent frame per slot; each is a standalone
        one-frame clip, never decode them as one K-frame video), None without slots."""
        if self.slots is None:
            return None
        tokens = self.latent[:, self.slots.token_slice]
        grid = self.grid
        return torch.stack([unpatchify_video(chunk, 1, grid.height, grid.width).squeeze(2)
                            for chunk in tokens.split(self.slots.tokens_per_slot, dim=1)], dim=2)


def initial_state(grid: VideoGrid | AudioGrid, batch: int, latent: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None, device=None, dtype: torch.dtype = torch.float32) -> LatentState:
    """State before noising: ``latent`` (default zeros) with a grid-shaped denoise ``mask`` (default ones).

    ``mask`` is ``[B|1, 1, F, H, W]`` for video or ``[B|1, 1, T, 1]`` for audio, values in [0, 1]
    (0 keeps that latent cell exactly as given, e.g. the audio of an audio-to-video run).
    """
    kind = "video" if isinstance(grid, VideoGrid) else "audio"
    full = (batch, *grid.shape)
    if latent is None:
        latent = torch.zeros(full, device=device, dtype=dtype)
    elif tuple(latent.shape) != full:
        raise InputError(f"{kind} latent has shape {list(latent.shape)}, expected {list(full)}.")
    latent = latent.to(device=device, dtype=dtype)
    mask_shape = (batch, 1, *grid.shape[1:]) if kind == "video" else (batch, 1, grid.frames, 1)
    if mask is None:
        mask = torch.ones(mask_shape, device=device, dtype=torch.float32)
    else:
        if mask.ndim != len(mask_shape) or any(m not in (1, s) for m, s in zip(mask.shape, mask_shape)):
            raise InputError(f"{kind} mask has shape {list(mask.shape)}, expected {list(mask_shape)} "
                             "(1 = generate, 0 = keep the given latent).")
        if mask.numel() and (mask.min() < 0 or mask.max() > 1):
            raise InputError(f"{kind} mask values must lie in [0, 1], got [{mask.min():.3g}, {mask.max():.3g}].")
        mask = mask.to(device=device, dtype=torch.float32).expand(mask_shape).contiguous()
    tokens = grid.patchify(latent).contiguous()
    positions = grid.positions(batch, device=device)
    keyframes = None
    if kind == "video":
        positions = positions.to(dtype).float()  # the reference keeps video positions in the latent dtype
        # the causal VAE's first latent frame encodes one pixel frame: always marked, as the reference does
        # (a window starting later in the clip has no such frame)
        keyframes = torch.zeros(batch, grid.tokens, 1, device=device)
        if grid.start == 0:
            keyframes[:, : grid.height * grid.width] = 1.0
    return LatentState(latent=tokens, clean=tokens.clone(), mask=grid.patchify(mask).contiguous(),
                       positions=positions, grid=grid, keyframes=keyframes)


def add_noise(state: LatentState, noise: torch.Tensor, scale: float) -> LatentState:
    """``noise * (mask*scale) + latent * (1 - mask*scale)``: fresh noise where the mask says generate."""
    if tuple(noise.shape) != tuple(state.latent.shape):
        raise ValueError(f"noise shape {list(noise.shape)} != latent token shape {list(state.latent.shape)}")
    scaled = state.mask * scale
    noise = noise.to(device=state.latent.device, dtype=state.latent.dtype)
    return state.replace(latent=(noise * scaled + state.latent * (1 - scaled)).to(state.latent.dtype))
