"""fp8 weight storage for Linear layers.

Released ``*-fp8.safetensors`` files store chosen Linear weights as ``F8_E4M3`` with a float32
``<layer>.weight_scale`` (and ``<layer>.input_scale``) sibling; the real weight is
``weight_fp8 * weight_scale``. We keep those weights in fp8 (half the bytes to hold or stream)
and dequantize per layer at compute time. The same class stores bf16 weights cast to fp8 on
load when the user asks for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
QUANT_SUFFIXES = (".weight_scale", ".input_scale")


class FP8Linear(nn.Module):
    """A Linear whose weight lives in fp8 with a per-tensor scale; computes in the input dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_dtype: torch.dtype = torch.float8_e4m3fn, device=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=weight_dtype, device=device),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("input_scale", None)

    @classmethod
    def like(cls, linear: nn.Linear, weight_dtype: torch.dtype = torch.float8_e4m3fn) -> "FP8Linear":
        return cls(linear.in_features, linear.out_features, linear.bias is not None, weight_dtype,
                   device=linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight_dtype={self.weight.dtype}"


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
