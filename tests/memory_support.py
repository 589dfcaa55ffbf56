"""Shared helpers of the memory-engine tests: tiny models, a LoRA stand-in, device allocation tracking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltx2_nodes.memory.measure import DeviceAllocations
from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.shapes import AudioTiming, VideoScale
from ltx2_nodes.model.transformer import LTX2Transformer, ModalityInput, TransformerConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster and keeps the suite quick on busy CI machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LTX23_FLAGS = dict(apply_gated_attention=True, cross_attention_adaln=True, caption_proj_before_connector=True)


def random_dit(layers: int = 6, heads: int = 4, seed: int = 0, **flags) -> LTX2Transformer:
    """A small DiT with the released layout (video 32-wide heads, audio 16-wide) and random weights;
    ``flags``: extra ``TransformerConfig`` values (``LTX23_FLAGS`` for the LTX-2.3 layout)."""
    cfg = TransformerConfig(num_layers=layers, num_attention_heads=heads, attention_head_dim=32,
                            audio_num_attention_heads=heads, audio_attention_head_dim=16,
                            cross_attention_dim=heads * 32, audio_cross_attention_dim=heads * 16,
                            caption_channels=96, **flags)
    torch.manual_seed(seed)
    model = LTX2Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval().requires_grad_(False)


def dit_inputs(cfg: TransformerConfig, grid=(2, 4, 4), audio=8, text=16, batch=1, seed=1):
    """Video/audio inputs for ``cfg`` at sigma 0.7 with per-token video timesteps (first frame conditioned at 0)."""
    g = torch.Generator().manual_seed(seed)
    f, h, w = grid
    tv = f * h * w
    sigma = torch.full((batch,), 0.7)
    timesteps = torch.full((batch, tv), 0.7)
    timesteps[:, : h * w] = 0.0
    video = ModalityInput(torch.randn(batch, tv, cfg.in_channels, generator=g), sigma, timesteps,
                          video_positions(batch, f, h, w, 24.0, VideoScale(8, 32, 32)),
                          torch.randn(batch, text, cfg.context_width("video"), generator=g))
    aud = ModalityInput(torch.randn(batch, audio, cfg.audio_in_channels, generator=g), sigma, sigma,
                        audio_positions(batch, audio, AudioTiming()),
                        torch.randn(batch, text, cfg.context_width("audio"), generator=g))
    return video, aud


def tiny_gemma(layers: int = 4, hidden: int = 64, seed: int = 0):
    """A small Gemma 3 text model from a config with random weights (no download)."""
    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel

    cfg = Gemma3TextConfig(vocab_size=128, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                           sliding_window=8)
    torch.manual_seed(seed)
    return Gemma3TextModel(cfg).eval().requires_grad_(False)


class LoRALinear(nn.Module):
    """Stand-in for the pack's LoRA wrapper: base Linear plus low-rank factors held as buffers."""

    def __init__(self, base: nn.Module, rank: int = 4, scale: float = 0.5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = base
        dtype = torch.float32
        self.register_buffer("down", torch.randn(rank, base.in_features, generator=g, dtype=dtype) * 0.1)
        self.register_buffer("up", torch.randn(base.out_features, rank, generator=g, dtype=dtype) * 0.1)
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = F.linear(F.linear(x, self.down.to(x.dtype)), self.up.to(x.dtype))
        return self.base(x) + delta * self.scale.to(x.dtype)


def _lora_hook(module: nn.Module, inputs, output):
    x = inputs[0]
    return output + F.linear(F.linear(x, module.lora_down.to(x.dtype)), module.lora_up.to(x.dtype))


def add_lora(root: nn.Module, rank: int = 4, style: str = "wrapper") -> int:
    """Add a LoRA to every Linear (plain or quantized: fp8, GGUF, NVFP4) under ``root``; returns how many.

    ``wrapper``: the Linear is wrapped in a LoRALinear. ``hook``: factors are buffers of the Linear itself and a
    forward hook adds the low-rank term (the layout of the pack's ``loading/lora.py``)."""
    from ltx2_nodes.loading.quant import QuantLinear, replace_module

    targets = [n for n, m in root.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    for i, name in enumerate(targets):
        if style == "wrapper":
            replace_module(root, name, LoRALinear(root.get_submodule(name), rank, seed=i))
            continue
        module = root.get_submodule(name)
        g = torch.Generator().manual_seed(i)
        module.register_buffer("lora_down", torch.randn(rank, module.in_features, generator=g) * 0.1, persistent=False)
        module.register_buffer("lora_up", torch.randn(module.out_features, rank, generator=g) * 0.1, persistent=False)
        module.register_forward_hook(_lora_hook)
    return len(targets)


def host_pointers(model: nn.Module) -> dict[str, int]:
    return {n: t.data_ptr() for n, t in list(model.named_parameters()) + list(model.named_buffers())}


@pytest.fixture()
def allocations():
    """Engine allocations on the (virtual) compute device, counted independently of its ledger."""
    with DeviceAllocations() as tracker:
        yield tracker
