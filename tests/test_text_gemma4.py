"""Gemma 4 unified (LTX-2.5's text encoder) on tiny random models in packed text-encoder files: equality with
transformers' own Gemma 4 class, config parsing and refusals, tokenization, streaming, the prompt cache and the
text-encode stage."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, assert_close
from ltx2_nodes import stages
from ltx2_nodes.demo.tiny_gemma import (GEMMA4_TOKENIZER_CONFIG, gemma4_config, gemma4_state,
                                        wordlevel_tokenizer_json, write_packed_text_encoder)
from ltx2_nodes.errors import CheckpointError, InputError, ModelNotFoundError, UnsupportedModelError
from ltx2_nodes.handles import load_gemma
from ltx2_nodes.loading.gemma_files import locate_gemma
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.memory import DecoderShape, MemoryEngine, decoder_profile
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.model.gemma3 import FULL, SLIDING, RopeParams
from ltx2_nodes.model.gemma4 import Gemma4Config
from ltx2_nodes.text.cache import PromptCache
from ltx2_nodes.text.enhance import enhance_prompt
from ltx2_nodes.text.gemma import load_gemma_encoder

PROMPTS = ["a small red bird flies in the sky and a big dog runs in the park", "a cat"]
# The tiny models (demo gemma4_config: wider full-attention heads, proportional RoPE, window 6 < prompt 0) and
# variants: values from the key projection with their own head count and partial RoPE, biases; transformers'
# default layer pattern (5 sliding : 1 full, the last layer forced to full attention).
VARIANTS = {
    "default": {},
    "k_eq_v": {"attention_k_eq_v": True, "num_global_key_value_heads": 1, "attention_bias": True,
               "rope_parameters": {SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
                                   FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.5,
                                          "rope_theta": 1_000_000.0}}},
    "layer_pattern": {"num_hidden_layers": 7, "layer_types": None, "sliding_window": 4},
}


def _write(tmp, name: str, seed: int = 0, **overrides):
    config = gemma4_config(**overrides)
    config["text_config"] = {k: v for k, v in config["text_config"].items() if v is not None}
    return write_packed_text_encoder(tmp / f"{name}.safetensors", config, gemma4_state(config, seed)), config


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gemma4")
    return {name: _write(tmp, name, seed=i, **overrides) for i, (name, overrides) in enumerate(VARIANTS.items())}


@pytest.fixture(scope="module")
def encoder(packed):
    return load_gemma_encoder(packed["default"][0], max_length=32)


def _transformers_gemma4(path, config: dict):
    """transformers' Gemma4UnifiedForConditionalGeneration with the packed file's weights (skips without it)."""
    modeling = pytest.importorskip("transformers.models.gemma4_unified.modeling_gemma4_unified",
                                   reason="the installed transformers has no Gemma 4 (gemma4_unified); the pack "
                                          "does not need it, only this comparison does")
    from transformers import Gemma4UnifiedConfig

    from ltx2_nodes.loading.safetensors_file import SafetensorsFile

    model = modeling.Gemma4UnifiedForConditionalGeneration(Gemma4UnifiedConfig.from_dict(config)).eval()
    f = SafetensorsFile(path)
    state = {"model.language_model." + k[len("model."):]: f.tensor(k) for k in f.keys() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return model


# -- equality with transformers ------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hidden_states_equal_transformers_gemma4_unified(packed, variant):
    path, config = packed[variant]
    ours = load_gemma_encoder(path, max_length=32)
    reference = _transformers_gemma4(path, config)
    tokens = ours.tokenize(PROMPTS)
    features = ours.encode(PROMPTS, cache=None)
    with torch.no_grad():
        expected = reference.model(input_ids=tokens.ids, attention_mask=tokens.mask,
                                   output_hidden_states=True).hidden_states
    assert len(expected) == features.hidden_states.shape[-1] == ours.config.num_hidden_layers + 1
    valid = features.mask[:, :, None].float()
    for index, state in enumerate(expected):  # embedding x sqrt(D), every layer, the last after the final norm
        assert_close(features.hidden_states[..., index], state * valid, f"{variant} hidden state {index}", 2e-5)
    full = ours.hidden_states(tokens.ids, tokens.mask, skip_padding=False)
    assert_close(full, features.hidden_states, f"{variant} full padded run", 2e-5)


def test_config_reads_both_transformers_formats(packed):
    """transformers < 5.2x saves ``global_head_dim``; later versions save ``per_layer_config`` instead."""
    pytest.importorskip("transformers.models.gemma4_unified", reason="the installed transformers has no Gemma 4")
    from transformers import Gemma4UnifiedConfig

    for variant, (_, config) in packed.items():
        saved = Gemma4UnifiedConfig.from_dict(config).text_config.to_dict()
        assert Gemma4Config.from_hf(saved) == Gemma4Config.from_hf(config), variant


# -- config ---------------------------------------------------------------------------------------


def test_config_defaults_are_transformers_defaults_and_flags_differ_from_gemma3():
    config = Gemma4Config.from_hf({"model_type": "gemma4_unified", "text_config": {}})
    assert config == Gemma4Config()
    assert config.layer_types[:6] == (SLIDING,) * 5 + (FULL,) and config.layer_types[-1] == FULL
    assert config.rope_params(FULL) == RopeParams(1e6, 1.0, 0.25) and config.rope_params(SLIDING) == RopeParams(1e4)
    assert config.layer_head_dim(FULL) == 512 and config.layer_head_dim(SLIDING) == 256 and config.max_head_dim == 512
    assert (config.norm_weight_offset, config.value_norm, config.layer_scalar, config.query_pre_attn_scalar) == (
        0.0, True, True, 1.0)
    assert config.family == "Gemma 4" and DecoderShape.of(config).head_dim == 512


@pytest.mark.parametrize("change, message", [
    ({"use_bidirectional_attention": "all"}, "attends causally over text"),
    ({"num_kv_shared_layers": 2}, "num_kv_shared_layers=2"),
    ({"hidden_size_per_layer_input": 256}, "per-layer input embeddings"),
    ({"enable_moe_block": True}, "mixture-of-experts"),
    ({"hidden_activation": "silu"}, "not Gemma 4's"),
    ({"num_global_key_value_heads": 1}, "without attention_k_eq_v"),
    ({"per_layer_config": {"0": {"head_dim": 16}}}, "exactly the full-attention layers"),
    ({"rope_parameters": {SLIDING: {"rope_type": "yarn", "rope_theta": 1.0}, FULL: {"rope_theta": 1.0}}}, "'yarn'"),
    ({"model_type": "gemma4_text"}, "'gemma4_unified_text'"),
])
def test_unsupported_settings_are_refused_with_the_reason(change, message):
    with pytest.raises(UnsupportedModelError, match=message):
        Gemma4Config.from_hf(dict(gemma4_config()["text_config"], **change), source="te.safetensors")


def test_last_layer_runs_full_attention_as_transformers_forces_it(caplog):
    config = Gemma4Config.from_hf(dict(gemma4_config()["text_config"], layer_types=[SLIDING] * 4))
    assert config.layer_types == (SLIDING,) * 3 + (FULL,) and "must use full attention" in caplog.text


# -- the packed file --------------------------------------------------------------------------------


def test_packed_file_gives_config_version_tokenizer_and_projection(tmp_path):
    config = gemma4_config(gemma_version="v-test")
    projection = {"text_embedding_projection.video_aggregate_embed.weight": torch.randn(8, 32 * 5),
                  "text_embedding_projection.video_aggregate_embed.bias": torch.randn(8)}
    path = write_packed_text_encoder(tmp_path / "te.safetensors", config, gemma4_state(config), projection=projection,
                                     dtype=torch.bfloat16)
    files = locate_gemma(path)
    assert files.gemma_version == "v-test" and files.model_type == "gemma4_unified_text"
    assert files.model_config() == Gemma4Config.from_hf(config)
    assert files.tokenizer.describe() == "tokenizer_json inside te.safetensors"
    packed = SafetensorsFile(path)  # the projection rides along for the text-projection loader (loading.split)
    assert all(torch.equal(packed.tensor(k), v.bfloat16()) for k, v in projection.items())
    encoder = load_gemma_encoder(path, max_length=16)  # projection, tokenizer and sidecars are not model weights
    assert encoder.dtype == torch.bfloat16 and encoder.config.family == "Gemma 4"
    features = encoder.encode(PROMPTS, cache=None)
    assert features.hidden_states.dtype == torch.bfloat16 and torch.isfinite(features.hidden_states).all()


def _copy(f, keys, path, metadata):
    from ltx2_nodes.loading.safetensors_file import write_safetensors

    return write_safetensors(path, [(k, tuple(f.info(k).shape), f.info(k).dtype, lambda k=k: f.tensor(k))
                                    for k in keys], metadata)


def test_incomplete_or_foreign_packed_files_are_refused(tmp_path):
    from ltx2_nodes.loading.safetensors_file import SafetensorsFile

    config = gemma4_config()
    state = gemma4_state(config)
    f = SafetensorsFile(write_packed_text_encoder(tmp_path / "a.safetensors", config, state))
    keep = [k for k in f.keys() if not k.startswith("hf_asset__")]
    with pytest.raises(CheckpointError, match=r"without its tokenizer config \(hf_asset__tokenizer_config.json\)"):
        load_gemma_encoder(_copy(f, keep, tmp_path / "b.safetensors", f.metadata))
    no_tokenizer = [k for k in keep if k != "tokenizer_json"]
    with pytest.raises(ModelNotFoundError, match="packed text encoder without its 'tokenizer_json' tensor"):
        load_gemma_encoder(_copy(f, no_tokenizer, tmp_path / "c.safetensors", f.metadata))
    lent = load_gemma_encoder(tmp_path / "c.safetensors", tokenizer_path=f.path)  # another packed file lends it
    assert lent.tokenizer.source == "tokenizer_json inside a.safetensors"
    with pytest.raises(UnsupportedModelError, match="Gemma 4 language model but no 'gemma_config' metadata"):
        load_gemma_encoder(_copy(f, keep, tmp_path / "e.safetensors", {}))
    dense = write_packed_text_encoder(tmp_path / "d.safetensors", dict(config, model_type="gemma4"), state)
    with pytest.raises(UnsupportedModelError, match="dense Gemma 4 instruct model"):
        load_gemma_encoder(dense)


# -- tokenization -----------------------------------------------------------------------------------


def test_bos_is_prepended_when_the_tokenizer_omits_it_and_not_doubled(tmp_path, encoder):
    tok = encoder.tokenizer
    assert tok.hf("a cat")["input_ids"][0] != 2  # Gemma 4's tokenizer adds no BOS itself
    assert tok.encode("a cat") == [2] + tok.hf("a cat")["input_ids"] and tok.encode("") == [2]
    config = gemma4_config()
    adds_bos = write_packed_text_encoder(tmp_path / "bos.safetensors", config, gemma4_state(config),
                                         tokenizer_json=wordlevel_tokenizer_json(bos_post_processor=True))
    assert load_gemma_encoder(adds_bos).tokenizer.encode("a cat") == tok.encode("a cat")
    tokens = encoder.tokenize(["  a cat  ", " ".join(["cat"] * 40)])
    assert tokens.ids.shape == (2, 32) and tokens.mask[0].tolist() == [0] * 29 + [1] * 3
    assert (tokens.ids[0, :29] == 0).all() and tokens.ids[1, 0] == 2 and tokens.dropped == [0, 9]


def test_packed_tokenizer_fingerprint_follows_its_content(tmp_path, encoder):
    config = gemma4_config()
    other = write_packed_text_encoder(tmp_path / "t.safetensors", config, gemma4_state(config),
                                      tokenizer_config=dict(GEMMA4_TOKENIZER_CONFIG, pad_token="<eos>"))
    changed = load_gemma_encoder(other, max_length=32)
    assert changed.tokenizer.pad_id == 1 and changed.tokenizer.fingerprint != encoder.tokenizer.fingerprint


# -- running: streaming, cache, the text stage ------------------------------------------------------


def test_layers_streamed_with_their_layer_scalar_equal_resident(encoder):
    expected = encoder.encode(PROMPTS, cache=None).hidden_states
    embedding = encoder.lm.model.embed_tokens
    profile = decoder_profile(DecoderShape.of(encoder.config), 32, batch=2, dtype=encoder.dtype)
    block = max(tensor_bytes(module_tensors(layer)) for layer in encoder.decoder_layers)
    budget = profile.activation_bytes + 3 * block  # two blocks in flight, not all four
    engine = MemoryEngine("cpu", virtual=True, vram_budget=budget, minimal=True)
    with engine.stage("gemma", encoder.lm, blocks=encoder.decoder_layers, keep_on_host=[embedding],
                      profile=profile) as stage:
        assert stage.mode == "streamed"
        encoder.compute_device = stage.device
        try:
            got = encoder.encode(PROMPTS, cache=None).hidden_states
        finally:
            encoder.compute_device = torch.device("cpu")
    assert torch.equal(got, expected) and engine.device_bytes == 0
    assert all(layer.layer_scalar is not None for layer in encoder.decoder_layers)


def test_prompt_cache_and_the_text_stage_run_gemma4_like_gemma3(packed):
    handle = load_gemma(packed["default"][0], "float32")
    encoder = handle.encoder
    runs = []
    encoder.decoder_layers[0].register_forward_pre_hook(lambda module, args: runs.append(args[0].shape[0]))
    cache = PromptCache()
    first = encoder.encode(["a cat"], cache=cache)
    assert torch.equal(encoder.encode(["a cat"], cache=cache).hidden_states, first.hidden_states) and runs == [1]
    engine = MemoryEngine("cpu", virtual=True, vram_budget=64 << 20, minimal=True)
    staged = stages.encode_prompts(handle, ["a red dog"], engine)
    assert_close(staged.hidden_states, encoder.encode(["a red dog"], cache=None).hidden_states, "text stage", 0.0)


def test_prompt_enhancement_is_refused_for_gemma4(encoder):
    with pytest.raises(InputError, match="is Gemma 4, which LTX-2.5 uses for encoding only"):
        enhance_prompt(encoder, "a cat", max_new_tokens=2)


def test_encoding_gemma4_never_imports_transformers_gemma4(packed):
    code = ("import sys, torch; from ltx2_nodes.text.gemma import load_gemma_encoder; "
            f"load_gemma_encoder({str(packed['default'][0])!r}, max_length=8).encode('a cat', cache=None); "
            "sys.exit(any(m.startswith('transformers.models.gemma4') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=str(REPO)).returncode == 0
