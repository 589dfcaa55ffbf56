"""Tiny random Gemma 3 models and tokenizers, written in the layouts users have on disk (no downloads).

* ``hf_model()``: transformers ``Gemma3ForCausalLM`` from a tiny ``Gemma3TextConfig`` (12B's RoPE
  scaling, a short sliding window so the window mask matters), random weights;
* ``spm_bytes()``: a SentencePiece model trained here on a few sentences, with Gemma's chat tokens;
* ``wordlevel_tokenizer()``: an HF fast tokenizer folder (tokenizer.json) built with ``tokenizers``;
* ``write_hf_folder`` / ``write_comfy_file``: the Hugging Face folder layouts and ComfyUI's single
  file (``model.*`` + vision tower + ``spiece_model``, optionally fp8 in ComfyUI's formats).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

WORDS = "a cat dog bird sits runs flies on the mat park sky in and with red blue small big".split()
SENTENCES = [" ".join(WORDS[i:i + 5]) for i in range(len(WORDS) - 4)] * 20
VOCAB = 96


def text_config(**overrides):
    from transformers import Gemma3TextConfig

    values = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=7, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=6,
                  rope_scaling={"rope_type": "linear", "factor": 8.0}, max_position_embeddings=512,
                  pad_token_id=0, eos_token_id=1, bos_token_id=2)
    values.update(overrides)
    return Gemma3TextConfig(**values)


def hf_model(seed: int = 0, **overrides):
    """A random ``Gemma3ForCausalLM`` in float32 (weights large enough that every layer matters)."""
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(text_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.1 if "norm" in name else 0.3)
    return model


def language_state(model) -> dict[str, torch.Tensor]:
    """``model.*`` tensors (lm_head is tied to the embedding and never saved by Gemma)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head")}


def spm_bytes() -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES), model_writer=buf, vocab_size=60,
                                   model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                                   user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2)
    return buf.getvalue()


def wordlevel_tokenizer(folder: Path) -> Path:
    """An HF tokenizer folder: Gemma's special ids (pad 0, eos 1, bos 2), BOS prepended, whitespace words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 4, "<end_of_turn>": 5, "\n": 6}
    for word in WORDS + ["user", "model", "prompt:"]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def write_hf_folder(model, folder: Path, *, layout: str = "causal", tokenizer: str = "spm",
                    shard_bytes: int = 40_000) -> Path:
    """``layout``: "causal" (``model.*``, gemma3_text), "multimodal" (``language_model.model.*``, gemma3 as
    released) or "multimodal_v5" (``model.language_model.*``). Sharded with an index like HF writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    state = language_state(model)
    if layout == "causal":
        config_json = config
    else:
        prefix = "language_model.model." if layout == "multimodal" else "model.language_model."
        state = {prefix + k[len("model."):]: v for k, v in state.items()}
        vision = "vision_tower." if layout == "multimodal" else "model.vision_tower."
        state[vision + "vision_model.embeddings.patch_embedding.weight"] = torch.zeros(4, 3, 2, 2)
        config_json = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
                       "text_config": config, "vision_config": {"hidden_size": 4}}
    (folder / "config.json").write_text(json.dumps(config_json))
    shards, current, size = [], {}, 0
    for key, tensor in state.items():
        current[key] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= shard_bytes:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _save(shard, folder / name)
        weight_map.update({k: name for k in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if tokenizer == "spm":
        (folder / "tokenizer.model").write_bytes(spm_bytes())
    elif tokenizer == "wordlevel":
        wordlevel_tokenizer(folder)
    return folder


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # A header length whose first two bytes read 0x80 0x02..0x05 looks like a pickle to the reader's sniff
    # (loading/safetensors_file.py; reported upstream); a metadata entry moves these toy files off it.
    metadata = {"format": "pt"}
    save_file(tensors, str(path), metadata=metadata)
    head = path.read_bytes()[:2]
    if head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        save_file(tensors, str(path), metadata={**metadata, "pad": "--------"})


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
    _save(tensors, path)
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
