"""Dub-It (lip-dub / re-voicing): the reference audio node.

The official ``ltx_pipelines.dubit`` runs the Dub-It IC-LoRA in both stages of a distilled two-stage run: the
reference clip's video guides the video (IC-LoRA reference video tokens) and its audio, encoded by the audio VAE,
is appended to the audio stream as frozen tokens at negative positions (``sampling.reference_audio``). Stage 1
generates the new audio with that reference; stage 2 keeps the stage-1 audio unchanged and references the stage-1
audio itself. Here the reference rides on the LATENT (``LatentInfo.audio_reference``) to the next sampler only
(like the IC-LoRA guides), so each stage is conditioned by the node placed before its sampler: from a given AUDIO
(stage 1), or, with no audio connected, from the latent's own audio, which the node also marks to be kept
(stage 2).
"""

from __future__ import annotations

import dataclasses

import torch

from .. import stages
from ..errors import InputError
from ..media.audio_clip import audio_segment
from ..sampling.reference_audio import ReferenceAudio, check_reference_length
from .common import LATENT, engine
from .comfy_types import fit_empty_channels, from_av_latents, latent_info, to_av_latents

AUDIO_VAE_HINT = "connect the audio_vae output of an LTX-2 Checkpoint Loader that loaded a full single file."
MAX_SECONDS = 3600.0


def reference_audio_items(info, av) -> list[ReferenceAudio]:
    """The audio conditioning items a LATENT's ``ltx2`` info asks the sampler for (Dub-It's reference)."""
    if info.audio_reference is None:
        return []
    if av.audio is None:
        raise InputError("this latent carries a Dub-It reference audio but generates no audio; sample an "
                         "audio+video latent (LTX-2 Empty Audio+Video Latent with audio on).")
    return [ReferenceAudio(info.audio_reference)]


def _encode_reference(audio_vae, audio: dict, start_seconds: float, seconds: float) -> torch.Tensor:
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError("reference_audio must be a ComfyUI AUDIO (a dict with 'waveform' and 'sample_rate'), e.g. "
                         "from Load Audio or the audio output of Get Video Components.")
    rate = int(audio["sample_rate"])
    length = audio["waveform"].shape[-1] / max(rate, 1)
    if start_seconds > 0 or seconds > 0:
        audio = audio_segment(audio, start_seconds, seconds if seconds > 0 else length - start_seconds)
    check_reference_length(audio, audio_vae.timing)
    return stages.encode_audio_latent(audio_vae, audio, engine())


class LTX2DubItReferenceAudio:
    DESCRIPTION = (
        "Dub-It (lip-dub / re-voicing; load the Dub-It IC-LoRA on the model, it runs in both stages): appends a "
        "reference audio to the audio the next sampler generates, as frozen tokens placed before the clip "
        "(negative time positions, as the official Dub-It pipeline). Stage 1: connect the reference speech "
        "(reference_audio; start_seconds / seconds pick a part, seconds 0 = to the end); it is encoded by the audio "
        "VAE. Stage 2 (after the upscaler, before the second sampler): leave reference_audio unconnected: the "
        "latent's own stage-1 audio becomes the reference and is kept unchanged, as the official stage 2. Only the "
        "next sampler is conditioned; the reference tokens never reach the output latent or the decoded audio.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",)},
                "optional": {
                    "audio_vae": ("LTX2_AUDIO_VAE",),
                    "reference_audio": ("AUDIO",),
                    "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_SECONDS, "step": 0.01}),
                    "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_SECONDS, "step": 0.01,
                                          "tooltip": "0 = the whole reference from start_seconds"}),
                }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "reference"
    CATEGORY = LATENT

    def reference(self, latent, audio_vae=None, reference_audio=None, start_seconds=0.0, seconds=0.0):
        info = latent_info(latent)
        av = to_av_latents(latent)
        if av.audio is None:
            raise InputError("Dub-It conditions the generated audio, and this latent has none: use LTX-2 Empty "
                             "Audio+Video Latent with audio on.")
        if reference_audio is None:  # stage 2: the latent's own audio is the reference, kept as it is
            if not av.audio.any():
                raise InputError("no reference_audio connected and the latent's audio is empty: connect the "
                                 "reference speech for stage 1; leave it unconnected only after a sampler (stage 2), "
                                 "where the generated audio becomes the reference.")
            av = av.keep_audio()
            return (from_av_latents(av, info.replace(audio_reference=av.audio.clone()), base=latent),)
        if audio_vae is None:
            raise InputError(f"the reference audio needs the audio VAE to be encoded: {AUDIO_VAE_HINT}")
        av = fit_empty_channels(av, audio_shape=(audio_vae.latent_channels, audio_vae.latent_mel_bins))
        encoded = _encode_reference(audio_vae, reference_audio, start_seconds, seconds)
        if tuple(encoded.shape[1::2]) != tuple(av.audio.shape[1::2]):
            raise InputError(f"the encoded reference audio has {encoded.shape[1]} x {encoded.shape[3]} (channels x "
                             f"mel bins) per frame, the latent's audio {av.audio.shape[1]} x {av.audio.shape[3]}; "
                             "both must come from the same LTX-2 model.")
        av = dataclasses.replace(av, audio_timing=audio_vae.timing)
        return (from_av_latents(av, info.replace(audio_reference=encoded), base=latent),)
