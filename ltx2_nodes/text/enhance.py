"""Prompt enhancement: Gemma 3 rewrites a short prompt into a detailed, audio-aware one.

The reference asks Gemma (chat template, its T2V or I2V system prompt) and samples with
temperature 0.7 under a fixed seed; Gemma 3's released generation config adds top-k 64 and
top-p 0.95. Here sampling draws from a CPU generator seeded with ``seed``, so the same prompt,
weights and seed give the same text on every run. Generation reuses the encoder's decoder
layers with a per-layer key/value cache.

Only the text path of Gemma is loaded, so the I2V mode sends the I2V system prompt and the
user's text without the image (the reference also shows Gemma the first frame).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from ..errors import InputError
from ..model.gemma3 import LayerCache
from ..progress import check_interrupted
from .gemma import GemmaEncoder, Progress

log = logging.getLogger("ltx2_nodes")

_PROMPTS = Path(__file__).resolve().parent / "prompts"
MODES = ("t2v", "i2v")


@functools.lru_cache(maxsize=None)
def system_prompt(mode: str) -> str:
    """The reference's system prompt for ``mode`` ("t2v" or "i2v")."""
    if mode not in MODES:
        raise InputError(f"prompt enhancement mode must be one of {MODES}, got {mode!r}")
    return (_PROMPTS / f"gemma_{mode}_system_prompt.txt").read_text(encoding="utf-8")


def user_turn(prompt: str, mode: str) -> str:
    """The user message as the reference words it for each mode."""
    return f"user prompt: {prompt}" if mode == "t2v" else f"User Raw Input Prompt: {prompt}."


def chat_ids(encoder: GemmaEncoder, system: str, user: str) -> list[int]:
    """Gemma 3's chat template: the system text opens the first user turn, then the model turn starts.

    ``<bos><start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n``; special
    tokens are inserted by id so both tokenizer back ends produce the same sequence.
    """
    tok = encoder.tokenizer
    start, end = tok.token_id("<start_of_turn>"), tok.token_id("<end_of_turn>")
    if start is None or end is None:
        raise InputError(f"The tokenizer ({tok.source}) has no <start_of_turn>/<end_of_turn> tokens; prompt "
                         "enhancement needs Gemma 3's instruction-tuned (-it) tokenizer.")
    return (tok.bos_ids + [start] + tok.pieces(f"user\n{system}\n\n{user.strip()}") + [end] + tok.pieces("\n")
            + [start] + tok.pieces("model\n"))


def _pick(logits: torch.Tensor, generator: torch.Generator, temperature: float, top_k: int, top_p: float) -> int:
    """Greedy when ``temperature`` is 0, else temperature / top-k / top-p sampling from ``generator``."""
    logits = logits.float().cpu()
    if temperature <= 0:
        return int(logits.argmax())
    values, indices = torch.topk(logits / temperature, min(top_k, logits.numel()) if top_k > 0 else logits.numel())
    probs = values.softmax(-1)
    keep = probs.cumsum(-1) - probs < top_p  # smallest prefix whose mass reaches top_p (first token always kept)
    probs = probs * keep
    choice = torch.multinomial(probs / probs.sum(), 1, generator=generator)
    return int(indices[choice])


@torch.no_grad()
def generate(encoder: GemmaEncoder, ids: list[int], *, max_new_tokens: int, seed: int, temperature: float,
             top_k: int, top_p: float, stop_ids: set[int], progress: Progress | None = None) -> list[int]:
    """Continue ``ids``; returns the new ids (without the stop token)."""
    lm, device = encoder.lm, encoder.compute_device
    caches = [LayerCache() for _ in encoder.decoder_layers]
    generator = torch.Generator().manual_seed(seed)
    out: list[int] = []
    step = torch.tensor([ids], dtype=torch.int64)
    past = 0
    for index in range(max_new_tokens):
        check_interrupted(f"during prompt enhancement, after {index} token(s)")
        tokens = step.shape[1]
        h = lm.embed(step).to(device)
        positions = torch.arange(past, past + tokens, device=device)
        ropes = lm.ropes(positions[None], h.dtype)
        masks = lm.masks(positions, torch.ones(1, past + tokens, dtype=torch.bool, device=device))
        for layer, cache in zip(encoder.decoder_layers, caches):
            h = layer(h, ropes[layer.layer_type], masks[layer.layer_type], cache)
        norm = lm.model.norm
        logits = lm.logits(norm(h[:, -1:].to(norm.weight.device)))[0, -1]
        past += tokens
        token = _pick(logits, generator, temperature, top_k, top_p)
        if progress is not None:
            progress(index + 1, max_new_tokens)
        if token in stop_ids:
            break
        out.append(token)
        step = torch.tensor([[token]], dtype=torch.int64)
    return out


def enhance_prompt(encoder: GemmaEncoder, prompt: str, *, mode: str = "t2v", seed: int = 42,
                   max_new_tokens: int = 512, system: str | None = None, temperature: float = 0.7,
                   top_k: int = 64, top_p: float = 0.95, progress: Progress | None = None) -> str:
    """Gemma's expanded version of ``prompt`` (deterministic for a given ``seed``)."""
    family = encoder.config.family
    if family != "Gemma 3":
        raise InputError(f"Prompt enhancement runs on Gemma 3 (its chat template and system prompts); the loaded "
                         f"text encoder {encoder.name} is {family}, which LTX-2.5 uses for encoding only (the "
                         "reference enhances with a separate Gemma 4 instruct model). Enhance with a Gemma 3 12B "
                         "text encoder, or write the detailed prompt yourself.")
    ids = chat_ids(encoder, system if system is not None else system_prompt(mode), user_turn(prompt, mode))
    tok = encoder.tokenizer
    stop = set(tok.eos_ids) | {tok.token_id("<end_of_turn>")}
    new = generate(encoder, ids, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature, top_k=top_k,
                   top_p=top_p, stop_ids=stop, progress=progress)
    text = tok.decode(new).strip()
    log.info("Enhanced prompt (%d tokens, seed %d): %s", len(new), seed, text)
    return text
