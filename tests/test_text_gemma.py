"""Gemma encode on tiny random Gemma 3 models: parity with transformers, tokenization, file layouts,
fp8 formats, caching, per-layer hooks and error messages."""

from __future__ import annotations

import logging
import re

import pytest
import torch

from conftest import REPO, assert_close, find_golden, golden_dir
from tiny_gemma import Workspace, hf_model, language_state, write_comfy_file, write_hf_folder
from ltx2_nodes import progress
from ltx2_nodes.errors import CheckpointError, ModelNotFoundError, RunInterrupted, UnsupportedModelError
from ltx2_nodes.loading.quant import FP8Linear
from ltx2_nodes.model.gemma3 import FULL, SLIDING, GemmaConfig, RopeParams
from ltx2_nodes.text.cache import PromptCache
from ltx2_nodes.text.gemma import load_gemma_encoder
from test_text_gemma4 import VARIANTS, _write

PROMPTS = ["a small red bird flies in the sky and a big dog runs in the park", "a cat"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="module")
def words(ws):
    """Encoder with an HF tokenizer.json and a sliding window shorter than the first prompt."""
    return load_gemma_encoder(ws.words, max_length=32)


def _count_runs(encoder) -> list[int]:
    """Batch sizes of the decoder runs (a pre-hook on layer 0, as a streaming engine would attach)."""
    runs: list[int] = []
    encoder.decoder_layers[0].register_forward_pre_hook(lambda module, args: runs.append(args[0].shape[0]))
    return runs


# -- what Gemma encode returns ------------------------------------------------------------------


def test_hidden_states_equal_transformers_output_hidden_states(ws, words):
    features = words.encode(PROMPTS, cache=None)
    cfg = ws.windowed.config
    assert features.hidden_states.shape == (2, 32, cfg.hidden_size, cfg.num_hidden_layers + 1)
    with torch.no_grad():
        reference = ws.windowed(input_ids=words.tokenize(PROMPTS).ids, attention_mask=features.mask,
                                output_hidden_states=True).hidden_states
    assert len(reference) == features.hidden_states.shape[-1]
    valid = features.mask[:, :, None].float()
    for index, expected in enumerate(reference):  # embedding x sqrt(D), layer outputs, final norm
        assert_close(features.hidden_states[..., index], expected * valid, f"hidden state {index}", 2e-5)
    assert (features.hidden_states[features.mask == 0] == 0).all()
    # index 0 is the scaled embedding, the last one is after the final norm
    embed = ws.windowed.model.embed_tokens.weight[words.tokenize(PROMPTS).ids[1, -1]]
    assert_close(features.hidden_states[1, -1, :, 0], embed * cfg.hidden_size ** 0.5, "scaled embedding", 1e-6)


def test_skipping_padding_columns_equals_the_full_padded_run(words):
    tokens = words.tokenize(PROMPTS)
    fast = words.hidden_states(tokens.ids, tokens.mask)
    full = words.hidden_states(tokens.ids, tokens.mask, skip_padding=False)
    assert_close(fast, full * tokens.mask[:, :, None, None], "skip_padding", 1e-5)


def test_batch_equals_prompts_one_by_one(words):
    batch = words.encode(PROMPTS, cache=None).hidden_states
    for i, prompt in enumerate(PROMPTS):
        assert_close(batch[i:i + 1], words.encode(prompt, cache=None).hidden_states, f"prompt {i}", 1e-5)


def test_left_padding_bos_and_mask(words):
    tokens = words.tokenize(["a cat", "  a cat  ", ""])
    tok = words.tokenizer
    assert tokens.ids.shape == (3, 32) and tokens.mask.dtype == torch.int64
    assert tokens.ids[0, -3:].tolist() == tok.encode("a cat") and tok.encode("a cat")[0] == 2  # BOS first
    assert tokens.mask[0].tolist() == [0] * 29 + [1] * 3
    assert (tokens.ids[0, :29] == tok.pad_id).all()
    assert torch.equal(tokens.ids[0], tokens.ids[1])  # prompts are stripped like the reference does
    assert tokens.mask[2].sum() == 1 and tokens.ids[2, -1] == 2  # empty prompt: BOS only
    assert tokens.dropped == [0, 0, 0]


def test_empty_prompt_is_a_valid_encoding(words):
    features = words.encode("", cache=None)
    assert features.mask.sum() == 1 and torch.isfinite(features.hidden_states).all()
    assert features.hidden_states[0, -1].abs().sum() > 0


def test_truncation_keeps_the_first_tokens_and_says_how_many_were_dropped(words, caplog):
    prompt = " ".join(["cat"] * 40)
    with caplog.at_level(logging.WARNING, logger="ltx2_nodes"):
        tokens = words.tokenize([prompt, "a cat"])
    assert tokens.dropped == [9, 0]  # BOS + 40 words, 32 kept
    assert tokens.mask[0].all() and tokens.ids[0, 0] == 2
    assert re.search(r"41 tokens long; only the first 32 are used, 9 token\(s\) dropped", caplog.text)


def test_encoder_exposes_layers_for_streaming_and_config(ws, words):
    assert len(words.decoder_layers) == ws.windowed.config.num_hidden_layers
    assert [layer.layer_type for layer in words.decoder_layers] == list(ws.windowed.config.layer_types)
    assert words.compute_device == torch.device("cpu") and words.dtype == torch.float32


def test_layers_whose_weights_arrive_just_in_time(ws):
    """Weights held elsewhere, brought in by a pre-hook and dropped by a post-hook, give the same result."""
    encoder = load_gemma_encoder(ws.words, max_length=32)
    expected = encoder.encode(PROMPTS, cache=None).hidden_states
    stored = [{k: v.clone() for k, v in layer.state_dict().items()} for layer in encoder.decoder_layers]
    resident = []
    for index, layer in enumerate(encoder.decoder_layers):
        layer.to("meta")
        layer.register_forward_pre_hook(lambda m, a, i=index: (m.load_state_dict(stored[i], assign=True),
                                                               resident.append(i)) and None)
        layer.register_forward_hook(lambda m, a, o: m.to("meta") and None)
    streamed = encoder.encode(PROMPTS, cache=None).hidden_states
    assert torch.equal(streamed, expected)
    assert resident == list(range(len(stored)))
    assert all(p.is_meta for p in encoder.decoder_layers.parameters())


def test_progress_per_layer_and_interruption_between_layers(words):
    seen = []
    words.encode("a dog", cache=None, progress=lambda done, total: seen.append((done, total)))
    layers = len(words.decoder_layers)
    assert seen == [(i, layers) for i in range(1, layers + 1)]
    hook = words.decoder_layers[1].register_forward_hook(lambda *_: progress.request_interrupt())  # cancel in layer 2
    try:
        with pytest.raises(RunInterrupted, match=f"before layer 3/{layers}"):
            words.encode("a dog", cache=None)
    finally:
        hook.remove()


# -- prompt cache --------------------------------------------------------------------------------


def test_cache_hit_does_not_run_gemma(words):
    cache = PromptCache()
    runs = _count_runs(words)
    first = words.encode(["a cat"], cache=cache)
    again = words.encode(["a cat"], cache=cache)
    assert runs == [1] and torch.equal(first.hidden_states, again.hidden_states)
    mixed = words.encode(["a dog", "a cat", "a dog"], cache=cache)  # only the new prompt runs, once
    assert runs == [1, 1]
    assert torch.equal(mixed.hidden_states[1], first.hidden_states[0])
    assert torch.equal(mixed.hidden_states[0], mixed.hidden_states[2])
    assert_close(mixed.hidden_states, words.encode(["a dog", "a cat", "a dog"], cache=None).hidden_states,
                 "cached vs fresh", 1e-5)


def test_cache_on_disk_survives_a_new_session(words, tmp_path):
    runs = _count_runs(words)
    first = words.encode(["a bird flies"], cache=PromptCache(), cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and re.fullmatch(r"[0-9a-f]{64}\.safetensors", files[0].name)
    assert "bird" not in files[0].read_bytes().decode("latin-1")  # no prompt text on disk
    again = words.encode(["a bird flies"], cache=PromptCache(), cache_dir=tmp_path)
    assert runs == [1] and torch.equal(first.hidden_states, again.hidden_states)
    files[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    words.encode(["a bird flies"], cache=PromptCache(), cache_dir=tmp_path)
    assert runs == [1, 1]


def test_cache_keys_include_the_weights(ws, words):
    cache = PromptCache()
    other = load_gemma_encoder(ws.hf_spm, max_length=32)
    runs = _count_runs(other)
    words.encode(["a cat"], cache=cache)
    other.encode(["a cat"], cache=cache)
    assert runs == [1] and words.fingerprint != other.fingerprint


def test_cache_memory_is_bounded(words):
    one = words.encode(["a cat"], cache=None)
    tokens = int(one.mask.sum())
    entry_bytes = one.hidden_states[0, -tokens:].numel() * one.hidden_states.element_size()
    cache = PromptCache(max_bytes=2 * entry_bytes)
    for prompt in ["a cat", "a dog", "a red", "a mat"]:
        words.encode([prompt], cache=cache)
    assert len(cache) == 2


# -- file layouts and formats --------------------------------------------------------------------


def test_hf_folders_and_comfyui_single_file_give_identical_features(ws):
    reference = load_gemma_encoder(ws.hf_spm).encode(PROMPTS, cache=None).hidden_states
    for path in (ws.comfy, ws.multimodal, ws.multimodal_v5):
        encoder = load_gemma_encoder(path)
        assert torch.equal(encoder.encode(PROMPTS, cache=None).hidden_states, reference), path.name
    single = load_gemma_encoder(ws.comfy)
    assert single.tokenizer.source == f"spiece_model inside {ws.comfy.name}"
    assert single.config == GemmaConfig.from_hf(ws.like12b.config.to_dict())


@pytest.mark.parametrize("quant", ["comfy_quant", "scaled_fp8", "plain_fp8"])
def test_comfyui_fp8_files(ws, quant):
    fp8 = load_gemma_encoder(ws.comfy_fp8[quant])
    q_proj = fp8.decoder_layers[0].self_attn.q_proj
    assert isinstance(q_proj, FP8Linear) and q_proj.weight.dtype == torch.float8_e4m3fn
    dequantized = load_gemma_encoder(ws.root / f"gemma_{quant}_dequantized.safetensors")
    expected = dequantized.encode(PROMPTS, cache=None).hidden_states
    assert_close(fp8.encode(PROMPTS, cache=None).hidden_states, expected, f"{quant} keep", 1e-5)
    upcast = load_gemma_encoder(ws.comfy_fp8[quant], fp8="upcast")
    assert type(upcast.decoder_layers[0].self_attn.q_proj) is torch.nn.Linear
    assert_close(upcast.encode(PROMPTS, cache=None).hidden_states, expected, f"{quant} upcast", 1e-5)


def test_bf16_weights_compute_in_bf16(ws, tmp_path):
    state = {k: v.to(torch.bfloat16) for k, v in language_state(ws.like12b).items()}
    encoder = load_gemma_encoder(write_comfy_file(tmp_path / "gemma_bf16.safetensors", state, tokenizer=ws.spm))
    features = encoder.encode(PROMPTS, cache=None)
    assert encoder.dtype == torch.bfloat16 and features.hidden_states.dtype == torch.bfloat16
    reference = load_gemma_encoder(ws.comfy).encode(PROMPTS, cache=None).hidden_states
    rel = (features.hidden_states.float() - reference).norm() / reference.norm()
    assert rel < 0.05


def test_unknown_quantization_formats_are_refused(ws, tmp_path):
    # NVFP4 files load now (tests/test_nvfp4.py); a format the pack has no dequantization for is named
    state = language_state(ws.like12b)
    state["model.layers.0.mlp.up_proj.comfy_quant"] = torch.tensor(list(b'{"format": "svdquant"}'),
                                                                   dtype=torch.uint8)
    path = write_comfy_file(tmp_path / "gemma_3_12B_it_svdq.safetensors", state, tokenizer=ws.spm)
    with pytest.raises(UnsupportedModelError, match="gemma_3_12B_it_svdq.*'svdquant'.*NVFP4 or GGUF"):
        load_gemma_encoder(path)


@pytest.mark.parametrize("flavour", ["2.0", "2.3"], ids=["golden-2.0", "golden-2.3"])
def test_gemma_features_feed_the_ltx_text_connectors(tmp_path, flavour):
    """End to end on the golden tiny LTX-2 checkpoint: a Gemma whose width and depth match its projection."""
    golden = find_golden("text_embedding_projection+embeddings_connectors", flavour)
    from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
    from ltx2_nodes.loading.components import load_text_connectors

    connectors = load_text_connectors(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    registers = connectors.video.config.num_learnable_registers
    tokens = registers * -(-64 // registers)  # at least 64 tokens, a multiple of the register count
    width, states = golden.call["gemma_hidden_size"], golden.call["gemma_num_hidden_states"]
    model = hf_model(hidden_size=width, num_hidden_layers=states - 1, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=width // 2, query_pre_attn_scalar=width // 2, intermediate_size=2 * width)
    encoder = load_gemma_encoder(write_hf_folder(model, tmp_path / "gemma", tokenizer="wordlevel"), max_length=tokens)
    features = encoder.encode(PROMPTS + [""], cache=None)
    with torch.no_grad():
        cond = connectors.connect(features.hidden_states, features.mask)
    assert cond.video_context.shape == (3, tokens, connectors.video_width)
    assert cond.audio_context.shape == (3, tokens, connectors.audio_width)
    assert cond.mask.tolist() == [[1] * tokens] * 3 and torch.isfinite(cond.video_context).all()


# -- config and errors ---------------------------------------------------------------------------

RELEASED_12B = {"model_type": "gemma3", "text_config": {
    "hidden_size": 3840, "intermediate_size": 15360, "model_type": "gemma3_text", "num_attention_heads": 16,
    "num_hidden_layers": 48, "num_key_value_heads": 8, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024}}


def test_released_12b_config_in_both_transformers_formats():
    legacy = GemmaConfig.from_hf(RELEASED_12B["text_config"])
    assert legacy == GemmaConfig()  # the dataclass defaults are the released model
    assert legacy.layer_types[:6] == (SLIDING,) * 5 + (FULL,) and legacy.layer_types.count(FULL) == 8
    assert legacy.rope_params(FULL) == RopeParams(1e6, 8.0) and legacy.rope_params(SLIDING) == RopeParams(1e4)
    assert legacy.num_hidden_states == 49 and legacy.head_dim == 256 and legacy.query_pre_attn_scalar == 256
    v5 = dict(RELEASED_12B["text_config"], rope_scaling=None, layer_types=list(legacy.layer_types), rope_parameters={
        FULL: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        SLIDING: {"rope_type": "default", "rope_theta": 1e4}})
    assert GemmaConfig.from_hf(v5) == legacy
    with pytest.raises(UnsupportedModelError, match="RoPE type 'yarn'"):
        GemmaConfig.from_hf(dict(RELEASED_12B["text_config"], rope_scaling={"rope_type": "yarn", "factor": 2.0}))


def test_missing_tokenizer_says_where_it_looked(ws, tmp_path):
    path = write_comfy_file(tmp_path / "gemma_no_tok.safetensors", language_state(ws.like12b))
    with pytest.raises(ModelNotFoundError, match=r"no 'spiece_model' tensor.*tokenizer\.json / tokenizer\.model in "):
        load_gemma_encoder(path)
    (tmp_path / "tokenizer.model").write_bytes(ws.spm)  # next to the file
    assert load_gemma_encoder(path).tokenizer.source == str(tmp_path / "tokenizer.model")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "tokenizer.model").write_bytes(ws.spm)
    assert load_gemma_encoder(path, tokenizer_path=other).tokenizer.source == str(other / "tokenizer.model")
    lender = load_gemma_encoder(path, tokenizer_path=ws.comfy)  # ComfyUI's file lends its embedded tokenizer
    assert lender.tokenizer.source == f"spiece_model inside {ws.comfy.name}"
    with pytest.raises(ModelNotFoundError, match="gemma_no_tok.safetensors was given as the tokenizer"):
        load_gemma_encoder(ws.hf_spm, tokenizer_path=path)
    folder = write_hf_folder(ws.like12b, tmp_path / "hf_no_tok", tokenizer="none")
    with pytest.raises(ModelNotFoundError, match="has config.json and weights but no tokenizer"):
        load_gemma_encoder(folder)


def test_wrong_files_are_named_and_refused(ws, tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_gemma_encoder(tmp_path / "nope.safetensors")
    ltx = golden_dir() / "ltx2_tiny_av_checkpoint.safetensors"
    if ltx.is_file():
        with pytest.raises(CheckpointError, match="is an LTX-2 model checkpoint"):
            load_gemma_encoder(ltx)
    t5 = write_comfy_file(tmp_path / "t5xxl.safetensors", {"encoder.block.0.layer.0.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match="t5xxl.safetensors is a T5 text encoder"):
        load_gemma_encoder(t5)
    folder = write_hf_folder(ws.like12b, tmp_path / "not_gemma")
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    with pytest.raises(UnsupportedModelError, match="'qwen3' model; LTX-2 and LTX-2.3 use Gemma 3"):
        load_gemma_encoder(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="no folder inside it has both config.json"):
        load_gemma_encoder(empty)


def test_text_package_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys, ltx2_nodes.text.gemma, ltx2_nodes.text.enhance, ltx2_nodes.model.connector; "
            "sys.exit('transformers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=str(REPO)).returncode == 0


# -- CUDA (correct by construction on CPU-only machines; run with -m gpu) ------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["gemma3", "gemma4"])
def test_cuda_compute_with_layers_streamed_from_cpu(model, request, tmp_path):
    """Gemma 3 (HF folder, sliding window shorter than the prompt) and LTX-2.5's Gemma 4 (packed file, values from
    the key projection, partial RoPE)."""
    if model == "gemma3":
        path = request.getfixturevalue("ws").words
    else:
        path = _write(tmp_path, "k_eq_v", seed=1, **VARIANTS["k_eq_v"])[0]
    encoder = load_gemma_encoder(path, max_length=32)
    expected = encoder.encode(PROMPTS, cache=None).hidden_states
    encoder.compute_device = torch.device("cuda")  # embedding table and final norm stay in CPU memory
    for layer in encoder.decoder_layers:
        layer.register_forward_pre_hook(lambda m, a: m.to("cuda") and None)
        layer.register_forward_hook(lambda m, a, o: m.to("cpu") and None)
    streamed = encoder.encode(PROMPTS, cache=None).hidden_states
    assert streamed.device.type == "cpu" and all(p.device.type == "cpu" for p in encoder.lm.parameters())
    assert_close(streamed, expected, "cuda vs cpu", 1e-3)
    encoder.to("cuda")
    assert_close(encoder.encode(PROMPTS, cache=None).hidden_states, expected, "all on cuda", 1e-3)


@pytest.mark.gpu
def test_cuda_connectors_take_cpu_features():
    golden = find_golden("text_embedding_projection+embeddings_connectors")
    from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
    from ltx2_nodes.loading.components import load_text_connectors

    connectors = load_text_connectors(LTX2Checkpoint(golden.weights_path), dtype=torch.float32, device="cuda")
    with torch.no_grad():
        out = connectors.connect(golden["ex0.hidden_states"], golden["ex0.attention_mask"])
    assert out.video_context.device.type == "cuda"
    assert_close(out.video_context.cpu(), golden["ex0.video_encoding"], "video on cuda", 1e-4)
    assert_close(out.audio_context.cpu(), golden["ex0.audio_encoding"], "audio on cuda", 1e-4)
