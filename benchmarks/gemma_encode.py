"""gemma_encode: seconds per prompt and memory of Gemma encode on a 4-layer slice at Gemma 3 12B widths (CPU).

Writes (once, into --dir, default /tmp) a ComfyUI-style single file: the real embedding table
(262208 x 3840), 4 decoder layers with 12B's widths (hidden 3840, 16 heads / 8 KV heads of 256,
MLP 15360), the final norm, bf16, and a tiny SentencePiece tokenizer embedded as ``spiece_model``.
Each case runs in a fresh interpreter (clean peak RSS):

* ``valid columns`` -- the default: columns that are padding for every prompt are skipped;
* ``full 1024 columns`` -- what the reference computes (left padding to 1024, every column run);
* ``layers just in time`` -- what the per-layer loop allows a streaming engine to do: layer weights
  start absent (meta), a forward pre-hook copies the layer out of the memory-mapped file (as a
  copy to the GPU would), a post-hook drops it and releases the mapped pages. Resident layer
  weights are accounted at every hook.

    python benchmarks/gemma_encode.py [--dir /tmp] [--words 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _util
import torch

from ltx2_nodes.loading.safetensors_file import SafetensorsFile, write_safetensors
from ltx2_nodes.model.gemma3 import GemmaConfig, GemmaLanguageModel
from ltx2_nodes.text.gemma import load_gemma_encoder

sys.path.insert(0, str(_util.REPO / "tests"))
from tiny_gemma import WORDS, spm_bytes  # (a tiny tokenizer; token ids are what matter here)

NAME = "gemma3_12b_widths_4layers_bf16.safetensors"
LAYERS = 4


def write_slice(path: Path) -> Path:
    if path.exists():
        return path
    cfg = GemmaConfig(num_hidden_layers=LAYERS, layer_types=GemmaConfig().layer_types[:LAYERS])
    with torch.device("meta"):
        model = GemmaLanguageModel(cfg)
    entries = []
    for i, (key, t) in enumerate(model.state_dict().items()):
        shape = tuple(t.shape)
        std = 0.1 if "norm" in key else 0.02
        entries.append((key, shape, torch.bfloat16, lambda shape=shape, i=i, std=std: torch.randn(
            shape, generator=torch.Generator().manual_seed(i)).mul_(std).to(torch.bfloat16)))
    spm = spm_bytes()
    entries.append(("spiece_model", (len(spm),), torch.uint8,
                    lambda: torch.frombuffer(bytearray(spm), dtype=torch.uint8)))
    return write_safetensors(path, entries)


def _layer_bytes(layers) -> int:
    return sum(p.numel() * p.element_size() for p in layers.parameters() if not p.is_meta)


def stream_layers_just_in_time(encoder, path: Path) -> dict:
    """Layers start on meta; hooks copy each one in from the file and drop it (with its pages) afterwards."""
    file = SafetensorsFile(path)
    peak = {"resident": 0}
    for index, layer in enumerate(encoder.decoder_layers):
        prefix = f"model.layers.{index}."
        views = {k[len(prefix):]: file.tensor(k) for k in file.keys() if k.startswith(prefix)}
        layer.to("meta")

        def bring_in(module, args, views=views):
            module.load_state_dict({k: v.clone() for k, v in views.items()}, assign=True)
            peak["resident"] = max(peak["resident"], _layer_bytes(encoder.decoder_layers))

        def evict(module, args, output, views=views):
            module.to("meta")
            for v in views.values():
                file.release_pages(v)

        layer.register_forward_pre_hook(bring_in)
        layer.register_forward_hook(evict)
    return peak


def run_case(case: dict) -> dict:
    torch.set_num_threads(case["threads"])
    path = Path(case["path"])
    baseline = _util.current_rss_bytes()
    encoder = load_gemma_encoder(path)
    slice_bytes = _layer_bytes(encoder.decoder_layers)
    peak = stream_layers_just_in_time(encoder, path) if case["how"] == "stream" else None
    prompt = " ".join(WORDS[i % len(WORDS)] for i in range(case["words"]))
    tokens = encoder.tokenize([prompt])
    skip = case["how"] != "full"
    encoder.hidden_states(tokens.ids, tokens.mask, skip_padding=skip)  # warm-up (first-call allocations)
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        encoder.hidden_states(tokens.ids, tokens.mask, skip_padding=skip)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "tokens": int(tokens.mask.sum()), "columns": tokens.ids.shape[1] if not skip
            else int(tokens.mask.sum()), "peak": _util.peak_rss_bytes(), "baseline": baseline,
            "slice": slice_bytes, "resident": peak["resident"] if peak else slice_bytes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    path = write_slice(Path(args.dir) / NAME)
    cases = [
        ("valid columns (default)", {"how": "resident", "repeats": 3}),
        ("full 1024 columns (reference)", {"how": "full", "repeats": 1}),
        ("layers just in time (hooks)", {"how": "stream", "repeats": 3}),
    ]
    rows = []
    for name, case in cases:
        r = _util.run_isolated(__file__, {**case, "path": str(path), "words": args.words, "threads": args.threads})
        rows.append([name, r["tokens"], r["columns"], f"{r['seconds']:.2f}", f"{r['seconds'] / LAYERS:.3f}",
                     _util.gib(r["peak"]), _util.gib(r["peak"] - r["baseline"]), _util.gib(r["resident"]),
                     _util.gib(r["slice"])])
    print(f"gemma_encode: {path.name}, {_util.gib(path.stat().st_size)} on disk ({LAYERS} layers at Gemma 3 12B "
          "widths + full embedding table, bf16); one prompt per encode")
    print(f"machine: {_util.machine()}\n")
    print(_util.table(["case", "tokens", "columns run", "s / prompt", "s / layer", "peak RSS", "above baseline",
                       "peak resident layer weights", "slice layer weights"], rows))


if __name__ == "__main__":
    main()
