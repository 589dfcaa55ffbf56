"""GGUF block formats: our torch dequantization is bit-identical to the ``gguf`` package's numpy reference.

Blocks come from ``gguf.quants.quantize`` where gguf has a numpy quantizer (Q8_0, Q4_0, BF16) and are
random but valid (finite float16 scales) for every type, the K-quants included; rows of several
blocks, tensors of more than two dimensions. Unknown types are refused with their ggml name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, quants

from gguf_files import Q, quantize_q4_k, random_blocks
from ltx2_nodes.loading.gguf_quants import GGML_TYPES, dequantize

QUANTIZED = [Q.Q8_0, Q.Q6_K, Q.Q5_K, Q.Q4_K, Q.Q4_0]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_our_type_table_matches_ggml_block_sizes():
    for type_id, kind in GGML_TYPES.items():
        assert (kind.block_size, kind.type_size) == GGML_QUANT_SIZES[Q(type_id)], kind.name
        assert kind.name == Q(type_id).name


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda q: q.name)
def test_random_valid_blocks_dequantize_bit_exactly_like_gguf(qtype):
    raw = random_blocks(qtype, rows=5, blocks_per_row=3, seed=int(qtype))
    expected = quants.dequantize(raw, qtype)
    ours = dequantize(torch.from_numpy(raw), int(qtype))
    assert ours.dtype == torch.float32 and tuple(ours.shape) == expected.shape
    assert np.array_equal(_bits(ours.numpy()), _bits(expected))


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0, Q.BF16, Q.Q4_K], ids=lambda q: q.name)
def test_quantized_weights_dequantize_bit_exactly_like_gguf(qtype):
    values = np.random.default_rng(3).normal(0, 0.02, size=(2, 3, 512)).astype(np.float32)
    raw = quantize_q4_k(values) if qtype == Q.Q4_K else quants.quantize(values, qtype)
    expected = quants.dequantize(raw, qtype)
    ours = dequantize(torch.from_numpy(raw), int(qtype))
    assert tuple(ours.shape) == (2, 3, 512)
    assert np.array_equal(_bits(ours.numpy()), _bits(expected))
    assert np.abs(expected - values).max() < 0.01  # and they are the weights, not noise


def test_plain_types_are_exact():
    values = torch.randn(4, 64)
    assert torch.equal(dequantize(values.view(torch.uint8), int(Q.F32)), values)
    half = values.half()
    assert torch.equal(dequantize(half.view(torch.uint8), int(Q.F16)), half.float())
    brain = values.bfloat16()
    assert torch.equal(dequantize(brain.view(torch.uint8), int(Q.BF16), torch.bfloat16), brain)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda q: q.name)
def test_cuda_dequantization_equals_the_cpu_one(qtype):
    raw = torch.from_numpy(random_blocks(qtype, rows=64, blocks_per_row=16))
    assert torch.equal(dequantize(raw.cuda(), int(qtype)).cpu(), dequantize(raw, int(qtype)))
