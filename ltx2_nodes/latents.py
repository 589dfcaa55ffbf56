"""Audio+video latents and one sampling stage over them: the latent-level API of nodes and CLI.

Everything here works at the latent level: ``sample`` runs one sampling stage of the DiT on
``AVLatents`` with ``GenerationSettings``; text comes in as ``TextConditioning`` (``model.connector``:
the connectors' video/audio contexts + mask) and image conditioning as already encoded
``ConditioningItem``s (``sampling.conditioning``). The presets and the two-stage recipe built from
these calls live in ``sampling.recipe``; ``stages`` places the models and ``generate`` runs the recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import InputError
from .model.audio_vae import AudioVAEConfig
from .model.connector import TextConditioning
from .model.shapes import AudioTiming, VideoScale
from .progress import ProgressBar
from .sampling.conditioning import ConditioningItem, GeneratedKeyframeSlots, apply_conditionings, keyframe_slot_frames
from .sampling.guidance import NO_GUIDANCE, GuidanceParams, GuidedDenoiser
from .sampling.loop import SAMPLERS, Callback, denoise
from .sampling.noise import SeededNoise
from .sampling.recipe import DEFAULT_SEED, SamplerPreset
from .sampling.schedules import validate_sigmas
from .sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

__all__ = ["AVLatents", "GenerationSettings", "TextConditioning", "sample", "empty_latents"]

# the released audio VAE's latent layout [C, T, M]: defaults of runs that are not given the model's own
AUDIO_LATENT_CHANNELS = AudioVAEConfig().z_channels
AUDIO_MEL_BINS = AudioVAEConfig().latent_mel_bins


@dataclass
class AVLatents:
    """Normalized audio-video latents plus what is needed to place them in time and space.

    ``video`` ``[B, C, F, H, W]``, ``audio`` ``[B, C, T, M]`` (either may be None: single-modality
    run). ``video_mask`` ``[B|1, 1, F, H, W]`` / ``audio_mask`` ``[B|1, 1, T, 1]``: 1 = generate,
    0 = keep the given latent (a zero audio mask is audio-to-video, a zero video mask video-to-audio);
    None = generate everything.

    Generated keyframe slots (LTX-2.5): ``keyframe_slots`` are the pixel frames the next :func:`sample`
    generates a standalone frame at (:meth:`with_keyframe_slots`); its result carries them in
    ``keyframes`` ``[B, C, K, H, W]`` (one latent frame per slot, in the order of ``keyframe_frames``), never
    in ``video``, and requests none again.

    ``video_start`` / ``audio_start``: where these latents sit in a longer clip's timeline (latent frame /
    audio latent index; 0 for a clip of its own): an extend window (``editing``) is sampled at the
    positions its tokens have in the whole clip.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    fps: float
    video_mask: torch.Tensor | None = None
    audio_mask: torch.Tensor | None = None
    video_scale: VideoScale = VideoScale()
    audio_timing: AudioTiming = AudioTiming()
    keyframe_slots: tuple[int, ...] = ()
    keyframes: torch.Tensor | None = None
    keyframe_frames: tuple[int, ...] = ()
    video_start: int = 0
    audio_start: int = 0

    @property
    def batch(self) -> int:
        return (self.video if self.video is not None else self.audio).shape[0]

    def video_grid(self) -> VideoGrid | None:
        if self.video is None:
            return None
        return VideoGrid.of(self.video, self.fps, self.video_scale, self.video_start)

    def audio_grid(self) -> AudioGrid | None:
        return AudioGrid.of(self.audio, self.audio_timing, self.audio_start) if self.audio is not None else None

    def with_keyframe_slots(self, request: int | Sequence[int]) -> "AVLatents":
        """These latents with generated keyframe slots requested: a count (evenly spaced interior frames) or the
        pixel frames themselves (reference ``resolve_generated_keyframes``); 0 / empty requests none."""
        if self.video is None:
            raise InputError("generated keyframes belong to a video; these latents hold audio only.")
        frames = keyframe_slot_frames(request if isinstance(request, int) else list(request),
                                      self.video_grid().pixel_frames)
        return dataclasses.replace(self, keyframe_slots=frames)

    def keyframe_clips(self) -> torch.Tensor | None:
        """The generated keyframes as ``[B*K, C, 1, H, W]`` one-frame clips (sample-major), each decoded on its own
        (a causal decode of the K frames as one video would blend frames that were never adjacent)."""
        if self.keyframes is None:
            return None
        batch, channels, count, height, width = self.keyframes.shape
        return self.keyframes.transpose(1, 2).reshape(batch * count, channels, 1, height, width)

    def keep_audio(self) -> "AVLatents":
        """Audio-to-video: the given audio latent stays exactly as is while the video is generated."""
        return dataclasses.replace(self, audio_mask=torch.zeros(self.batch, 1, self.audio.shape[2], 1))

    def keep_video(self) -> "AVLatents":
        """Video-to-audio: the given video latent stays exactly as is while the audio is generated."""
        return dataclasses.replace(self, video_mask=torch.zeros(self.batch, 1, *self.video.shape[2:]))


def empty_latents(batch: int, frames: int, height: int, width: int, fps: float, *, video_channels: int = 128,
                  audio_channels: int = AUDIO_LATENT_CHANNELS, audio_mel_bins: int = AUDIO_MEL_BINS,
                  video: bool = True, audio: bool = True, video_scale: VideoScale = VideoScale(),
                  audio_timing: AudioTiming = AudioTiming()) -> AVLatents:
    """Zero latents for a ``frames x height x width`` video at ``fps`` and its audio (text-to-AV)."""
    if not (video or audio):
        raise InputError("generate at least one of video and audio.")
    vgrid = VideoGrid.from_pixels(video_channels, frames, height, width, fps, video_scale)
    agrid = AudioGrid.for_video(audio_channels, audio_mel_bins, frames, fps, audio_timing)
    return AVLatents(torch.zeros(batch, *vgrid.shape) if video else None,
                     torch.zeros(batch, *agrid.shape) if audio else None, float(fps),
                     video_scale=video_scale, audio_timing=audio_timing)


@dataclass
class GenerationSettings:
    """How one stage samples: schedule, sampler, seed, guidance per modality.

    ``sigmas``: 1-D schedule (strictly descending in [0, 1], ending at 0); the initial noise is
    mixed in at ``sigmas[0]``. ``sampler``: "euler", "euler_ancestral" or "res_2s" (``eta``: their
    noise fraction, None = the sampler's reference value, 1 / 0.5; ``substep_eta``: res_2s' midpoint
    one; ``s_noise``: euler_ancestral's noise scale). ``batched_guidance``: run the guidance passes as
    one batched forward or one after another (the default, as the reference's ``max_batch_size=1``: a
    quarter of the activation memory, and no slower on CPU -- see benchmarks/RESULTS.md) -- same result
    either way.
    """

    sigmas: torch.Tensor
    seed: int = DEFAULT_SEED
    sampler: str = "euler"
    video_guidance: GuidanceParams = NO_GUIDANCE
    audio_guidance: GuidanceParams = NO_GUIDANCE
    batched_guidance: bool = False
    eta: float | None = None
    substep_eta: float = 0.5
    s_noise: float = 1.0

    def __post_init__(self):
        self.sigmas = validate_sigmas(self.sigmas, what="sigmas")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLERS)}.")

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @classmethod
    def from_preset(cls, preset: SamplerPreset, seed: int = DEFAULT_SEED, steps: int | None = None,
                    tokens: int | None = None, **kw) -> "GenerationSettings":
        """A ``sampling.recipe`` preset (dev, distilled, refine, HQ) with its sampler; ``steps`` replaces the dev
        preset's step count; ``tokens``: the sampled video latent's F' x H' x W' (the HQ schedule's shift)."""
        kw.setdefault("sampler", preset.sampler)
        kw.setdefault("video_guidance", preset.video_guidance)
        kw.setdefault("audio_guidance", preset.audio_guidance)
        return cls(preset.sigmas(steps, tokens), seed=seed, **kw)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _check_channels(model, video: VideoGrid | None, audio: AudioGrid | None) -> None:
    cfg = model.config
    if video is not None and video.channels != cfg.in_channels:
        raise InputError(f"the video latent has {video.channels} channels but the transformer expects "
                         f"{cfg.in_channels}; the latent comes from a different VAE or model.")
    if audio is not None and audio.channels * audio.mel_bins != cfg.audio_in_channels:
        raise InputError(f"the audio latent has {audio.channels} x {audio.mel_bins} (channels x mel bins) features "
                         f"per frame but the transformer expects {cfg.audio_in_channels}.")


class StageProgress:
    """Step reporting for one stage: a ``progress.ProgressBar`` (ComfyUI canvas / headless handler) and the
    caller's ``callback(step, total, preview)``."""

    def __init__(self, total: int, callback: Callback | None = None):
        self.total = total
        self.callback = callback
        self.bar = ProgressBar(total)

    def __call__(self, step: int, _stage_total: int, preview: torch.Tensor) -> None:
        self.bar.update_absolute(step, self.total)
        if self.callback is not None:
            self.callback(step, self.total, preview)


def sample(model, text: TextConditioning, latents: AVLatents, settings: GenerationSettings, *,
           negative: TextConditioning | None = None, conditioning: Sequence[ConditioningItem] = (),
           audio_conditioning: Sequence[ConditioningItem] = (), noise: SeededNoise | None = None,
           callback: Callback | None = None, device: torch.device | str | None = None) -> AVLatents:
    """One sampling stage from ``latents`` (zeros for text-to-AV, or latents to refine / keep).

    Noise: ``noise`` (default ``SeededNoise(settings.seed, batch)``) is drawn video tokens first,
    then audio tokens, and mixed in at ``settings.sigmas[0]`` where the masks allow.
    Progress goes to ``progress.ProgressBar`` and ``callback(step, total, preview_latent)``;
    ``progress.check_interrupted`` runs before every model evaluation (a cancelled run raises there).
    Returns the denoised latents (appended keyframe tokens removed, masks cleared); slots requested by
    ``latents.keyframe_slots`` are generated with the video (after the ``conditioning`` items' tokens) and
    returned in ``keyframes`` (without a request, the keyframes ``latents`` carry are passed on: stage 2).
    ``audio_conditioning``: items applied to the audio state (``sampling.reference_audio.ReferenceAudio``, Dub-It's
    reference tokens), appended after the audio grid and dropped from the result like the video's.
    """
    progress = StageProgress(settings.steps, callback)
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = model.compute_dtype
    batch = latents.batch
    vgrid, agrid = latents.video_grid(), latents.audio_grid()
    _check_channels(model, vgrid, agrid)
    if vgrid is not None and agrid is not None and latents.audio.shape[0] != batch:
        raise InputError(f"video batch {batch} != audio batch {latents.audio.shape[0]}.")
    video = audio = None
    if latents.keyframe_slots and not model.config.use_keyframes_abs_pos_embedding:
        raise InputError("generated keyframes need a model trained for them (LTX-2.5: use_keyframes_abs_pos_embedding);"
                         " this transformer has no keyframe embedding. Remove the keyframe-slot request or load an "
                         "LTX-2.5 model.")
    if vgrid is not None:
        video = initial_state(vgrid, batch, latents.video, latents.video_mask, device, dtype)
        slots = [GeneratedKeyframeSlots(latents.keyframe_slots)] if latents.keyframe_slots else []
        video = apply_conditionings(video, [*conditioning, *slots])
    elif conditioning:
        raise InputError("image/keyframe conditioning needs a video latent; this run generates audio only.")
    if agrid is not None:
        audio = initial_state(agrid, batch, latents.audio, latents.audio_mask, device, dtype)
        audio = apply_conditionings(audio, audio_conditioning)
    elif audio_conditioning:
        raise InputError("reference audio conditions the audio stream; this run generates no audio (connect an "
                         "audio+video latent).")
    noise = noise or SeededNoise(settings.seed, batch)
    if noise.batch != batch:
        raise InputError(f"noise source has {noise.batch} generators for a batch of {batch}.")
    states = [s for s in (video, audio) if s is not None]
    draws = noise.draw(*[tuple(s.latent.shape[1:]) for s in states])
    start = float(settings.sigmas[0])
    states = [add_noise(s, n, start) for s, n in zip(states, draws)]
    video = states.pop(0) if video is not None else None
    audio = states.pop(0) if audio is not None else None
    denoiser = GuidedDenoiser(model, text, negative, settings.video_guidance, settings.audio_guidance,
                              settings.batched_guidance)
    video, audio = denoise(denoiser, video, audio, settings.sigmas, sampler=settings.sampler, seed=settings.seed,
                           eta=settings.eta, substep_eta=settings.substep_eta, s_noise=settings.s_noise,
                           callback=progress)
    slot_latents = video.slot_latents() if video is not None else None
    keyframes = (slot_latents, latents.keyframe_slots) if slot_latents is not None else (latents.keyframes,
                                                                                         latents.keyframe_frames)
    return AVLatents(video=video.to_grid() if video is not None else None,
                     audio=audio.to_grid() if audio is not None else None, fps=latents.fps,
                     video_scale=latents.video_scale, audio_timing=latents.audio_timing, keyframes=keyframes[0],
                     keyframe_frames=keyframes[1], video_start=latents.video_start, audio_start=latents.audio_start)
