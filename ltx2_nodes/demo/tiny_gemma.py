"""Tiny random Gemma 3 and Gemma 4 models and tokenizers in the layouts users have on disk, built in code.

Shared by the tests and ``python -m ltx2_nodes demo-models``:

* ``hf_model()``: transformers ``Gemma3ForCausalLM`` from a tiny ``Gemma3TextConfig`` (12B's RoPE
  scaling, a short sliding window so the window mask matters), random weights from ``seed``;
* ``spm_bytes()``: a SentencePiece model trained here on a few sentences, with Gemma's special ids and
  chat tokens (deterministic: one training thread); ``byte_fallback`` makes any text tokenize;
* ``wordlevel_tokenizer()``: an HF fast tokenizer folder (tokenizer.json) built with ``tokenizers``;
* ``write_hf_folder``: the Hugging Face folder layouts (sharded, with an index);
* ``gemma4_config()`` / ``gemma4_state()`` / ``write_packed_text_encoder()``: a tiny Gemma 4 unified model
  in LTX-2.5's packed text-encoder file (random weights from our own module, so any transformers works).

transformers, tokenizers and sentencepiece are imported inside the functions (requirements of the
pack, but the package must import without them).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from ..loading.safetensors_file import write_safetensors

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
    """A random ``Gemma3ForCausalLM`` in float32 (weights large enough that every layer matters); the
    global RNG is left as it was."""
    from transformers import Gemma3ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(text_config(**overrides)).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.normal_(0.0, 0.1 if "norm" in name else 0.3)
    return model


def language_state(model) -> dict[str, torch.Tensor]:
    """``model.*`` tensors (lm_head is tied to the embedding and never saved by Gemma)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head")}


def spm_bytes(vocab_size: int = 60, byte_fallback: bool = False) -> bytes:
    """A BPE SentencePiece model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3) and chat tokens;
    ``byte_fallback`` (needs ``vocab_size`` > 262) spells unknown characters as bytes instead of <unk>."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES), model_writer=buf, vocab_size=vocab_size,
                                   model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, num_threads=1,
                                   byte_fallback=byte_fallback, hard_vocab_limit=not byte_fallback,
                                   user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2)
    return buf.getvalue()


def _wordlevel(bos_post_processor: bool):
    """A ``tokenizers`` word-level tokenizer with Gemma's special ids (pad 0, eos 1, bos 2, unk 3, chat tokens);
    ``bos_post_processor``: BOS added by the tokenizer itself (Gemma 3's do, Gemma 4's do not)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 4, "<end_of_turn>": 5, "\n": 6}
    for word in WORDS + ["user", "model", "prompt:"]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos_post_processor:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return tok


def wordlevel_tokenizer(folder: Path) -> Path:
    """An HF tokenizer folder: Gemma's special ids (pad 0, eos 1, bos 2), BOS prepended, whitespace words."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=_wordlevel(True), bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def write_hf_folder(model, folder: Path, *, layout: str = "causal", tokenizer: str | bytes = "spm",
                    shard_bytes: int = 40_000) -> Path:
    """``layout``: "causal" (``model.*``, gemma3_text), "multimodal" (``language_model.model.*``, gemma3 as
    released) or "multimodal_v5" (``model.language_model.*``). Sharded with an index like HF writes it.
    ``tokenizer``: "spm", "wordlevel" or the bytes of a SentencePiece model."""
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
        save_tensors(shard, folder / name)
        weight_map.update({k: name for k in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if isinstance(tokenizer, bytes):
        (folder / "tokenizer.model").write_bytes(tokenizer)
    elif tokenizer == "spm":
        (folder / "tokenizer.model").write_bytes(spm_bytes())
    elif tokenizer == "wordlevel":
        wordlevel_tokenizer(folder)
    return folder


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` with ``write_safetensors`` (streamed, atomic).

    A header length whose first two bytes read 0x80 0x02..0x05 looks like a pickle to the reader's
    sniff (loading/safetensors_file.py), so such a header gets a padding metadata entry."""
    metadata = {"format": "pt", **(metadata or {})}

    def write(meta: dict[str, str]) -> Path:
        entries = [(k, tuple(t.shape), t.dtype, lambda t=t: t) for k, t in tensors.items()]
        return write_safetensors(path, entries, meta)

    write(metadata)
    head = Path(path).read_bytes()[:2]
    if head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        write({**metadata, "pad": "--------"})
    return Path(path)


# ------------------------------------------------------------------------------------------------
# Gemma 4 unified (LTX-2.5): packed text-encoder files, built without transformers' Gemma 4 classes

GEMMA4_TOKENIZER_CONFIG = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                           "add_bos_token": False, "add_eos_token": False, "padding_side": "left",
                           "tokenizer_class": "GemmaTokenizer"}


def gemma4_config(gemma_version: str = "ltx2-demo-gemma4", **text_overrides) -> dict:
    """The ``gemma_config`` of a tiny Gemma 4 unified model: full-attention layers with wider heads and
    proportional RoPE (the defaults), a sliding window shorter than a long prompt."""
    text = {"model_type": "gemma4_unified_text", "vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "global_head_dim": 16, "sliding_window": 6, "max_position_embeddings": 4096,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "full_attention"]}
    text.update(text_overrides)
    return {"model_type": "gemma4_unified", "architectures": ["Gemma4UnifiedForConditionalGeneration"],
            "gemma_version": gemma_version, "text_config": text}


def gemma4_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights (``model.*`` names, no lm_head) of the text model ``config`` describes; norm
    weights near 1 (Gemma 4 stores them as is), layer scalars in [0.8, 1)."""
    from ..model.gemma3 import GemmaLanguageModel
    from ..model.gemma4 import Gemma4Config

    with torch.device("meta"):
        shapes = GemmaLanguageModel(Gemma4Config.from_hf(config)).state_dict()
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, t in shapes.items():
        noise = torch.randn(t.shape, generator=generator)
        if key.endswith("layer_scalar"):
            state[key] = 0.8 + 0.2 * torch.rand(t.shape, generator=generator)
        else:
            state[key] = 1.0 + 0.1 * noise if "norm" in key else 0.3 * noise
    return state


def wordlevel_tokenizer_json(bos_post_processor: bool = False) -> bytes:
    """The word-level tokenizer as the ``tokenizer_json`` bytes of a packed file (no BOS by default, as Gemma 4's)."""
    return _wordlevel(bos_post_processor).to_str().encode()


def write_packed_text_encoder(path: Path, config: dict, state: dict[str, torch.Tensor], *,
                              projection: dict[str, torch.Tensor] | None = None, tokenizer_json: bytes | None = None,
                              tokenizer_config: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """The reference's packed text-encoder layout: ComfyUI-flat ``model.*`` weights, the text projection, the
    tokenizer (``tokenizer_json`` + ``hf_asset__*`` sidecars as uint8) and ``gemma_config`` metadata."""
    def as_bytes(data: bytes) -> torch.Tensor:
        return torch.tensor(list(data), dtype=torch.uint8)

    tensors = {k: v.to(dtype) if dtype is not None else v for k, v in {**state, **(projection or {})}.items()}
    tensors["tokenizer_json"] = as_bytes(tokenizer_json if tokenizer_json is not None else wordlevel_tokenizer_json())
    sidecars = {"tokenizer_config.json": tokenizer_config or GEMMA4_TOKENIZER_CONFIG,
                "processor_config.json": {"processor_class": "Gemma4UnifiedProcessor"}}
    for name, content in sidecars.items():
        tensors[f"hf_asset__{name}"] = as_bytes(json.dumps(content).encode())
    return save_tensors(tensors, path, {"gemma_config": json.dumps(config)})
