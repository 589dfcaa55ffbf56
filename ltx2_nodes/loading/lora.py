"""LoRA adapters for the DiT, applied on the fly without copying the base weights.

Accepted key layouts (one file may use any of them):

* official / ltx-trainer / ComfyUI: ``diffusion_model.<module>.lora_A.weight`` + ``.lora_B.weight``
  (also with ``model.diffusion_model.`` or no prefix);
* kohya: ``lora_unet_<module with '.' -> '_'>.lora_down.weight`` + ``.lora_up.weight`` + ``.alpha``;
* diffusers: ``transformer.<module>.lora_A.weight`` ..., with diffusers' module names
  (``proj_in``, ``time_embed``, ``av_cross_attn_*`` ...) mapped back to the checkpoint's.

Model family: a LoRA made for LTX-2.3 does not fit LTX-2 and vice versa. ``load_lora`` reads which
family a file was made for (``loading.family.detect_family``): its ``model_version`` metadata (or
a base model named in ``modelspec.architecture`` / ``ss_base_model_version`` / ``base_model``),
targets only one family has (``to_gate_logits``, ``prompt_adaln_single`` for 2.3,
``caption_projection`` for 2.0) and the row count of an ``adaln_single.linear`` target (6 / 9).
A LoRA on a model of the other family is refused with both families named. The official
trainer writes no version metadata and by default adapts only ``to_q/to_k/to_v/to_out.0``,
whose shapes are equal in both families (width 4096): such a LoRA cannot be told apart and is
applied to either, as the reference does.

A LoRA adds ``strength * scale * (up @ down)`` to a Linear's weight; ``scale`` is ``alpha / rank``
when the file has an ``alpha`` entry and 1 otherwise (the reference fuses ``B @ A`` unscaled; its
files carry no alpha).

Application: each targeted ``nn.Linear`` / ``QuantLinear`` (fp8, GGUF, NVFP4) keeps its weights untouched and gets the
LoRA factors as (non-persistent) buffers plus a forward hook that adds ``x @ down.T @ up.T`` to
its output. The state dict keys do not change, and anything that moves a block's parameters and
buffers (``.to()``, a block-streaming engine) moves the factors with it. ``fuse_loras`` folds
them into writable float weights for speed; ``unfuse_loras`` takes them out again.
"""

from __future__ import annotations

import itertools
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from .family import FamilyMatch, ModelFamily, detect_family
from .quant import QuantLinear
from .safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

_FACTOR_SUFFIXES = {
    ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora_down.weight": "down", ".lora_up.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up",
    ".alpha": "alpha",
}
_UNSUPPORTED_MARKERS = {
    ".lokr_": "LoKr", ".hada_": "LoHa", ".oft_": "OFT", ".dora_scale": "DoRA", ".lora_mid.": "LoCon mid",
    ".lora_A.bias": "LoRA bias", ".lora_B.bias": "LoRA bias",
}
_UNSUPPORTED_SUFFIXES = {".diff": "full-weight diff", ".diff_b": "bias diff"}


def is_lora_key(key: str) -> bool:
    """Whether ``key`` names a LoRA tensor (a factor, an alpha, or an adapter type we refuse): how a LoRA is
    told apart from a model, also when it sits in the checkpoint slot."""
    return (key.endswith(tuple(_FACTOR_SUFFIXES) + tuple(_UNSUPPORTED_SUFFIXES))
            or any(m in key for m in _UNSUPPORTED_MARKERS))


_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.")
_KOHYA_PREFIXES = ("lora_unet_", "lora_transformer_")
# diffusers' LTX-2 transformer names -> checkpoint names (top-level modules; block internals match).
_DIFFUSERS_NAMES = {
    "proj_in": "patchify_proj",
    "audio_proj_in": "audio_patchify_proj",
    "time_embed": "adaln_single",
    "audio_time_embed": "audio_adaln_single",
    "av_cross_attn_video_scale_shift": "av_ca_video_scale_shift_adaln_single",
    "av_cross_attn_audio_scale_shift": "av_ca_audio_scale_shift_adaln_single",
    "av_cross_attn_video_a2v_gate": "av_ca_a2v_gate_adaln_single",
    "av_cross_attn_audio_v2a_gate": "av_ca_v2a_gate_adaln_single",
}


@dataclass
class LoRAFactors:
    """``down`` ``[rank, in]``, ``up`` ``[out, rank]``, ``scale`` (alpha / rank, or 1)."""

    down: torch.Tensor
    up: torch.Tensor
    scale: float = 1.0

    @property
    def rank(self) -> int:
        return self.down.shape[0]


@dataclass
class LoRA:
    """A parsed LoRA file: factors per target, keyed by the file's target name (prefix stripped)."""

    name: str
    targets: dict[str, LoRAFactors]
    kohya: set[str] = field(default_factory=set)  # targets written with '_' instead of '.'
    family: FamilyMatch | None = None  # the model family it was made for, when the file tells
    # IC-LoRAs: how much smaller (space, time) than the video their reference video was trained; 1 = same size
    reference_downscale_factor: int = 1
    reference_temporal_scale_factor: int = 1
    source: Path | None = None  # the file it was read from (``load_lora``); None for one built in memory

    def __reduce_ex__(self, protocol):
        """Sent to another process (a sampler worker, ``worker_pool``) as its file's path, read again there (the
        factors stay memory-mapped instead of being copied through a pipe); one built in memory goes whole."""
        if self.source is None:
            return super().__reduce_ex__(protocol)
        return load_lora, (self.source,)


def load_lora(path: str | Path) -> LoRA:
    """Read a LoRA safetensors file (tensors stay memory-mapped until applied)."""
    file = SafetensorsFile(path)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unsupported: dict[str, list[str]] = {}
    unknown = []
    for key in file.keys():
        kind = next(((sfx, role) for sfx, role in _FACTOR_SUFFIXES.items() if key.endswith(sfx)), None)
        if kind is None:
            marker = next((label for m, label in _UNSUPPORTED_MARKERS.items() if m in key), None) or next(
                (label for sfx, label in _UNSUPPORTED_SUFFIXES.items() if key.endswith(sfx)), None)
            (unsupported.setdefault(marker, []) if marker else unknown).append(key)
            continue
        groups.setdefault(key[: -len(kind[0])], {})[kind[1]] = file.tensor(key)
    if unsupported:
        kinds = ", ".join(f"{label} ({len(keys)} tensors, e.g. '{keys[0]}')" for label, keys in unsupported.items())
        raise CheckpointError(f"LoRA {file.path.name} contains adapter types ltx2_nodes does not apply: {kinds}. "
                              "Only plain LoRA (lora_A/lora_B or lora_down/lora_up, optional alpha) is supported.")
    if unknown:
        log.warning("LoRA %s: ignoring %d tensors that are not LoRA factors, e.g. %s", file.path.name, len(unknown),
                    unknown[:3])
    if not groups:
        raise CheckpointError(f"{file.path.name} holds no LoRA factors (no '*.lora_A.weight' / '*.lora_down.weight' "
                              f"keys among its {len(file.keys())} tensors); it is not a LoRA file.")
    lora = LoRA(file.path.name, {}, reference_downscale_factor=_reference_factor(file, "reference_downscale_factor"),
                reference_temporal_scale_factor=_reference_factor(file, "reference_temporal_scale_factor"),
                source=Path(file.path))
    for raw, parts in groups.items():
        if "down" not in parts or "up" not in parts:
            missing = "up (lora_B / lora_up)" if "up" not in parts else "down (lora_A / lora_down)"
            raise CheckpointError(f"LoRA {file.path.name}: '{raw}' has no {missing} factor; the file is incomplete.")
        down, up = parts["down"], parts["up"]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise CheckpointError(f"LoRA {file.path.name}: '{raw}' factors have shapes {list(down.shape)} (down) and "
                                  f"{list(up.shape)} (up); expected [rank, in] and [out, rank] of a Linear LoRA.")
        scale = float(parts["alpha"].float().item()) / down.shape[0] if "alpha" in parts else 1.0
        name, kohya = _strip_prefix(raw)
        lora.targets[name] = LoRAFactors(down, up, scale)
        if kohya:
            lora.kohya.add(name)
    lora.family = detect_family(f"LoRA {file.path.name}", lora.targets, metadata=_declared_version(file.metadata),
                                shape=lambda t: (lora.targets[t].up.shape[0], lora.targets[t].down.shape[1]))
    return lora


def _reference_factor(file: SafetensorsFile, key: str) -> int:
    """An IC-LoRA's ``key`` metadata entry (reference ``read_lora_reference_downscale_factor``): a positive
    integer, 1 when absent."""
    value = file.metadata.get(key, "1")
    try:
        factor = int(value)
    except (TypeError, ValueError):
        factor = 0
    if factor < 1:
        raise CheckpointError(f"LoRA {file.path.name}: metadata {key}={value!r} is not a positive integer (the "
                              "ratio of the output size to the reference video's the IC-LoRA was trained with); fix "
                              "or remove that entry of the file.")
    return factor


_BASE_MODEL_KEYS = ("modelspec.architecture", "ss_base_model_version", "base_model")
_NAMED_VERSION = re.compile(r"ltx[-_ ]?(?:video[-_ ]?)?v?(2(?:[._]\d+)?)(?!\d)", re.IGNORECASE)


def _declared_version(metadata: dict[str, str]) -> dict[str, str]:
    """``{"model_version": ...}`` from the metadata: its own entry, or e.g. "ltx-2.3" in a base-model name."""
    if "model_version" in metadata:
        return {"model_version": metadata["model_version"]}
    for key in _BASE_MODEL_KEYS:
        found = _NAMED_VERSION.search(metadata.get(key, ""))
        if found:
            return {"model_version": found.group(1).replace("_", ".")}
    return {}


def check_lora_family(lora: LoRA, family: ModelFamily | None, model: str) -> None:
    """Refuse a LoRA made for another model family than ``family`` (the model's, None if unknown)."""
    made_for = lora.family.family if lora.family is not None else None
    if made_for is None or family is None or made_for == family:
        return
    raise CheckpointError(
        f"LoRA {lora.name} was made for {made_for.describe()} ({lora.family.evidence}), but {model} is "
        f"{family.describe()}; a LoRA only fits the model generation it was trained on. Pick a LoRA trained for "
        f"{family.name}, or load the {made_for.name} model ({made_for.files}) to use this one.")


def _strip_prefix(name: str) -> tuple[str, bool]:
    for prefix in _KOHYA_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):], True
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):], False
    return name, False


def lora_targets(model: nn.Module) -> dict[str, nn.Module]:
    """Modules a LoRA can adapt: every ``nn.Linear`` and quantized Linear (``QuantLinear``), by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, QuantLinear))}


def resolve_targets(lora: LoRA, model: nn.Module) -> dict[str, LoRAFactors]:
    """Map the LoRA's targets to module names of ``model``, checking shapes.

    Raises ``CheckpointError`` when the LoRA was made for another model family, nothing matches
    (a LoRA for another model) or a shape differs; targets that match no module are reported as
    a warning.
    """
    model_family = detect_family("this transformer", model.state_dict().keys())
    check_lora_family(lora, model_family.family if model_family is not None else None, "this transformer")
    targets = lora_targets(model)
    kohya_index = {name.replace(".", "_"): name for name in targets}
    resolved: dict[str, LoRAFactors] = {}
    unmatched = []
    for raw, factors in lora.targets.items():
        name = kohya_index.get(raw) if raw in lora.kohya else _native_name(raw, targets)
        if name is None:
            unmatched.append(raw)
            continue
        module = targets[name]
        if (factors.up.shape[0], factors.down.shape[1]) != (module.out_features, module.in_features):
            raise CheckpointError(
                f"LoRA {lora.name} does not fit this model: '{raw}' adapts a {factors.down.shape[1]} -> "
                f"{factors.up.shape[0]} layer but '{name}' here is {module.in_features} -> {module.out_features}. "
                "The LoRA was trained for a different model (size or version, e.g. LTX-2.3 vs LTX-2).")
        resolved[name] = factors
    if not resolved and not getattr(getattr(model, "config", None), "has_video", True):
        raise CheckpointError(
            f"LoRA {lora.name} adapts none of the audio stream's layers (e.g. it targets "
            f"{sorted(lora.targets)[:3]}), and this is the audio-only transformer (text to audio: no video "
            "blocks). It would change nothing here: drop it from the audio-only run.")
    if not resolved:
        raise CheckpointError(
            f"LoRA {lora.name} does not target this model: none of its {len(lora.targets)} layers (e.g. "
            f"{sorted(lora.targets)[:3]}) exists in the LTX-2 transformer (whose layers look like "
            f"'transformer_blocks.0.attn1.to_q'). It is probably a LoRA for another model.")
    if unmatched:
        log.warning("LoRA %s: %d of %d layers match nothing in the transformer and are ignored, e.g. %s", lora.name,
                    len(unmatched), len(lora.targets), unmatched[:3])
    return resolved


def _native_name(name: str, targets: dict[str, nn.Module]) -> str | None:
    if name in targets:
        return name
    head, dot, rest = name.partition(".")
    renamed = _DIFFUSERS_NAMES.get(head)
    if renamed is not None and renamed + dot + rest in targets:
        return renamed + dot + rest
    return None


# ------------------------------------------------------------------------------------------------
# Application


_ids = itertools.count()


def _adapter_names(module: nn.Module) -> list[str]:
    return getattr(module, "_lora_adapters", [])


def _lora_hook(module: nn.Module, inputs, output):
    if getattr(module, "_lora_fused", False):
        return output
    x = inputs[0]
    for adapter in _adapter_names(module):
        down = getattr(module, f"lora_down_{adapter}")
        up = getattr(module, f"lora_up_{adapter}")
        output = output + F.linear(F.linear(x, down.to(x.dtype)), up.to(x.dtype))
    return output


def _factor_dtype(module: nn.Module, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    if isinstance(module, QuantLinear):
        return module.bias.dtype if module.bias is not None else torch.bfloat16
    return module.weight.dtype


@dataclass
class AppliedLoRAs:
    """What ``apply_loras`` installed; ``remove()`` takes exactly these adapters out again."""

    model: nn.Module
    adapter: str
    modules: list[str]

    def remove(self) -> None:
        for name in self.modules:
            module = self.model.get_submodule(name)
            if getattr(module, "_lora_fused", False):
                raise InputError("unfuse the LoRAs (unfuse_loras) before removing some of them.")
            module._lora_adapters.remove(self.adapter)
            delattr(module, f"lora_down_{self.adapter}")
            delattr(module, f"lora_up_{self.adapter}")
            if not module._lora_adapters:
                module._lora_hook_handle.remove()
                del module._lora_hook_handle, module._lora_adapters


def apply_loras(model: nn.Module, loras: list[tuple[LoRA, float]], dtype: torch.dtype | None = None
                ) -> AppliedLoRAs:
    """Adapt ``model`` by ``sum(strength * scale * up @ down)`` per layer, computed on the fly.

    The factors of all given LoRAs are concatenated along the rank per layer (strength and
    scale folded into ``up``) and stored as buffers in ``dtype`` (default: the layer's compute
    dtype) on the layer's device. LoRAs with strength 0 are skipped.
    """
    per_module: dict[str, list[tuple[LoRAFactors, float]]] = {}
    for lora, strength in loras:
        resolved = resolve_targets(lora, model)
        if strength == 0:
            continue
        for name, factors in resolved.items():
            per_module.setdefault(name, []).append((factors, float(strength)))
    adapter = str(next(_ids))
    for name, entries in per_module.items():
        module = model.get_submodule(name)
        if getattr(module, "_lora_fused", False):
            raise InputError("unfuse the LoRAs (unfuse_loras) before applying more.")
        device = module.weight.device
        factor_dtype = _factor_dtype(module, dtype)
        down = torch.cat([f.down.to(device, torch.float32) for f, _ in entries], dim=0)
        up = torch.cat([f.up.to(device, torch.float32) * (s * f.scale) for f, s in entries], dim=1)
        module.register_buffer(f"lora_down_{adapter}", down.to(factor_dtype), persistent=False)
        module.register_buffer(f"lora_up_{adapter}", up.to(factor_dtype), persistent=False)
        if not _adapter_names(module):
            module._lora_adapters = []
            module._lora_hook_handle = module.register_forward_hook(_lora_hook)
        module._lora_adapters.append(adapter)
    return AppliedLoRAs(model, adapter, list(per_module))


def load_and_apply_loras(model: nn.Module, files: list[tuple[str | Path, float]], dtype: torch.dtype | None = None
                         ) -> AppliedLoRAs:
    return apply_loras(model, [(load_lora(path), strength) for path, strength in files], dtype)


@contextmanager
def applied_loras(model: nn.Module, loras: list[tuple[LoRA, float]], dtype: torch.dtype | None = None):
    """Apply LoRAs for the duration of a ``with`` block; they are removed even if the block raises."""
    handle = apply_loras(model, loras, dtype) if loras else None
    try:
        yield handle
    finally:
        if handle is not None:
            handle.remove()


def _delta(module: nn.Module) -> torch.Tensor:
    delta = None
    for adapter in _adapter_names(module):
        d = getattr(module, f"lora_up_{adapter}").float() @ getattr(module, f"lora_down_{adapter}").float()
        delta = d if delta is None else delta + d
    return delta


def fuse_loras(model: nn.Module) -> list[str]:
    """Fold the installed LoRAs into the weights of plain ``nn.Linear`` layers (faster forward).

    Quantized layers (fp8, GGUF, NVFP4) keep computing their LoRA on the fly (adding to a quantized
    weight would lose most of it). Returns the names of the fused layers. Weight rounding: one rounding
    to the weight dtype.
    """
    fused = []
    for name, module in model.named_modules():
        if _adapter_names(module) and type(module) is nn.Linear and not getattr(module, "_lora_fused", False):
            with torch.no_grad():
                module.weight.add_(_delta(module).to(module.weight.dtype))
            module._lora_fused = True
            fused.append(name)
    return fused


def unfuse_loras(model: nn.Module) -> list[str]:
    """Subtract what ``fuse_loras`` added (exact up to one rounding of the weight dtype)."""
    unfused = []
    for name, module in model.named_modules():
        if getattr(module, "_lora_fused", False):
            with torch.no_grad():
                module.weight.sub_(_delta(module).to(module.weight.dtype))
            module._lora_fused = False
            unfused.append(name)
    return unfused
