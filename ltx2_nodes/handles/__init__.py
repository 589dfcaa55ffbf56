"""Loaded models as cheap handles: what the nodes pass between each other and the stages run.

``load_ltx2(path)`` opens one LTX-2 file and returns an :class:`LTX2Models` bundle whose handles
(DiT, video VAE, audio VAE + vocoder, text connectors) build their modules lazily, on first use,
from the memory-mapped file -- a workflow that never encodes audio never builds the audio
encoder. Bundles, Gemma encoders and upscalers are cached per (path, mtime, size, dtype, fp8),
so a second loader node, a second CLI job or a re-queued prompt gets the same objects for free.

Handles never change the modules they share: a LoRA loader returns a new :class:`DiTHandle`
carrying its LoRA list; the sampler applies the list around its stage and removes it after.

This module holds the bundle and its part handles; ``files.py`` the handles on single-model files (Gemma, latent
upscaler, duration head, LoRA), ``base.py`` the dtype and fp8 options, caches and lazy builds they share.

Weight dtype "auto" means bfloat16 when the compute device is CUDA and float32 on the CPU (CPU
kernels for bf16 are slow and the tiny demo models are float32 there); fp8:

* "as stored": fp8 weights of ``-fp8`` files stay fp8 (dequantised per layer), others as stored;
* "upcast on load": fp8 weights are multiplied out into the weight dtype at load;
* "cast bf16 to fp8": the DiT blocks' Linear weights are quantised to fp8 at load (half the
  bytes to hold or stream; costs that much RAM once, since the file cannot be mapped as fp8).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import paths
from ..errors import CheckpointError, ModelNotFoundError
from ..loading import components
from ..loading.checkpoint import LTX2Checkpoint
from ..loading.family import ModelFamily
from ..loading.lora import LoRA, check_lora_family
from ..loading.quant import cast_linears_to_fp8
from ..loading.split import SplitPack, assemble_split_pack, check_gemma_version
from ..model.compiling import CompileOptions
from ..model.shapes import AudioTiming, VideoScale
from .base import (_LTX2_CACHE, FP8_MODES, WEIGHT_DTYPES, _file_key, _fp8_mode, _Lazy, clear_caches, file_signature,
                   resolve_dtype)
from .files import (GEMMA_FP8_MODES, GEMMA_WEIGHT_DTYPES, DurationHeadHandle, GemmaHandle, UpscalerHandle,
                    load_duration_head, load_gemma, load_lora_file, load_upscaler)

__all__ = ["FP8_MODES", "GEMMA_FP8_MODES", "GEMMA_WEIGHT_DTYPES", "WEIGHT_DTYPES", "AppliedLoRA", "AudioVAEHandle",
           "ConnectorHandle", "DiTHandle", "DurationHeadHandle", "GemmaHandle", "LTX2Models", "UpscalerHandle",
           "VideoVAEHandle", "clear_caches", "file_signature", "load_duration_head", "load_gemma", "load_lora_file",
           "load_ltx2", "load_upscaler", "resolve_dtype"]

log = logging.getLogger("ltx2_nodes")


# ------------------------------------------------------------------------------------------------
# LTX-2 single file


class LTX2Models:
    """Everything one LTX-2 file holds, built on demand (see the module doc).

    An LTX-2.5 split-layout transformer file brings its :class:`~.loading.split.SplitPack` (``pack``): the
    components not in the transformer file come from the pack's files (found in the model folders unless
    ``pack`` is given)."""

    def __init__(self, path: str | Path, dtype: torch.dtype, fp8: str, pack: SplitPack | None = None):
        self.ckpt = pack.transformer if pack is not None else LTX2Checkpoint(path)
        components.check_configs(self.ckpt)
        self.path = self.ckpt.path
        self.dtype = dtype
        self.fp8 = _fp8_mode(fp8)
        self._lazy = _Lazy()
        if pack is None and self.ckpt.variant.layout == "split":
            pack = assemble_split_pack(self.ckpt, search=paths.model_folders, require=False)
        self.pack = pack

    def source(self, component: str):
        """The opened file that holds ``component`` (an ``LTX2Checkpoint`` component name): the checkpoint, or
        the split pack's file of that kind."""
        return self.pack.source(component) if self.pack is not None else self.ckpt

    def release_pages(self, tensor: torch.Tensor) -> None:
        """Forget mapped pages behind ``tensor`` in whichever of the bundle's files it views."""
        (self.pack or self.ckpt).release_pages(tensor)

    def _part(self, part: str, single_file: Callable[[], nn.Module]) -> nn.Module:
        """``part`` built once: from the split pack's loader table, else from the single file."""
        if self.pack is not None and part != "transformer":
            return self._lazy.get(part, lambda: self.pack.load(part, self.dtype))
        return self._lazy.get(part, single_file)

    def __repr__(self) -> str:
        return f"LTX2Models({self.path.name}, {self.dtype}, fp8={self.fp8!r})"

    def __reduce__(self):
        """Sent to another process (a sampler worker, ``worker_pool``) as what opens it again there: the file, its
        dtype and fp8 mode, and every split-pack file by path (the worker searches no folder). A worker keeps it
        in its own cache, so its modules stay built between runs."""
        split = {kind: str(file.path) for kind, file in self.pack.files.items()} if self.pack is not None else None
        return load_ltx2, (str(self.path), str(self.dtype).removeprefix("torch."), self.fp8, None, split)

    @property
    def name(self) -> str:
        return self.path.name

    def _load_fp8(self) -> str:
        return "upcast" if self.fp8 == "upcast on load" else "keep"

    def transformer(self) -> nn.Module:
        def build():
            model = components.load_transformer(self.ckpt, self.dtype, fp8=self._load_fp8())
            if self.fp8 == "cast bf16 to fp8":
                count = cast_linears_to_fp8(model.transformer_blocks)
                log.info("%s: cast %d DiT block Linear weights to fp8", self.name, count)
            return model

        return self._part("transformer", build)

    def audio_transformer(self) -> nn.Module:
        """The DiT's audio stream alone (``components.load_transformer(audio_only=True)``): the video weights are
        never read. Built on its own, once; a full transformer already loaded is not reused (its video blocks
        would stream with it)."""
        def build():
            model = components.load_transformer(self.ckpt, self.dtype, fp8=self._load_fp8(), audio_only=True)
            if self.fp8 == "cast bf16 to fp8":
                cast_linears_to_fp8(model.transformer_blocks)
            return model

        return self._lazy.get("audio_transformer", build)

    def connectors(self) -> nn.Module:
        return self._part("connectors", lambda: components.load_text_connectors(self.ckpt, self.dtype))

    def video_encoder(self) -> nn.Module:
        return self._part("video_encoder", lambda: components.load_video_encoder(self.ckpt, self.dtype))

    def video_decoder(self) -> nn.Module:
        return self._part("video_decoder", lambda: components.load_video_decoder(self.ckpt, self.dtype))

    def latent_statistics(self) -> nn.Module:
        return self._part("latent_statistics", lambda: components.load_latent_statistics(self.ckpt))

    def audio_encoder(self) -> nn.Module:
        return self._part("audio_encoder", lambda: components.load_audio_encoder(self.ckpt, self.dtype))

    def audio_decoder(self) -> nn.Module:
        return self._part("audio_decoder", lambda: components.load_audio_decoder(self.ckpt, self.dtype))

    def vocoder(self) -> nn.Module:
        return self._part("vocoder", lambda: components.load_vocoder(self.ckpt, self.dtype))

    # -- handles -----------------------------------------------------------------------------------

    @cached_property
    def dit(self) -> "DiTHandle":
        return DiTHandle(self)

    @cached_property
    def video_vae(self) -> "VideoVAEHandle":
        self.require_part("video_decoder", "video VAE")
        return VideoVAEHandle(self)

    @cached_property
    def audio_vae(self) -> "AudioVAEHandle":
        self.require_part("audio_decoder", "audio VAE")
        self.require_part("vocoder", "vocoder")  # part of the audio path: found now, not after sampling
        return AudioVAEHandle(self)

    @cached_property
    def text_connector(self) -> "ConnectorHandle":
        self.require_part("video_connector", "text connectors")
        return ConnectorHandle(self)

    @cached_property
    def duration_head(self) -> "DurationHeadHandle":
        """The LTX-2.5 duration head of the split pack (built through its loader table); a pack without that file,
        or a single file, raises ``ModelNotFoundError`` / ``CheckpointError`` with the fix."""
        if self.pack is None:
            raise CheckpointError(f"{self.name} ({self.ckpt.family.name}) has no duration head: only LTX-2.5 has one, "
                                  "as its own file (ltx-2.5-duration-head-*.safetensors); give the video a length.")
        path = self.pack.file("duration_head").path
        return DurationHeadHandle(path, lambda: self.pack.load("duration_head", torch.float32))

    def text_encoder_path(self) -> Path | None:
        """The split pack's text-encoder file (LTX-2.5's packed Gemma 4, found in models/text_encoders), or None
        for a single file (its Gemma is chosen separately)."""
        return self.pack.file("text_encoder").path if self.pack is not None else None

    def require_part(self, component: str, what: str) -> None:
        """Refuse a file (or split pack) without ``component``'s weights or its ``config`` section (checked when
        a handle is made, so a run that needs the part fails before it samples)."""
        if self.pack is not None:
            self.pack.source(component)  # raises ModelNotFoundError naming the missing file and where it looked
        elif not self.ckpt.has(component):
            raise CheckpointError(f"{self.name} ({self.ckpt.variant.describe()}) has no {what}; load the full "
                                  f"{self.ckpt.family.files} single file from models/checkpoints.")
        (self.pack if self.pack is not None else self.ckpt).component_config(component)

    @cached_property
    def stage_weights(self) -> dict:
        """Weight bytes per stage as this bundle loads them (dtype, fp8 cast), from the file header:
        ``memory.precheck.checkpoint_weights``, for the pre-checks; nothing is read or built."""
        from ..memory.precheck import checkpoint_weights

        return checkpoint_weights(self.pack if self.pack is not None else self.ckpt, dtype=self.dtype,
                                  fp8=self.fp8 == "cast bf16 to fp8")

    @cached_property
    def audio_stage_weights(self) -> dict:
        """:attr:`stage_weights` of text-to-audio: the DiT as :meth:`audio_transformer` builds it (the audio stream's
        tensors alone), no video VAE."""
        from ..memory.precheck import checkpoint_weights

        return checkpoint_weights(self.pack if self.pack is not None else self.ckpt, dtype=self.dtype,
                                  fp8=self.fp8 == "cast bf16 to fp8", audio_only=True)

    def optional(self, attribute: str):
        """The handle if the file (or split pack) has that component, else None (DiT-only files). A single file
        missing a part is incomplete (truncated or stripped): that raises, at load time, instead of failing a
        later node."""
        try:
            return getattr(self, attribute)
        except (CheckpointError, ModelNotFoundError):
            if self.ckpt.variant.layout == "single_file":
                raise
            return None


def load_ltx2(path: str | Path, weight_dtype: str = "auto", fp8: str = "as stored",
              device: torch.device | str | None = None, split_files: dict[str, str | Path] | None = None
              ) -> LTX2Models:
    """Open an LTX-2 file (cached); ``device`` only decides what "auto" means. For an LTX-2.5 split-layout
    transformer file, ``split_files`` (kind -> path, see ``loading.split.SPLIT_KINDS``) names component files;
    the other kinds are found in the model folders."""
    path = Path(path)
    dtype = resolve_dtype(weight_dtype, device)
    given = {kind: Path(p) for kind, p in (split_files or {}).items() if p is not None}
    key = (*_file_key(path), dtype, _fp8_mode(fp8), tuple(sorted((k, _file_key(p)) for k, p in given.items())))

    def build() -> LTX2Models:
        pack = None
        if given:
            pack = assemble_split_pack(path, given=given, search=paths.model_folders, require=False)
        return LTX2Models(path, dtype, fp8, pack)

    return _LTX2_CACHE.get(key, build)


@dataclass(frozen=True, eq=False)
class AppliedLoRA:
    lora: LoRA
    strength: float
    name: str


@dataclass(frozen=True, eq=False)
class _BundlePart:
    """A handle on part of an ``LTX2Models`` bundle: what every stage needs from the bundle's file."""

    models: LTX2Models

    @property
    def release_pages(self):
        """The files' ``release_pages`` for ``MemoryEngine.stage`` (streamed blocks keep RSS flat)."""
        return self.models.release_pages

    @property
    def family(self) -> ModelFamily:
        """The model family of the bundle's file (``loading.family``): which presets apply."""
        return self.models.ckpt.family


@dataclass(frozen=True, eq=False)
class DiTHandle(_BundlePart):
    """The transformer of a bundle plus the LoRAs to apply while it samples (the module is shared), and whether
    its blocks run compiled (``model.compiling``) while it samples."""

    loras: tuple[AppliedLoRA, ...] = ()
    compiled: CompileOptions | None = None
    audio_only: bool = False  # the audio stream alone: no video weight is loaded (text-to-audio)

    @property
    def model(self) -> nn.Module:
        return self.models.audio_transformer() if self.audio_only else self.models.transformer()

    @property
    def config(self):
        from ..model.transformer import TransformerConfig

        cfg = TransformerConfig.from_metadata(self.models.ckpt.component_config("transformer"))
        return dataclasses.replace(cfg, has_video=False) if self.audio_only else cfg

    @property
    def stage_weights(self):
        """The DiT stage's weight bytes as :attr:`model` loads them (``LTX2Models.stage_weights`` /
        ``audio_stage_weights``), for the pre-checks; nothing is built."""
        return (self.models.audio_stage_weights if self.audio_only else self.models.stage_weights)["dit"]

    def with_lora(self, lora: LoRA, strength: float, name: str = "") -> "DiTHandle":
        """This model plus ``lora``; a LoRA made for another model family is refused here, before sampling."""
        check_lora_family(lora, self.family, self.models.name)
        return replace(self, loras=self.loras + (AppliedLoRA(lora, float(strength), name or lora.name),))

    def with_compile(self, enabled: bool = True, options: CompileOptions = CompileOptions()) -> "DiTHandle":
        """This model with its blocks compiled by ``torch.compile`` (``options``) while it samples: one compiled
        block body for all blocks; the first step of each new shape compiles (``model.compiling``)."""
        return replace(self, compiled=options if enabled else None)

    def audio_stream(self) -> "DiTHandle":
        """This model (and its LoRAs) as an audio-only transformer."""
        return replace(self, audio_only=True)

    def lora_list(self) -> list[tuple[LoRA, float]]:
        return [(entry.lora, entry.strength) for entry in self.loras]

    def describe(self) -> str:
        loras = ", ".join(f"{e.name} x{e.strength:g}" for e in self.loras)
        compiled = " (compiled)" if self.compiled is not None else ""
        return (self.models.name + (" (audio only)" if self.audio_only else "") + (f" + {loras}" if loras else "")
                + compiled)


@dataclass(frozen=True, eq=False)
class VideoVAEHandle(_BundlePart):
    """The video VAE of a bundle: encoder, decoder, latent statistics and their config."""

    @property
    def encoder(self) -> nn.Module:
        return self.models.video_encoder()

    @property
    def decoder(self) -> nn.Module:
        return self.models.video_decoder()

    @property
    def stats(self) -> nn.Module:
        """Per-channel latent statistics (float32), e.g. for the latent upscaler."""
        return self.models.latent_statistics()

    @cached_property
    def config(self):
        """The conv VAE config (for a diffusion VAE file: its encoder; the decoder is :attr:`diffusion_config`)."""
        from ..model.video_vae import VideoVAEConfig

        return VideoVAEConfig.from_metadata(self.models.source("video_decoder").component_config("video_decoder"))

    @cached_property
    def diffusion_config(self):
        """The LTX-2.5 diffusion decoder's config, or None when the decoder is the conv one."""
        from ..model.diffusion_vae import DiffusionDecoderConfig, is_diffusion_vae

        meta = self.models.source("video_decoder").component_config("video_decoder")
        return DiffusionDecoderConfig.from_metadata(meta) if is_diffusion_vae(meta) else None

    @property
    def scale(self) -> VideoScale:
        diffusion = self.diffusion_config
        return diffusion.scale if diffusion is not None else self.config.decoder_scale

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels


@dataclass(frozen=True, eq=False)
class AudioVAEHandle(_BundlePart):
    """The audio VAE and vocoder of a bundle, their configs and the audio latent layout."""

    @property
    def encoder(self) -> nn.Module:
        return self.models.audio_encoder()

    @property
    def decoder(self) -> nn.Module:
        return self.models.audio_decoder()

    @property
    def vocoder(self) -> nn.Module:
        return self.models.vocoder()

    @cached_property
    def config(self):
        from ..model.audio_vae import AudioVAEConfig

        return AudioVAEConfig.from_metadata(self.models.source("audio_decoder").component_config("audio_decoder"))

    @cached_property
    def vocoder_config(self):
        """``VocoderConfig`` (LTX-2 HiFi-GAN) or ``BWEVocoderConfig`` (LTX-2.3), read without building it."""
        return components.vocoder_config(self.models.source("vocoder").component_config("vocoder"))

    @property
    def timing(self) -> AudioTiming:
        return self.config.timing

    @property
    def latent_channels(self) -> int:
        return self.config.z_channels

    @property
    def latent_mel_bins(self) -> int:
        return self.config.latent_mel_bins

    @property
    def sample_rate(self) -> int:
        """Rate of the decoded waveform (the vocoder's output rate)."""
        return self.vocoder_config.output_sample_rate


@dataclass(frozen=True, eq=False)
class ConnectorHandle(_BundlePart):
    """The text connectors of a bundle (Gemma features -> the DiT's video and audio contexts)."""

    @property
    def connectors(self) -> nn.Module:
        return self.models.connectors()

    def check_text_encoder(self, source: str, gemma_version: str | None) -> None:
        """Refuse features of a text encoder other than the one an LTX-2.5 transformer was trained with (its
        Gemma version lock, ``loading.split.check_gemma_version``); files without a split pack are not locked."""
        if self.models.pack is not None:
            check_gemma_version(self.models.ckpt.file, gemma_version, source or "the connected text encoder")
