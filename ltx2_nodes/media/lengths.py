"""Exact audio/video length arithmetic (pure functions, no tensors except :func:`fit_to_length`).

For a clip of ``F`` video frames at ``r`` fps (duration ``F / r`` seconds):

* audio latents: the reference (``AudioLatentShape.from_video_pixel_shape`` in ltx-core) uses
  Python ``round(float(F) / float(r) * 25.0)`` (round half to even, computed in float64);
  ComfyUI core (``AudioVAE.num_of_latents_from_frames``) uses ``math.ceil`` of the same product
  and so gets one latent more whenever ``25 F / r`` is not an integer (121 frames at 24 fps:
  reference 126, ComfyUI 127). Both are provided; ``"reference"`` is the default because it
  is what the model was run with by its authors.
* decoded mel frames: ``max(4 T - 3, 1)`` (causal decoder, ``T`` latents).
* decoded waveform: ``mel_frames * upsample_factor`` samples (the vocoder's: 240 -> 24 kHz for
  LTX-2, 480 -> 48 kHz for LTX-2.3): 121 frames at 24 fps give 126 latents, 501 mel frames,
  120240 samples at 24 kHz = 5.010 s, not 5.0417 s.
* the delivered audio is cut or zero-padded to exactly ``F / r`` seconds at the output rate:
  ``floor(F * sample_rate / r + 1/2)`` samples computed in exact rational arithmetic (fps
  given as a float is read as the nearest fraction with denominator <= 100000, so 23.976 is
  2997/125 and 24000/1001 stays 24000/1001).

Encoding a waveform of ``N`` samples at the mel rate gives ``1 + N // hop`` mel frames
(centred STFT) and, through each of the encoder's stride-2 levels, ``(T - 1) // 2 + 1``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from ..errors import InputError
from ..model.audio_vae import decoded_mel_frames
from ..model.shapes import AudioTiming, audio_latent_frames

ROUNDING_RULES = ("reference", "comfyui")


def exact_fps(fps: float | int | Fraction) -> Fraction:
    """``fps`` as an exact fraction: whole rates stay whole, the NTSC rates typed as decimals
    (23.976, 29.97, 59.94) become N*1000/1001, anything else the nearest ratio with denominator
    <= 100000."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"frame rate {fps!r} is not a positive number; use e.g. 24, 25, 30 or 24000/1001.")
    if isinstance(fps, Fraction):
        return fps
    if abs(fps - round(fps)) < 1e-9:
        return Fraction(round(fps))
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 5e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(100_000)


def _check_frames(frames: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frame count {frames!r} must be a positive integer.")


def audio_latent_count(frames: int, fps: float | int | Fraction, timing: AudioTiming = AudioTiming(),
                       rule: str = "reference") -> int:
    """Audio latent steps for ``frames`` video frames at ``fps`` (see the module doc for the rules)."""
    _check_frames(frames)
    exact_fps(fps)
    seconds = float(frames) / float(fps)
    if rule == "reference":
        return audio_latent_frames(frames, fps, timing)
    if rule == "comfyui":
        return math.ceil(seconds * timing.latents_per_second)
    raise ValueError(f"rule must be one of {ROUNDING_RULES}, got {rule!r}")


def decoded_samples(latents: int, upsample_factor: int) -> int:
    """Waveform samples a vocoder with ``upsample_factor`` (samples per mel frame) returns for ``latents``
    latent steps."""
    return decoded_mel_frames(latents) * upsample_factor


def clip_samples(frames: int, fps: float | int | Fraction, sample_rate: int) -> int:
    """Samples in exactly ``frames / fps`` seconds at ``sample_rate`` (half up)."""
    _check_frames(frames)
    exact = Fraction(frames * sample_rate) / exact_fps(fps)
    return math.floor(exact + Fraction(1, 2))


def check_audio_length(frames: int, fps: float | int | Fraction, samples: int, sample_rate: int) -> str | None:
    """Whether a soundtrack of ``samples`` at ``sample_rate`` fits a video of ``frames`` at ``fps``.

    Within one video frame of each other: None (the muxer cuts or the player pads the rest). Shorter by more
    than a frame: refused (``InputError``) with the fps at which the two match -- the usual cause is an fps
    other than the latent's, so the sound would end long before the picture. Longer by more than a frame: a
    warning to show (the muxer cuts the audio to the video), since a longer soundtrack can be intended."""
    _check_frames(frames)
    rate = exact_fps(fps)
    video, audio = Fraction(frames) / rate, Fraction(samples, sample_rate)
    if abs(audio - video) <= 1 / rate:
        return None
    matching = f"{frames * sample_rate / samples:.3f}".rstrip("0").rstrip(".") if samples else None
    where = (f"the audio lasts {float(audio):.3f} s and the {frames} frames at {float(rate):g} fps last "
             f"{float(video):.3f} s")
    fix = (f"set fps to {matching} (the rate at which they match: use the fps of the latent both were decoded "
           "from)" if matching else "connect a soundtrack")
    if audio < video:
        raise InputError(f"{where}; {fix}, or connect audio at least as long as the video.")
    return f"{where}: the audio is cut to the video; if both come from one LTX-2 latent, {fix}."


def mel_frames_for_samples(num_samples: int, hop_length: int = 160) -> int:
    """Frames of a centred STFT over ``num_samples`` samples."""
    return 1 + num_samples // hop_length


def encoded_latent_count(mel_frames: int, levels: int = 3) -> int:
    """Latent steps the audio encoder produces from ``mel_frames`` frames (causal stride-2 per level)."""
    for _ in range(levels - 1):
        mel_frames = (mel_frames - 1) // 2 + 1
    return mel_frames


def fit_to_length(waveform: torch.Tensor, samples: int, fade_samples: int = 0) -> torch.Tensor:
    """Cut or zero-pad ``[..., N]`` to ``samples``; when padding, fade the last ``fade_samples`` out first.

    The fade (half a cosine) avoids a click where decoded sound meets the appended silence.
    """
    have = waveform.shape[-1]
    if have >= samples:
        return waveform[..., :samples]
    fade = min(fade_samples, have)
    if fade:
        ramp = 0.5 * (1 + torch.cos(torch.linspace(0, math.pi, fade, dtype=torch.float64)))
        waveform = waveform.clone()
        waveform[..., have - fade:] *= ramp.to(waveform)
    return torch.nn.functional.pad(waveform, (0, samples - have))
