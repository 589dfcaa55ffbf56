"""checkpoint_load: peak RSS while loading a synthetic multi-GB checkpoint in the released layout.

Writes (once, into --dir, default /tmp) an LTX-2 single-file-layout checkpoint with the real 19B
widths: a 2-block transformer (keys ``model.diffusion_model.*``) plus the real-size Gemma feature
projection ``text_embedding_projection.aggregate_embed.weight`` [3840, 188160], all bf16, with
the ``config`` metadata. Every case runs in a fresh interpreter; RSS is reported both absolute and
above the interpreter's baseline after imports.

    python benchmarks/checkpoint_load.py [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _util
import torch

from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.safetensors_file import write_safetensors
from ltx2_nodes.model.transformer import LTX2Transformer, TransformerConfig

NAME = "ltx2_synthetic_2blocks_bf16.safetensors"


def write_checkpoint(path: Path) -> Path:
    if path.exists():
        return path
    entries, config = _util.synthetic_dit_entries(2)
    proj = (config["caption_channels"], config["caption_channels"] * 49)
    entries.append(("text_embedding_projection.aggregate_embed.weight", proj, torch.bfloat16,
                    lambda: torch.randn(proj, generator=torch.Generator().manual_seed(99)).mul_(0.02).bfloat16()))
    return write_safetensors(path, entries, {"config": json.dumps({"transformer": config})})


def run_case(case: dict) -> dict:
    path = Path(case["path"])
    baseline = _util.current_rss_bytes()
    start = time.perf_counter()
    if case["how"] == "naive":  # what a plain state-dict load does: whole file in RAM, then a module copy
        from safetensors.torch import load_file

        state = load_file(str(path))
        cfg = TransformerConfig(num_layers=2)
        model = LTX2Transformer(cfg).to(torch.bfloat16)
        model.load_state_dict({k[len("model.diffusion_model."):]: v for k, v in state.items()
                               if k.startswith("model.diffusion_model.")})
        del state
    else:
        ckpt = LTX2Checkpoint(path)
        model = load_transformer(ckpt, dtype=torch.float32 if case["how"] == "float32" else None)
    seconds = time.perf_counter() - start
    if case.get("touch"):  # read every weight once, as a forward or a copy to the GPU would
        with torch.no_grad():
            for p in model.parameters():
                p.float().sum()
    comp = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"seconds": seconds, "peak": _util.peak_rss_bytes(), "baseline": baseline, "component": comp}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp")
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    path = write_checkpoint(Path(args.dir) / NAME)
    ckpt = LTX2Checkpoint(path)
    cases = [
        ("ltx2_nodes, file dtype (mmap)", {"how": "mmap"}),
        ("ltx2_nodes, file dtype, every weight read", {"how": "mmap", "touch": True}),
        ("ltx2_nodes, upcast to float32", {"how": "float32"}),
        ("naive load_file + load_state_dict", {"how": "naive"}),
    ]
    rows = []
    for name, case in cases:
        r = _util.run_isolated(__file__, {**case, "path": str(path)})
        above = r["peak"] - r["baseline"]
        rows.append([name, f"{r['seconds']:.2f}", _util.gib(r["peak"]), _util.gib(above),
                     _util.gib(r["component"]), f"{above / r['component']:.2f}x"])
    print(f"checkpoint_load: {path.name}, {_util.gib(path.stat().st_size)} on disk; largest component "
          f"(transformer) {_util.gib(ckpt.component_bytes('transformer'))}, text projection "
          f"{_util.gib(ckpt.component_bytes('text_projection'))}; transformer loaded")
    print(f"machine: {_util.machine()}\n")
    print(_util.table(["load path", "seconds", "peak RSS", "above baseline", "loaded component",
                       "above baseline / component"], rows))


if __name__ == "__main__":
    main()
