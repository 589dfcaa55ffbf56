"""Finding and reading Gemma text-encoder files (no transformers import here).

Four layouts are accepted:

* a Hugging Face folder: ``config.json`` (``gemma3`` or ``gemma3_text``), one or more
  ``*.safetensors`` shards and ``tokenizer.json`` / ``tokenizer.model``; keys are
  ``language_model.model.*`` (Gemma3ForConditionalGeneration as released),
  ``model.language_model.*`` (transformers >= 4.52 saves) or ``model.*`` (Gemma3ForCausalLM);
* a ComfyUI single file from ``models/text_encoders`` (``gemma_3_12B_it*.safetensors``): keys
  ``model.*`` plus the vision tower, the SentencePiece tokenizer embedded as a uint8 tensor
  ``spiece_model``, no config. fp8 variants store Linear weights as ``F8_E4M3`` with a
  ``weight_scale`` (new ``comfy_quant`` format), a ``scale_weight`` (older ``scaled_fp8``
  format) or no scale at all; NVFP4 variants (``comfy_quant`` format ``nvfp4``) store packed 4-bit
  weights with ``weight_scale`` / ``weight_scale_2`` (kept packed, ``quant.NVFP4Linear``);
* a GGUF file (``general.architecture`` ``gemma3``, llama.cpp's names: ``token_embd``,
  ``blk.N.attn_q`` ...; mapped by ``gguf_gemma_key``). llama.cpp's converter stores Gemma's
  zero-centred RMSNorm weights plus one (its norm multiplies by ``w``, Gemma's by ``1 + w``); the
  one is taken off again here. Q/K are not permuted for Gemma 3 (llama.cpp runs it with NeoX RoPE,
  the HF layout). A ``tokenizer.model`` next to the file (or given) is the tokenizer; without one, the
  vocabulary the GGUF carries (llama.cpp's ``tokenizer.ggml.*`` keys) is turned into a tokenizer by
  transformers' own GGUF converter (``text.tokenizer.HFPromptTokenizer.from_gguf``);
* a packed text-encoder file (LTX-2.5, reference ``gemma_assets.py``): ComfyUI-flat ``model.*`` keys of
  a Gemma 4 unified (or Gemma 3) language model, the LTX text projection ``text_embedding_projection.*``,
  the tokenizer as a uint8 tensor ``tokenizer_json`` (tokenizers JSON) with its
  ``hf_asset__tokenizer_config.json``, and the HF config (``model_type``, ``text_config``,
  ``gemma_version``) as JSON in the ``gemma_config`` metadata. An HF folder of a ``gemma4_unified``
  model (``model.language_model.*``) is read too.

Everything is mapped to the key names of one text model held as ``model`` (vision/audio towers and
``lm_head``, which Gemma ties to the embedding, are never read); ``GemmaFiles.model_config()`` picks
the Gemma 3 or Gemma 4 config by the text config's ``model_type``. Weights stay views of the
memory-mapped files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, ModelNotFoundError, UnsupportedModelError
from ..model.gemma3 import GemmaConfig
from ..model.gemma4 import Gemma4Config
from .gguf_file import GGUFFile, is_gguf
from .quant import FP8_DTYPES
from .safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

# Prefixes of the language model in the known layouts, longest first (``model.`` is also a prefix
# of the multimodal layouts).
_TEXT_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
_SKIPPED_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", "vision_tower.", "multi_modal_projector.",
                     "vision_model.", "lm_head.", "language_model.lm_head.",
                     # Gemma 4 unified's image/audio embedders (HF and ComfyUI names)
                     "model.embed_vision.", "model.embed_audio.", "model.vision_embedder.", "audio_projector.")
_LINEAR_WEIGHT = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
GEMMA_CONFIG_METADATA = "gemma_config"  # packed text-encoder file: the HF config as JSON
TOKENIZER_JSON_TENSOR = "tokenizer_json"
HF_ASSET_PREFIX = "hf_asset__"
_REQUIRED = ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.self_attn.q_norm.weight",
             "model.layers.0.pre_feedforward_layernorm.weight")

# Released google/gemma-3-12b-it text config (config.json ``text_config``); everything a ComfyUI
# single file cannot tell through tensor shapes is taken from here.
GEMMA3_12B_TEXT_CONFIG = {
    "model_type": "gemma3_text", "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "query_pre_attn_scalar": 256,
    "vocab_size": 262208, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 1024,
    "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "max_position_embeddings": 131072,
}

_FOREIGN = (
    ("model.diffusion_model.", "an LTX-2 model checkpoint (it belongs in models/checkpoints; the text encoder is "
                               "Gemma 3 12B, e.g. gemma_3_12B_it.safetensors)"),
    ("text_embedding_projection.", "an LTX-2 model checkpoint (it belongs in models/checkpoints)"),
    ("encoder.block.", "a T5 text encoder"),
    ("text_model.encoder.", "a CLIP text encoder"),
    ("transformer.resblocks.", "a CLIP text encoder"),
)


@dataclass(frozen=True)
class TokenizerLocation:
    """Where the tokenizer comes from: an HF folder, a ``tokenizer.model`` file, or bytes inside the weights."""

    kind: str  # "hf_folder" | "sentencepiece" | "packed" (tokenizer_json inside a packed text-encoder file) |
    # "gguf" (the tokenizer.ggml.* vocabulary of a GGUF file)
    path: Path
    embedded: bool = False  # ``spiece_model`` / ``tokenizer_json`` tensor inside the safetensors file ``path``

    def describe(self) -> str:
        if self.kind == "packed":
            return f"{TOKENIZER_JSON_TENSOR} inside {self.path.name}"
        if self.kind == "gguf":
            return f"the vocabulary inside {self.path.name}"
        return f"spiece_model inside {self.path.name}" if self.embedded else str(self.path)

    def packed_assets(self) -> tuple[bytes, dict]:
        """``tokenizer_json`` bytes and the ``tokenizer_config.json`` dict of a packed file (an
        ``hf_asset__`` tensor, or a metadata string in older packs)."""
        f = SafetensorsFile(self.path)
        name = "tokenizer_config.json"
        if HF_ASSET_PREFIX + name in f:
            raw = _tensor_bytes(f.tensor(HF_ASSET_PREFIX + name))
        elif name in f.metadata:
            raw = f.metadata[name].encode()
        else:
            raise CheckpointError(f"{self.path.name} packs {TOKENIZER_JSON_TENSOR} without its tokenizer config "
                                  f"({HF_ASSET_PREFIX}{name}); the file is incomplete. Use the released file.")
        return _tensor_bytes(f.tensor(TOKENIZER_JSON_TENSOR)), json.loads(raw)

    def sentencepiece_bytes(self) -> bytes:
        if self.embedded:
            return SafetensorsFile(self.path).tensor("spiece_model").numpy().tobytes()
        return self.path.read_bytes()


@dataclass
class GemmaFiles:
    """A located Gemma text encoder: weight files, text config (dict), tokenizer location."""

    name: str
    files: list[SafetensorsFile]
    text_config: dict  # transformers text config (``gemma3_text`` / ``gemma4_unified_text``); Gemma 3 single
    # files: inferred from shapes
    tokenizer: TokenizerLocation
    gemma_version: str | None = None  # the config's ``gemma_version`` (LTX-2.5 locks the DiT to it)

    @property
    def model_type(self) -> str:
        return str(self.text_config.get("model_type", "gemma3_text"))

    def model_config(self) -> GemmaConfig:
        """The decoder config, Gemma 3's or Gemma 4's by the text config's ``model_type``."""
        if self.model_type.startswith("gemma4"):
            return Gemma4Config.from_hf(self.text_config, source=self.name)
        return GemmaConfig.from_hf(self.text_config, source=self.name)

    def raw_state(self) -> dict[str, torch.Tensor]:
        """Language-model tensors under ``model.*`` names plus their fp8 scale siblings (memory-mapped views)."""
        out: dict[str, torch.Tensor] = {}
        for f in self.files:
            for key in f.keys():
                name = module_key(key)
                if name is not None:
                    out[name] = f.tensor(key)
                    if isinstance(f, GGUFFile) and name.endswith("norm.weight") and out[name].is_floating_point():
                        out[name] = out[name].float() - 1.0  # llama.cpp stores Gemma's norms as 1 + w
        return out

    def release_pages(self, tensor: torch.Tensor) -> None:
        """Drop the mapped pages behind ``tensor`` once a copy replaced it (whichever file it maps)."""
        for f in self.files:
            f.release_pages(tensor)

    def fingerprint(self) -> str:
        """Cheap content identity of the weights: headers, sizes and sampled bytes of every file."""
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path.name):
            digest.update(_file_fingerprint(f.path))
        return digest.hexdigest()[:32]


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Bytes stored as a uint8 (or int8, as some ComfyUI packs do) tensor."""
    return tensor.to(torch.uint8).numpy().tobytes()


def module_key(key: str) -> str | None:
    """File key -> ``model.*`` key of the language model (None for keys that are not read)."""
    if key.startswith(_SKIPPED_PREFIXES) or key.endswith(".comfy_quant"):  # quant JSON is read separately
        return None
    for prefix in _TEXT_PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            rest = rest.replace(".scale_weight", ".weight_scale").replace(".scale_input", ".input_scale")
            return "model." + rest
    return None


def _file_fingerprint(path: Path, sample: int = 1 << 16) -> bytes:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        header_len = min(1 << 20, size - 8) if head[:4] == b"GGUF" else struct.unpack("<Q", head)[0]
        parts = [str(size).encode(), f.read(header_len)]
        for offset in (8 + header_len, (size + header_len) // 2, max(size - sample, 0)):
            f.seek(offset)
            parts.append(f.read(sample))
    return hashlib.sha256(b"".join(parts)).digest()


# ------------------------------------------------------------------------------------------------
# Locating files


def locate_gemma(path: str | Path, tokenizer_path: str | Path | None = None) -> GemmaFiles:
    """Open a Gemma 3 text encoder given as an HF folder or a ComfyUI single ``.safetensors`` file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"Gemma text encoder not found: {path} (expected a .safetensors file from "
                                 "models/text_encoders or a Hugging Face Gemma 3 folder).")
    explicit = _explicit_tokenizer(Path(tokenizer_path).expanduser()) if tokenizer_path is not None else None
    if path.is_dir():
        return _locate_folder(path, explicit)
    return _locate_single_file(path, explicit)


def _tokenizer_in(folder: Path) -> TokenizerLocation | None:
    if (folder / "tokenizer.json").is_file():
        return TokenizerLocation("hf_folder", folder)
    if (folder / "tokenizer.model").is_file():
        return TokenizerLocation("sentencepiece", folder / "tokenizer.model")
    return None


def _explicit_tokenizer(path: Path) -> TokenizerLocation:
    if path.is_dir():
        found = _tokenizer_in(path)
        if found is None:
            raise ModelNotFoundError(f"The tokenizer folder {path} has neither tokenizer.json nor tokenizer.model.")
        return found
    if path.is_file() and path.name.endswith(".json"):
        return TokenizerLocation("hf_folder", path.parent)
    if path.is_file() and path.suffix == ".safetensors":  # e.g. ComfyUI's Gemma file lending its spiece_model
        lender = SafetensorsFile(path)
        if TOKENIZER_JSON_TENSOR in lender:
            return TokenizerLocation("packed", path, embedded=True)
        if "spiece_model" not in lender:
            raise ModelNotFoundError(f"{path.name} was given as the tokenizer but carries no 'spiece_model' (or "
                                     f"'{TOKENIZER_JSON_TENSOR}') tensor.")
        return TokenizerLocation("sentencepiece", path, embedded=True)
    if path.is_file():
        return TokenizerLocation("sentencepiece", path)
    raise ModelNotFoundError(f"Tokenizer not found: {path} (give tokenizer.model, tokenizer.json or their folder).")


def _locate_folder(root: Path, tokenizer: TokenizerLocation | None) -> GemmaFiles:
    candidates = [root] + sorted(p.parent for p in root.rglob("config.json") if p.parent != root)
    folder = next((d for d in candidates if (d / "config.json").is_file() and any(d.glob("*.safetensors"))), None)
    if folder is None:
        raise ModelNotFoundError(
            f"{root} is not a Hugging Face Gemma 3 folder: no folder inside it has both config.json and "
            "*.safetensors weights. Download google/gemma-3-12b-it (all files) or use ComfyUI's single-file "
            "gemma_3_12B_it.safetensors.")
    config = json.loads((folder / "config.json").read_text())
    text_config = _text_config_from_hf(config, str(folder / "config.json"))
    shards = _shards(folder)
    if tokenizer is None:
        tokenizer = _tokenizer_in(folder) or next(
            (t for t in (_tokenizer_in(p.parent) for p in sorted(root.rglob("tokenizer.*"))) if t), None)
    if tokenizer is None:
        raise ModelNotFoundError(
            f"{folder} has config.json and weights but no tokenizer: neither tokenizer.json nor tokenizer.model was "
            f"found in it or below {root}. Copy them from the Gemma 3 release into {folder}.")
    files = [SafetensorsFile(p) for p in shards]
    _check_language_model(files, folder.name)
    return GemmaFiles(folder.name, files, text_config, tokenizer, config.get("gemma_version"))


def _shards(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ModelNotFoundError(f"{folder}: model.safetensors.index.json lists shards that are missing: "
                                     f"{missing[:4]}. The download is incomplete; fetch the missing files.")
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


_TEXT_MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4_unified": "gemma4_unified_text"}


def _text_config_from_hf(config: dict, where: str) -> dict:
    model_type = config.get("model_type")
    if model_type in _TEXT_MODEL_TYPES:
        return dict(config.get("text_config") or {}, model_type=_TEXT_MODEL_TYPES[model_type])
    if model_type in _TEXT_MODEL_TYPES.values():
        return dict(config)
    if model_type == "gemma4":
        raise UnsupportedModelError(
            f"{where} describes a dense Gemma 4 instruct model ('gemma4'), which the reference uses for prompt "
            "enhancement only; LTX-2.5 encodes prompts with its Gemma 4 unified text encoder "
            "(gemma4-12b-with-proj-ltx-2.5-bf16.safetensors).")
    raise UnsupportedModelError(
        f"{where} describes a '{model_type}' model; LTX-2 and LTX-2.3 use Gemma 3 (model_type 'gemma3', 12B), "
        "LTX-2.5 its Gemma 4 unified text encoder (model_type 'gemma4_unified').")


def _locate_single_file(path: Path, tokenizer: TokenizerLocation | None) -> GemmaFiles:
    f = _open_gguf(path) if is_gguf(path) else SafetensorsFile(path)
    _check_language_model([f], path.name)
    if GEMMA_CONFIG_METADATA in f.metadata:
        return _locate_packed(f, tokenizer)
    if any(k.endswith(".layer_scalar") for k in f.keys()):
        raise UnsupportedModelError(
            f"{path.name} holds a Gemma 4 language model but no '{GEMMA_CONFIG_METADATA}' metadata, so its "
            "configuration is unknown. Use the packed text-encoder file released with LTX-2.5 "
            "(gemma4-12b-with-proj-ltx-2.5-bf16.safetensors), which carries it.")
    if tokenizer is None:
        if "spiece_model" in f:
            tokenizer = TokenizerLocation("sentencepiece", path, embedded=True)
        else:
            searched = [path.parent, path.parent / path.stem, path.parent / "tokenizer"]
            tokenizer = next((t for t in map(_tokenizer_in, [d for d in searched if d.is_dir()]) if t), None)
            if tokenizer is None and GGUF_VOCABULARY in f.metadata:
                tokenizer = TokenizerLocation("gguf", path, embedded=True)
            if tokenizer is None:
                carried = "no vocabulary (no tokenizer.ggml.* keys)" if is_gguf(path) else "no 'spiece_model' tensor"
                raise ModelNotFoundError(
                    f"{path.name} carries no tokenizer ({carried}) and none was found next to it: "
                    f"looked for tokenizer.json / tokenizer.model in {', '.join(str(d) for d in searched)}. "
                    "Put Gemma 3's tokenizer.model next to the file or pass the tokenizer path.")
    return GemmaFiles(path.stem, [f], infer_text_config(f), tokenizer)


GGUF_VOCABULARY = "tokenizer.ggml.model"  # llama.cpp writes it with the vocabulary arrays (tokens, scores, types)
_GGUF_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GGUF_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}


def gguf_gemma_key(name: str) -> str | None:
    """llama.cpp Gemma 3 tensor name -> ``model.*`` key (None for tensors not read, e.g. ``output.weight``)."""
    if name in _GGUF_TOP_NAMES:
        return _GGUF_TOP_NAMES[name]
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if match and match.group(2) in _GGUF_LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_GGUF_LAYER_NAMES[match.group(2)]}.{match.group(3)}"
    return None


def _open_gguf(path: Path) -> GGUFFile:
    f = GGUFFile(path, rename=gguf_gemma_key)
    if f.architecture != "gemma3":
        what = ("an LTX-2 DiT GGUF (it belongs in models/diffusion_models)" if f.architecture.startswith("ltx")
                else f"a GGUF of architecture '{f.architecture}'")
        raise CheckpointError(f"{path.name} is {what}, not the Gemma 3 text encoder LTX-2 needs (a GGUF text encoder "
                              "must have general.architecture 'gemma3', e.g. gemma-3-12b-it-Q4_K_M.gguf).")
    return f


def _locate_packed(f: SafetensorsFile, tokenizer: TokenizerLocation | None) -> GemmaFiles:
    """A packed text-encoder file: config from the ``gemma_config`` metadata, tokenizer from ``tokenizer_json``."""
    name = f.path.name
    try:
        config = json.loads(f.metadata[GEMMA_CONFIG_METADATA])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{name}: the '{GEMMA_CONFIG_METADATA}' metadata is not JSON ({exc}); the file is "
                              "damaged. Use the released file.") from None
    text_config = _text_config_from_hf(config, f"{name} ({GEMMA_CONFIG_METADATA} metadata)")
    if tokenizer is None:
        if TOKENIZER_JSON_TENSOR not in f:
            raise ModelNotFoundError(f"{name} is a packed text encoder without its '{TOKENIZER_JSON_TENSOR}' "
                                     "tensor; use the released file or pass the tokenizer path.")
        tokenizer = TokenizerLocation("packed", f.path, embedded=True)
    return GemmaFiles(f.path.stem, [f], text_config, tokenizer, config.get("gemma_version"))


def _check_language_model(files: list[SafetensorsFile], name: str) -> None:
    mapped = {module_key(k) for f in files for k in f.keys()}
    missing = [k for k in _REQUIRED if k not in mapped]
    if not missing:
        return
    keys = [k for f in files for k in f.keys()]
    for prefix, what in _FOREIGN:
        if any(k.startswith(prefix) for k in keys):
            raise CheckpointError(f"{name} is {what}, not the Gemma text encoder LTX-2 needs.")
    raise CheckpointError(
        f"{name} does not contain a Gemma language model (missing {missing[:2]}; found e.g. {keys[:3]}). "
        "LTX-2 and LTX-2.3 need Gemma 3 12B (ComfyUI's gemma_3_12B_it*.safetensors or the google/gemma-3-12b-it "
        "folder), LTX-2.5 its packed Gemma 4 text encoder (gemma4-12b-with-proj-ltx-2.5-bf16.safetensors).")


def infer_text_config(f: SafetensorsFile) -> dict:
    """``gemma3_text`` config from tensor shapes; the rest (RoPE, window, eps) is Gemma 3 12B's."""
    shapes = {module_key(k): f.info(k).shape for k in f.keys() if module_key(k) is not None}
    layers = {int(k.split(".")[2]) for k in shapes if k.startswith("model.layers.")}
    vocab, hidden = shapes["model.embed_tokens.weight"]
    head_dim = shapes["model.layers.0.self_attn.q_norm.weight"][0]
    config = dict(GEMMA3_12B_TEXT_CONFIG)
    config.update(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=max(layers) + 1, head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        num_attention_heads=shapes["model.layers.0.self_attn.q_proj.weight"][0] // head_dim,
        num_key_value_heads=shapes["model.layers.0.self_attn.k_proj.weight"][0] // head_dim,
        intermediate_size=shapes["model.layers.0.mlp.gate_proj.weight"][0],
    )
    if any(config[k] != GEMMA3_12B_TEXT_CONFIG[k] for k in ("hidden_size", "num_hidden_layers")):
        log.warning("%s is not Gemma 3 12B (width %d, %d layers); LTX-2's text projection expects 3840 x 49 "
                    "hidden states.", f.path.name, hidden, config["num_hidden_layers"])
    return config


# ------------------------------------------------------------------------------------------------
# fp8


def _comfy_quant_format(files: list[SafetensorsFile]) -> dict[str, str]:
    formats = {}
    for f in files:
        for key in f.keys():
            if key.endswith(".comfy_quant"):
                conf = json.loads(f.tensor(key).numpy().tobytes() or b"{}")
                formats[key[: -len(".comfy_quant")]] = conf.get("format", "?")
    return formats


def prepare_gemma_state(gemma: GemmaFiles, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Module state for ``build_module``: fp8 Linear weights get a ``weight_scale`` (1.0 when the file has
    none), every other fp8 tensor (embedding, norms) is dequantized to ``dtype``; NVFP4 and GGUF weights
    are left to ``quant.prepare_packed_state``; formats we cannot run are refused with the file name."""
    unsupported = {layer: fmt for layer, fmt in _comfy_quant_format(gemma.files).items()
                   if fmt not in ("float8_e4m3fn", "float8_e5m2", "nvfp4")}
    state = gemma.raw_state()
    if unsupported:
        fmt = next(iter(unsupported.values()))
        raise UnsupportedModelError(
            f"{gemma.name} stores layers in the '{fmt}' quantization format, which ltx2_nodes cannot run. Use the "
            "bf16, fp8 (e4m3fn), NVFP4 or GGUF version of the Gemma 3 12B text encoder.")
    for key in [k for k in state if k.endswith(".weight")]:
        tensor = state[key]
        if tensor.dtype not in FP8_DTYPES:
            continue
        scale_key = key[: -len(".weight")] + ".weight_scale"
        if _LINEAR_WEIGHT.search(key):
            state.setdefault(scale_key, torch.ones((), dtype=torch.float32))
        else:
            scale = state.pop(scale_key, torch.ones(()))
            state[key] = (tensor.float() * scale.float()).to(dtype)
    return state
