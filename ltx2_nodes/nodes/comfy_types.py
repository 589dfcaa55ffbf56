"""ComfyUI data types of the nodes and their conversion to the pipeline's objects.

LATENT is ComfyUI core's LTX-2 layout, so core's ``LTXVSeparateAVLatent`` / ``LTXVConcatAVLatent`` /
``LTXVAudioVAEDecode`` accept our latents and we accept theirs:

* ``samples``: ``NestedTensor([video [B,C,F,H,W], audio [B,C,T,M]])`` for audio+video, else the one
  tensor (5-D video, 4-D audio); ``noise_mask`` nested the same way (1 = generate, 0 = keep; video
  ``[B,1,F,H,W]``, audio like its samples, as core's concat node makes them);
* ``sample_rate`` (the audio VAE's mel rate, 16000) when audio is present, ``type: "audio"`` for
  audio-only latents (core's audio latent keys);
* our own key ``ltx2``: ``fps``, ``frames`` (pixel frames), the image conditions to (re-)encode at the
  sampler's resolution and where the last sampler left its seeded noise stream (so a stage-2 sampler with
  the same seed continues the stream, as the reference two-stage pipeline does), the generated keyframe slots
  requested for the next sampler and those a sampler generated (LTX-2.5), the Dub-It reference audio latent the
  samplers append to the audio stream. Core nodes copy unknown keys.

Inside ComfyUI the nested tensor is ``comfy.nested_tensor.NestedTensor``; headless an equivalent
minimal class (same ``tensors`` / ``is_nested`` / ``unbind()``) stands in. Reading accepts either.

CONDITIONING is core's LTX-2 form ``[[video_context ‖ audio_context, {"attention_mask": mask}]]``
(contexts concatenated on the last axis; ours also records ``ltx2_video_width``, where the video
context ends, since LTX-2.3's audio context is narrower than its video one), IMAGE ``[N, H, W, 3]``
float 0..1 on the CPU, AUDIO ``{"waveform": [B, C, T], "sample_rate"}``. VIDEO is ComfyUI's
``VideoFromFile`` of the saved MP4 inside ComfyUI and :class:`SavedVideo` headless.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from .. import comfy_env
from ..errors import InputError
from ..model.connector import TextConditioning
from ..model.dit_tiling import RefineTiles
from ..model import shapes
from ..model.shapes import AudioTiming, VideoScale
from ..latents import AVLatents
from ..sampling.conditioning import ImageCondition
from ..sampling.noise import NoiseRecord

AUDIO_LATENT_RATE = 16000  # core's audio latent "sample_rate": the audio VAE's mel rate


class NestedTensor:
    """Headless stand-in for ``comfy.nested_tensor.NestedTensor`` (the parts our nodes and core's LTX-2
    nodes use)."""

    def __init__(self, tensors):
        self.tensors = list(tensors)
        self.is_nested = True

    def unbind(self):
        return self.tensors

    @property
    def shape(self):
        return self.tensors[0].shape

    @property
    def device(self):
        return self.tensors[0].device

    @property
    def dtype(self):
        return self.tensors[0].dtype

    def to(self, *args, **kwargs) -> "NestedTensor":
        return NestedTensor([t.to(*args, **kwargs) for t in self.tensors])


def nested(tensors) -> object:
    """ComfyUI's NestedTensor inside ComfyUI, ours headless."""
    return (comfy_env.nested_tensor_class() or NestedTensor)(tensors)


def is_nested(value) -> bool:
    return bool(getattr(value, "is_nested", False)) and hasattr(value, "unbind") and not isinstance(value, torch.Tensor)


# ------------------------------------------------------------------------------------------------
# LATENT


@dataclass
class ConditionRecord:
    """An image condition carried by a LATENT: encoded again whenever the sampler runs at a size
    other than the one it was encoded for (stage 2 after the upscaler)."""

    condition: ImageCondition
    video_vae: object  # VideoVAEHandle
    encoded: dict = field(default_factory=dict)  # (height, width) -> latent [B, C, 1, h, w]


@dataclass
class LatentInfo:
    """Our extra LATENT key ``ltx2``."""

    fps: float | None = None
    frames: int | None = None
    video_scale: VideoScale = VideoScale()
    audio_timing: AudioTiming = AudioTiming()
    conditions: tuple[ConditionRecord, ...] = ()
    noise: NoiseRecord | None = None  # where the last sampler left its stream (``SeededNoise.record()``)
    keyframe_slots: tuple[int, ...] = ()  # pixel frames the next sampler generates keyframes at
    keyframes: torch.Tensor | None = None  # generated keyframes [B, C, K, H, W] (``AVLatents.keyframes``)
    keyframe_frames: tuple[int, ...] = ()
    refine_tiles: RefineTiles | None = None  # the tiles the next sampler refines in (``LTX2RefineTiles``)
    video_start: int = 0  # an extend window's place in the clip (``AVLatents.video_start`` / ``audio_start``)
    audio_start: int = 0
    audio_reference: torch.Tensor | None = None  # Dub-It reference audio latent [B|1, C, T, M] (``nodes.dubit``)
    guides: tuple = ()  # encoded guides for the next sampler only (``sampling.guides.ReferenceVideoGuide``)

    def replace(self, **changes) -> "LatentInfo":
        return dataclasses.replace(self, **changes)


def latent_info(latent: dict) -> LatentInfo:
    info = latent.get("ltx2")
    return info if isinstance(info, LatentInfo) else LatentInfo()


def _token_mask(mask: torch.Tensor | None, video: bool) -> torch.Tensor | None:
    """Core masks may be per element; the sampler needs one value per token (mean over channels/bins)."""
    if mask is None:
        return None
    mask = mask.float()
    if video:
        if mask.ndim != 5:
            raise InputError(f"video noise_mask must be [B, C, F, H, W], got {list(mask.shape)}.")
        return mask.mean(dim=1, keepdim=True)
    if mask.ndim != 4:
        raise InputError(f"audio noise_mask must be [B, C, T, M], got {list(mask.shape)}.")
    return mask.mean(dim=(1, 3), keepdim=True)


def _parts(value) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(video, audio) of a samples / noise_mask value."""
    if value is None:
        return None, None
    tensors = list(value.unbind()) if is_nested(value) else [value]
    video = next((t for t in tensors if t is not None and t.ndim == 5), None)
    audio = next((t for t in tensors if t is not None and t.ndim == 4), None)
    return video, audio


def to_av_latents(latent: dict, fps: float | None = None) -> AVLatents:
    """A LATENT dict (ours or core's) -> ``AVLatents`` (masks reduced to one value per token).

    ``fps`` is used when the latent carries none (core latents: take it from the conditioning's
    ``frame_rate``); default 25 like core's LTX-2 model."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError("expected a LATENT (a dict with 'samples').")
    info = latent_info(latent)
    video, audio = _parts(latent["samples"])
    if video is None and audio is None:
        raise InputError(f"LATENT samples of shape {list(latent['samples'].shape)} are neither a video latent "
                         "[B, C, F, H, W] nor an audio latent [B, C, T, M].")
    video_mask, audio_mask = _parts(latent.get("noise_mask"))
    rate = info.fps or fps or 25.0
    return AVLatents(video=video, audio=audio, fps=float(rate), video_mask=_token_mask(video_mask, True),
                     audio_mask=_token_mask(audio_mask, False), video_scale=info.video_scale,
                     audio_timing=info.audio_timing, keyframe_slots=info.keyframe_slots, keyframes=info.keyframes,
                     keyframe_frames=info.keyframe_frames, video_start=info.video_start,
                     audio_start=info.audio_start)


def pixel_frames(av: AVLatents, info: LatentInfo) -> int | None:
    """The clip's pixel frame count: from the video grid, else what the latent recorded."""
    if av.video is not None:
        return shapes.pixel_frames(av.video.shape[2], av.video_scale)
    return info.frames


def from_av_latents(av: AVLatents, info: LatentInfo | None = None, base: dict | None = None) -> dict:
    """``AVLatents`` -> a new LATENT dict in core's layout (``base``'s other keys are kept, never mutated)."""
    info = (info or LatentInfo()).replace(fps=float(av.fps), video_scale=av.video_scale,
                                          audio_timing=av.audio_timing, keyframe_slots=av.keyframe_slots,
                                          keyframes=av.keyframes, keyframe_frames=av.keyframe_frames,
                                          video_start=av.video_start, audio_start=av.audio_start)
    info = info.replace(frames=pixel_frames(av, info))
    out = {k: v for k, v in (base or {}).items() if k not in ("samples", "noise_mask", "type", "sample_rate")}
    parts = [t for t in (av.video, av.audio) if t is not None]
    out["samples"] = nested(parts) if len(parts) == 2 else parts[0]
    if av.video_mask is not None or av.audio_mask is not None:
        masks = []
        if av.video is not None:
            vm = av.video_mask if av.video_mask is not None else torch.ones(1, 1, 1, 1, 1)
            masks.append(vm.expand(av.video.shape[0], 1, *av.video.shape[2:]).contiguous())
        if av.audio is not None:
            am = av.audio_mask if av.audio_mask is not None else torch.ones(1, 1, 1, 1)
            masks.append(am.expand(*av.audio.shape).contiguous())
        out["noise_mask"] = nested(masks) if len(masks) == 2 else masks[0]
    if av.audio is not None:
        out["sample_rate"] = av.audio_timing.sample_rate or AUDIO_LATENT_RATE
        if av.video is None:
            out["type"] = "audio"
    out["ltx2"] = info
    return out


def fit_empty_channels(av: AVLatents, video_channels: int | None = None, audio_shape: tuple[int, int] | None = None
                       ) -> AVLatents:
    """An all-zero (empty) latent made for another model's channel count takes this model's, like ComfyUI's
    ``fix_empty_latent_channels`` (the empty-latent node cannot know the model)."""
    video, audio = av.video, av.audio
    if video is not None and video_channels and video.shape[1] != video_channels and not video.any():
        video = video.new_zeros(video.shape[0], video_channels, *video.shape[2:])
    if audio is not None and audio_shape and tuple(audio.shape[1::2]) != tuple(audio_shape) and not audio.any():
        audio = audio.new_zeros(audio.shape[0], audio_shape[0], audio.shape[2], audio_shape[1])
    if video is av.video and audio is av.audio:
        return av
    return dataclasses.replace(av, video=video, audio=audio)


# ------------------------------------------------------------------------------------------------
# CONDITIONING


VIDEO_WIDTH_KEY = "ltx2_video_width"


def to_conditioning(text: TextConditioning) -> list:
    """Core's LTX-2 CONDITIONING: contexts concatenated on the channel axis, plus the attention mask and the
    video context's width (the split point; the two widths differ in LTX-2.3)."""
    return [[torch.cat([text.video_context, text.audio_context], dim=-1),
             {"attention_mask": text.mask, VIDEO_WIDTH_KEY: text.video_context.shape[-1]}]]


def from_conditioning(conditioning, what: str = "conditioning", video_width: int | None = None
                      ) -> tuple[TextConditioning, float | None]:
    """CONDITIONING -> (``TextConditioning``, its ``frame_rate`` if a core node stamped one). Several
    entries are stacked as a batch (one prompt per batch item).

    The split point between the video and the audio context is our ``ltx2_video_width`` key when present,
    else ``video_width`` (the sampling model's video context width: a core text encoder's LTX-2.3
    conditioning carries no split point and its two contexts differ in width), else half the width (LTX-2)."""
    if not conditioning:
        raise InputError(f"the {what} is empty; connect a text encoder output.")
    videos, audios, masks, rate = [], [], [], None
    for entry in conditioning:
        tensor, extras = entry[0], (entry[1] if len(entry) > 1 else {})
        split = extras.get(VIDEO_WIDTH_KEY, video_width if video_width is not None else tensor.shape[-1] / 2)
        if tensor.ndim != 3 or split != int(split) or not 0 < split < tensor.shape[-1]:
            raise InputError(f"{what}: expected an LTX-2 conditioning [B, T, video + audio context width], got "
                             f"{list(tensor.shape)}; connect an LTX-2 text connector (or core's LTX-2 text "
                             "encoder), not another model's text encoder.")
        videos.append(tensor[..., :int(split)])
        audios.append(tensor[..., int(split):])
        mask = extras.get("attention_mask")
        masks.append(mask if mask is not None else torch.ones(tensor.shape[:2], dtype=torch.int64))
        rate = extras.get("frame_rate", rate)
    if len({v.shape[1] for v in videos}) > 1 or len({(v.shape[-1], a.shape[-1]) for v, a in zip(videos, audios)}) > 1:
        raise InputError(f"{what}: the entries have different token counts or widths; combine prompts of one "
                         "encoder.")
    return TextConditioning(torch.cat(videos), torch.cat(audios), torch.cat(masks).to(torch.int64)), rate


# ------------------------------------------------------------------------------------------------
# VIDEO


class SavedVideo:
    """Headless VIDEO: an MP4 on disk with the accessors of ComfyUI's ``VideoInput`` the pack uses."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def get_stream_source(self) -> str:
        return str(self.path)

    def _info(self):
        from ..media.mux import probe

        return probe(self.path)

    def get_dimensions(self) -> tuple[int, int]:
        info = self._info()
        return info.width, info.height

    def get_frame_count(self) -> int:
        return self._info().video_frames

    def get_frame_rate(self) -> Fraction:
        return self._info().fps

    def get_duration(self) -> float:
        return self._info().video_seconds

    def get_components(self):
        """(images [N, H, W, 3] float 0..1, AUDIO dict or None, frame_rate) like ComfyUI's ``VideoComponents``."""
        from ..media.mux import read_video

        return VideoComponents(*read_video(self.path))

    def save_to(self, path: str | Path, **_options) -> None:
        shutil.copyfile(self.path, path)

    def __repr__(self) -> str:
        return f"SavedVideo({self.path})"


@dataclass
class VideoComponents:
    images: torch.Tensor
    audio: dict | None
    frame_rate: Fraction


def video_output(path: Path):
    """ComfyUI's ``VideoFromFile`` inside ComfyUI (so core video nodes accept it), else :class:`SavedVideo`."""
    video_from_file = comfy_env.video_from_file_class()
    return video_from_file(str(path)) if video_from_file is not None else SavedVideo(path)
