"""The generation API the ComfyUI nodes and the CLI both call (one code path).

Everything here works at the latent level; the text encoder, the VAEs and the latent upsampler
come in as plain callables / protocol objects:

* text: ``TextConditioning`` (``model.connector``: the connectors' video/audio contexts + mask);
* image conditioning: ``sampling.conditioning.image_conditioner(encoder, [ImageCondition...])``
  with ``encoder.encode(pixels [B,3,F,H,W] in [-1,1]) -> normalized latent`` -- the video VAE encoder;
* two-stage: ``upsample(video_latent) -> video_latent`` on normalized latents (x2 in H and W) --
  the latent upsampler wrapped with the VAE's per-channel statistics;
* decoding the returned ``AVLatents`` -- the video / audio VAE decoders.

``sample`` runs one stage; ``two_stage`` runs the official recipe: stage 1 at half resolution,
x2 upsample, re-noise video and audio at ``STAGE2_START_SIGMA`` (0.909375), refine with the
distilled stage-2 schedule (optionally with LoRAs such as the distilled LoRA on the dev model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError
from .loading.lora import LoRA, applied_loras
from .model.audio_vae import AudioVAEConfig
from .model.connector import TextConditioning
from .model.shapes import AudioTiming, VideoScale
from .progress import ProgressBar
from .sampling.conditioning import ConditioningItem, apply_conditionings
from .sampling.guidance import DEV_AUDIO_GUIDANCE, DEV_VIDEO_GUIDANCE, NO_GUIDANCE, GuidanceParams, GuidedDenoiser
from .sampling.loop import SAMPLERS, Callback, denoise
from .sampling.noise import SeededNoise
from .sampling.schedules import distilled_sigmas, ltx2_sigmas, parse_sigmas, validate_sigmas
from .sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

__all__ = ["AVLatents", "GenerationSettings", "TextConditioning", "LatentUpsampler", "Conditioner", "sample",
           "two_stage", "empty_latents"]

DEFAULT_SEED = 10
# The reference pipelines' default negative prompt (ltx_pipelines/utils/constants.py): the dev model's
# text CFG pushes away from it; the distilled model runs without a negative pass.
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, grainy "
    "texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, deformed facial "
    "features, asymmetrical face, missing facial features, extra limbs, disfigured hands, wrong hand count, artifacts "
    "around text, inconsistent perspective, camera shake, incorrect depth of field, background too sharp, background "
    "clutter, distracting reflections, harsh shadows, inconsistent lighting direction, color banding, cartoonish "
    "rendering, 3D CGI look, unrealistic materials, uncanny valley effect, incorrect ethnicity, wrong gender, "
    "exaggerated expressions, wrong gaze direction, mismatched lip sync, silent or muted audio, distorted voice, "
    "robotic voice, echo, background noise, off-sync audio, incorrect dialogue, added dialogue, repetitive speech, "
    "jittery movement, awkward pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted camera, "
    "flat lighting, inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)
# the released audio VAE's latent layout [C, T, M]: defaults of runs that are not given the model's own
AUDIO_LATENT_CHANNELS = AudioVAEConfig().z_channels
AUDIO_MEL_BINS = AudioVAEConfig().latent_mel_bins


class LatentUpsampler(Protocol):
    def __call__(self, video_latent: torch.Tensor) -> torch.Tensor:
        """Normalized ``[B, C, F, H, W]`` -> normalized ``[B, C, F, 2H, 2W]``."""


# Builds the conditioning items for one stage from that stage's video grid (images are re-encoded
# at each stage's resolution); see ``sampling.conditioning.image_conditioner``.
Conditioner = Callable[[VideoGrid], Sequence[ConditioningItem]]


@dataclass
class AVLatents:
    """Normalized audio-video latents plus what is needed to place them in time and space.

    ``video`` ``[B, C, F, H, W]``, ``audio`` ``[B, C, T, M]`` (either may be None: single-modality
    run). ``video_mask`` ``[B|1, 1, F, H, W]`` / ``audio_mask`` ``[B|1, 1, T, 1]``: 1 = generate,
    0 = keep the given latent (a zero audio mask is audio-to-video, a zero video mask video-to-audio);
    None = generate everything.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    fps: float
    video_mask: torch.Tensor | None = None
    audio_mask: torch.Tensor | None = None
    video_scale: VideoScale = VideoScale()
    audio_timing: AudioTiming = AudioTiming()

    @property
    def batch(self) -> int:
        return (self.video if self.video is not None else self.audio).shape[0]

    def video_grid(self) -> VideoGrid | None:
        return VideoGrid.of(self.video, self.fps, self.video_scale) if self.video is not None else None

    def audio_grid(self) -> AudioGrid | None:
        return AudioGrid.of(self.audio, self.audio_timing) if self.audio is not None else None

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
    mixed in at ``sigmas[0]``. ``sampler``: "euler" or "res_2s" (``eta``/``substep_eta``: its SDE
    noise fractions). ``batched_guidance``: run the guidance passes as one batched forward or one
    after another (the default, as the reference's ``max_batch_size=1``: a quarter of the activation
    memory, and no slower on CPU -- see benchmarks/RESULTS.md) -- same result either way.
    """

    sigmas: torch.Tensor
    seed: int = DEFAULT_SEED
    sampler: str = "euler"
    video_guidance: GuidanceParams = NO_GUIDANCE
    audio_guidance: GuidanceParams = NO_GUIDANCE
    batched_guidance: bool = False
    eta: float = 0.5
    substep_eta: float = 0.5

    def __post_init__(self):
        self.sigmas = validate_sigmas(self.sigmas, what="sigmas")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLERS)}.")

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @classmethod
    def dev(cls, steps: int = 40, seed: int = DEFAULT_SEED, tokens: int | None = None, **kw) -> "GenerationSettings":
        """Dev model, reference defaults: LTX-2 schedule, video cfg 3 / audio cfg 7, STG 1 on block 29,
        modality 3, rescale 0.7."""
        kw.setdefault("video_guidance", DEV_VIDEO_GUIDANCE)
        kw.setdefault("audio_guidance", DEV_AUDIO_GUIDANCE)
        return cls(ltx2_sigmas(steps, tokens), seed=seed, **kw)

    @classmethod
    def distilled(cls, seed: int = DEFAULT_SEED, stage: int = 1, **kw) -> "GenerationSettings":
        """Distilled model (or stage 2 of any two-stage run): fixed list, no guidance."""
        return cls(distilled_sigmas(stage), seed=seed, **kw)

    @classmethod
    def custom(cls, sigmas: str, seed: int = DEFAULT_SEED, **kw) -> "GenerationSettings":
        """A user-typed schedule such as ``"1.0, 0.9, 0.7, 0.4, 0.0"``."""
        return cls(parse_sigmas(sigmas), seed=seed, **kw)


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
    """Step reporting for one or two stages: a ``progress.ProgressBar`` (ComfyUI canvas / headless
    handler) over the whole run, the caller's ``callback(step, total, preview)`` with the same
    numbering."""

    def __init__(self, total: int, callback: Callback | None = None):
        self.total = total
        self.offset = 0
        self.callback = callback
        self.bar = ProgressBar(total)

    def __call__(self, step: int, _stage_total: int, preview: torch.Tensor) -> None:
        self.bar.update_absolute(self.offset + step, self.total)
        if self.callback is not None:
            self.callback(self.offset + step, self.total, preview)


def sample(model, text: TextConditioning, latents: AVLatents, settings: GenerationSettings, *,
           negative: TextConditioning | None = None,
           conditioning: Conditioner | Sequence[ConditioningItem] = (),
           noise: SeededNoise | None = None, callback: Callback | None = None,
           device: torch.device | str | None = None) -> AVLatents:
    """One sampling stage from ``latents`` (zeros for text-to-AV, or latents to refine / keep).

    Noise: ``noise`` (default ``SeededNoise(settings.seed, batch)``) is drawn video tokens first,
    then audio tokens, and mixed in at ``settings.sigmas[0]`` where the masks allow.
    Progress goes to ``progress.ProgressBar`` and ``callback(step, total, preview_latent)``;
    ``progress.check_interrupted`` runs before every model evaluation (a cancelled run raises there).
    Returns the denoised latents (appended keyframe tokens removed, masks cleared).
    """
    return _sample(model, text, latents, settings, negative, conditioning, noise,
                   StageProgress(settings.steps, callback), device)


def _sample(model, text, latents: AVLatents, settings: GenerationSettings, negative, conditioning,
            noise: SeededNoise | None, progress: StageProgress, device=None) -> AVLatents:
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = model.compute_dtype
    batch = latents.batch
    vgrid, agrid = latents.video_grid(), latents.audio_grid()
    _check_channels(model, vgrid, agrid)
    if vgrid is not None and agrid is not None and latents.audio.shape[0] != batch:
        raise InputError(f"video batch {batch} != audio batch {latents.audio.shape[0]}.")
    video = audio = None
    if vgrid is not None:
        video = initial_state(vgrid, batch, latents.video, latents.video_mask, device, dtype)
        items = conditioning(vgrid) if callable(conditioning) else conditioning
        video = apply_conditionings(video, items)
    elif conditioning and not callable(conditioning):
        raise InputError("image/keyframe conditioning needs a video latent; this run generates audio only.")
    if agrid is not None:
        audio = initial_state(agrid, batch, latents.audio, latents.audio_mask, device, dtype)
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
                           eta=settings.eta, substep_eta=settings.substep_eta, callback=progress)
    return AVLatents(video=video.to_grid() if video is not None else None,
                     audio=audio.to_grid() if audio is not None else None, fps=latents.fps,
                     video_scale=latents.video_scale, audio_timing=latents.audio_timing)


def _upscale_mask(mask: torch.Tensor | None, grid: VideoGrid) -> torch.Tensor | None:
    if mask is None:
        return None
    return F.interpolate(mask.float(), size=(grid.frames, grid.height, grid.width), mode="nearest")


def two_stage(model, text: TextConditioning, latents: AVLatents, settings: GenerationSettings,
              upsample: LatentUpsampler, *, negative: TextConditioning | None = None,
              stage2: GenerationSettings | None = None, stage2_model=None,
              stage2_loras: Sequence[tuple[LoRA, float]] = (), conditioning: Conditioner | None = None,
              callback: Callback | None = None) -> AVLatents:
    """The reference's two-stage recipe at the latent level.

    ``latents``: the stage-1 (half-resolution) latents. Stage 1 samples them with ``settings``;
    the video latent is upsampled x2 by ``upsample``; stage 2 re-noises video and audio at
    ``stage2.sigmas[0]`` (default: the distilled stage-2 list from 0.909375, no guidance, same
    seed) and refines them with ``stage2_model`` (default: ``model``) with ``stage2_loras``
    applied for the stage only (the dev pipeline passes the distilled LoRA). The seeded noise
    stream continues from stage 1 into stage 2, as in the reference; ``conditioning`` is
    re-applied at each stage's resolution.
    """
    if latents.video is None:
        raise InputError("the two-stage pipeline upsamples video; this run has no video latent (use sample()).")
    stage2 = stage2 or GenerationSettings.distilled(seed=settings.seed, stage=2)
    noise = SeededNoise(settings.seed, latents.batch)
    progress = StageProgress(settings.steps + stage2.steps, callback)
    first = _sample(model, text, latents, settings, negative, conditioning or (), noise, progress)
    with torch.no_grad():
        upscaled = upsample(first.video)
    expected = latents.video_grid().upscaled(2)
    if tuple(upscaled.shape[1:]) != expected.shape or upscaled.shape[0] != latents.batch:
        raise InputError(f"the upsampler returned shape {list(upscaled.shape)}; expected "
                         f"{[latents.batch, *expected.shape]} (x2 in height and width).")
    second_in = dataclasses.replace(first, video=upscaled, video_mask=_upscale_mask(latents.video_mask, expected),
                                    audio_mask=latents.audio_mask)
    progress.offset = settings.steps
    stage2_model = stage2_model or model
    with applied_loras(stage2_model, list(stage2_loras)):
        return _sample(stage2_model, text, second_in, stage2, negative, conditioning or (), noise, progress)
