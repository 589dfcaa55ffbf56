"""GGUF DiT files written here from the golden 2.0 checkpoint with ``gguf.GGUFWriter``.

Layout as the community converters write it: the checkpoint's own keys (with or without
``model.diffusion_model.``), 2-D ``.weight`` tensors whose rows are whole blocks quantized, the rest
BF16 (exactly the golden bf16 weights). The tiny golden model's head counts cannot be read from
shapes, so the files used for the forward comparisons carry the checkpoint's ``config`` as a GGUF
string; the inference from shapes is tested on a file without it.

Measured on the golden 2.0 inputs (``call1``; outputs up to ~3.7 in magnitude), max |diff| of the
denoiser outputs against the bf16 model: Q8_0 0.036 (every 32-wide Linear quantized), Q4_K 0.157
(only the 256-wide timestep Linears have whole K-blocks). Tolerances below leave ~40 % headroom.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from gguf import GGUFReader, quants

from conftest import find_golden
from gguf_files import Q, write_gguf
from memory_support import add_lora, one_thread  # noqa: F401
from ltx2_nodes.loading.checkpoint import DIT_PREFIX, LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.family import LTX_2, LTX_2_3
from ltx2_nodes.loading.quant import GGUFLinear
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.memory.host import ALIGN
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.memory.precheck import checkpoint_weights, module_weights

TOLERANCE = {Q.Q8_0: 0.05, Q.Q4_K: 0.22}


@pytest.fixture(scope="module")
def golden():
    return find_golden("transformer", "2.0")


@pytest.fixture(scope="module")
def dit_tensors(golden):
    ckpt = LTX2Checkpoint(golden.weights_path)
    return {k: ckpt.file.tensor(k) for k in ckpt.file.keys() if k.startswith(DIT_PREFIX)}, ckpt.config


@pytest.fixture(scope="module")
def files(tmp_path_factory, dit_tensors):
    tensors, config = dit_tensors
    root = tmp_path_factory.mktemp("gguf")
    meta = {"config": json.dumps({"transformer": config["transformer"]})}
    out = {q: write_gguf(root / f"ltx-2-19b-dev-{q.name}.gguf", tensors, q, extra=meta) for q in TOLERANCE}
    out["bf16"] = write_gguf(root / "ltx-2-19b-dev-BF16.gguf", tensors, None, extra=meta)
    bare = {k[len(DIT_PREFIX):]: v for k, v in tensors.items()}
    out["bare"] = write_gguf(root / "ltx2-dit-noprefix-Q8_0.gguf", bare, Q.Q8_0)
    return out


@pytest.fixture(scope="module")
def reference(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _inputs(golden):
    from test_golden_transformer import _inputs as inputs

    return inputs(golden, "call1")


def test_bf16_gguf_holds_exactly_the_golden_weights_golden(files, reference):
    model = load_transformer(LTX2Checkpoint(files["bf16"]), dtype=torch.float32)
    expected = reference.state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())


@pytest.mark.parametrize("qtype", list(TOLERANCE), ids=lambda q: f"golden-{q.name}")
def test_quantized_dit_forward_stays_within_its_tolerance_of_bf16(qtype, files, golden, reference):
    ckpt = LTX2Checkpoint(files[qtype])
    assert ckpt.variant.quantized and qtype.name in ckpt.variant.describe()
    model = load_transformer(ckpt, dtype=torch.float32)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, GGUFLinear)}
    assert layers and all(m.weight.dtype == torch.uint8 for m in layers.values())
    # the weights computed with are gguf's own dequantization of the file, bit for bit
    reader = {t.name: t for t in GGUFReader(files[qtype]).tensors}
    for name, layer in layers.items():
        expected = quants.dequantize(reader[DIT_PREFIX + name + ".weight"].data, qtype)
        assert np.array_equal(layer.dequantized_weight(torch.float32).numpy(), expected), name
    video, audio = _inputs(golden)
    with torch.no_grad():
        expected, actual = reference(video, audio), model(video, audio)
    diffs = [(a - e).abs().max().item() for a, e in zip(actual, expected)]
    assert max(diffs) <= TOLERANCE[qtype], diffs


def test_file_without_config_infers_it_and_says_the_family(files, caplog, dit_tensors):
    with caplog.at_level(logging.WARNING, logger="ltx2_nodes"):
        ckpt = LTX2Checkpoint(files["bare"])
    assert ckpt.family is LTX_2 and ckpt.variant.config_inferred
    assert ckpt.variant.key_prefix == "" and ckpt.variant.layout == "diffusion_model"
    assert "LTX-2 transformer config inferred from tensor shapes" in caplog.text
    golden_config = dit_tensors[1]["transformer"]
    for key in ("num_layers", "in_channels", "out_channels", "cross_attention_dim", "caption_channels",
                "connector_num_layers", "connector_num_learnable_registers"):
        assert ckpt.config["transformer"][key] == golden_config[key], key
    model = load_transformer(ckpt, dtype=torch.float32)
    assert any(isinstance(m, GGUFLinear) for m in model.modules())


def test_streamed_quantized_dit_is_bit_identical_to_resident_golden(files, golden):
    model = load_transformer(LTX2Checkpoint(files[Q.Q8_0]), dtype=torch.float32)
    add_lora(model.transformer_blocks, style="hook")
    video, audio = _inputs(golden)
    with torch.no_grad():
        expected = model(video, audio)
    budget = 2 * tensor_bytes(module_tensors(model))
    engine = MemoryEngine("cpu", virtual=True, vram_budget=budget, minimal=True, host_mode="packed")
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed"
        first = model(video, audio)
    assert all(torch.equal(a, e) for a, e in zip(first, expected))
    assert stage.stats.copies >= len(model.transformer_blocks)  # every block ran from a slot


def test_precheck_counts_the_bytes_of_the_file(files):
    path = files[Q.Q8_0]
    ckpt = LTX2Checkpoint(path)
    sizes = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    blocks: dict[int, int] = {}
    fixed = 0
    for name, size in sizes.items():
        if not name.startswith(DIT_PREFIX) or "_embeddings_connector." in name:
            continue
        rest = name[len(DIT_PREFIX):]
        if rest.startswith("transformer_blocks."):
            index = int(rest.split(".")[1])
            blocks[index] = blocks.get(index, 0) + -(-size // ALIGN) * ALIGN
        else:
            fixed += size
    dit = checkpoint_weights(ckpt)["dit"]
    assert dit.fixed_bytes == fixed
    assert dit.block_bytes == tuple(blocks[i] for i in sorted(blocks))
    assert dit.fp8 and dit.packed and dit.largest_linear == 128 * 32  # values, not bytes
    # the built model streams exactly what the header said
    model = load_transformer(ckpt)
    assert module_weights("dit", model, model.transformer_blocks).block_bytes == dit.block_bytes


def test_ltx23_gguf_is_detected_as_ltx23_golden(tmp_path, caplog):
    ckpt = LTX2Checkpoint(find_golden("transformer", "2.3").weights_path)
    tensors = {k[len(DIT_PREFIX):]: ckpt.file.tensor(k) for k in ckpt.file.keys() if k.startswith(DIT_PREFIX)}
    with caplog.at_level(logging.WARNING, logger="ltx2_nodes"):
        gguf = LTX2Checkpoint(write_gguf(tmp_path / "ltx-2.3-22b-dev-Q8_0.gguf", tensors, Q.Q8_0))
    assert gguf.family is LTX_2_3 and "LTX-2.3 transformer config inferred" in caplog.text
    assert gguf.config["transformer"]["apply_gated_attention"]
    model = load_transformer(gguf, dtype=torch.float32)
    assert model.config.num_attention_heads == ckpt.config["transformer"]["num_attention_heads"]


def test_lora_applies_on_top_of_gguf_weights_golden(files, golden):
    from ltx2_nodes.loading.lora import LoRA, LoRAFactors, apply_loras

    keep = load_transformer(LTX2Checkpoint(files[Q.Q8_0]), dtype=torch.float32)
    upcast = load_transformer(LTX2Checkpoint(files[Q.Q8_0]), dtype=torch.float32, fp8="upcast")
    assert not any(isinstance(m, GGUFLinear) for m in upcast.modules())
    g = torch.Generator().manual_seed(0)
    targets = {name: LoRAFactors(torch.randn(4, m.in_features, generator=g) * 0.1,
                                 torch.randn(m.out_features, 4, generator=g) * 0.1)
               for name, m in keep.named_modules() if isinstance(m, GGUFLinear)}
    lora = LoRA("test", targets)
    video, audio = _inputs(golden)
    with torch.no_grad():
        plain = keep(video, audio)
        handles = [apply_loras(model, [(lora, 0.8)]) for model in (keep, upcast)]
        adapted, expected = keep(video, audio), upcast(video, audio)
    assert set(handles[0].modules) == set(targets)
    assert all((a - e).abs().max() <= 1e-5 for a, e in zip(adapted, expected))
    assert all((a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
