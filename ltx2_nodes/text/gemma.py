"""Gemma encode: prompts -> every hidden state of Gemma (3, or 4 for LTX-2.5), stacked, plus the attention mask.

The file's ``model_type`` picks the config (``GemmaFiles.model_config``: Gemma 3 or Gemma 4 unified);
both run on the same decoder (``model/gemma3.py``), so everything below holds for either.

Tokenization follows the reference (strip, BOS, truncate to ``max_length``, left-pad to it).
Gemma then runs as an explicit per-layer loop over ``encoder.decoder_layers``:

* a progress callback fires after each layer and a cancellation check (``progress.check_interrupted``) runs before each;
* each layer is called as ``layer(hidden, rope, mask)`` with every tensor already on
  ``encoder.compute_device`` and nothing else touched, so a block-streaming engine can bring a
  layer's weights in with a forward pre-hook and evict them in a post-hook; the embedding table
  is read where it lives (it may stay in CPU memory) and only the looked-up rows move;
* columns that are padding for every prompt are skipped: with left padding and a causal model
  the valid tokens never see them, and positions keep their padded-run values, so the result
  equals the reference's full 1024-token run while a short prompt costs a short run.

Hidden states of padding are returned as zeros (the feature extractor ignores them).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import InputError
from ..loading.checkpoint import build_module
from ..loading.gemma_files import GemmaFiles, locate_gemma, prepare_gemma_state
from ..loading.gguf_file import GGUFFile
from ..loading.quant import FP8_DTYPES
from ..model.gemma3 import GemmaConfig, GemmaLanguageModel
from ..progress import check_interrupted
from .cache import SESSION_CACHE, PromptCache, cache_key
from .tokenizer import DEFAULT_MAX_LENGTH, PromptTokenizer, TokenBatch, load_tokenizer

log = logging.getLogger("ltx2_nodes")

Progress = Callable[[int, int], None]


@dataclass
class GemmaFeatures:
    """Gemma's stacked hidden states ``[B, T, D, L]`` (L = layers + 1; zeros at padding), mask ``[B, T]``
    int64 (left padding) and the number of tokens each prompt lost to truncation."""

    hidden_states: torch.Tensor
    mask: torch.Tensor
    dropped: list[int]

    def __post_init__(self):
        if self.hidden_states.ndim != 4 or tuple(self.mask.shape) != tuple(self.hidden_states.shape[:2]):
            raise InputError(f"Gemma features: hidden states {list(self.hidden_states.shape)} and mask "
                             f"{list(self.mask.shape)} do not describe the same [batch, tokens]; expected "
                             "[B, T, width, layers + 1] and [B, T].")


class GemmaEncoder:
    """A loaded Gemma language model (Gemma 3 or Gemma 4's text path) plus its tokenizer."""

    def __init__(self, lm: GemmaLanguageModel, tokenizer: PromptTokenizer, *, name: str, weights_fingerprint: str,
                 variant: str = "", max_length: int = DEFAULT_MAX_LENGTH):
        self.lm = lm
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        first = next(lm.model.layers.parameters())
        self.compute_device = first.device  # a streaming engine sets this to the GPU while weights stay on CPU
        key = f"{weights_fingerprint}|{tokenizer.fingerprint}|{self.dtype}|{variant}"
        self.fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]

    @property
    def config(self) -> GemmaConfig:
        return self.lm.config

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        """The decoder layers, called in order once per encode with ``(hidden, rope, mask)``."""
        return self.lm.model.layers

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype (that of the embedding table)."""
        return self.lm.model.embed_tokens.weight.dtype

    def to(self, device: torch.device | str) -> "GemmaEncoder":
        """Move every weight to ``device`` and compute there."""
        self.lm.to(device)
        self.compute_device = torch.device(device)
        return self

    def tokenize(self, prompts: list[str]) -> TokenBatch:
        return self.tokenizer.batch(prompts, self.max_length)

    # -- running Gemma ---------------------------------------------------------------------------

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, *, progress: Progress | None = None,
                      skip_padding: bool = True, out_device: torch.device | str = "cpu") -> torch.Tensor:
        """Run Gemma on left-padded ``ids``/``mask`` ``[B, T]`` -> ``[B, T, D, layers + 1]`` on ``out_device``.

        Index 0 is the scaled embedding, ``i`` the output of layer ``i - 1``, the last one the final
        norm of the last layer (transformers' ``output_hidden_states``). ``skip_padding=False`` runs
        every column like the reference does (same result, slower).
        """
        start, states = self._run(ids, mask, progress, skip_padding, out_device)
        if start == 0:
            return states
        out = states.new_zeros(ids.shape[0], ids.shape[1], *states.shape[2:])
        out[:, start:] = states
        return out

    @torch.no_grad()
    def _run(self, ids: torch.Tensor, mask: torch.Tensor, progress: Progress | None, skip_padding: bool,
             out_device: torch.device | str) -> tuple[int, torch.Tensor]:
        """Gemma over columns ``start:`` (all columns holding a valid token); returns ``start`` and their states."""
        cfg, lm, device = self.config, self.lm, self.compute_device
        batch, total = ids.shape
        valid = mask.bool()
        start = total - int(valid.sum(dim=1).max()) if skip_padding else 0
        if valid[:, :start].any():
            raise InputError("Gemma encode expects left-padded token rows (every valid token after the padding), "
                             "as PromptTokenizer.batch produces them.")
        out = torch.zeros(batch, total - start, cfg.hidden_size, cfg.num_hidden_states, dtype=self.dtype,
                          device=out_device)
        if start == total:
            return start, out
        run_mask = valid[:, start:].to(device)
        keep = run_mask[:, :, None].to(self.dtype)

        def store(index: int, h: torch.Tensor) -> None:
            out[..., index] = (h * keep.to(h.device)).to(out_device)

        h = lm.embed(ids[:, start:]).to(device)
        store(0, h)
        # Positions as in the padded run: column c has position c.
        positions = torch.arange(start, total, device=device)[None]
        ropes = lm.ropes(positions, h.dtype)
        masks = lm.masks(torch.arange(total - start, device=device), run_mask)
        layers = self.decoder_layers
        for index, layer in enumerate(layers):
            check_interrupted(f"during Gemma text encoding, before layer {index + 1}/{len(layers)}")
            h = layer(h, ropes[layer.layer_type], masks[layer.layer_type])
            if index + 1 < len(layers):
                store(index + 1, h)
            if progress is not None:
                progress(index + 1, len(layers))
        norm = lm.model.norm
        store(cfg.num_hidden_layers, norm(h.to(norm.weight.device)))
        return start, out

    def encode(self, prompts: str | list[str], *, cache: PromptCache | None = SESSION_CACHE,
               cache_dir: str | Path | None = None, progress: Progress | None = None) -> GemmaFeatures:
        """Prompts -> ``GemmaFeatures`` (on CPU). Prompts already in ``cache`` (or ``cache_dir``) skip Gemma."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        tokens = self.tokenize(prompts)
        if cache is None:
            states = self.hidden_states(tokens.ids, tokens.mask, progress=progress)
            return GemmaFeatures(states, tokens.mask, tokens.dropped)
        total = tokens.ids.shape[1]
        lengths = [int(n) for n in tokens.mask.sum(dim=1)]
        keys = [cache_key(self.fingerprint, tokens.ids[i, total - n:].tolist(), total) for i, n in enumerate(lengths)]
        found = {key: cache.get(key, cache_dir) for key in dict.fromkeys(keys)}
        missing = [keys.index(key) for key, states in found.items() if states is None]
        if missing:
            rows = torch.tensor(missing)
            start, states = self._run(tokens.ids[rows], tokens.mask[rows], progress, True, "cpu")
            for j, i in enumerate(missing):
                found[keys[i]] = states[j, total - start - lengths[i]:].clone()
                cache.put(keys[i], found[keys[i]], cache_dir)
            del states
        else:
            log.info("Gemma encode: all %d prompt(s) found in the prompt cache.", len(prompts))
        out = torch.zeros(len(prompts), total, self.config.hidden_size, self.config.num_hidden_states,
                          dtype=self.dtype)
        for i, (key, n) in enumerate(zip(keys, lengths)):
            out[i, total - n:] = found[key]
        return GemmaFeatures(out, tokens.mask, tokens.dropped)


# ------------------------------------------------------------------------------------------------
# Loading


def _default_dtype(gemma: GemmaFiles) -> torch.dtype:
    """The file's dtype for activations; bf16 when the weights are all fp8 or quantized (GGUF files keep their
    norms in float32 whatever the weights: only their embedding tells)."""
    for f in gemma.files:
        names = ("embed_tokens.weight",) if isinstance(f, GGUFFile) else ("embed_tokens.weight", "model.norm.weight")
        for key in f.keys():
            dtype = f.info(key).dtype
            if key.endswith(names) and dtype.is_floating_point and dtype not in FP8_DTYPES:
                return dtype
    return torch.bfloat16


def load_gemma_encoder(path: str | Path, *, tokenizer_path: str | Path | None = None,
                       dtype: torch.dtype | None = None, device: torch.device | str | None = None, fp8: str = "keep",
                       max_length: int = DEFAULT_MAX_LENGTH) -> GemmaEncoder:
    """Load Gemma from an HF folder, a ComfyUI single file or a packed LTX-2.5 text-encoder file (Gemma 4)
    (weights memory-mapped, built on meta + assign).

    ``dtype`` None keeps the file's (bf16); fp8 Linear weights stay fp8 and are dequantized per layer
    (``fp8="keep"``) or folded into ``dtype`` at load (``fp8="upcast"``). ``device`` None leaves the weights
    in (mapped) CPU memory.
    """
    gemma = locate_gemma(path, tokenizer_path)
    config = gemma.model_config()
    dtype = dtype or _default_dtype(gemma)
    state = prepare_gemma_state(gemma, dtype)
    lm = build_module(lambda: GemmaLanguageModel(config), state, what=f"{config.family} text model", source=gemma.name,
                      dtype=dtype, device=device, fp8=fp8, release=gemma.release_pages)
    tokenizer = load_tokenizer(gemma.tokenizer)
    log.info("Loaded %s (%d layers, width %d) from %s, tokenizer from %s", config.family, config.num_hidden_layers,
             config.hidden_size, gemma.name, gemma.tokenizer.describe())
    return GemmaEncoder(lm, tokenizer, name=gemma.name, weights_fingerprint=gemma.fingerprint(),
                        variant=f"fp8={fp8}", max_length=max_length)
