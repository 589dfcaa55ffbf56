"""Gemma text encoding (Gemma 3, or Gemma 4 unified for LTX-2.5): tokenizer, encoder, prompt cache, enhancement.

Importing this package does not import transformers; only HF tokenizers (a folder or a packed file) need it.
"""

from .cache import SESSION_CACHE, PromptCache
from .enhance import enhance_prompt
from .gemma import GemmaEncoder, GemmaFeatures, load_gemma_encoder

__all__ = ["SESSION_CACHE", "PromptCache", "enhance_prompt", "GemmaEncoder", "GemmaFeatures", "load_gemma_encoder"]
