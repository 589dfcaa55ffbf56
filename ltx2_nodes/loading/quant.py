"""Quantized weight storage for Linear layers: one mechanism, three storage formats.

Every quantized Linear is a ``QuantLinear``: its weight stays in the file's compact form in memory
and on the device (what block streaming copies and the pre-check counts) and is dequantized per
layer at forward time (``dequantized_weight``), so LoRA hooks, ``.to()`` and the block streamer
treat it like any Linear.

* ``FP8Linear``: released ``*-fp8.safetensors`` files store chosen Linear weights as ``F8_E4M3``
  with a float32 ``<layer>.weight_scale`` (and ``<layer>.input_scale``) sibling; the real weight is
  ``weight_fp8 * weight_scale``. The same class stores bf16 weights cast to fp8 on load.
* ``GGUFLinear``: a GGUF tensor in a ggml block format (Q8_0, Q6_K, Q5_K, Q4_K, Q4_0; see
  ``gguf_quants``), kept as its raw block bytes ``[out, row_bytes]``. The GGUF reader hands each such
  tensor over with a ``<key>.ggml_type`` sibling (a 0-dim int tensor) saying which format it is.
* ``NVFP4Linear``: ComfyUI's ``TensorCoreNVFP4Layout`` (``comfy_quant`` format ``nvfp4``): 4-bit
  E2M1 values packed two per byte (high nibble first) ``[rows16, cols16 / 2]``, one float8_e4m3
  ``weight_scale`` per 16 values in cuBLAS's blocked (128 x 4 tile) order, a float32 per-tensor
  ``weight_scale_2``; rows and columns padded to multiples of 16. The native FP4 matmul is
  Blackwell-only and not used here: weights are dequantized per layer on any device (logged once).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .gguf_quants import dequantize as dequantize_ggml
from .gguf_quants import ggml_type

log = logging.getLogger("ltx2_nodes")

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
QUANT_SUFFIXES = (".weight_scale", ".input_scale", ".weight_scale_2")
GGML_TYPE_SUFFIX = ".ggml_type"  # sibling of a GGUF block-quantized tensor: its ggml type id (0-dim int tensor)


class QuantLinear(nn.Module):
    """A Linear whose weight is stored quantized; ``dequantized_weight(dtype)`` per forward, computed in the
    input dtype. Subclasses say how the weight is stored."""

    def __init__(self, in_features: int, out_features: int, bias: bool, device=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage={self.storage()}"

    def storage(self) -> str:
        return str(self.weight.dtype)


class FP8Linear(QuantLinear):
    """A Linear whose weight lives in fp8 with a per-tensor scale; computes in the input dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_dtype: torch.dtype = torch.float8_e4m3fn, device=None):
        super().__init__(in_features, out_features, bias, device)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=weight_dtype, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("input_scale", None)

    @classmethod
    def like(cls, linear: nn.Linear, weight_dtype: torch.dtype = torch.float8_e4m3fn) -> "FP8Linear":
        return cls(linear.in_features, linear.out_features, linear.bias is not None, weight_dtype,
                   device=linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)


def quantize_weight(weight: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor absmax scaling: returns (fp8 weight, float32 scale) with ``w ~= q * scale``."""
    w = weight.float()
    absmax = w.abs().max().clamp(min=1e-12)
    scale = absmax / torch.finfo(dtype).max
    return (w / scale).to(dtype), scale.to(torch.float32)


def replace_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def cast_linears_to_fp8(root: nn.Module, include=lambda name: True, dtype: torch.dtype = torch.float8_e4m3fn) -> int:
    """Swap every matching ``nn.Linear`` (with real weights) for an FP8Linear; returns how many."""
    count = 0
    for name, module in list(root.named_modules()):
        if type(module) is nn.Linear and include(name):
            q, scale = quantize_weight(module.weight.detach(), dtype)
            fp8 = FP8Linear.like(module, dtype)
            fp8.weight = nn.Parameter(q, requires_grad=False)
            fp8.weight_scale = scale
            if module.bias is not None:
                fp8.bias = nn.Parameter(module.bias.detach(), requires_grad=False)
            replace_module(root, name, fp8)
            count += 1
    return count


# ------------------------------------------------------------------------------------------------
# GGUF block formats


class GGUFLinear(QuantLinear):
    """A Linear whose weight is a GGUF block-quantized tensor kept as raw bytes ``[out, row_bytes]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool, type_id: int, device=None):
        super().__init__(in_features, out_features, bias, device)
        kind = ggml_type(type_id)
        if kind is None or in_features % kind.block_size:
            raise CheckpointError(f"ggml type {type_id} cannot store rows of {in_features} values.")
        self.type_id = int(type_id)
        self.weight = nn.Parameter(torch.empty(out_features, kind.row_bytes(in_features), dtype=torch.uint8,
                                               device=device), requires_grad=False)

    @classmethod
    def like(cls, linear: nn.Linear, type_id: int) -> "GGUFLinear":
        return cls(linear.in_features, linear.out_features, linear.bias is not None, type_id,
                   device=linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize_ggml(self.weight, self.type_id, dtype)

    def storage(self) -> str:
        return ggml_type(self.type_id).name


# ------------------------------------------------------------------------------------------------
# NVFP4 (ComfyUI TensorCoreNVFP4Layout)

NVFP4_BLOCK = 16
_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
_E2M1_TABLES: dict[torch.device, torch.Tensor] = {}  # one copy per device, not a host-to-device copy per layer
_nvfp4_announced = False


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def unblock_scales(blocked: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """cuBLAS blocked scale layout -> ``[rows, cols]``: tiles of 128 rows x 4 columns, row-major over tiles;
    inside a tile the scale of (row r, column c) sits at byte ``(r % 32) * 16 + (r // 32) * 4 + c``."""
    tile_rows, tile_cols = _round_up(rows, 128) // 128, _round_up(cols, 4) // 4
    tiles = blocked.reshape(tile_rows, tile_cols, 32, 4, 4).transpose(2, 3).reshape(tile_rows, tile_cols, 128, 4)
    return tiles.permute(0, 2, 1, 3).reshape(tile_rows * 128, tile_cols * 4)[:rows, :cols]


def dequantize_nvfp4(packed: torch.Tensor, block_scale: torch.Tensor, tensor_scale: torch.Tensor,
                     shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Packed E2M1 ``[rows16, cols16 / 2]`` + blocked e4m3 scales + per-tensor scale -> ``shape`` in ``dtype``
    (computed in float32: value * (tensor_scale * block_scale))."""
    rows, half = packed.shape
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(rows, half * 2)
    table = _E2M1_TABLES.get(packed.device)
    if table is None:
        table = _E2M1_TABLES.setdefault(packed.device, torch.tensor(_E2M1, dtype=torch.float32, device=packed.device))
    values = table[codes.long()]
    scales = unblock_scales(block_scale.view(torch.uint8), rows, half * 2 // NVFP4_BLOCK)
    total = tensor_scale.float() * scales.view(torch.float8_e4m3fn).float()
    out = (values.reshape(rows, -1, NVFP4_BLOCK) * total.unsqueeze(-1)).reshape(rows, half * 2)
    return out[: shape[0], : shape[1]].to(dtype)


class NVFP4Linear(QuantLinear):
    """A Linear stored in ComfyUI's NVFP4 layout; dequantized per forward on any device."""

    def __init__(self, in_features: int, out_features: int, bias: bool, scale_shape: tuple[int, ...], device=None):
        super().__init__(in_features, out_features, bias, device)
        rows, cols = _round_up(out_features, NVFP4_BLOCK), _round_up(in_features, NVFP4_BLOCK)
        self.weight = nn.Parameter(torch.empty(rows, cols // 2, dtype=torch.uint8, device=device), requires_grad=False)
        self.register_buffer("weight_scale", torch.empty(scale_shape, dtype=torch.float8_e4m3fn, device=device))
        self.register_buffer("weight_scale_2", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("input_scale", None)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize_nvfp4(self.weight, self.weight_scale, self.weight_scale_2,
                                (self.out_features, self.in_features), dtype)

    def storage(self) -> str:
        return "nvfp4"


def _announce_nvfp4() -> None:
    global _nvfp4_announced
    if not _nvfp4_announced:
        _nvfp4_announced = True
        log.info("NVFP4 weights: the native FP4 matmul (Blackwell tensor cores) is not used by ltx2_nodes; the "
                 "weights stay 4-bit in memory and are dequantized layer by layer at compute time.")


def nvfp4_scale_shape(out_features: int, in_features: int) -> tuple[int, int]:
    """Shape of the blocked scale tensor ComfyUI writes for an ``out x in`` NVFP4 weight."""
    return _round_up(out_features, 128), _round_up(_round_up(in_features, NVFP4_BLOCK) // NVFP4_BLOCK, 4)


# ------------------------------------------------------------------------------------------------
# State preparation


def _linear(root: nn.Module, layer: str) -> nn.Linear | None:
    try:
        target = root.get_submodule(layer)
    except AttributeError:
        return None
    return target if type(target) is nn.Linear else None


def packed_logical_numel(key: str, tensors) -> int:
    """Values a packed (GGUF block / NVFP4) tensor ``key`` of ``tensors`` holds; its plain numel otherwise."""
    t = tensors[key]
    numel = math.prod(t.shape)
    type_key = key + GGML_TYPE_SUFFIX
    if type_key in tensors:
        kind = ggml_type(int(tensors[type_key]))
        return numel // kind.type_size * kind.block_size if kind is not None else numel
    if key.endswith(".weight") and key[: -len(".weight")] + ".weight_scale_2" in tensors:
        return numel * 2
    return numel


def prepare_packed_state(module: nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype | None,
                         upcast: bool = False) -> None:
    """Swap Linears whose file weight is GGUF block-quantized or NVFP4 for ``GGUFLinear`` / ``NVFP4Linear``
    (weights stay packed), and dequantize every other packed tensor (embeddings, tables, 1-D) to ``dtype``
    (bf16 when None) in ``state``. ``upcast`` dequantizes the Linears too. Consumes the ``.ggml_type`` siblings.
    """
    plain = dtype or torch.bfloat16
    for type_key in [k for k in state if k.endswith(GGML_TYPE_SUFFIX)]:
        key, type_id = type_key[: -len(GGML_TYPE_SUFFIX)], int(state.pop(type_key))
        raw = state[key]
        layer = key[: -len(".weight")] if key.endswith(".weight") else None
        target = _linear(module, layer) if layer is not None and raw.dim() == 2 and not upcast else None
        if target is not None and (raw.shape[0], raw.shape[1]) == (
                target.out_features, ggml_type(type_id).row_bytes(target.in_features)):
            replace_module(module, layer, GGUFLinear.like(target, type_id))
        else:
            state[key] = dequantize_ggml(raw, type_id, plain)
    for scale_key in [k for k in state if k.endswith(".weight_scale_2")]:
        layer = scale_key[: -len(".weight_scale_2")]
        weight, scale = state.get(layer + ".weight"), state.get(layer + ".weight_scale")
        if weight is None or scale is None or weight.dtype != torch.uint8:
            continue
        _announce_nvfp4()
        target = _linear(module, layer)
        if target is None:
            raise CheckpointError(f"'{layer}' is stored in NVFP4 but is not a Linear layer of this model.")
        needed = math.prod(nvfp4_scale_shape(target.out_features, target.in_features))
        if scale.numel() != needed:
            raise CheckpointError(
                f"'{layer}.weight_scale' has {scale.numel()} NVFP4 block scales but a {target.out_features} x "
                f"{target.in_features} weight needs {needed} (ComfyUI's blocked layout); the file is damaged or not "
                "in ComfyUI's NVFP4 format.")
        if upcast:
            state[layer + ".weight"] = dequantize_nvfp4(weight, scale, state.pop(scale_key),
                                                        (target.out_features, target.in_features), plain)
            del state[layer + ".weight_scale"]
            state.pop(layer + ".input_scale", None)
        else:
            replace_module(module, layer, NVFP4Linear(target.in_features, target.out_features,
                                                      target.bias is not None, tuple(scale.shape),
                                                      device=target.weight.device))
