"""Reading LTX-2 checkpoints: family and variant detection, component split, build on meta + assign.

A released single file (``ltx-2-19b-{dev,distilled}[-fp8].safetensors``, ``ltx-2.3-22b-{dev,distilled}``;
which family a file is comes from ``loading.family``) holds every component
under its own key prefix, with one JSON ``config`` metadata entry describing them
(``transformer``, ``vae``, ``audio_vae``, ``vocoder``). ComfyUI users also have the DiT split out
into ``models/diffusion_models`` (same keys, sometimes without the prefix or the connectors).

Components are built on the ``meta`` device and their parameters *assigned* from tensors that
alias the memory-mapped file, so no second copy of a 40 GB file is ever made in RAM; a dtype
conversion (e.g. bf16 file -> float32 on CPU) copies one component at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, UnsupportedModelError
from .family import ModelFamily, detect_family, is_split_transformer_config
from .gguf_file import GGUFFile, open_tensor_file
from .lora import is_lora_key
from .quant import FP8_DTYPES, QUANT_SUFFIXES, FP8Linear, prepare_packed_state, replace_module
from .safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

DIT_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class ComponentSpec:
    """Which keys belong to a component and how they are renamed: ``{file prefix: module prefix}``."""

    name: str
    renames: tuple[tuple[str, str], ...]
    excludes: tuple[str, ...] = ()
    config_section: str | None = None

    def module_key(self, key: str) -> str | None:
        if any(key.startswith(e) for e in self.excludes):
            return None
        for prefix, replacement in self.renames:
            if key.startswith(prefix):
                return replacement + key[len(prefix):]
        return None


_CONNECTORS = (DIT_PREFIX + "video_embeddings_connector.", DIT_PREFIX + "audio_embeddings_connector.")

COMPONENTS: dict[str, ComponentSpec] = {
    spec.name: spec
    for spec in (
        ComponentSpec("transformer", ((DIT_PREFIX, ""),), excludes=_CONNECTORS, config_section="transformer"),
        ComponentSpec("video_connector", ((_CONNECTORS[0], ""),), config_section="transformer"),
        ComponentSpec("audio_connector", ((_CONNECTORS[1], ""),), config_section="transformer"),
        ComponentSpec("text_projection", (("text_embedding_projection.", ""),), config_section="transformer"),
        ComponentSpec("video_encoder", (("vae.encoder.", ""), ("vae.per_channel_statistics.",
                                                                "per_channel_statistics.")), config_section="vae"),
        ComponentSpec("video_decoder", (("vae.decoder.", ""), ("vae.per_channel_statistics.",
                                                                "per_channel_statistics.")), config_section="vae"),
        ComponentSpec("audio_encoder", (("audio_vae.encoder.", ""),
                                        ("audio_vae.per_channel_statistics.", "per_channel_statistics.")),
                      config_section="audio_vae"),
        ComponentSpec("audio_decoder", (("audio_vae.decoder.", ""),
                                        ("audio_vae.per_channel_statistics.", "per_channel_statistics.")),
                      config_section="audio_vae"),
        ComponentSpec("vocoder", (("vocoder.", ""),), config_section="vocoder"),
    )
}

# Key fingerprints of files people put in the wrong folder, for a helpful refusal.
_FOREIGN_FINGERPRINTS: tuple[tuple[str, str], ...] = (
    ("conditioner.embedders.", "an SDXL checkpoint"),
    ("model.diffusion_model.input_blocks.", "a Stable Diffusion (UNet) checkpoint"),
    ("cond_stage_model.", "a Stable Diffusion checkpoint"),
    ("double_blocks.", "a Flux / HunyuanVideo checkpoint"),
    ("model.diffusion_model.double_blocks.", "a Flux / HunyuanVideo checkpoint"),
    ("patch_embedding.", "a Wan video checkpoint"),
    ("model.diffusion_model.patch_embedding.", "a Wan video checkpoint"),
    ("model.layers.", "a language model (text encoder), which belongs in models/text_encoders"),
    ("language_model.model.layers.", "a language model (text encoder), which belongs in models/text_encoders"),
    ("initial_conv.", "the LTX-2 latent upscaler, which belongs in models/latent_upscale_models"),
)

@dataclass(frozen=True)
class Variant:
    """What a checkpoint file is, as far as loading is concerned."""

    family: ModelFamily  # LTX-2 / LTX-2.3 (see ``loading.family``)
    layout: str  # "single_file" | "diffusion_model" | "split" (LTX-2.5 transformer file: DiT + connectors)
    key_prefix: str  # prefix in front of the DiT keys ("model.diffusion_model." or "")
    quantized: bool  # carries quantized weights (fp8 with weight_scale siblings, GGUF blocks, NVFP4)
    config_inferred: bool  # no config metadata: transformer config derived from shapes
    storage: str = ""  # how quantized weights are stored: "fp8", "nvfp4", "GGUF Q4_K+F32" ...

    def describe(self) -> str:
        kind = {"single_file": " single-file checkpoint", "split": " transformer file (split layout)"}.get(
            self.layout, " diffusion model (DiT only)")
        return self.family.name + kind + (f" ({self.storage or 'fp8'})" if self.quantized else "")


class LTX2Checkpoint:
    """An opened LTX-2 / LTX-2.3 model file: family, config, variant, per-component state dicts."""

    def __init__(self, path: str | Path):
        self.file = open_tensor_file(path)
        self.path = self.file.path
        keys = self.file.keys()
        self._check_family(keys)
        storage = _storage(self.file, keys)
        prefix = DIT_PREFIX if any(k.startswith(DIT_PREFIX + "transformer_blocks.") for k in keys) else ""
        has_vae = any(k.startswith("vae.decoder.") for k in keys)
        quantized = bool(storage)
        config = self.file.json_metadata("config")
        # a file with transformer blocks always gives a clue (caption projection present or not)
        match = detect_family(self.path.name, keys, metadata=self.file.metadata, config=config,
                              shape=lambda key: self.file.info(key).shape, complete=True)
        self.family_evidence: str = match.evidence
        inferred = False
        if config is None:
            if has_vae:
                raise CheckpointError(
                    f"{self.path.name} ({match.family.name} single file) has no 'config' metadata. Official files "
                    "carry a JSON 'config' entry describing the transformer, VAEs and vocoder; this file was probably "
                    "re-saved by a tool that dropped the metadata. Use the original "
                    f"{match.family.files} file from Lightricks."
                )
            config = {"transformer": infer_transformer_config(self.file, prefix, match.family)}
            inferred = True
        if not isinstance(config, dict):
            raise CheckpointError(f"{self.path.name}: metadata 'config' is not a JSON object.")
        self.config: dict = config
        split = not inferred and is_split_transformer_config(config) and any("embeddings_connector." in k for k in keys)
        layout = "single_file" if has_vae else "split" if split else "diffusion_model"
        self.variant = Variant(match.family, layout, prefix, quantized, inferred, storage)
        self._specs = self._specs_for_prefix(prefix)

    @property
    def family(self) -> ModelFamily:
        """The model generation of this file (``LTX_2``, ``LTX_2_3`` or ``LTX_2_5``), from metadata or tensors."""
        return self.variant.family

    # -- detection -----------------------------------------------------------------------------

    def _check_family(self, keys: list[str]) -> None:
        """Refuse what is not an LTX-2 audio-video transformer file, naming what it is instead (a LoRA first:
        its factors name the DiT's modules, audio ones only if it adapts them)."""
        adapter = [k for k in keys if is_lora_key(k)]
        if adapter and len(adapter) * 2 > len(keys):
            raise CheckpointError(
                f"{self.path.name} is a LoRA (e.g. '{adapter[0]}'), not a model: a LoRA in the wrong slot. A LoRA "
                "belongs in models/loras and is applied on top of a model with the LTX-2 LoRA loader node "
                "(--lora / --stage2-lora on the command line); load an ltx-2-19b-* or ltx-2.3-22b-* .safetensors "
                "checkpoint here.")
        dit_like = [k for k in keys if ".transformer_blocks.0." in "." + k]
        if isinstance(self.file, GGUFFile) and not dit_like:
            what = ("a language model (text encoder) GGUF, which belongs in models/text_encoders"
                    if any(k.startswith(("blk.", "token_embd.")) for k in keys) else "not an LTX-2 DiT")
            raise CheckpointError(
                f"{self.path.name} is a GGUF file of architecture '{self.file.architecture}': {what}. The LTX-2 "
                "loader reads GGUF DiTs of LTX-2 / LTX-2.3 (keys 'transformer_blocks.N.*', e.g. the community's "
                "ltx-2-19b-dev-Q4_K_M.gguf) from models/diffusion_models or models/unet.")
        if dit_like:
            if not any(".audio_attn1." in k for k in dit_like):
                raise UnsupportedModelError(
                    f"{self.path.name} is a video-only LTX-Video (0.9.x) checkpoint; ltx2_nodes runs the LTX-2 "
                    "audio-video model (ltx-2-19b-* or ltx-2.3-22b-* files)."
                )
            return
        for prefix, what in _FOREIGN_FINGERPRINTS:
            if any(k.startswith(prefix) or ("." + prefix) in k for k in keys):
                raise CheckpointError(
                    f"{self.path.name} looks like {what}, not an LTX-2 checkpoint. The LTX-2 loader needs "
                    "ltx-2-19b-dev / ltx-2-19b-distilled (or their -fp8 versions) or ltx-2.3-22b-dev / "
                    "ltx-2.3-22b-distilled .safetensors in models/checkpoints."
                )
        text_side = [k for k in keys if "text_embedding_projection." in k or "embeddings_connector." in k]
        if text_side:
            match = detect_family(self.path.name, keys, metadata=self.file.metadata)
            family = match.family if match is not None else None
            raise CheckpointError(
                f"{self.path.name} holds only the {family.name + ' ' if family else ''}text projection / embedding "
                f"connectors (e.g. '{text_side[0]}'), not the diffusion transformer. ltx2_nodes reads them from the "
                f"single file ({family.files if family else 'ltx-2-19b-* or ltx-2.3-22b-*'}); put that in "
                "models/checkpoints and load it instead."
            )
        raise CheckpointError(
            f"{self.path.name} does not contain an LTX-2 transformer (no 'transformer_blocks.0.*' keys; "
            f"{len(keys)} tensors, e.g. {keys[:3]}). Expected an ltx-2-19b-* or ltx-2.3-22b-* .safetensors file."
        )

    def _specs_for_prefix(self, prefix: str) -> dict[str, ComponentSpec]:
        if prefix == DIT_PREFIX:
            return COMPONENTS
        # DiT-only file without the prefix: connectors (if any) sit at the top level.
        connectors = ("video_embeddings_connector.", "audio_embeddings_connector.")
        specs = dict(COMPONENTS)
        specs["transformer"] = ComponentSpec("transformer", (("", ""),),
                                             excludes=connectors + ("text_embedding_projection.",),
                                             config_section="transformer")
        specs["video_connector"] = ComponentSpec("video_connector", ((connectors[0], ""),),
                                                 config_section="transformer")
        specs["audio_connector"] = ComponentSpec("audio_connector", ((connectors[1], ""),),
                                                 config_section="transformer")
        return specs

    # -- component access ----------------------------------------------------------------------

    def component_config(self, component: str) -> dict:
        section = self._specs[component].config_section
        value = self.config.get(section)
        if not isinstance(value, dict):
            raise CheckpointError(
                f"{self.path.name}: metadata 'config' has no '{section}' section, needed to build the {component}. "
                "Use the original LTX-2 release file."
            )
        return value

    def has(self, component: str) -> bool:
        spec = self._specs[component]
        return any(spec.module_key(k) is not None for k in self.file.keys())

    def state_dict(self, component: str, select: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
        """Tensors of ``component`` under module key names, as views of the memory-mapped file; ``select(name)``
        false leaves a tensor out without opening it (the audio-only DiT never touches the video weights)."""
        spec = self._specs[component]
        out = {}
        for key in self.file.keys():
            name = spec.module_key(key)
            if name is not None and (select is None or select(name)):
                out[name] = self.file.tensor(key)
        if not out:
            raise CheckpointError(
                f"{self.path.name} has no {component} weights (looked for keys starting with "
                f"{[p for p, _ in spec.renames]}). {self.variant.describe()} files do not carry it; load a full "
                "ltx-2-19b-*.safetensors single file for this component."
            )
        return out

    def release_pages(self, tensor: torch.Tensor) -> None:
        """Forget the mapped file pages behind ``tensor`` (after it was copied elsewhere)."""
        self.file.release_pages(tensor)

    def component_bytes(self, component: str) -> int:
        spec = self._specs[component]
        return sum(self.file.info(k).nbytes for k in self.file.keys() if spec.module_key(k) is not None)

    def __repr__(self) -> str:
        return f"LTX2Checkpoint({self.path.name}: {self.variant.describe()})"


def _storage(file: SafetensorsFile, keys: list[str]) -> str:
    """How the file's quantized weights are stored ("" when none are): fp8, nvfp4, or the GGUF types."""
    if isinstance(file, GGUFFile):
        quantized = sorted({file.ggml_type_name(k) for k in file.quantized_keys()})
        return "GGUF " + "/".join(quantized) if quantized else ""
    if any(k.endswith(".weight_scale_2") for k in keys):
        return "nvfp4"
    if any(k.endswith(".weight_scale") for k in keys) and any(file.info(k).dtype in FP8_DTYPES for k in keys):
        return "fp8"
    return ""


# ------------------------------------------------------------------------------------------------
# Transformer config without metadata


def infer_transformer_config(file: SafetensorsFile, prefix: str, family: ModelFamily) -> dict:
    """Derive ``config.transformer`` from tensor shapes (DiT-only files saved without metadata).

    Widths, depths and the LTX-2.3 / LTX-2.5 switches come from the tensors: gated attention from
    ``to_gate_logits`` (whose rows are the head count), cross-attention AdaLN from the blocks'
    ``prompt_scale_shift_table`` (the prompt AdaLN from ``prompt_adaln_single``),
    ``caption_proj_before_connector`` from the missing caption projection, feed-forward biases and the
    keyframe embedding from their tensors; connectors (when the file has them) from their blocks,
    registers, gates and biases. Values no shape
    shows come from the family's preset (``ModelFamily.preset``) and, for the head dims of
    ungated attention, the released 128 (video) / 64 (audio); a width they do not divide is
    treated as one head (toy models). ``caption_channels`` (the Gemma width) cannot be read
    from an LTX-2.3 DiT and keeps its default.
    """

    def shape(key: str) -> tuple[int, ...]:
        full = prefix + key
        if full not in file:
            raise CheckpointError(f"{file.path.name}: missing '{full}', cannot infer the transformer config.")
        return file.info(full).shape

    def heads(gate: str, width: int, released_head_dim: int) -> tuple[int, int]:
        if prefix + gate in file:
            count = shape(gate)[0]
        else:
            count = width // released_head_dim if width % released_head_dim == 0 else 1
        return count, width // count

    video_dim, in_channels = shape("patchify_proj.weight")
    audio_dim, audio_in = shape("audio_patchify_proj.weight")
    video_heads, video_head_dim = heads("transformer_blocks.0.attn1.to_gate_logits.weight", video_dim, 128)
    audio_heads, audio_head_dim = heads("transformer_blocks.0.audio_attn1.to_gate_logits.weight", audio_dim, 64)
    config = dict(family.preset)
    config.update({
        "num_layers": _count_blocks(file, prefix + "transformer_blocks."),
        "num_attention_heads": video_heads, "attention_head_dim": video_head_dim,
        "audio_num_attention_heads": audio_heads, "audio_attention_head_dim": audio_head_dim,
        "in_channels": in_channels, "out_channels": shape("proj_out.weight")[0],
        "audio_in_channels": audio_in, "audio_out_channels": shape("audio_proj_out.weight")[0],
        "cross_attention_dim": video_dim, "audio_cross_attention_dim": audio_dim,
        "apply_gated_attention": prefix + "transformer_blocks.0.attn1.to_gate_logits.weight" in file,
        "cross_attention_adaln": prefix + "transformer_blocks.0.prompt_scale_shift_table" in file,
        "use_prompt_adaln_single": prefix + "prompt_adaln_single.linear.weight" in file
        or prefix + "transformer_blocks.0.prompt_scale_shift_table" not in file,
        "caption_proj_before_connector": prefix + "caption_projection.linear_1.weight" not in file,
        "ff_bias": prefix + "transformer_blocks.0.ff.net.2.bias" in file,
        "audio_ff_bias": prefix + "transformer_blocks.0.audio_ff.net.2.bias" in file,
        "use_keyframes_abs_pos_embedding": prefix + "keyframes_abs_pos_embedding" in file,
    })
    if not config["caption_proj_before_connector"]:
        config["caption_channels"] = shape("caption_projection.linear_1.weight")[1]
    config.update(_infer_connector_config(file, prefix))
    log.warning("%s has no config metadata; %s transformer config inferred from tensor shapes (head dims of "
                "ungated attention assumed to be the released 128/64).", file.path.name, family.name)
    return config


def _count_blocks(file: SafetensorsFile, blocks_prefix: str) -> int:
    return 1 + max(int(k[len(blocks_prefix):].split(".")[0]) for k in file.keys() if k.startswith(blocks_prefix))


def _infer_connector_config(file: SafetensorsFile, prefix: str) -> dict:
    """``connector_*`` / ``audio_connector_*`` entries from the connector tensors, if the file has them."""
    config: dict = {}
    for stream, key_prefix in (("video", "connector_"), ("audio", "audio_connector_")):
        base = f"{prefix}{stream}_embeddings_connector."
        registers = base + "learnable_registers"
        if registers not in file:
            continue
        count, width = file.info(registers).shape
        gate = base + "transformer_1d_blocks.0.attn1.to_gate_logits.weight"
        heads = file.info(gate).shape[0] if gate in file else (width // 128 if width % 128 == 0 else 1)
        config.update({f"{key_prefix}num_attention_heads": heads, f"{key_prefix}attention_head_dim": width // heads,
                       f"{key_prefix}num_layers": _count_blocks(file, base + "transformer_1d_blocks.")})
        if stream == "video":
            config.update({"connector_num_learnable_registers": count,
                           "connector_ff_bias": base + "transformer_1d_blocks.0.ff.net.2.bias" in file,
                           "connector_apply_gated_attention": gate in file})
    return config


# ------------------------------------------------------------------------------------------------
# Building modules


def _swap_in_fp8_linears(module: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Replace Linears whose file weight is fp8 with a ``weight_scale`` sibling by FP8Linear."""
    swapped = []
    for key, tensor in state.items():
        if not key.endswith(".weight") or tensor.dtype not in FP8_DTYPES:
            continue
        layer = key[: -len(".weight")]
        if layer + ".weight_scale" not in state:
            continue
        try:
            target = module.get_submodule(layer)
        except AttributeError:
            continue
        if isinstance(target, nn.Linear):
            replace_module(module, layer, FP8Linear.like(target, tensor.dtype))
            swapped.append(layer)
    return swapped


def _convert(key: str, tensor: torch.Tensor, dtype: torch.dtype | None, keep_fp8: bool) -> torch.Tensor:
    if tensor.dtype in FP8_DTYPES and keep_fp8:
        return tensor
    if key.endswith(QUANT_SUFFIXES):
        return tensor.float()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor


def _dequantize_in_place(state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Fold ``weight * weight_scale`` into plain weights (upcast-on-load)."""
    for key in [k for k in state if k.endswith(".weight_scale")]:
        layer = key[: -len(".weight_scale")]
        weight = state.get(layer + ".weight")
        if weight is not None and weight.dtype in FP8_DTYPES:
            state[layer + ".weight"] = (weight.float() * state[key].float()).to(dtype)
        del state[key]
        state.pop(layer + ".input_scale", None)


def build_module(factory: Callable[[], nn.Module], state: dict[str, torch.Tensor], *, what: str, source: str,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 fp8: str = "keep", ignore_unexpected: tuple[str, ...] = (),
                 release: Callable[[torch.Tensor], None] | None = None) -> nn.Module:
    """Instantiate on the meta device and assign ``state`` (no weight is allocated twice).

    ``fp8``: "keep" stores fp8 file weights as FP8Linear, GGUF block-quantized ones as GGUFLinear and NVFP4
    ones as NVFP4Linear (all dequantized per forward; ``quant.prepare_packed_state``); "upcast" dequantizes
    them into ``dtype`` weights at load.
    ``release(tensor)`` is called for every file tensor once a converted copy or the device copy
    has replaced it (``LTX2Checkpoint.release_pages`` keeps RSS at one copy of the component).
    Refuses with a precise message on missing keys, unknown keys or shape mismatches.
    """
    with torch.device("meta"):
        module = factory()
    state = dict(state)
    if fp8 not in ("keep", "upcast"):
        raise ValueError(f"fp8 must be 'keep' or 'upcast', got {fp8!r}")
    prepare_packed_state(module, state, dtype, upcast=fp8 == "upcast")
    if fp8 == "upcast":
        _dequantize_in_place(state, dtype or torch.bfloat16)
    _swap_in_fp8_linears(module, state)

    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state and expected[k] is not None]
    # input_scale (static activation scale for scaled-mm kernels) is unused when dequantizing;
    # ComfyUI's quantized files add per-layer ``comfy_quant`` / a ``scaled_fp8`` marker.
    tolerated = tuple(ignore_unexpected) + (".input_scale", ".comfy_quant", "scaled_fp8")
    unexpected = [k for k in state if k not in expected and not k.endswith(tolerated)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s), e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:5]}")
    for key, param in expected.items():
        if key in state and param is not None and tuple(param.shape) != tuple(state[key].shape):
            problems.append(f"'{key}' has shape {list(state[key].shape)} in the file but the config needs "
                            f"{list(param.shape)}")
            if len(problems) > 6:
                break
    if problems:
        raise CheckpointError(
            f"{source}: the {what} weights do not match the {what} described by the file's config: "
            + "; ".join(problems) + ". The file is damaged, from a different model version, or its metadata "
            "was edited; use the original release file."
        )
    keep_fp8 = fp8 == "keep"
    converted = {}
    for key in [k for k in state if k in expected]:
        converted[key] = _convert(key, state[key], dtype, keep_fp8)
        if release is not None and converted[key] is not state[key]:
            release(state[key])
    module.load_state_dict(converted, strict=False, assign=True)
    for sub in module.modules():
        reset = getattr(sub, "reset_computed_buffers", None)
        if reset is not None:
            reset()
    still_meta = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if still_meta:
        raise CheckpointError(f"{source}: {what} tensors were not filled from the file: {still_meta[:5]}")
    if device is not None and torch.device(device).type != "cpu":
        module.to(device)
        if release is not None:
            for tensor in state.values():
                release(tensor)
    return module.eval().requires_grad_(False)
