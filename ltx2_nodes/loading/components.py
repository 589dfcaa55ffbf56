"""One loader per model component, all going through ``build_module`` (meta build + assign).

Each takes an opened ``LTX2Checkpoint`` (or a file path for separately shipped models), a target
``dtype`` (None keeps the file's dtype) and ``device``.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
from ..model.connector import ConnectorConfig, Embeddings1DConnector, TextConnectors, TextProjection
from ..model.transformer import LTX2Transformer, TransformerConfig
from ..model.vocoder import Vocoder, VocoderConfig
from .checkpoint import LTX2Checkpoint, build_module


def load_transformer(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None, fp8: str = "keep"):
    """The DiT of ``ckpt``; ``dtype`` None keeps the file dtype (bf16 for the release)."""
    cfg = TransformerConfig.from_metadata(ckpt.component_config("transformer"))
    return build_module(lambda: LTX2Transformer(cfg), ckpt.state_dict("transformer"), what="transformer",
                        source=ckpt.path.name, dtype=dtype, device=device, fp8=fp8, release=ckpt.release_pages)


# ------------------------------------------------------------------------------------------------
# Text path after Gemma (issue 3): feature projection + video/audio embedding connectors.
# Their weights live in the LTX-2 checkpoint, never in Gemma's file.


def load_text_projection(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> TextProjection:
    """``text_embedding_projection.aggregate_embed`` ([caption_channels, gemma_width * gemma_states], no bias)."""
    state = ckpt.state_dict("text_projection")
    weight = state.get("aggregate_embed.weight")
    if weight is None or weight.ndim != 2:
        raise CheckpointError(
            f"{ckpt.path.name}: 'text_embedding_projection.aggregate_embed.weight' is missing or not a matrix; "
            "the file is damaged or not an LTX-2 (19B) checkpoint.")
    caption_channels = int(ckpt.component_config("text_projection").get("caption_channels", weight.shape[0]))
    return build_module(lambda: TextProjection(weight.shape[1], caption_channels), state, what="text projection",
                        source=ckpt.path.name, dtype=dtype, device=device, release=ckpt.release_pages)


def _load_connector(ckpt: LTX2Checkpoint, component: str, dtype, device) -> Embeddings1DConnector:
    cfg = ConnectorConfig.from_metadata(ckpt.component_config(component))
    return build_module(lambda: Embeddings1DConnector(cfg), ckpt.state_dict(component),
                        what=component.replace("_", " "), source=ckpt.path.name, dtype=dtype, device=device,
                        release=ckpt.release_pages)


def load_video_connector(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Embeddings1DConnector:
    return _load_connector(ckpt, "video_connector", dtype, device)


def load_audio_connector(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Embeddings1DConnector:
    return _load_connector(ckpt, "audio_connector", dtype, device)


def load_text_connectors(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> TextConnectors:
    """Projection + both connectors; ``connectors.connect(gemma_states, mask)`` gives the DiT contexts."""
    return TextConnectors(load_text_projection(ckpt, dtype, device), load_video_connector(ckpt, dtype, device),
                          load_audio_connector(ckpt, dtype, device)).eval()
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
