"""Gemma 4 text model (``gemma4_unified``, text path only): the config of LTX-2.5's text encoder.

LTX-2.5 encodes prompts with a Gemma 4 "unified" model fine-tuned for LTX (reference:
``ltx_core/text_encoders/gemma``: ``LTXGemmaTextEncoder.encode`` runs
``Gemma4UnifiedForConditionalGeneration.model(input_ids, attention_mask, output_hidden_states=True)``
and keeps every hidden state). For text the model is Gemma 3's decoder with other settings, so it
runs on the one decoder implementation of ``model/gemma3.py`` (``GemmaLanguageModel``) with the
flags this config sets; transformers' Gemma 4 classes are never imported (they exist only in
transformers >= 5.x, and ComfyUI installs older ones). What differs from Gemma 3, as transformers'
``Gemma4UnifiedTextModel`` computes it:

* RMS norms multiply by ``w`` (not ``1 + w``); values get a weightless RMS norm; attention scale 1;
* full-attention layers use ``global_head_dim`` (and, with ``attention_k_eq_v``, no ``v_proj``: the
  values are the raw key projection, and ``num_global_key_value_heads`` heads);
* "proportional" RoPE on the full-attention layers: only ``partial_rotary_factor`` of the pairs rotate,
  with frequencies over the full head dim;
* every layer's output is multiplied by its stored ``layer_scalar``;
* the last layer is always full attention (transformers forces it, and so do we, with a warning).

Text-only prompts see plain causal (sliding-window) masks: the bidirectional "vision" blocks of the
unified model apply to image tokens, which the text path never has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import UnsupportedModelError
from .gemma3 import FULL, SLIDING, GemmaConfig, RopeParams

log = logging.getLogger("ltx2_nodes")

TEXT_MODEL_TYPE = "gemma4_unified_text"
MODEL_TYPE = "gemma4_unified"

# transformers' Gemma4UnifiedTextConfig defaults: a config only lists what differs from them.
HF_TEXT_DEFAULTS = {
    "vocab_size": 262_144, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 30,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "global_head_dim": 512,
    "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6, "attention_bias": False, "sliding_window": 1024,
    "final_logit_softcapping": None, "use_bidirectional_attention": "vision", "attention_k_eq_v": False,
    "num_kv_shared_layers": 0, "num_global_key_value_heads": None,
}
HF_ROPE_DEFAULTS = {
    SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
    FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
}
# Keys of other Gemma 4 variants whose features this text path does not have.
_REFUSED = {"hidden_size_per_layer_input": "per-layer input embeddings (dense Gemma 4 E2B/E4B)",
            "enable_moe_block": "mixture-of-experts blocks (Gemma 4 26B-A4B)",
            "attn_logit_softcapping": "soft-capped attention logits"}


def _default_layer_types(layers: int) -> tuple[str, ...]:
    return tuple(SLIDING if (i + 1) % 6 and i + 1 < layers else FULL for i in range(layers))


@dataclass(frozen=True)
class Gemma4Config(GemmaConfig):
    """Text config of Gemma 4 unified. The released LTX-2.5 encoder's dimensions are in its file's
    ``gemma_config`` (not in the reference code); the defaults are transformers' Gemma4UnifiedTextConfig
    defaults, which a config may omit."""

    vocab_size: int = 262_144
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 30
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    query_pre_attn_scalar: float = 1.0  # attention scale 1 (q and k are RMS-normalised)
    layer_types: tuple[str, ...] = field(default_factory=lambda: _default_layer_types(30))
    rope: tuple[tuple[str, RopeParams], ...] = ((FULL, RopeParams(1_000_000.0, 1.0, 0.25)),
                                                (SLIDING, RopeParams(10_000.0)))
    norm_weight_offset: float = 0.0
    value_norm: bool = True
    layer_scalar: bool = True
    global_head_dim: int | None = 512

    @property
    def family(self) -> str:
        return "Gemma 4"

    @classmethod
    def from_hf(cls, config: dict, source: str = "config.json") -> "Gemma4Config":
        """From a transformers ``gemma4_unified`` config dict (its ``text_config`` is read) or the
        ``gemma4_unified_text`` dict itself; omitted keys take transformers' defaults."""
        if config.get("model_type") == MODEL_TYPE:
            config = config.get("text_config") or {}
        if config.get("model_type", TEXT_MODEL_TYPE) != TEXT_MODEL_TYPE:
            raise UnsupportedModelError(
                f"{source}: text config of type {config.get('model_type')!r}; the LTX-2.5 text encoder is "
                f"'{TEXT_MODEL_TYPE}' (Gemma 4 unified). Use the text-encoder file released with LTX-2.5.")
        values = {**HF_TEXT_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        _refuse_unsupported(values, source)
        layers = int(values["num_hidden_layers"])
        types = _layer_types(values, layers, source)
        global_head_dim, global_kv_heads = _global_attention(values, types, source)
        return cls(
            vocab_size=int(values["vocab_size"]), hidden_size=int(values["hidden_size"]),
            intermediate_size=int(values["intermediate_size"]), num_hidden_layers=layers,
            num_attention_heads=int(values["num_attention_heads"]),
            num_key_value_heads=int(values["num_key_value_heads"]), head_dim=int(values["head_dim"]),
            rms_norm_eps=float(values["rms_norm_eps"]), attention_bias=bool(values["attention_bias"]),
            sliding_window=int(values["sliding_window"]), layer_types=types, rope=_rope(values, types, source),
            final_logit_softcapping=values["final_logit_softcapping"], global_head_dim=global_head_dim,
            global_num_key_value_heads=global_kv_heads, attention_k_eq_v=bool(values["attention_k_eq_v"]),
        )


def _refuse_unsupported(values: dict, source: str) -> None:
    if values["hidden_activation"] not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise UnsupportedModelError(f"{source}: hidden_activation {values['hidden_activation']!r} is not Gemma 4's "
                                    "(gelu_pytorch_tanh).")
    if values["use_bidirectional_attention"] not in ("vision", None):
        raise UnsupportedModelError(
            f"{source}: use_bidirectional_attention={values['use_bidirectional_attention']!r}; the LTX-2.5 text "
            "encoder attends causally over text ('vision' or unset). Use the text-encoder file released with LTX-2.5.")
    if int(values["num_kv_shared_layers"]):
        raise UnsupportedModelError(
            f"{source}: num_kv_shared_layers={values['num_kv_shared_layers']} (layers reusing earlier keys/values) "
            "is not supported; ltx2_nodes runs Gemma 4 unified text encoders without key/value sharing (0).")
    for key, what in _REFUSED.items():
        if values.get(key):
            raise UnsupportedModelError(f"{source}: {key}={values[key]!r} ({what}) is not part of the Gemma 4 "
                                        "unified text encoder LTX-2.5 uses; ltx2_nodes does not run it.")


def _layer_types(values: dict, layers: int, source: str) -> tuple[str, ...]:
    types = list(values.get("layer_types") or _default_layer_types(layers))
    if len(types) != layers or set(types) - {SLIDING, FULL}:
        raise UnsupportedModelError(f"{source}: layer_types must list '{SLIDING}'/'{FULL}' for each of {layers} "
                                    "layers.")
    if types[-1] != FULL:  # transformers' Gemma4UnifiedTextConfig does the same
        log.warning("%s: the last Gemma 4 layer must use full attention; running it as one (as transformers does).",
                    source)
        types[-1] = FULL
    return tuple(types)


def _global_attention(values: dict, types: tuple[str, ...], source: str) -> tuple[int, int | None]:
    """Head dim and key/value heads of the full-attention layers: ``global_head_dim`` /
    ``num_global_key_value_heads`` (transformers < 5.2x saves) or ``per_layer_config`` (later saves)."""
    head_dim, kv_heads = int(values["global_head_dim"]), values["num_global_key_value_heads"]
    per_layer = values.get("per_layer_config")
    if per_layer:
        full = {i for i, kind in enumerate(types) if kind == FULL}
        overrides = {int(k): dict(v) for k, v in per_layer.items()}
        distinct = {tuple(sorted(v.items())) for v in overrides.values()}
        if set(overrides) != full or len(distinct) != 1 or set(next(iter(overrides.values()))) - {
                "head_dim", "num_key_value_heads"}:
            raise UnsupportedModelError(
                f"{source}: per_layer_config {per_layer} is not one override of head_dim/num_key_value_heads for "
                "exactly the full-attention layers (what Gemma 4 unified configs contain).")
        override = next(iter(overrides.values()))
        head_dim = int(override.get("head_dim", values["head_dim"]))
        kv_heads = override.get("num_key_value_heads", kv_heads)
    if kv_heads is not None and not values["attention_k_eq_v"] and int(kv_heads) != int(values["num_key_value_heads"]):
        raise UnsupportedModelError(
            f"{source}: num_global_key_value_heads={kv_heads} without attention_k_eq_v; transformers versions "
            "disagree on whether it applies then, so ltx2_nodes refuses the config.")
    return head_dim, int(kv_heads) if kv_heads is not None and values["attention_k_eq_v"] else None


def _rope(values: dict, types: tuple[str, ...], source: str) -> tuple[tuple[str, RopeParams], ...]:
    given = values.get("rope_parameters") or HF_ROPE_DEFAULTS
    out = []
    for kind in sorted(set(types)):
        params = given.get(kind)
        if not isinstance(params, dict):
            raise UnsupportedModelError(f"{source}: rope_parameters has no entry for the '{kind}' layers.")
        rope_type = params.get("rope_type", "default")
        if rope_type not in ("default", "proportional", "linear"):
            raise UnsupportedModelError(f"{source}: RoPE type {rope_type!r} for {kind} layers is not supported "
                                        "(Gemma 4 uses 'default' and 'proportional').")
        factor = float(params.get("factor", 1.0)) if rope_type != "default" else 1.0
        partial = float(params.get("partial_rotary_factor", 1.0)) if rope_type == "proportional" else 1.0
        out.append((kind, RopeParams(float(params["rope_theta"]), factor, partial)))
    return tuple(out)
