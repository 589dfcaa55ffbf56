"""Gemma 3 text encoding: tokenizer, per-layer encoder, prompt cache, prompt enhancement.

Importing this package does not import transformers; only an HF tokenizer folder needs it.
"""
