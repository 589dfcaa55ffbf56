"""NVFP4 files in ComfyUI's ``TensorCoreNVFP4Layout``: kept 4-bit, dequantized per layer on any device.

``quantize_nvfp4`` writes the layout as ComfyUI documents it: rows and columns padded to 16, E2M1
codes packed two per byte (high nibble first), one float8_e4m3 scale per 16 values laid out in
cuBLAS's 128 x 4 tiles (inside a tile, row r / column c at byte (r % 32) * 16 + (r // 32) * 4 + c),
a float32 per-tensor ``weight_scale_2``. The dequantization is checked against a value-by-value
reading of that definition, then whole Gemma and DiT files against their dequantized twins.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import assert_close, find_golden
from tiny_gemma import hf_model, language_state, spm_bytes, write_comfy_file
from ltx2_nodes.demo.tiny_gemma import save_tensors
from ltx2_nodes.loading.checkpoint import DIT_PREFIX, LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import NVFP4Linear, dequantize_nvfp4
from ltx2_nodes.memory.precheck import checkpoint_weights
from ltx2_nodes.text.gemma import load_gemma_encoder

E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)
PROMPTS = ["a small red bird flies in the sky and a big dog runs in the park", "a cat"]


def _tile_offset(r: int, c: int, cols: int) -> int:
    tile = (r // 128) * (cols // 4) + c // 4
    return tile * 512 + (r % 32) * 16 + (r % 128) // 32 * 4 + c % 4


def quantize_nvfp4(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """``weight`` (packed), ``weight_scale`` (blocked e4m3), ``weight_scale_2`` of a 2-D float weight."""
    rows, cols = -(-w.shape[0] // 16) * 16, -(-w.shape[1] // 16) * 16
    x = np.zeros((rows, cols), np.float32)
    x[: w.shape[0], : w.shape[1]] = w.float().numpy()
    tensor_scale = np.float32(np.abs(x).max() / (448 * 6))
    blocks = x.reshape(rows, cols // 16, 16)
    scales = torch.from_numpy(np.abs(blocks).max(-1) / 6 / tensor_scale).to(torch.float8_e4m3fn)
    total = scales.float().numpy()[..., None] * tensor_scale
    scaled = np.where(total == 0, 0, blocks / np.where(total == 0, 1, total))
    codes = np.abs(np.abs(scaled)[..., None] - E2M1[:8]).argmin(-1) + 8 * (scaled < 0)
    codes = codes.reshape(rows, cols).astype(np.uint8)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    scale_rows, scale_cols = -(-rows // 128) * 128, -(-(cols // 16) // 4) * 4
    blocked = np.zeros(scale_rows * scale_cols, np.uint8)
    raw = scales.view(torch.uint8).numpy()
    for r in range(rows):
        for c in range(cols // 16):
            blocked[_tile_offset(r, c, scale_cols)] = raw[r, c]
    return {"weight": torch.from_numpy(packed),
            "weight_scale": torch.from_numpy(blocked.reshape(scale_rows, scale_cols)).view(torch.float8_e4m3fn),
            "weight_scale_2": torch.tensor(tensor_scale)}


def reference_dequantize(q: dict[str, torch.Tensor], shape: tuple[int, int]) -> torch.Tensor:
    """Value by value from the layout's definition."""
    packed = q["weight"].numpy()
    scales = q["weight_scale"].float().numpy().reshape(-1)
    scale_cols = q["weight_scale"].shape[1]
    out = np.zeros(shape, np.float32)
    for r in range(shape[0]):
        for c in range(shape[1]):
            byte = packed[r, c // 2]
            code = byte >> 4 if c % 2 == 0 else byte & 0x0F
            block = scales[_tile_offset(r, c // 16, scale_cols)]
            out[r, c] = E2M1[code] * (q["weight_scale_2"].item() * block)
    return torch.from_numpy(out)


def nvfp4_file_tensors(state: dict[str, torch.Tensor], linear: callable):
    """(file tensors with NVFP4 Linears + comfy_quant entries, the same state dequantized)."""
    tensors, dequantized = {}, {}
    for key, value in state.items():
        if linear(key, value):
            layer = key[: -len(".weight")]
            q = quantize_nvfp4(value)
            tensors.update({f"{layer}.{k}": v for k, v in q.items()})
            tensors[f"{layer}.comfy_quant"] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()),
                                                           dtype=torch.uint8)
            dequantized[key] = reference_dequantize(q, tuple(value.shape))
        else:
            tensors[key] = dequantized[key] = value
    return tensors, dequantized


@pytest.mark.parametrize("shape", [(32, 64), (20, 40), (130, 48)])
def test_dequantization_follows_the_layout_definition(shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    q = quantize_nvfp4(w)
    ours = dequantize_nvfp4(q["weight"], q["weight_scale"], q["weight_scale_2"], shape, torch.float32)
    assert torch.equal(ours, reference_dequantize(q, shape))
    assert (ours - w).abs().max() <= 1.1 * w.abs().max() / 6  # half the widest E2M1 step (4 -> 6), scale rounding


def test_nvfp4_gemma_file_loads_and_says_the_fp4_path_is_absent(tmp_path, caplog):
    state = language_state(hf_model(seed=1, sliding_window=1024))
    tensors, dequantized = nvfp4_file_tensors(state, lambda k, v: "_proj.weight" in k)
    path = write_comfy_file(tmp_path / "gemma_3_12B_it_fp4_mixed.safetensors", tensors, tokenizer=spm_bytes())
    reference = load_gemma_encoder(write_comfy_file(tmp_path / "deq.safetensors", dequantized, tokenizer=spm_bytes()))
    expected = reference.encode(PROMPTS, cache=None).hidden_states
    with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
        encoder = load_gemma_encoder(path, dtype=torch.float32)
        load_gemma_encoder(path, dtype=torch.float32)
    assert isinstance(encoder.decoder_layers[0].mlp.up_proj, NVFP4Linear)
    assert caplog.text.count("native FP4 matmul") <= 1
    assert_close(encoder.encode(PROMPTS, cache=None).hidden_states, expected, "nvfp4 keep", 1e-5)
    upcast = load_gemma_encoder(path, dtype=torch.float32, fp8="upcast")
    assert type(upcast.decoder_layers[0].mlp.up_proj) is torch.nn.Linear
    assert_close(upcast.encode(PROMPTS, cache=None).hidden_states, expected, "nvfp4 upcast", 1e-5)


def test_nvfp4_dit_blocks_golden(tmp_path):
    golden = find_golden("transformer", "2.0")
    ckpt = LTX2Checkpoint(golden.weights_path)
    state = {k: ckpt.file.tensor(k) for k in ckpt.file.keys()}
    in_blocks = lambda k, v: k.startswith(DIT_PREFIX + "transformer_blocks.") and k.endswith(".weight") \
        and v.dim() == 2  # noqa: E731
    tensors, dequantized = nvfp4_file_tensors(state, in_blocks)
    meta = {k: v for k, v in ckpt.file.metadata.items()}
    nvfp4 = LTX2Checkpoint(save_tensors(tensors, tmp_path / "ltx-2-19b-dev-nvfp4.safetensors", meta))
    twin = LTX2Checkpoint(save_tensors({k: v.to(torch.float32) for k, v in dequantized.items()},
                                       tmp_path / "deq.safetensors", meta))
    assert "nvfp4" in nvfp4.variant.describe()
    model, reference = (load_transformer(c, dtype=torch.float32) for c in (nvfp4, twin))
    assert sum(isinstance(m, NVFP4Linear) for m in model.modules()) > 0
    from test_golden_transformer import _inputs

    video, audio = _inputs(golden, "call1")
    with torch.no_grad():
        for a, e in zip(model(video, audio), reference(video, audio)):
            assert_close(a, e, "nvfp4 DiT", 1e-5)
    assert checkpoint_weights(nvfp4)["dit"].packed
