"""Handles on files that hold one model each: a Gemma text encoder, the latent upscaler, the LTX-2.5 duration head,
and parsed LoRAs (cached per file like the LTX-2 bundles; see the package doc of ``handles``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import InputError
from ..loading import components
from ..loading.lora import LoRA, load_lora
from .base import (_DURATION_HEAD_CACHE, _GEMMA_CACHE, _LORA_CACHE, _UPSCALER_CACHE, _file_key, _folder_key, _Lazy,
                   resolve_dtype)


@dataclass(eq=False)
class GemmaHandle:
    """A Gemma text encoder (Gemma 3, or LTX-2.5's packed Gemma 4), loaded on first use."""

    path: Path
    dtype: torch.dtype | None
    fp8: str
    _lazy: _Lazy = field(default_factory=_Lazy, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def encoder(self):
        from ..text.gemma import load_gemma_encoder

        return self._lazy.get("encoder", lambda: load_gemma_encoder(self.path, dtype=self.dtype,
                                                                    fp8="upcast" if self.fp8 == "upcast on load"
                                                                    else "keep"))

    @cached_property
    def files(self):
        """The located files (headers for the pre-check; the encoder maps its own)."""
        from ..loading.gemma_files import locate_gemma

        return locate_gemma(self.path)

    @cached_property
    def stage_weights(self):
        """The Gemma stage's weight bytes as loaded, from the file headers (``memory.precheck.stage_weights``)."""
        from ..memory.precheck import stage_weights

        return stage_weights("gemma", self.files.raw_state(), dtype=self.dtype)


GEMMA_WEIGHT_DTYPES = ("auto", "bfloat16", "float32")
GEMMA_FP8_MODES = ("as stored", "upcast on load")


def load_gemma(path: str | Path, weight_dtype: str = "auto", fp8: str = "as stored",
               device: torch.device | str | None = None) -> GemmaHandle:
    """A Gemma text encoder (HF folder, ComfyUI single file or LTX-2.5 packed file), cached. "auto" keeps the file's
    dtype on CUDA (bf16 as released) and computes in float32 on the CPU."""
    path = Path(path)
    if fp8 not in GEMMA_FP8_MODES:
        raise InputError(f"Gemma fp8 option {fp8!r} is not one of {list(GEMMA_FP8_MODES)}.")
    if weight_dtype == "auto":
        dtype = None if resolve_dtype("auto", device) == torch.bfloat16 else torch.float32
    else:
        dtype = resolve_dtype(weight_dtype)
    key = (*_folder_key(path), dtype, fp8)
    return _GEMMA_CACHE.get(key, lambda: GemmaHandle(path, dtype, fp8))


@dataclass(eq=False)
class UpscalerHandle:
    path: Path
    dtype: torch.dtype
    _lazy: _Lazy = field(default_factory=_Lazy, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> nn.Module:
        return self._lazy.get("upsampler", lambda: components.load_latent_upsampler(self.path, self.dtype))

    @cached_property
    def stage_weights(self):
        """The upscaler stage's weight bytes as loaded, from the file header (nothing read or built)."""
        from ..loading.safetensors_file import SafetensorsFile
        from ..memory.precheck import stage_weights

        file = SafetensorsFile(self.path)
        return stage_weights("upscaler", {k: file.info(k) for k in file.keys()}, dtype=self.dtype, streamable=False)


def load_upscaler(path: str | Path, weight_dtype: str = "auto", device: torch.device | str | None = None
                  ) -> UpscalerHandle:
    path = Path(path)
    dtype = resolve_dtype(weight_dtype, device)
    return _UPSCALER_CACHE.get((*_file_key(path), dtype), lambda: UpscalerHandle(path, dtype))


@dataclass(eq=False)
class DurationHeadHandle:
    """The LTX-2.5 duration head's file; the head (a few MB) is built in float32 on the CPU on first use, by
    ``build`` (a split pack's loader) or else from the file itself."""

    path: Path
    build: Callable[[], nn.Module] | None = None
    _lazy: _Lazy = field(default_factory=_Lazy, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> nn.Module:
        return self._lazy.get("duration_head", self.build or (
            lambda: components.load_duration_head(self.path, torch.float32)))


def load_duration_head(path: str | Path) -> DurationHeadHandle:
    """A handle on a duration-head file (cached per file; see ``loading.components.load_duration_head``)."""
    path = Path(path)
    return _DURATION_HEAD_CACHE.get(_file_key(path), lambda: DurationHeadHandle(path))


def load_lora_file(path: str | Path) -> LoRA:
    """A parsed LoRA (cached; tensors stay memory-mapped until applied)."""
    path = Path(path)
    return _LORA_CACHE.get(_file_key(path), lambda: load_lora(path))
