"""Gemma 3 text encoders in GGUF (llama.cpp's names and norm convention), written here with ``gguf``.

A tiny Gemma 3 is written as llama.cpp's converter writes it (``token_embd``, ``blk.N.attn_q`` ...,
every RMSNorm weight stored as ``1 + w``); its ``tokenizer.model`` sits next to the file. A file of
plain F32 tensors gives the features of the same model in safetensors; a Q8_0 file gives the
features of the safetensors model holding gguf's own dequantization of those weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGUFReader, quants

from conftest import assert_close
from gguf_files import Q, write_gguf
from tiny_gemma import hf_model, language_state, spm_bytes, write_comfy_file
from ltx2_nodes.errors import CheckpointError
from ltx2_nodes.loading.gemma_files import gguf_gemma_key
from ltx2_nodes.loading.quant import GGUFLinear
from ltx2_nodes.text.gemma import load_gemma_encoder

PROMPTS = ["a small red bird flies in the sky and a big dog runs in the park", "a cat"]
_LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
          "input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
          "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
          "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def llama_cpp_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.*`` Gemma 3 tensors under llama.cpp's names, norms shifted by one as its converter does."""
    out = {}
    for key, tensor in state.items():
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        else:
            _, _, index, rest = key.split(".", 3)
            layer, _, suffix = rest.rpartition(".")
            name = f"blk.{index}.{_LAYER[layer]}.{suffix}"
        out[name] = tensor + 1.0 if key.endswith("norm.weight") else tensor
    return out


def _linear_or_embedding(key, shape, qtype):
    return key.endswith(".weight") and len(shape) == 2 and shape[-1] % 32 == 0


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    root = tmp_path_factory.mktemp("gemma_gguf")
    (root / "tokenizer.model").write_bytes(spm_bytes())
    state = language_state(hf_model(seed=1, sliding_window=1024))
    return root, state


def test_llama_cpp_names_map_to_ours():
    assert gguf_gemma_key("blk.3.attn_q.weight") == "model.layers.3.self_attn.q_proj.weight"
    assert gguf_gemma_key("blk.0.post_ffw_norm.weight") == "model.layers.0.post_feedforward_layernorm.weight"
    assert gguf_gemma_key("token_embd.weight") == "model.embed_tokens.weight"
    assert gguf_gemma_key("output.weight") is None


def test_f32_gguf_gives_the_features_of_the_safetensors_file(gemma):
    root, state = gemma
    reference = load_gemma_encoder(write_comfy_file(root / "gemma_3_tiny_it.safetensors", state,
                                                    tokenizer=spm_bytes()))
    path = write_gguf(root / "gemma-3-tiny-it-F32.gguf", llama_cpp_state(state), None, plain=Q.F32, arch="gemma3")
    encoder = load_gemma_encoder(path)
    assert encoder.config == reference.config and encoder.dtype == torch.float32  # the embedding's dtype
    expected = reference.encode(PROMPTS, cache=None).hidden_states
    assert_close(encoder.encode(PROMPTS, cache=None).hidden_states, expected, "F32 GGUF", 1e-5)


def test_q8_0_gguf_keeps_linears_quantized_and_computes_gguf_weights(gemma):
    root, state = gemma
    path = write_gguf(root / "gemma-3-tiny-it-Q8_0.gguf", llama_cpp_state(state), Q.Q8_0, plain=Q.F32,
                      arch="gemma3", quantize_key=_linear_or_embedding)
    dequantized = dict(state)
    for t in GGUFReader(path).tensors:
        key = gguf_gemma_key(t.name)
        if t.tensor_type == Q.Q8_0:
            dequantized[key] = torch.from_numpy(quants.dequantize(t.data, Q.Q8_0).copy())
    reference = load_gemma_encoder(write_comfy_file(root / "gemma_q8_dequantized.safetensors", dequantized,
                                                    tokenizer=spm_bytes()))
    assert load_gemma_encoder(path).dtype == torch.bfloat16  # quantized embedding, float32 norms: bf16
    encoder = load_gemma_encoder(path, dtype=torch.float32)
    q_proj = encoder.decoder_layers[0].self_attn.q_proj
    assert isinstance(q_proj, GGUFLinear) and q_proj.weight.dtype == torch.uint8
    assert encoder.lm.model.embed_tokens.weight.dtype == torch.float32  # embeddings are dequantized at load
    expected = reference.encode(PROMPTS, cache=None).hidden_states
    assert_close(encoder.encode(PROMPTS, cache=None).hidden_states, expected, "Q8_0 GGUF", 1e-5)
    assert np.isfinite(expected.numpy()).all()


def gemma_like_spm() -> bytes:
    """A SentencePiece BPE model with Gemma's normalizer settings (no normalization, no dummy prefix, whitespace
    and digits kept apart, byte fallback) and special ids, trained on the tiny Gemma's sentences."""
    import io

    import sentencepiece as spm

    from tiny_gemma import SENTENCES

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=buffer, vocab_size=400, model_type="bpe", pad_id=0, eos_id=1,
        bos_id=2, unk_id=3, num_threads=1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True)
    return buffer.getvalue()


TOKENIZER_PROMPTS = ["a small red bird flies in the sky", "  two  spaces\tand a tab\n", "Ünïcödé ✓ 😀 日本語",
                     "<start_of_turn>user\nhi<end_of_turn>", "numbers 12345 and 3.14", "x"]


def test_a_gguf_without_tokenizer_model_tokenizes_with_its_own_vocabulary_as_sentencepiece_does(tmp_path):
    """A GGUF from the community converters carries the vocabulary (``tokenizer.ggml.*``) but no
    ``tokenizer.model``: transformers' GGUF converter rebuilds the tokenizer from it, with the ids of the
    SentencePiece model it came from (unicode, byte fallback, digits, whitespace, chat tokens), and the
    encoder's features equal those of the same weights with that SentencePiece model."""
    from ltx2_nodes.text.tokenizer import SentencePiecePromptTokenizer, load_tokenizer
    from ltx2_nodes.loading.gemma_files import locate_gemma

    vocabulary = gemma_like_spm()
    state = language_state(hf_model(seed=1, sliding_window=1024, vocab_size=400))  # the vocabulary's size
    path = write_gguf(tmp_path / "gemma-3-tiny-it-F32.gguf", llama_cpp_state(state), None, plain=Q.F32,
                      arch="gemma3", vocabulary=vocabulary)
    location = locate_gemma(path).tokenizer
    assert (location.kind, location.describe()) == ("gguf", "the vocabulary inside gemma-3-tiny-it-F32.gguf")
    from_gguf, reference = load_tokenizer(location), SentencePiecePromptTokenizer(vocabulary, "tokenizer.model")
    assert [from_gguf.encode(p) for p in TOKENIZER_PROMPTS] == [reference.encode(p) for p in TOKENIZER_PROMPTS]
    assert from_gguf.pad_id == reference.pad_id and from_gguf.bos_ids == reference.bos_ids == [2]
    expected = load_gemma_encoder(write_comfy_file(tmp_path / "gemma_3_tiny_it.safetensors", state,
                                                   tokenizer=vocabulary)).encode(PROMPTS, cache=None)
    assert_close(load_gemma_encoder(path).encode(PROMPTS, cache=None).hidden_states, expected.hidden_states,
                 "GGUF with its own vocabulary", 1e-5)


def test_a_gguf_with_neither_vocabulary_nor_tokenizer_model_says_where_it_looked(gemma, tmp_path):
    from ltx2_nodes.errors import ModelNotFoundError

    _, state = gemma
    path = write_gguf(tmp_path / "gemma-3-tiny-it-F32.gguf", llama_cpp_state(state), None, plain=Q.F32,
                      arch="gemma3")
    with pytest.raises(ModelNotFoundError, match=r"carries no tokenizer \(no vocabulary \(no tokenizer.ggml.\* "
                                                 r"keys\)\).*Put Gemma 3's tokenizer.model next to the file"):
        load_gemma_encoder(path)


def test_foreign_gguf_in_the_text_encoder_slot_is_named(gemma, tmp_path):
    _, state = gemma
    dit = write_gguf(tmp_path / "ltx-2-19b-dev-Q8_0.gguf", {"transformer_blocks.0.attn1.to_q.weight": torch.zeros(
        32, 32)}, Q.Q8_0, arch="ltxv")
    with pytest.raises(CheckpointError, match="LTX-2 DiT GGUF.*diffusion_models"):
        load_gemma_encoder(dit)
    llama = write_gguf(tmp_path / "llama.gguf", llama_cpp_state(state), None, plain=Q.F32, arch="llama")
    with pytest.raises(CheckpointError, match="architecture 'llama'.*gemma3"):
        load_gemma_encoder(llama)


def test_precheck_counts_gemma_linears_packed_and_the_embedding_dequantized(gemma):
    from ltx2_nodes.loading.gemma_files import locate_gemma
    from ltx2_nodes.memory.precheck import stage_weights

    root, state = gemma
    path = write_gguf(root / "gemma-3-tiny-it-Q8_0-pre.gguf", llama_cpp_state(state), Q.Q8_0, plain=Q.F32,
                      arch="gemma3", quantize_key=_linear_or_embedding)
    files = locate_gemma(path)
    sizes = {gguf_gemma_key(t.name): int(t.n_bytes) for t in GGUFReader(path).tensors}
    weights = stage_weights("gemma", files.raw_state(), dtype=torch.bfloat16)
    vocab, hidden = state["model.embed_tokens.weight"].shape
    assert weights.host_bytes >= vocab * hidden * 2  # the embedding is dequantized into bf16 RAM at load
    q_proj = sizes["model.layers.0.self_attn.q_proj.weight"]
    assert q_proj == state["model.layers.0.self_attn.q_proj.weight"].numel() // 32 * 34  # Q8_0 bytes in the file
    assert weights.packed and weights.largest_linear == max(
        v.numel() for k, v in state.items() if k.endswith("_proj.weight"))
