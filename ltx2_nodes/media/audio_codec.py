"""Audio latents <-> sound: the calls the pipeline and the nodes make.

``encode_audio``: AUDIO dict -> mel front end -> audio VAE encoder -> normalised latent.
``decode_audio``: latent -> audio VAE decoder -> mel -> vocoder -> waveform, optionally cut/padded
to exactly the video's duration.

Long audio decodes in chunks with bounded memory and bit-for-bit the same samples as a whole
decode (up to float summation order). The decoder is causal along time, so a chunk of latents
only needs ``decoder.past_context_latents()`` extra steps of history; the vocoder is not causal
but has a finite receptive field, so each mel chunk is vocoded with ``vocoder.context_frames()``
extra frames on both sides and the margins' samples are discarded. Overlaps are cropped, never
cross-faded, so there is nothing at a chunk join that is not in the whole decode (no clicks).
The LTX-2.3 bandwidth extension chunks exactly too: chunks start at multiples of the vocoder's
``frame_alignment`` (where a mel frame's first sample also starts one of its causal STFT frames;
every frame for the release) and its reach is part of ``context_frames``.
The output rate is the vocoder's ``sample_rate`` (24 kHz for LTX-2, 48 kHz for LTX-2.3).
"""

from __future__ import annotations

from fractions import Fraction

import torch

from ..errors import InputError, UnsupportedModelError
from ..model.audio_vae import AudioDecoder, AudioEncoder
from ..model.bigvgan import BWEVocoder
from ..model.vocoder import Vocoder
from .lengths import clip_samples, fit_to_length
from .mel import MelConfig, audio_to_mel

AnyVocoder = Vocoder | BWEVocoder  # LTX-2 HiFi-GAN (24 kHz) or LTX-2.3 BigVGAN + bandwidth extension (48 kHz)

# Chunk sizes bound peak activation memory: at the released widths in fp32 a 10 s chunk peaks at
# ~0.36 GiB of activations whatever the clip length (whole decode: ~0.03 GiB per second of audio;
# benchmarks/audio_decode.py). Shorter chunks save memory but recompute the decoder's ~1.4 s of history.
DEFAULT_CHUNK_LATENTS = 250  # 10 s at 25 latents/s
DEFAULT_CHUNK_MEL_FRAMES = 1000  # 10 s at 100 mel frames/s
END_FADE_SECONDS = 0.005


def _module_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters())
    return p.dtype, p.device


@torch.no_grad()
def encode_audio(audio: dict, encoder: AudioEncoder, backend: str = "auto", source: str = "audio") -> torch.Tensor:
    """ComfyUI AUDIO dict -> normalised audio latent ``[B, z, T', F]`` (float32, on the encoder's device).

    ``T'`` follows from the waveform length (see ``lengths.encoded_latent_count``); ``source``
    names the input in error messages (e.g. the file name).
    """
    if encoder.cfg.in_channels != 2:
        raise UnsupportedModelError(f"audio encoder takes {encoder.cfg.in_channels} channels; LTX-2's takes stereo.")
    dtype, device = _module_dtype_device(encoder)
    mel = audio_to_mel(audio, MelConfig.from_audio_vae(encoder.cfg), backend=backend, source=source)
    return encoder(mel.to(device=device, dtype=dtype)).float()


def _check_latent(latent: torch.Tensor, decoder: AudioDecoder) -> None:
    if latent.dim() != 4 or latent.shape[1] != decoder.cfg.z_channels or latent.shape[2] < 1:
        raise InputError(
            f"audio latent has shape {tuple(latent.shape)}; expected [batch, {decoder.cfg.z_channels}, frames >= 1, "
            "bins] (an LTX-2 audio latent; separate it from an audio+video latent first)."
        )


def check_pair(decoder: AudioDecoder, vocoder: AnyVocoder) -> None:
    """The vocoder must read what the decoder writes: ``out_ch`` spectrograms of ``mel_bins`` bins."""
    produced = decoder.cfg.out_ch * decoder.cfg.mel_bins
    expected = vocoder.conv_pre.in_channels
    if produced != expected:
        raise UnsupportedModelError(
            f"the audio decoder writes {decoder.cfg.out_ch} x {decoder.cfg.mel_bins} mel bins but the vocoder reads "
            f"{expected} channels; load both from the same LTX-2 checkpoint."
        )


@torch.no_grad()
def decode_mel(latent: torch.Tensor, decoder: AudioDecoder, chunk_latents: int | None = DEFAULT_CHUNK_LATENTS
               ) -> torch.Tensor:
    """Normalised latent ``[B, z, T, F]`` -> log-mel ``[B, 2, max(4T - 3, 1), mel_bins]``, chunked over ``T``."""
    _check_latent(latent, decoder)
    dtype, device = _module_dtype_device(decoder)
    total = latent.shape[2]
    if not chunk_latents or total <= chunk_latents:
        return decoder(latent.to(device=device, dtype=dtype))
    step = decoder.cfg.time_upsample  # latent i >= 1 owns raw frames step*(i-1)+1 .. step*i; latent 0 owns frame 0
    context = decoder.past_context_latents()
    pieces = []
    for start in range(0, total, chunk_latents):
        stop = min(start + chunk_latents, total)
        first = max(start - context, 0)
        raw = decoder.decode_raw(latent[:, :, first:stop].to(device=device, dtype=dtype))
        # Local raw frame 0 is global frame step*first; keep the frames owned by latents start..stop-1.
        begin = 0 if start == 0 else step * (start - 1) + 1
        pieces.append(raw[:, :, begin - step * first:])
    return decoder.fit_output(torch.cat(pieces, dim=2), total)


@torch.no_grad()
def vocode(mel: torch.Tensor, vocoder: AnyVocoder, chunk_frames: int | None = DEFAULT_CHUNK_MEL_FRAMES) -> torch.Tensor:
    """Log-mel ``[B, S, T, 64]`` -> float32 waveform ``[B, S, T * upsample_factor]``, chunked over ``T``."""
    dtype, device = _module_dtype_device(vocoder)
    total = mel.shape[2]
    if not chunk_frames or total <= chunk_frames:
        return vocoder(mel.to(device=device, dtype=dtype)).float()
    context, factor, align = vocoder.context_frames(), vocoder.upsample_factor, vocoder.frame_alignment
    chunk_frames = -(-chunk_frames // align) * align  # chunk starts (and, with the context, their inputs) aligned
    pieces = []
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        first, last = max(start - context, 0), min(stop + context, total)
        wave = vocoder(mel[:, :, first:last].to(device=device, dtype=dtype))
        pieces.append(wave[:, :, (start - first) * factor:(stop - first) * factor].float())
    return torch.cat(pieces, dim=2)


@torch.no_grad()
def decode_audio(latent: torch.Tensor, decoder: AudioDecoder, vocoder: AnyVocoder, frames: int | None = None,
                 fps: float | Fraction | None = None, chunk_latents: int | None = DEFAULT_CHUNK_LATENTS,
                 chunk_mel_frames: int | None = DEFAULT_CHUNK_MEL_FRAMES) -> tuple[torch.Tensor, int]:
    """Audio latent -> ``(waveform [B, 2, N] float32, sample_rate)``.

    Without ``frames``/``fps``: ``N = max(4T - 3, 1) * upsample_factor`` exactly like the reference
    ``decode_audio``. With them: ``N`` = exactly ``frames / fps`` seconds (``lengths.clip_samples``),
    cutting the end or appending silence after a 5 ms fade-out. ``chunk_*=None`` decodes in one go.
    """
    if (frames is None) != (fps is None):
        raise InputError("decode_audio needs both frames and fps (to match the video length) or neither.")
    check_pair(decoder, vocoder)
    mel = decode_mel(latent, decoder, chunk_latents)
    waveform = vocode(mel, vocoder, chunk_mel_frames)
    rate = vocoder.sample_rate
    if frames is not None:
        waveform = fit_to_length(waveform, clip_samples(frames, fps, rate), round(END_FADE_SECONDS * rate))
    return waveform, rate
