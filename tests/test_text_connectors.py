"""Feature extractor + text connectors: golden parity (generic over fixture sets) and batch behaviour."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_text_connectors
from ltx2_nodes.model.connector import ConnectorConfig, fill_with_registers, normalize_hidden_states


@pytest.fixture(scope="module")
def golden():
    return find_golden("text_embedding_projection+embeddings_connectors")


@pytest.fixture(scope="module")
def connectors(golden):
    return load_text_connectors(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _examples(golden) -> list[str]:
    names = sorted({k.split(".", 1)[0] for k in golden.tensors if k.endswith(".hidden_states")})
    assert names, "fixture has no examples"
    return names


def test_config_matches_fixture(golden, connectors):
    call = golden.call["connector"]
    cfg = connectors.video.config
    assert cfg.num_attention_heads == call["connector_num_attention_heads"]
    assert cfg.attention_head_dim == call["connector_attention_head_dim"]
    assert cfg.num_layers == call["connector_num_layers"]
    assert cfg.num_learnable_registers == call["connector_num_learnable_registers"]
    assert list(cfg.positional_embedding_max_pos) == list(call["connector_positional_embedding_max_pos"])
    assert cfg.rope_spec().theta == call["positional_embedding_theta"]
    assert cfg.rope_type == call["rope_type"] and cfg.frequencies_precision == call["frequencies_precision"]
    proj = golden.call["text_embedding_projection"]
    assert connectors.in_features == proj["in_features"]
    assert connectors.projection.aggregate_embed.out_features == proj["out_features"]


def test_every_example_matches(golden, connectors):
    for ex in _examples(golden):
        states, mask = golden[f"{ex}.hidden_states"], golden[f"{ex}.attention_mask"]
        with torch.no_grad():
            normed = normalize_hidden_states(states, mask)
            projected = connectors.projection(normed)
            after_registers = connectors.video.with_registers(projected, mask)
            out = connectors.connect(states, mask)
        assert_close(normed, golden[f"{ex}.normed_concat"], f"{ex}.normed_concat")
        assert_close(projected, golden[f"{ex}.projected"], f"{ex}.projected")
        assert_close(after_registers, golden[f"{ex}.video_connector_input_after_registers"],
                     f"{ex}.video_connector_input_after_registers")
        assert_close(out.video_context, golden[f"{ex}.video_encoding"], f"{ex}.video_encoding")
        assert_close(out.audio_context, golden[f"{ex}.audio_encoding"], f"{ex}.audio_encoding")
        if f"{ex}.out_attention_mask" in golden.tensors:
            assert torch.equal(out.mask, golden[f"{ex}.out_attention_mask"])


def test_batch_of_different_lengths_equals_one_by_one(golden, connectors):
    """The reference handles batch 1 only; a batch must give each sample its own single-prompt result."""
    examples = _examples(golden)
    states = torch.cat([golden[f"{ex}.hidden_states"] for ex in examples] * 2)
    masks = torch.cat([golden[f"{ex}.attention_mask"] for ex in examples] * 2)
    masks[-1] = 0  # a sample with no valid token at all (registers only) must not poison the others
    with torch.no_grad():
        batched = connectors.connect(states, masks)
        for i in range(states.shape[0]):
            single = connectors.connect(states[i:i + 1], masks[i:i + 1])
            assert_close(batched.video_context[i:i + 1], single.video_context, f"video sample {i}", 1e-5)
            assert_close(batched.audio_context[i:i + 1], single.audio_context, f"audio sample {i}", 1e-5)
    assert torch.isfinite(batched.video_context).all()


def test_registers_fill_after_valid_tokens_for_any_padding_side():
    x = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1) + 100
    registers = torch.tensor([[-1.0], [-2.0], [-3.0], [-4.0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 0, 1, 0, 0, 0]])
    out = fill_with_registers(x, mask, registers)[..., 0]
    assert out.tolist() == [[102.0, 103.0, 104.0, -4.0, -1.0, -2.0], [106.0, 108.0, -3.0, -4.0, -1.0, -2.0]]


def test_normalization_ignores_padded_values():
    states = torch.randn(1, 5, 3, 2)
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    junk = states.clone()
    junk[:, :2] = 1e6
    a, b = normalize_hidden_states(states, mask), normalize_hidden_states(junk, mask)
    assert torch.equal(a, b)
    assert (a[:, :2] == 0).all()
    # layer index fastest: feature d*L + l holds layer l of width d
    valid = states[0, 2:, :, 1]
    expected = 8 * (valid - valid.mean()) / (valid.max() - valid.min() + 1e-6)
    assert_close(a[0, 2:, 1::2], expected, "layer 1 slice", 1e-6)


def test_wrong_gemma_width_is_refused(connectors):
    states = torch.zeros(1, 4, 7, 3)
    with pytest.raises(InputError, match=r"expects .* Gemma 3 12B"):
        connectors.connect(states, torch.ones(1, 4, dtype=torch.int64))


def test_config_reads_metadata_and_refuses_unsupported():
    cfg = ConnectorConfig.from_metadata({"connector_num_attention_heads": 4, "connector_attention_head_dim": 16,
                                         "connector_num_layers": 3, "connector_num_learnable_registers": 32,
                                         "connector_positional_embedding_max_pos": [512], "rope_type": "interleaved"})
    assert (cfg.inner_dim, cfg.num_layers, cfg.num_learnable_registers) == (64, 3, 32)
    assert cfg.rope_spec().max_pos == (512,) and cfg.rope_type == "interleaved"
    assert ConnectorConfig.from_metadata({}) == ConnectorConfig()  # released defaults
    with pytest.raises(UnsupportedModelError, match="connector_apply_gated_attention"):
        ConnectorConfig.from_metadata({"connector_apply_gated_attention": True})
    with pytest.raises(UnsupportedModelError, match="registers"):
        ConnectorConfig.from_metadata({"connector_num_learnable_registers": 0})
