"""Regional ``torch.compile`` of the DiT blocks: one compiled block body shared by every block.

The official HEAD (``ltx_core.model.transformer.compiling``) wraps each of the 48 blocks in its own
``torch.compile`` and relies on Dynamo reusing the shared ``forward`` code; perturbation masks are
optional tensors next to Python flags, so an STG pass gets its own graph. Here the block's compute
is ``AVTransformerBlock.run``, which reads no block index (the perturbation masks arrive as
``BlockKeeps``, decided eagerly by ``AVTransformerBlock.forward``) and mutates nothing; it is
compiled once and installed on every block. Consequences:

* Everything around ``run`` stays eager: forward pre/post hooks on the blocks (block streaming)
  keep re-pointing weights between calls, and the weights are graph inputs, not constants, so the
  same graph runs resident and streamed blocks.
* Hooks on the Linears inside the block (LoRA), fp8 dequantisation and per-token AdaLN gathers are
  traced into the graph.
* Graphs are specialised on the masks' kind (none / all samples / some samples), on whether a
  stream is present, and on shapes; Dynamo makes a dimension dynamic when a second size shows up
  (a second sampling stage), so a run compiles a handful of graphs once and then replays them at
  every step. ``recompile_limit`` bounds that count per call site.

Pure torch; the switch has one owner above the model (``handles.DiTHandle.compiled``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .transformer import AVTransformerBlock


@dataclass(frozen=True)
class CompileOptions:
    """``torch.compile`` settings for the block body. ``mode`` e.g. ``"max-autotune-no-cudagraphs"`` on GPUs;
    ``dynamic=None`` lets Dynamo make a dimension dynamic once it changes."""

    backend: str = "inductor"
    mode: str | None = None
    dynamic: bool | None = None
    recompile_limit: int = 64


@functools.lru_cache(maxsize=8)
def compiled_block_run(options: CompileOptions = CompileOptions()):
    """The compiled ``AVTransformerBlock.run`` for ``options`` (one per options value, reused by every block)."""
    return torch.compile(AVTransformerBlock.run, backend=options.backend, mode=options.mode, dynamic=options.dynamic)


@contextlib.contextmanager
def compiled_blocks(blocks: nn.ModuleList, options: CompileOptions = CompileOptions()) -> Iterator[None]:
    """Run ``blocks`` (a DiT's ``transformer_blocks``) through the compiled block body inside the ``with``.

    The first call of each block configuration compiles (seconds on a GPU, about a minute for a
    CPU C++ build); later calls reuse it. The previous setting of each block is restored on exit.
    """
    run = compiled_block_run(options)
    previous = [block.compiled_run for block in blocks]
    try:
        for block in blocks:
            block.compiled_run = run
        with torch._dynamo.config.patch(recompile_limit=options.recompile_limit):
            yield
    finally:
        for block, old in zip(blocks, previous):
            block.compiled_run = old
