"""Test-only Gemma layouts: ComfyUI's single file (fp8 formats) and a workspace of every layout.

The builders shared with ``python -m ltx2_nodes demo-models`` live in ``ltx2_nodes.demo.tiny_gemma``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ltx2_nodes.demo.tiny_gemma import (SENTENCES, VOCAB, WORDS, hf_model, language_state,  # noqa: F401
                                        save_tensors, spm_bytes, text_config, wordlevel_tokenizer, write_hf_folder)

LINEAR_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight",
                   "up_proj.weight", "down_proj.weight")


def fp8_roundtrip(state: dict[str, torch.Tensor], with_scale: bool = True):
    """Quantize the Linear weights like ComfyUI's fp8 files; returns (file tensors, dequantized float32 state)."""
    quantized, dequantized = {}, {}
    for key, tensor in state.items():
        if key.endswith(LINEAR_SUFFIXES):
            scale = tensor.abs().max() / 448.0 if with_scale else torch.tensor(1.0)
            q = (tensor / scale).to(torch.float8_e4m3fn)
            quantized[key] = q
            if with_scale:
                quantized[key[: -len("weight")] + "weight_scale"] = scale.float()
            dequantized[key] = q.float() * scale.float()
        else:
            quantized[key] = tensor
            dequantized[key] = tensor
    return quantized, dequantized


def write_comfy_file(path: Path, state: dict[str, torch.Tensor], *, tokenizer: bytes | None = None,
                     quant: str | None = None) -> Path:
    """ComfyUI's single-file layout. ``quant``: None, "comfy_quant" (weight_scale + per-layer JSON),
    "scaled_fp8" (older: ``scale_weight`` + a ``scaled_fp8`` marker) or "plain_fp8" (no scales)."""
    tensors = dict(state)
    if quant is not None:
        tensors, _ = fp8_roundtrip(state, with_scale=quant != "plain_fp8")
        for key in [k for k in tensors if k.endswith(".weight_scale")]:
            layer = key[: -len(".weight_scale")]
            if quant == "comfy_quant":
                tensors[layer + ".comfy_quant"] = torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8)
            elif quant == "scaled_fp8":
                tensors[layer + ".scale_weight"] = tensors.pop(key)
        if quant == "scaled_fp8":
            tensors["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    tensors["vision_model.embeddings.patch_embedding.weight"] = torch.zeros(4, 3, 2, 2)
    tensors["multi_modal_projector.mm_input_projection_weight"] = torch.zeros(4, 4)
    if tokenizer is not None:
        tensors["spiece_model"] = torch.tensor(list(tokenizer), dtype=torch.uint8)
    save_tensors(tensors, path)
    return path


class Workspace:
    """Tiny models written in every layout under one folder (built once per test module)."""

    def __init__(self, root: Path):
        self.root = root
        # Small sliding window: prompts longer than it exercise the window masks (parity with transformers).
        self.windowed = hf_model(seed=0, sliding_window=6)
        self.words = write_hf_folder(self.windowed, root / "words", tokenizer="wordlevel")
        # Gemma 3 12B's non-shape settings, as a ComfyUI single file implies them.
        self.like12b = hf_model(seed=1, sliding_window=1024)
        self.spm = spm_bytes()
        state = language_state(self.like12b)
        self.hf_spm = write_hf_folder(self.like12b, root / "hf_spm")
        self.multimodal = write_hf_folder(self.like12b, root / "multimodal", layout="multimodal")
        self.multimodal_v5 = write_hf_folder(self.like12b, root / "multimodal_v5", layout="multimodal_v5")
        self.comfy = write_comfy_file(root / "gemma_3_tiny_it.safetensors", state, tokenizer=self.spm)
        self.comfy_fp8 = {}
        for quant in ("comfy_quant", "scaled_fp8", "plain_fp8"):
            self.comfy_fp8[quant] = write_comfy_file(root / f"gemma_{quant}.safetensors", state, tokenizer=self.spm,
                                                     quant=quant)
            _, dequantized = fp8_roundtrip(state, with_scale=quant != "plain_fp8")
            write_comfy_file(root / f"gemma_{quant}_dequantized.safetensors", dequantized, tokenizer=self.spm)
