"""One loader per model component, all going through ``build_module`` (meta build + assign).

Each takes an opened ``LTX2Checkpoint`` (or a file path for separately shipped models), a target
``dtype`` (None keeps the file's dtype) and ``device``.
"""

from __future__ import annotations

import torch

from ..model.transformer import LTX2Transformer, TransformerConfig
from .checkpoint import LTX2Checkpoint, build_module


def load_transformer(ckpt: LTX2Checkpoint, dtype: torch.dtype | None = None, device=None, fp8: str = "keep"):
    """The DiT of ``ckpt``; ``dtype`` None keeps the file dtype (bf16 for the release)."""
    cfg = TransformerConfig.from_metadata(ckpt.component_config("transformer"))
    return build_module(lambda: LTX2Transformer(cfg), ckpt.state_dict("transformer"), what="transformer",
                        source=ckpt.path.name, dtype=dtype, device=device, fp8=fp8, release=ckpt.release_pages)
