"""Gemma 3 text encoding: tokenizer, per-layer encoder, prompt cache, prompt enhancement.

Importing this package does not import transformers; only an HF tokenizer folder needs it.
"""

from .cache import SESSION_CACHE, PromptCache
from .enhance import enhance_prompt
from .gemma import GemmaEncoder, GemmaFeatures, load_gemma_encoder

__all__ = ["SESSION_CACHE", "PromptCache", "enhance_prompt", "GemmaEncoder", "GemmaFeatures", "load_gemma_encoder"]
