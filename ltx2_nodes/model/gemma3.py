"""Gemma 3 language model (text path only) in plain PyTorch, numerically equal to transformers'.

Why not transformers' module: its Gemma 3 internals (decoder-layer signature, rotary modules,
mask construction) changed between the 4.5x releases ComfyUI installs and 5.x, and a
block-streaming engine needs a per-layer forward that touches nothing but that layer's weights
and tensors already on the compute device. Parameter names are those of transformers'
``Gemma3ForCausalLM`` (``model.layers.N.self_attn.q_proj.weight`` ...), so the same state dict
loads into either; the tests check equality against transformers on random tiny models.

Per layer (``x`` residual stream, norms are ``x * (1 + w)`` RMS norms computed in float32):
``x += post_attn_norm(attn(input_norm(x)))``, ``x += post_ff_norm(mlp(pre_ff_norm(x)))``.
Attention has q/k RMS norms over the head dim, RoPE (global layers: theta 1e6 with linear
scaling, local layers: theta 1e4 and a sliding window), GQA and scale
``query_pre_attn_scalar ** -0.5``. The MLP is ``down(gelu_tanh(gate(x)) * up(x))``.

Gemma 4's text model (``gemma4_unified``, LTX-2.5) is this decoder with the config flags below
(``model/gemma4.py`` builds its config): norms ``x * w`` (``norm_weight_offset`` 0), an RMS norm
without weight on the values, attention scale 1, wider heads (and optionally shared key/value
projections) on the full-attention layers, partial ("proportional") RoPE there, and a learned
scalar multiplying each layer's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from .config_values import as_tuple, check_config, check_value

SLIDING = "sliding_attention"
FULL = "full_attention"

# transformers' Gemma3TextConfig defaults: a config.json only lists what differs from them.
HF_TEXT_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6, "attention_bias": False, "query_pre_attn_scalar": 256, "sliding_window": 4096,
    "sliding_window_pattern": 6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
    "final_logit_softcapping": None, "attn_logit_softcapping": None, "use_bidirectional_attention": False,
}


@dataclass(frozen=True)
class RopeParams:
    """RoPE of one layer type: ``inv_freq = 1 / theta ** (2i / head_dim) / linear_factor`` for the first
    ``partial_rotary_factor * head_dim / 2`` pairs and 0 (no rotation) for the rest (transformers'
    "proportional" RoPE of Gemma 4; 1.0 is plain RoPE)."""

    theta: float
    linear_factor: float = 1.0
    partial_rotary_factor: float = 1.0


@dataclass(frozen=True)
class GemmaConfig:
    """Text config of Gemma 3; defaults are google/gemma-3-12b-it's."""

    vocab_size: int = 262208
    hidden_size: int = 3840
    intermediate_size: int = 15360
    num_hidden_layers: int = 48
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 256
    query_pre_attn_scalar: float = 256
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    sliding_window: int = 1024
    layer_types: tuple[str, ...] = field(default_factory=lambda: tuple(
        SLIDING if (i + 1) % 6 else FULL for i in range(48)))
    rope: tuple[tuple[str, RopeParams], ...] = ((FULL, RopeParams(1_000_000.0, 8.0)), (SLIDING, RopeParams(10_000.0)))
    final_logit_softcapping: float | None = None
    # Gemma 4 flags (the defaults are Gemma 3's): see the module docstring.
    norm_weight_offset: float = 1.0  # RMS norms scale by (offset + w)
    value_norm: bool = False  # weightless RMS norm on the values
    layer_scalar: bool = False  # learned scalar ``layer_scalar`` [1] multiplying each layer's output
    global_head_dim: int | None = None  # head dim of the full-attention layers (None: head_dim)
    global_num_key_value_heads: int | None = None  # their key/value heads (None: num_key_value_heads)
    attention_k_eq_v: bool = False  # full-attention layers have no v_proj: values are the raw key projection

    def __post_init__(self):
        check_config(self, "Gemma config.json")

    @property
    def num_hidden_states(self) -> int:
        """Embedding output + one per layer: what the LTX-2 feature extractor stacks."""
        return self.num_hidden_layers + 1

    @property
    def family(self) -> str:
        """What to call the model in messages."""
        return "Gemma 3"

    def rope_params(self, layer_type: str) -> RopeParams:
        return dict(self.rope)[layer_type]

    def layer_head_dim(self, layer_type: str) -> int:
        return (self.global_head_dim or self.head_dim) if layer_type == FULL else self.head_dim

    def layer_kv_heads(self, layer_type: str) -> int:
        if layer_type == FULL and self.global_num_key_value_heads:
            return self.global_num_key_value_heads
        return self.num_key_value_heads

    @property
    def max_head_dim(self) -> int:
        """The widest attention head of any layer (memory estimates)."""
        return max(self.layer_head_dim(kind) for kind in set(self.layer_types))

    @classmethod
    def from_hf(cls, config: dict, source: str = "config.json") -> "GemmaConfig":
        """From a transformers ``gemma3_text`` config dict (4.5x or 5.x format; omitted keys take HF defaults)."""
        values = {**HF_TEXT_DEFAULTS, **{k: v for k, v in config.items() if v is not None or k.endswith("capping")}}
        if values["hidden_activation"] not in ("gelu_pytorch_tanh", "gelu_tanh"):
            raise UnsupportedModelError(
                f"{source}: hidden_activation {values['hidden_activation']!r} is not Gemma 3's.")
        if values["use_bidirectional_attention"] or values["attn_logit_softcapping"] is not None:
            raise UnsupportedModelError(f"{source}: bidirectional / soft-capped attention is not the Gemma 3 text "
                                        "model LTX-2 uses.")
        layers, pattern = values["num_hidden_layers"], values["sliding_window_pattern"]
        check_value(source, "num_hidden_layers", layers)
        check_value(source, "sliding_window_pattern", pattern)
        types = as_tuple(values.get("layer_types")) or tuple(
            SLIDING if (i + 1) % pattern else FULL for i in range(layers))
        check_value(source, "layer_types", types, tuple[str, ...])
        if len(types) != layers or set(types) - {SLIDING, FULL}:
            raise UnsupportedModelError(f"{source}: layer_types must list '{SLIDING}'/'{FULL}' for each of {layers} "
                                        "layers.")
        rope = _rope_from_hf(values, source)
        try:
            return cls(
                vocab_size=values["vocab_size"], hidden_size=values["hidden_size"],
                intermediate_size=values["intermediate_size"], num_hidden_layers=layers,
                num_attention_heads=values["num_attention_heads"],
                num_key_value_heads=values["num_key_value_heads"], head_dim=values["head_dim"],
                query_pre_attn_scalar=values["query_pre_attn_scalar"], rms_norm_eps=values["rms_norm_eps"],
                attention_bias=bool(values["attention_bias"]), sliding_window=values["sliding_window"],
                layer_types=types, rope=rope,
                final_logit_softcapping=values["final_logit_softcapping"],
            )
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{source}: {exc}") from None


def _rope_from_hf(values: dict, source: str) -> tuple[tuple[str, RopeParams], ...]:
    """transformers 5 ``rope_parameters`` per layer type, or 4.x ``rope_theta``/``rope_local_base_freq``/
    ``rope_scaling``."""
    given = values.get("rope_parameters")
    if isinstance(given, dict) and FULL in given:
        per_type = {FULL: dict(given.get(FULL) or {}), SLIDING: dict(given.get(SLIDING) or {})}
    else:  # 4.x keys; rope_scaling applies to the global (full-attention) layers only
        per_type = {FULL: {"rope_type": "default", **(values.get("rope_scaling") or {})},
                    SLIDING: {"rope_type": "default"}}
        per_type[FULL].setdefault("rope_theta", values["rope_theta"])
        per_type[SLIDING].setdefault("rope_theta", values["rope_local_base_freq"])
    defaults = {FULL: values["rope_theta"], SLIDING: values["rope_local_base_freq"]}
    out = []
    for kind, params in per_type.items():
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type not in ("default", "linear"):
            raise UnsupportedModelError(f"{source}: RoPE type {rope_type!r} for {kind} layers is not supported "
                                        "(Gemma 3 uses 'default' and 'linear').")
        factor = float(params.get("factor", 1.0)) if rope_type == "linear" else 1.0
        out.append((kind, RopeParams(float(params.get("rope_theta", defaults[kind])), factor)))
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# Modules


class GemmaRMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps) * (offset + w)`` in float32, cast back. Gemma 3 stores the weight
    zero-centred (offset 1), Gemma 4 as is (offset 0); ``with_weight=False`` has no weight (Gemma 4's
    value norm)."""

    def __init__(self, dim: int, eps: float, offset: float = 1.0, with_weight: bool = True):
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.register_parameter("weight", nn.Parameter(torch.zeros(dim)) if with_weight else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            h = h * (self.offset + self.weight.float())
        return h.type_as(x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


@dataclass
class LayerCache:
    """Keys/values of one layer seen so far (generation)."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=2)
        return self.keys, self.values


class GemmaAttention(nn.Module):
    """Self-attention of one layer type (Gemma 4's full-attention layers may have wider heads, other
    key/value head counts and values taken from the key projection)."""

    def __init__(self, cfg: GemmaConfig, layer_type: str):
        super().__init__()
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.layer_head_dim(layer_type)
        self.kv_heads = cfg.layer_kv_heads(layer_type)
        self.scale = cfg.query_pre_attn_scalar ** -0.5
        bias, eps, offset = cfg.attention_bias, cfg.rms_norm_eps, cfg.norm_weight_offset
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        values_are_keys = cfg.attention_k_eq_v and layer_type == FULL
        self.v_proj = None if values_are_keys else nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, cfg.hidden_size, bias=bias)
        self.q_norm = GemmaRMSNorm(self.head_dim, eps, offset)
        self.k_norm = GemmaRMSNorm(self.head_dim, eps, offset)
        self.v_norm = GemmaRMSNorm(self.head_dim, eps, with_weight=False) if cfg.value_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cache: LayerCache | None = None) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(batch, tokens, self.heads, self.head_dim).transpose(1, 2))
        keys = self.k_proj(x).view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        v = keys if self.v_proj is None else \
            self.v_proj(x).view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        k = self.k_norm(keys)
        if self.v_norm is not None:
            v = self.v_norm(v)
        cos, sin = (t.unsqueeze(1) for t in rope)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k, v = cache.extend(k, v)
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and tokens > 1,
                                             scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class GemmaMLP(nn.Module):
    def __init__(self, cfg: GemmaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class GemmaDecoderLayer(nn.Module):
    """One decoder layer. Its forward reads only its own weights and the tensors it is given, so a
    streaming engine may bring the weights in with a forward pre-hook and drop them in a post-hook."""

    def __init__(self, cfg: GemmaConfig, index: int):
        super().__init__()
        self.layer_type = cfg.layer_types[index]
        self.self_attn = GemmaAttention(cfg, self.layer_type)
        self.mlp = GemmaMLP(cfg)
        dim, eps, offset = cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_weight_offset
        self.input_layernorm = GemmaRMSNorm(dim, eps, offset)
        self.post_attention_layernorm = GemmaRMSNorm(dim, eps, offset)
        self.pre_feedforward_layernorm = GemmaRMSNorm(dim, eps, offset)
        self.post_feedforward_layernorm = GemmaRMSNorm(dim, eps, offset)
        # Gemma 4: a scalar saved with the weights (a buffer, as in transformers)
        self.register_buffer("layer_scalar", torch.ones(1) if cfg.layer_scalar else None)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rope, mask, cache))
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x if self.layer_scalar is None else x * self.layer_scalar


class GemmaTextModel(nn.Module):
    def __init__(self, cfg: GemmaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([GemmaDecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)])
        self.norm = GemmaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_weight_offset)


class GemmaLanguageModel(nn.Module):
    """Holds the text model as ``model`` (keys ``model.*`` as in Gemma3ForCausalLM; ``lm_head`` is tied)."""

    def __init__(self, cfg: GemmaConfig):
        super().__init__()
        self.config = cfg
        self.model = GemmaTextModel(cfg)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Scaled token embeddings, looked up where the table lives (it may stay in CPU memory)."""
        table = self.model.embed_tokens.weight
        emb = F.embedding(ids.to(table.device), table)
        # transformers rounds sqrt(hidden) to the weight dtype before multiplying (62.0 in bf16 for 3840).
        return emb * torch.tensor(self.config.hidden_size ** 0.5, dtype=emb.dtype)

    def rope(self, positions: torch.Tensor, layer_type: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[B or 1, T, head_dim]`` for integer ``positions`` ``[B or 1, T]``."""
        params = self.config.rope_params(layer_type)
        dim = self.config.layer_head_dim(layer_type)
        rotated = int(params.partial_rotary_factor * dim // 2)
        inv_freq = 1.0 / (params.theta ** (torch.arange(0, 2 * rotated, 2, dtype=torch.int64,
                                                        device=positions.device).float() / dim))
        inv_freq = torch.cat([inv_freq, inv_freq.new_zeros(dim // 2 - rotated)]) / params.linear_factor
        freqs = positions.float()[..., None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def ropes(self, positions: torch.Tensor, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {kind: self.rope(positions, kind, dtype) for kind in set(self.config.layer_types)}

    def masks(self, query_positions: torch.Tensor, key_valid: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Boolean attention masks ``[B, 1, Tq, Tk]`` per layer type (True = attend), None where plain causal
        attention is exact. ``query_positions`` ``[Tq]`` index into the ``Tk`` keys; ``key_valid`` ``[B, Tk]``.

        A query always sees itself, so rows of padding never become all-masked (NaN in SDPA).
        """
        tokens = key_valid.shape[1]
        kpos = torch.arange(tokens, device=key_valid.device)
        delta = query_positions[:, None] - kpos[None, :]  # [Tq, Tk]
        plain = bool(key_valid.all()) and query_positions.numel() == tokens
        out: dict[str, torch.Tensor | None] = {}
        for kind in set(self.config.layer_types):
            windowed = kind == SLIDING and int(query_positions.max()) >= self.config.sliding_window
            if plain and not windowed:
                out[kind] = None
                continue
            allowed = delta >= 0
            if kind == SLIDING:
                allowed = allowed & (delta < self.config.sliding_window)
            mask = allowed[None] & key_valid.bool()[:, None, :]
            out[kind] = (mask | (delta == 0)[None])[:, None]
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits through the tied embedding (Gemma has no separate lm_head)."""
        table = self.model.embed_tokens.weight
        logits = F.linear(hidden.to(table.device, table.dtype), table).float()
        cap = self.config.final_logit_softcapping
        return torch.tanh(logits / cap) * cap if cap else logits
