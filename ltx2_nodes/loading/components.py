"""One loader per model component, all going through ``build_module`` (meta build + assign).

Each takes an opened ``LTX2Checkpoint`` (or a file path for separately shipped models), a target
``dtype`` (None keeps the file's dtype) and ``device``.
"""

from __future__ import annotations

import torch

from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
from ..model.transformer import LTX2Transformer, TransformerConfig
from ..model.vocoder import Vocoder, VocoderConfig
from .checkpoint import LTX2Checkpoint, build_module


def load_transformer(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None, fp8: str = "keep"):
    """The DiT of ``ckpt``; ``dtype`` None keeps the file dtype (bf16 for the release)."""
    cfg = TransformerConfig.from_metadata(ckpt.component_config("transformer"))
    return build_module(lambda: LTX2Transformer(cfg), ckpt.state_dict("transformer"), what="transformer",
                        source=ckpt.path.name, dtype=dtype, device=device, fp8=fp8, release=ckpt.release_pages)


# ------------------------------------------------------------------------------------------------
# Audio path: audio VAE encoder / decoder and vocoder (``audio_vae.*`` / ``vocoder.*`` keys)


def load_audio_encoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> AudioEncoder:
    """Log-mel -> normalised audio latent, built from ``config.audio_vae``."""
    cfg = AudioVAEConfig.from_metadata(ckpt.component_config("audio_encoder"))
    return build_module(lambda: AudioEncoder(cfg), ckpt.state_dict("audio_encoder"), what="audio encoder",
                        source=ckpt.path.name, dtype=dtype, device=device, release=ckpt.release_pages)


def load_audio_decoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> AudioDecoder:
    """Normalised audio latent -> log-mel, built from ``config.audio_vae``."""
    cfg = AudioVAEConfig.from_metadata(ckpt.component_config("audio_decoder"))
    return build_module(lambda: AudioDecoder(cfg), ckpt.state_dict("audio_decoder"), what="audio decoder",
                        source=ckpt.path.name, dtype=dtype, device=device, release=ckpt.release_pages)


def load_vocoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Vocoder:
    """Log-mel -> waveform (HiFi-GAN), built from ``config.vocoder``."""
    cfg = VocoderConfig.from_metadata(ckpt.component_config("vocoder"))
    return build_module(lambda: Vocoder(cfg), ckpt.state_dict("vocoder"), what="vocoder",
                        source=ckpt.path.name, dtype=dtype, device=device, release=ckpt.release_pages)
