"""LTX-2.5's Gemma 4 text encoder against the reference (``golden-2.5``): the packed text-encoder file read by our
loader, its tokenizer (left padding, leading BOS) and every hidden state. Every size comes from the files."""

from __future__ import annotations

import pytest
import torch

from ltx2_nodes.loading.safetensors_file import SafetensorsFile

from conftest import assert_close, find_golden
from ltx2_nodes.loading.gemma_files import locate_gemma
from ltx2_nodes.text.gemma import load_gemma_encoder


@pytest.fixture(scope="module")
def golden():
    return find_golden("gemma4_text_encoder", "2.5")


@pytest.fixture(scope="module")
def encoder(golden):
    return load_gemma_encoder(golden.weights_path, dtype=torch.float32,
                              max_length=golden["prompt0.input_ids"].shape[1])


def _prompts(golden) -> list[tuple[str, str]]:
    return [(f"prompt{i}", text) for i, text in enumerate(golden.call["prompts"])]


def test_golden_tokenization_left_pads_and_prepends_bos(golden, encoder):
    for tag, text in _prompts(golden):
        tokens = encoder.tokenize([text])
        assert torch.equal(tokens.ids, golden[f"{tag}.input_ids"]), tag
        assert torch.equal(tokens.mask, golden[f"{tag}.attention_mask"]), tag
        first = int((tokens.mask[0] == 0).sum())
        assert tokens.ids[0, first] == encoder.tokenizer.bos_ids[0] and tokens.dropped == [0]


@pytest.mark.parametrize("skip_padding", [True, False], ids=["valid_columns", "full_padded_run"])
def test_golden_hidden_states(golden, encoder, skip_padding):
    """Every hidden state (embedding, each layer, the last after the final norm) at the valid tokens; padding is
    returned as zeros (the feature extractor ignores it)."""
    for tag, _ in _prompts(golden):
        expected, mask = golden[f"{tag}.hidden_states"], golden[f"{tag}.attention_mask"]
        got = encoder.hidden_states(golden[f"{tag}.input_ids"], mask, skip_padding=skip_padding)
        assert got.shape == expected.shape
        valid = mask.bool()
        assert_close(got[valid], expected[valid], f"{tag} hidden states ({'skip' if skip_padding else 'full'})")
        assert (got[~valid] == 0).all()


def test_golden_batch_encode_equals_the_reference_per_prompt(golden, encoder):
    prompts = _prompts(golden)
    features = encoder.encode([text for _, text in prompts], cache=None)
    for row, (tag, _) in enumerate(prompts):
        valid = features.mask[row].bool()
        assert torch.equal(features.mask[row], golden[f"{tag}.attention_mask"][0])
        assert_close(features.hidden_states[row][valid], golden[f"{tag}.hidden_states"][0][valid], f"{tag} batched")


def test_golden_packed_file_config_version_and_projection(golden, encoder):
    hidden_states = golden["prompt0.hidden_states"]
    assert encoder.config.hidden_size == hidden_states.shape[2]
    assert encoder.config.num_hidden_states == hidden_states.shape[3]
    files = locate_gemma(golden.weights_path)
    assert files.gemma_version == golden.config["gemma_config"]["gemma_version"]
    packed = SafetensorsFile(golden.weights_path)
    projection = {k: packed.tensor(k) for k in packed.keys() if k.startswith("text_embedding_projection.")}
    assert projection and all(k.startswith("text_embedding_projection.") for k in projection)
    flat = hidden_states.shape[2] * hidden_states.shape[3]
    assert all(t.shape[-1] == flat for k, t in projection.items() if k.endswith(".weight"))


def test_golden_file_dtype_run_stays_close(golden):
    """In the file's dtype (bf16, as released) the states stay near the float32 reference."""
    encoder = load_gemma_encoder(golden.weights_path, max_length=golden["prompt0.input_ids"].shape[1])
    assert encoder.dtype == torch.bfloat16
    tag, text = _prompts(golden)[0]
    got = encoder.encode(text, cache=None).hidden_states[0].float()
    expected, valid = golden[f"{tag}.hidden_states"][0], golden[f"{tag}.attention_mask"][0].bool()
    error = (got[valid] - expected[valid]).norm() / expected[valid].norm()
    assert error < 0.05, f"bf16 relative error {error:.3g}"
