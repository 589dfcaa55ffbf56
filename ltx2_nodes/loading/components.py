"""One loader per model component, all going through ``build_module`` (meta build + assign).

Each takes an opened ``LTX2Checkpoint`` (or a file path for separately shipped models), a target
``dtype`` (None keeps the file's dtype) and ``device``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, UnsupportedModelError
from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
from ..model.bigvgan import BWEVocoder, BWEVocoderConfig
from ..model.diffusion_vae import DiffusionDecoderConfig, DiffusionVideoDecoder, fold_static_gates, is_diffusion_vae
from ..model.connector import (ConnectorConfig, Embeddings1DConnector, TextConnectors, TextProjection,
                               TextProjectionConfig)
from ..model.duration_head import DurationHead, DurationHeadConfig
from ..model.transformer import LTX2Transformer, TransformerConfig
from ..model.upsampler import LatentUpsampler, UpsamplerConfig
from ..model.video_vae import PerChannelStatistics, VideoDecoder, VideoEncoder, VideoVAEConfig
from ..model.vocoder import Vocoder, VocoderConfig, has_bwe_sections
from .checkpoint import COMPONENTS, LTX2Checkpoint, build_module
from .safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

# statistics LTX-2.0 files store but nothing reads (LTX-2.3 files leave them out), per component
_UNREAD_STATISTICS = tuple(f"per_channel_statistics.{name}" for name in PerChannelStatistics.UNREAD)
# Stored tensors the loaders never read, per component (the pre-check does not count them either).
UNREAD = {"video_encoder": _UNREAD_STATISTICS, "video_decoder": _UNREAD_STATISTICS,
          "vocoder": ("mel_stft.stft_fn.inverse_basis",)}  # LTX-2.3 BWE: stored, never used


def check_configs(ckpt: LTX2Checkpoint) -> None:
    """Build the config of every component the file holds from its metadata (nothing is allocated), so that a
    damaged or edited config (two million layers, ``"two"`` heads, a negative width: see
    ``model.config_values``) is refused with the file's name when the file is opened, before any part is built
    or anything runs."""
    def connector(component: str):
        registers = ckpt.state_dict(component).get("learnable_registers")
        rows = registers.shape[0] if registers is not None and registers.ndim == 2 else None
        return lambda c: ConnectorConfig.from_metadata(c, audio=component == "audio_connector", registers=rows)

    builders = {"transformer": TransformerConfig.from_metadata, "video_connector": None, "audio_connector": None,
                "video_decoder": video_decoder_config, "audio_decoder": AudioVAEConfig.from_metadata,
                "vocoder": vocoder_config}
    for component, build in builders.items():
        if not ckpt.has(component):
            continue
        try:
            (build or connector(component))(ckpt.component_config(component))
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{ckpt.path.name}: {exc}") from None


def _load(ckpt: LTX2Checkpoint, component: str, make: Callable[[dict], nn.Module], what: str, dtype, device,
          **options) -> nn.Module:
    """Build ``make(config section)`` and assign the component's tensors from the memory map."""
    config = ckpt.component_config(component)
    options.setdefault("ignore_unexpected", UNREAD.get(component, ()))
    return build_module(lambda: make(config), ckpt.state_dict(component), what=what, source=ckpt.path.name,
                        dtype=dtype, device=device, release=ckpt.release_pages, **options)


def load_transformer(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None, fp8: str = "keep", *,
                     audio_only: bool = False):
    """The DiT of ``ckpt``; ``dtype`` None keeps the file dtype (bf16 for the release).

    ``audio_only``: the audio stream alone (``has_video`` false: no video block, no audio<->video
    cross-attention), as the reference's text-to-audio pipeline (``LTXAudioOnlyModelConfigurator`` with an
    SDOps that drops the other keys): the video tensors are never read from the file, so they never occupy
    memory, a device or a stream slot."""
    cfg = TransformerConfig.from_metadata(ckpt.component_config("transformer"))
    if not audio_only:
        return _load(ckpt, "transformer", lambda _: LTX2Transformer(cfg), "transformer", dtype, device, fp8=fp8)
    cfg = dataclasses.replace(cfg, has_video=False)
    state = ckpt.state_dict("transformer", select=in_audio_only_model(cfg))
    return build_module(lambda: LTX2Transformer(cfg), state, what="audio-only transformer", source=ckpt.path.name,
                        dtype=dtype, device=device, release=ckpt.release_pages, fp8=fp8)


def in_audio_only_model(cfg: TransformerConfig) -> Callable[[str], bool]:
    """Whether a DiT tensor name belongs to the audio-only transformer of ``cfg`` (``has_video`` false): one of
    its parameters, or a companion of one of its leaf layers (fp8 scales, quantization records)."""
    with torch.device("meta"):
        meta = LTX2Transformer(cfg)
    names = set(meta.state_dict())
    layers = {name for name, module in meta.named_modules() if name and next(module.children(), None) is None}
    return lambda key: key in names or key.rpartition(".")[0] in layers


# ------------------------------------------------------------------------------------------------
# Text path after Gemma (issue 3): feature projection + video/audio embedding connectors.
# Their weights live in the LTX-2 checkpoint, never in Gemma's file.


def load_text_projection(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None,
                         text_encoder: SafetensorsFile | None = None) -> TextProjection:
    """``text_embedding_projection.*``: ``aggregate_embed`` ([caption_channels, gemma_width * gemma_states], no
    bias; LTX-2 19B) or ``video_aggregate_embed`` / ``audio_aggregate_embed`` (to the DiT's inner widths, biased;
    LTX-2.3 / LTX-2.5), as the transformer config selects. Widths come from the tensors.

    The tensors are in ``ckpt`` (single files) or, for an LTX-2.5 split-layout transformer file, in the packed
    text-encoder file ``text_encoder`` (the reference builds the projection from both files, its config from
    the transformer's: ``ModelPaths.from_split``)."""
    separate = TextProjectionConfig.separate_from_metadata(ckpt.component_config("text_projection"))
    if text_encoder is not None:
        source, release = text_encoder.path.name, text_encoder.release_pages
        spec = COMPONENTS["text_projection"]
        state = {name: text_encoder.tensor(k) for k in text_encoder.keys() if (name := spec.module_key(k)) is not None}
    elif ckpt.variant.layout == "split":
        raise CheckpointError(
            f"{ckpt.path.name} is an {ckpt.family.name} split-layout transformer file: its text projection "
            "(text_embedding_projection.*) is in the packed text-encoder file of the same release. Load that file "
            "(models/text_encoders) together with this one.")
    else:
        source, release, state = ckpt.path.name, ckpt.release_pages, ckpt.state_dict("text_projection")
    names = ("video_aggregate_embed", "audio_aggregate_embed") if separate else ("aggregate_embed",)
    weights = [state.get(f"{name}.weight") for name in names]
    for name, weight in zip(names, weights):
        if weight is None or weight.ndim != 2:
            release_name = ckpt.family.name if separate else "LTX-2 (19B)"
            raise CheckpointError(
                f"{source}: 'text_embedding_projection.{name}.weight' is missing or not a matrix, which the text "
                f"path of an {release_name} model (as the config of {ckpt.path.name} says) needs; the file is "
                "damaged, not the text encoder of this model, or its config does not match its tensors.")
    cfg = TextProjectionConfig(in_features=weights[0].shape[1], video_width=weights[0].shape[0],
                               audio_width=weights[-1].shape[0], separate_projections=separate)
    return build_module(lambda: TextProjection(cfg), state, what="text projection", source=source,
                        dtype=dtype, device=device, release=release)


def _load_connector(ckpt: LTX2Checkpoint, component: str, dtype, device) -> Embeddings1DConnector:
    """One connector; its register count is the rows of the file's ``learnable_registers``."""
    registers = ckpt.state_dict(component).get("learnable_registers")
    if registers is None or registers.ndim != 2:
        raise CheckpointError(
            f"{ckpt.path.name}: the {component.replace('_', ' ')} has no 'learnable_registers' matrix; the file is "
            "damaged or not an LTX-2 checkpoint.")
    audio = component == "audio_connector"
    return _load(ckpt, component, lambda c: Embeddings1DConnector(
        ConnectorConfig.from_metadata(c, audio=audio, registers=registers.shape[0])),
        component.replace("_", " "), dtype, device)


def load_video_connector(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Embeddings1DConnector:
    return _load_connector(ckpt, "video_connector", dtype, device)


def load_audio_connector(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Embeddings1DConnector:
    return _load_connector(ckpt, "audio_connector", dtype, device)


def load_text_connectors(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None,
                         text_encoder: SafetensorsFile | None = None) -> TextConnectors:
    """Projection + both connectors; ``connectors.connect(gemma_states, mask)`` gives the DiT contexts
    (``connectors.video_width`` / ``audio_width`` wide). ``text_encoder``: the packed text-encoder file that holds
    the projection of an LTX-2.5 split pack (see :func:`load_text_projection`)."""
    return TextConnectors(load_text_projection(ckpt, dtype, device, text_encoder),
                          load_video_connector(ckpt, dtype, device), load_audio_connector(ckpt, dtype, device)).eval()
# Audio path: audio VAE encoder / decoder and vocoder (``audio_vae.*`` / ``vocoder.*`` keys)


def load_audio_encoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> AudioEncoder:
    """Log-mel -> normalised audio latent, built from ``config.audio_vae``."""
    return _load(ckpt, "audio_encoder", lambda c: AudioEncoder(AudioVAEConfig.from_metadata(c)), "audio encoder",
                 dtype, device)


def load_audio_decoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> AudioDecoder:
    """Normalised audio latent -> log-mel, built from ``config.audio_vae``."""
    return _load(ckpt, "audio_decoder", lambda c: AudioDecoder(AudioVAEConfig.from_metadata(c)), "audio decoder",
                 dtype, device)


def vocoder_config(meta: dict) -> VocoderConfig | BWEVocoderConfig:
    """The vocoder family a ``config.vocoder`` section describes: nested ``vocoder`` + ``bwe`` sections are
    the LTX-2.3 BigVGAN + bandwidth extension (48 kHz), a flat section the LTX-2 HiFi-GAN (24 kHz)."""
    if has_bwe_sections(meta):
        return BWEVocoderConfig.from_metadata(meta)
    return VocoderConfig.from_metadata(meta)


def vocoder_dtype(ckpt: LTX2Checkpoint, dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype :func:`load_vocoder` builds ``ckpt``'s vocoder in when asked for ``dtype``: the LTX-2.3
    BigVGAN + bandwidth extension in float32 (float64 if asked; the reference runs it under float32 autocast
    because bf16 accumulation degrades its output), the LTX-2 HiFi-GAN in ``dtype``."""
    if isinstance(vocoder_config(ckpt.component_config("vocoder")), BWEVocoderConfig):
        return torch.float64 if dtype == torch.float64 else torch.float32
    return dtype


def load_vocoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None) -> Vocoder | BWEVocoder:
    """Log-mel -> waveform, the model ``config.vocoder`` describes (see :func:`vocoder_config`), in
    :func:`vocoder_dtype`. The LTX-2.3 ``mel_stft.stft_fn.inverse_basis`` is stored but never read, so it is
    not loaded."""
    cfg = vocoder_config(ckpt.component_config("vocoder"))
    make = (lambda _: BWEVocoder(cfg)) if isinstance(cfg, BWEVocoderConfig) else (lambda _: Vocoder(cfg))
    return _load(ckpt, "vocoder", make, "vocoder", vocoder_dtype(ckpt, dtype), device)


# ------------------------------------------------------------------------------------------------
# Video VAE and latent upsampler (issue 4)


def load_video_encoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None,
                       device=None) -> VideoEncoder:
    """The video VAE encoder (``vae.encoder.*`` + shared ``vae.per_channel_statistics.*``; bare ``encoder.*`` in
    an LTX-2.5 split pack's video VAE file, whose nested ``config.vae.encoder`` the config reads)."""
    return _load(ckpt, "video_encoder", lambda c: VideoEncoder(VideoVAEConfig.from_metadata(c)), "video VAE encoder",
                 dtype, device)


def video_decoder_config(meta: dict) -> VideoVAEConfig | DiffusionDecoderConfig:
    """The decoder ``config.vae`` describes: the LTX-2.5 diffusion decoder (``_class_name``
    ``CausalDiffusionVAE``) or the conv VAE (whose config also carries the encoder)."""
    return DiffusionDecoderConfig.from_metadata(meta) if is_diffusion_vae(meta) else VideoVAEConfig.from_metadata(meta)


def load_video_decoder(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None,
                       device=None) -> VideoDecoder | DiffusionVideoDecoder:
    """The video VAE decoder (``vae.decoder.*`` / bare ``decoder.*`` + shared ``per_channel_statistics.*``), the
    one ``config.vae._class_name`` names: the conv decoder, or the LTX-2.5 diffusion decoder
    (``CausalDiffusionVAE``; its static gates folded into their Linears at load, see ``fold_static_gates``)."""
    cfg = video_decoder_config(ckpt.component_config("video_decoder"))
    if isinstance(cfg, DiffusionDecoderConfig):
        state = fold_static_gates(ckpt.state_dict("video_decoder"))
        return build_module(lambda: DiffusionVideoDecoder(cfg), state, what="diffusion video VAE decoder",
                            source=ckpt.path.name, dtype=dtype, device=device, release=ckpt.release_pages,
                            ignore_unexpected=_UNREAD_STATISTICS)
    return _load(ckpt, "video_decoder", lambda _: VideoDecoder(cfg), "video VAE decoder", dtype, device)


def load_latent_statistics(ckpt: LTX2Checkpoint, device=None) -> PerChannelStatistics:
    """Only the video VAE's per-channel latent statistics (float32), e.g. for :func:`upsample_latent`
    without loading a whole VAE."""
    state = {k: v for k, v in ckpt.state_dict("video_decoder").items() if k.startswith("per_channel_statistics.")}
    channels = VideoVAEConfig.from_metadata(ckpt.component_config("video_decoder")).latent_channels
    holder = build_module(lambda: nn.ModuleDict({"per_channel_statistics": PerChannelStatistics(channels)}), state,
                          what="video VAE statistics", source=ckpt.path.name, dtype=torch.float32, device=device,
                          ignore_unexpected=_UNREAD_STATISTICS, release=ckpt.release_pages)
    return holder["per_channel_statistics"]


# the upsampling layer's weight: integer shuffles (nn.Sequential) / the rational resampler's conv
_UPSAMPLER_CONVS = ("upsampler.0.weight", "upsampler.conv.weight")


def _infer_upsampler_config(file: SafetensorsFile) -> dict:
    """Config from tensor shapes, for upscaler files re-saved without their ``config`` metadata. A
    rational resampler's down factor is not in any shape: 9*mid channels (x3 shuffle) is taken as the
    released x1.5 (3/2)."""
    mid, in_channels = file.info("initial_conv.weight").shape[:2]
    dims = len(file.info("initial_conv.weight").shape) - 2
    blocks = {int(k.split(".")[1]) for k in file.keys() if k.startswith("res_blocks.")}
    log.warning("%s has no config metadata; latent upscaler config inferred from tensor shapes.", file.path.name)
    config = {"in_channels": in_channels, "mid_channels": mid, "num_blocks_per_stage": max(blocks, default=-1) + 1,
              "dims": dims}
    if "upsampler.conv.weight" in file:
        scale = {4: 2.0, 9: 1.5, 16: 4.0}.get(file.info("upsampler.conv.weight").shape[0] // mid, 0.0)
        return config | {"spatial_upsample": True, "rational_resampler": True, "spatial_scale": scale}
    up = file.info("upsampler.0.weight").shape
    ratio = up[0] // mid
    return config | {"spatial_upsample": len(up) == 4 or ratio == 8,
                     "temporal_upsample": len(up) == 5 and ratio in (2, 8)}


def read_upsampler_config(file: SafetensorsFile) -> UpsamplerConfig:
    """The latent upscaler's config from its file's header (nothing loaded). Refuses the main checkpoint and
    other models with a message saying which file is needed."""
    keys = file.keys()
    if "initial_conv.weight" not in file or not any(key in file for key in _UPSAMPLER_CONVS):
        if any(k.startswith(("model.diffusion_model.", "vae.", "audio_vae.", "transformer_blocks.")) for k in keys):
            what = "an LTX-2 model checkpoint (DiT/VAE)"
        else:
            what = f"not an LTX-2 latent upscaler ({len(keys)} tensors, e.g. {keys[:3]})"
        raise CheckpointError(
            f"{file.path.name} is {what}. The latent upscaler is a separate file, "
            "ltx-2-spatial-upscaler-x2-1.0.safetensors from Lightricks/LTX-2, which goes in "
            "models/latent_upscale_models.")
    config = file.json_metadata("config")
    if config is None:
        config = _infer_upsampler_config(file)
    elif not isinstance(config, dict) or config.get("_class_name", "LatentUpsampler") != "LatentUpsampler":
        found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{file.path.name}: metadata 'config' describes {found!r}, not a LatentUpsampler; "
                              "use ltx-2-spatial-upscaler-x2-1.0.safetensors.")
    return UpsamplerConfig.from_metadata(config, source=file.path.name)


def load_latent_upsampler(path: str | Path, dtype: torch.dtype | None = None, device=None) -> LatentUpsampler:
    """The latent upscaler from its own file (``ltx-2-spatial-upscaler-x2-1.0.safetensors``, the LTX-2.3 x2 and
    x1.5 files; flat ``config`` metadata), see :func:`read_upsampler_config`."""
    file = SafetensorsFile(path)
    cfg = read_upsampler_config(file)
    state = {k: file.tensor(k) for k in file.keys()}
    return build_module(lambda: LatentUpsampler(cfg), state, what="latent upscaler", source=file.path.name,
                        dtype=dtype, device=device, release=file.release_pages)


# ------------------------------------------------------------------------------------------------
# LTX-2.5 duration head: its own small file (``duration_head.*`` tensors, ``config`` metadata with
# ``transformer.{cross_attention_dim, audio_cross_attention_dim}`` and ``duration_head.{...}``).

DURATION_HEAD_PREFIX = "duration_head."


def has_duration_head(file: SafetensorsFile) -> bool:
    """Whether ``file`` carries duration-head tensors (its own file, or any file that packs them along)."""
    return any(key.startswith(DURATION_HEAD_PREFIX) for key in file.keys())


def load_duration_head(path: str | Path | SafetensorsFile, dtype: torch.dtype | None = None,
                       device=None) -> DurationHead:
    """The duration head of ``path`` (a path or an opened file): every ``duration_head.*`` tensor, prefix
    stripped, as the reference's ``DURATION_HEAD_KEY_OPS``; config from the file's ``config`` metadata
    (:meth:`DurationHeadConfig.from_metadata`). Refuses a file without those tensors, saying which file has them."""
    file = path if isinstance(path, SafetensorsFile) else SafetensorsFile(path)
    if not has_duration_head(file):
        raise CheckpointError(
            f"{file.path.name} has no duration head (no '{DURATION_HEAD_PREFIX}*' tensors). The LTX-2.5 release ships "
            "it as its own file (put it in models/model_patches); or give the video an explicit frame count.")
    config = file.json_metadata("config") or {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{file.path.name}: metadata 'config' is {type(config).__name__}, not an object; "
                              "use the original release file.")
    cfg = DurationHeadConfig.from_metadata(config, source=file.path.name)
    state = {k[len(DURATION_HEAD_PREFIX):]: file.tensor(k) for k in file.keys() if k.startswith(DURATION_HEAD_PREFIX)}
    return build_module(lambda: DurationHead(cfg), state, what="duration head", source=file.path.name,
                        dtype=dtype, device=device, release=file.release_pages)
