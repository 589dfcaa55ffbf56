"""Feature extractor + text connectors: golden parity per flavour (generic over fixture sets) and batch behaviour.

Flavours: ``2.0`` / ``2.0-head`` (FeatureExtractorV1, one shared projection) and ``2.3``
(FeatureExtractorV2: per-token RMS, two biased projections, gated 8-layer connectors, a narrower
audio connector). Every dimension is read from the fixture files.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_text_connectors
from ltx2_nodes.model.connector import (V2_PROJECTION_CONFIG, ConnectorConfig, TextProjectionConfig,
                                        fill_with_registers, normalize_hidden_states, rms_normalize_hidden_states)

FLAVOURS = ("2.0", "2.0-head", "2.3")


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"golden-{f}" for f in FLAVOURS])
def golden(request):
    return find_golden("text_embedding_projection+embeddings_connectors", request.param)


@pytest.fixture(scope="module")
def connectors(golden):
    return load_text_connectors(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _examples(golden) -> list[str]:
    names = sorted({k.split(".", 1)[0] for k in golden.tensors if k.endswith(".hidden_states")})
    assert names, "fixture has no examples"
    return names


def test_config_matches_fixture(golden, connectors):
    call = golden.call["connector"]
    video, audio = connectors.video.config, connectors.audio.config
    assert (video.num_attention_heads, video.attention_head_dim) == (call["connector_num_attention_heads"],
                                                                     call["connector_attention_head_dim"])
    assert (audio.num_attention_heads, audio.attention_head_dim) == (
        call.get("audio_connector_num_attention_heads", call["connector_num_attention_heads"]),
        call.get("audio_connector_attention_head_dim", call["connector_attention_head_dim"]))
    assert video.num_layers == call["connector_num_layers"]
    assert audio.num_layers == call.get("audio_connector_num_layers", call["connector_num_layers"])
    registers = call.get("num_learnable_registers", call["connector_num_learnable_registers"])
    assert video.num_learnable_registers == audio.num_learnable_registers == registers
    assert video.gated_attention == audio.gated_attention == call.get("gated_attention", False)
    assert list(video.positional_embedding_max_pos) == list(call["connector_positional_embedding_max_pos"])
    assert video.rope_spec().theta == call["positional_embedding_theta"]
    assert video.rope_type == call["rope_type"] and video.frequencies_precision == call["frequencies_precision"]
    assert connectors.video_width == call.get("video_inner_dim", connectors.video_width)
    assert connectors.audio_width == call.get("audio_inner_dim", connectors.audio_width)
    assert connectors.in_features == golden.call["gemma_hidden_size"] * golden.call["gemma_num_hidden_states"]
    proj = golden.call["text_embedding_projection"]
    if "video_aggregate_embed" in proj:  # FeatureExtractorV2: [in, out] per modality
        assert connectors.projection.config.separate_projections and proj["bias"]
        assert [connectors.in_features, connectors.video_width] == proj["video_aggregate_embed"]
        assert [connectors.in_features, connectors.audio_width] == proj["audio_aggregate_embed"]
    else:
        assert not connectors.projection.config.separate_projections and not proj["bias"]
        assert connectors.in_features == proj["in_features"]
        assert connectors.video_width == connectors.audio_width == proj["out_features"]


def test_every_example_matches(golden, connectors):
    """Each stage the fixture records: features, projections, register substitution, encodings, mask."""
    diffs: dict[str, float] = {}

    def check(actual, name):
        diffs[name] = assert_close(actual, golden[name], name)

    for ex in _examples(golden):
        states, mask = golden[f"{ex}.hidden_states"], golden[f"{ex}.attention_mask"]
        with torch.no_grad():
            normed = connectors.projection.normalize(states, mask)
            video_in, audio_in = connectors.projection(normed, states.shape[2])
            registered = {"video": connectors.video.with_registers(video_in, mask),
                          "audio": connectors.audio.with_registers(audio_in, mask)}
            out = connectors.connect(states, mask)
        check(normed, f"{ex}.normed_concat")
        present = [name for name in (f"{ex}.projected", f"{ex}.video_features", f"{ex}.audio_features")
                   if name in golden.tensors]
        assert present, "fixture records no projection output"
        for name in present:
            check(audio_in if name.endswith("audio_features") else video_in, name)
        if f"{ex}.projected" in golden.tensors:  # V1: one projection feeds both connectors
            assert torch.equal(video_in, audio_in)
        for stream, tensor in registered.items():
            if f"{ex}.{stream}_connector_input_after_registers" in golden.tensors:
                check(tensor, f"{ex}.{stream}_connector_input_after_registers")
        check(out.video_context, f"{ex}.video_encoding")
        check(out.audio_context, f"{ex}.audio_encoding")
        if f"{ex}.out_attention_mask" in golden.tensors:
            assert torch.equal(out.mask, golden[f"{ex}.out_attention_mask"])
    print("\n".join(f"{golden.path.parent.name}: {name} max |diff| {d:.3g}" for name, d in diffs.items()))


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


def test_per_token_rms_normalization_ignores_padded_values():
    states = torch.randn(1, 5, 3, 2)
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    junk = states.clone()
    junk[:, :2] = 1e6
    a, b = rms_normalize_hidden_states(states, mask), rms_normalize_hidden_states(junk, mask)
    assert torch.equal(a, b)
    assert (a[:, :2] == 0).all()
    token = states[0, 3, :, 1]  # token 3, layer 1: features d*L + 1
    assert_close(a[0, 3, 1::2], token / (token.pow(2).mean() + 1e-6).sqrt(), "token 3 layer 1", 1e-6)


def test_wrong_gemma_width_is_refused(connectors):
    states = torch.zeros(1, 4, 7, 3)
    with pytest.raises(InputError, match=r"expects .* Gemma 3 12B"):
        connectors.connect(states, torch.ones(1, 4, dtype=torch.int64))


def test_token_count_that_is_not_a_multiple_of_the_registers_is_refused(golden, connectors):
    registers = connectors.video.config.num_learnable_registers
    width, layers = golden.call["gemma_hidden_size"], golden.call["gemma_num_hidden_states"]
    tokens = registers + 1
    mask = torch.ones(1, tokens, dtype=torch.int64)
    with pytest.raises(InputError, match=rf"{tokens} tokens.*multiple of {registers}"):
        connectors.connect(torch.randn(1, tokens, width, layers), mask)


def test_config_reads_metadata_and_refuses_unsupported():
    cfg = ConnectorConfig.from_metadata({"connector_num_attention_heads": 4, "connector_attention_head_dim": 16,
                                         "connector_num_layers": 3, "connector_num_learnable_registers": 32,
                                         "connector_positional_embedding_max_pos": [512], "rope_type": "interleaved"})
    assert (cfg.inner_dim, cfg.num_layers, cfg.num_learnable_registers) == (64, 3, 32)
    assert cfg.rope_spec().max_pos == (512,) and cfg.rope_type == "interleaved" and not cfg.gated_attention
    assert ConnectorConfig.from_metadata({}) == ConnectorConfig()  # released defaults
    assert not ConnectorConfig.from_metadata({"connector_ff_bias": False}).ff_bias
    with pytest.raises(UnsupportedModelError, match="connector_ff_bias"):
        ConnectorConfig.from_metadata({"connector_ff_bias": "no"})
    with pytest.raises(UnsupportedModelError, match="registers"):
        ConnectorConfig.from_metadata({"connector_num_learnable_registers": 0})


def test_audio_connector_reads_its_own_width_and_the_file_decides_the_register_count():
    meta = {"connector_num_attention_heads": 4, "connector_attention_head_dim": 16, "connector_num_layers": 8,
            "connector_apply_gated_attention": True, "connector_num_learnable_registers": 32,
            "audio_connector_num_attention_heads": 2, "audio_connector_attention_head_dim": 8}
    video = ConnectorConfig.from_metadata(meta, registers=128)
    audio = ConnectorConfig.from_metadata(meta, audio=True, registers=128)
    assert (video.inner_dim, audio.inner_dim) == (64, 16)
    assert video.num_layers == audio.num_layers == 8  # no audio_connector_num_layers: the video key
    assert video.gated_attention and audio.gated_attention
    assert video.num_learnable_registers == audio.num_learnable_registers == 128
    assert ConnectorConfig.from_metadata({**meta, "audio_connector_num_layers": 4}, audio=True).num_layers == 4
    # a 19B config without audio_connector_* keys: the audio connector is the video one
    assert ConnectorConfig.from_metadata({"connector_num_attention_heads": 3}, audio=True).num_attention_heads == 3


def test_projection_kind_follows_the_caption_projection_settings_and_refuses_partial_sets():
    assert TextProjectionConfig.separate_from_metadata({}) is False
    assert TextProjectionConfig.separate_from_metadata({**V2_PROJECTION_CONFIG, "other": 1}) is True
    partial = dict(V2_PROJECTION_CONFIG)
    partial.pop("caption_proj_input_norm")
    with pytest.raises(UnsupportedModelError, match="caption projection settings"):
        TextProjectionConfig.separate_from_metadata(partial)
    with pytest.raises(UnsupportedModelError, match="caption projection settings"):
        TextProjectionConfig.separate_from_metadata({**V2_PROJECTION_CONFIG, "caption_proj_input_norm": True})
