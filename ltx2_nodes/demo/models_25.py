"""Tiny random-weight LTX-2.5 demo models in the released **split layout** (one file per component).

Written by ``python -m ltx2_nodes demo-models`` next to the LTX-2 / LTX-2.3 sets, under ``ltx25-demo-*``
names, each in the folder ComfyUI (and ``loading.split``) looks in:

* ``diffusion_models/ltx25-demo-transformer.safetensors``: ``model.diffusion_model.*`` (the DiT of the 2.3
  demo plus the 2.5 flags: bias-free video feed-forward, keyframe embedding) and the two text connectors;
  ``config`` with only a ``transformer`` section, ``model_version`` "2.5.0", ``gemma_source_checkpoint``;
* ``text_encoders/ltx25-demo-gemma4.safetensors``: a packed Gemma 4 text encoder (``demo.tiny_gemma``'s
  writer) with the text projection and a word-level ``tokenizer_json``, its ``gemma_version`` the
  transformer's;
* ``vae/ltx25-demo-video-vae.safetensors``: the video VAE (conv encoder + diffusion decoder, the release's
  bare keys with the static gates the loader folds);
* ``vae/ltx25-demo-audio-vae.safetensors``: ``audio_vae.*`` + ``vocoder.*`` (the 2.3 demo's, 48 kHz: 2.5
  keeps the 2.3 audio VAE and BigVGAN + bandwidth-extension vocoder);
* ``model_patches/ltx25-demo-duration-head.safetensors``: the duration head, its output bias set so it
  predicts about 1.5 s (a short clip on a CPU);
* ``latent_upscale_models/ltx25-demo-spatial-upscaler-x2.safetensors``.

They generate noise, like every demo model (``DEMO_NOTICE``).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .models import (DEMO_AUDIO_VAE, DEMO_NOTICE, DEMO_TRANSFORMER_23, DEMO_VAE_23, DEMO_VIDEO_LATENT_CHANNELS,
                     DEMO_VOCODER_23, _random_value, _write, vocoder_state, write_upscaler)

MODEL_VERSION_25 = "2.5.0"
GEMMA_VERSION_25 = "ltx25-demo-gemma4"
TRANSFORMER_25 = "ltx25-demo-transformer.safetensors"
TEXT_ENCODER_25 = "ltx25-demo-gemma4.safetensors"
VIDEO_VAE_25 = "ltx25-demo-video-vae.safetensors"
AUDIO_VAE_25 = "ltx25-demo-audio-vae.safetensors"
DURATION_HEAD_25 = "ltx25-demo-duration-head.safetensors"
UPSCALER_25 = "ltx25-demo-spatial-upscaler-x2.safetensors"
DEMO_SECONDS_25 = 1.5  # what the demo duration head predicts (about; its weights are small)

DEMO_TRANSFORMER_25 = {**DEMO_TRANSFORMER_23, "ff_bias": False, "use_keyframes_abs_pos_embedding": True}
DEMO_GEMMA4 = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                   global_head_dim=16, intermediate_size=64, sliding_window=8,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"])
DEMO_DURATION_HEAD = {"pooler_hidden_dim": 16, "num_queries": 2, "num_pooler_heads": 2, "mlp_hidden": 16}
# the diffusion decoder: the 2.5 ladder at tiny widths, 2 denoising steps
DEMO_DIFFUSION_DECODER = {
    "head_dim": 8, "t_emb_dim": 32, "default_num_inference_steps": 2, "timestep_scale_multiplier": 1000.0,
    "stage_channels": [64, 32, 16, 16, 8], "stage_depths": [1, 1, 1, 1, 1],
    "stage_kernels": [[3, 3, 3]] * 5, "stage5_kernel": [3, 3, 3], "stage5_channels": 16,
    "in_channels": DEMO_VIDEO_LATENT_CHANNELS, "out_channels": 3, "patch_size": 4,
}


@dataclass(frozen=True)
class DemoModels25:
    """The written LTX-2.5 files (kind -> path, ``loading.split`` kinds) and the upscaler."""

    transformer: Path
    text_encoder: Path
    video_vae: Path
    audio_vae: Path
    duration_head: Path
    upscaler: Path

    def files(self) -> tuple[Path, ...]:
        return (self.transformer, self.text_encoder, self.video_vae, self.audio_vae, self.duration_head,
                self.upscaler)


def _module_state(build, prefix: str, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        module = build()
    return {prefix + k: _random_value(prefix + k, tuple(v.shape), seed) for k, v in module.state_dict().items()}


def write_transformer(path: Path, seed: int = 0) -> Path:
    """The DiT and both connectors, with the 2.5 metadata (``config.transformer`` only, version, Gemma lock)."""
    from ..model.connector import ConnectorConfig, Embeddings1DConnector
    from ..model.transformer import LTX2Transformer, TransformerConfig

    config = copy.deepcopy(DEMO_TRANSFORMER_25)
    state = _module_state(lambda: LTX2Transformer(TransformerConfig.from_metadata(config)),
                          "model.diffusion_model.", seed)
    for name, audio in (("video", False), ("audio", True)):
        state.update(_module_state(lambda a=audio: Embeddings1DConnector(ConnectorConfig.from_metadata(config,
                                                                                                       audio=a)),
                                   f"model.diffusion_model.{name}_embeddings_connector.", seed))
    metadata = {"config": json.dumps({"transformer": config}), "model_version": MODEL_VERSION_25,
                "gemma_source_checkpoint": json.dumps({"gemma_version": GEMMA_VERSION_25}),
                "ltx2_nodes_demo": DEMO_NOTICE}
    return _write(path, state, metadata, torch.bfloat16)


def write_text_encoder(path: Path, seed: int = 0) -> Path:
    """The packed Gemma 4 file: language model, the 2.3-style text projection into the demo DiT's widths, tokenizer."""
    from ..model.connector import TextProjection, TextProjectionConfig
    from ..model.transformer import TransformerConfig
    from .tiny_gemma import gemma4_config, gemma4_state, write_packed_text_encoder

    config = gemma4_config(GEMMA_VERSION_25, **DEMO_GEMMA4)
    dit = TransformerConfig.from_metadata(DEMO_TRANSFORMER_25)
    width = DEMO_GEMMA4["hidden_size"] * (DEMO_GEMMA4["num_hidden_layers"] + 1)
    projection = _module_state(lambda: TextProjection(TextProjectionConfig(
        in_features=width, video_width=dit.inner_dim, audio_width=dit.audio_inner_dim, separate_projections=True)),
        "text_embedding_projection.", seed)
    write_packed_text_encoder(path, config, gemma4_state(config, seed), projection=projection, dtype=torch.bfloat16)
    return path


def write_audio_vae(path: Path, seed: int = 0) -> Path:
    """``audio_vae.*`` + ``vocoder.*`` of the 2.3 demo (same seeds: the same weights), 2.5 split metadata."""
    from ..loading.components import vocoder_config
    from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig

    audio = AudioVAEConfig.from_metadata(DEMO_AUDIO_VAE)
    state: dict[str, torch.Tensor] = {}
    for build, prefix in ((lambda: AudioEncoder(audio), "audio_vae.encoder."),
                          (lambda: AudioDecoder(audio), "audio_vae.decoder.")):
        for key, value in _module_state(build, prefix, seed).items():
            name = "audio_vae." + key[len(prefix):] if ".per_channel_statistics." in key else key
            state.setdefault(name, _random_value(name, tuple(value.shape), seed))
    state.update(vocoder_state(vocoder_config(DEMO_VOCODER_23), seed))
    config = {"audio_vae": copy.deepcopy(DEMO_AUDIO_VAE), "vocoder": copy.deepcopy(DEMO_VOCODER_23)}
    return _write(path, state, {"config": json.dumps(config), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def write_duration_head(path: Path, seed: int = 0) -> Path:
    """The duration head; its output layer is scaled down and biased to ``DEMO_SECONDS_25`` (log seconds)."""
    from ..model.duration_head import DurationHead, DurationHeadConfig

    dit = {k: DEMO_TRANSFORMER_25[k] for k in ("cross_attention_dim", "audio_cross_attention_dim")}
    config = {"transformer": dit, "duration_head": dict(DEMO_DURATION_HEAD)}
    state = _module_state(lambda: DurationHead(DurationHeadConfig.from_metadata(config)), "duration_head.", seed)
    state["duration_head.mlp_out.weight"] = state["duration_head.mlp_out.weight"] * 0.01
    state["duration_head.mlp_out.bias"] = torch.full_like(state["duration_head.mlp_out.bias"],
                                                          math.log(DEMO_SECONDS_25))
    return _write(path, state, {"config": json.dumps(config), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def video_vae_config() -> dict:
    """``config.vae`` of the demo video VAE file: the 2.3 demo's conv encoder nested, the diffusion decoder."""
    encoder = {"dims": 3, "in_channels": 3, "out_channels": DEMO_VIDEO_LATENT_CHANNELS,
               "blocks": copy.deepcopy(DEMO_VAE_23["encoder_blocks"]), "patch_size": DEMO_VAE_23["patch_size"],
               "norm_layer": DEMO_VAE_23["norm_layer"], "latent_log_var": DEMO_VAE_23["latent_log_var"],
               "spatial_padding_mode": "zeros"}
    return {"_class_name": "CausalDiffusionVAE", "latent_channels": DEMO_VIDEO_LATENT_CHANNELS,
            "model_output_type": "v", "encoder": encoder, "decoder": copy.deepcopy(DEMO_DIFFUSION_DECODER)}


def write_video_vae(path: Path, seed: int = 0) -> Path:
    """Conv encoder (``encoder.*``), diffusion decoder (``decoder.*``, the release's key layout: the module's keys
    plus the static per-channel ``diff_blocks.N.gate_{msa,mlp,ctx}`` the loader folds) and the shared
    ``per_channel_statistics.*``."""
    from ..model.diffusion_vae import GATE_FOLDS, DiffusionDecoderConfig, DiffusionVideoDecoder
    from ..model.video_vae import VideoEncoder, VideoVAEConfig

    config = video_vae_config()
    state = _module_state(lambda: VideoEncoder(VideoVAEConfig.from_metadata(config)), "encoder.", seed)
    state.update(_module_state(lambda: DiffusionVideoDecoder(DiffusionDecoderConfig.from_metadata(config)),
                               "decoder.", seed))
    for key in [k for k in state if k.startswith(("encoder.per_channel_statistics.",
                                                  "decoder.per_channel_statistics."))]:
        state["per_channel_statistics." + key.split("per_channel_statistics.", 1)[1]] = state.pop(key)
    blocks = sorted({k.split(".")[2] for k in state if k.startswith("decoder.diff_blocks.")}, key=int)
    for block in blocks:
        width = state[f"decoder.diff_blocks.{block}.attn.proj.weight"].shape[0]
        for gate in GATE_FOLDS:
            name = f"decoder.diff_blocks.{block}.{gate}"
            state[name] = 1.0 + _random_value(name, (width,), seed)
    return _write(path, state, {"config": json.dumps({"vae": config}), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def write_demo_models_25(root: Path, seed: int = 0) -> DemoModels25:
    """Every LTX-2.5 demo file under ``root`` (a ComfyUI-style models folder), in its folder."""
    files = DemoModels25(root / "diffusion_models" / TRANSFORMER_25, root / "text_encoders" / TEXT_ENCODER_25,
                         root / "vae" / VIDEO_VAE_25, root / "vae" / AUDIO_VAE_25,
                         root / "model_patches" / DURATION_HEAD_25, root / "latent_upscale_models" / UPSCALER_25)
    for path in files.files():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_transformer(files.transformer, seed)
    write_text_encoder(files.text_encoder, seed)
    write_video_vae(files.video_vae, seed)
    write_audio_vae(files.audio_vae, seed)
    write_duration_head(files.duration_head, seed)
    write_upscaler(files.upscaler, seed + 2)
    return files
