"""gemma_encode: seconds per prompt and memory of Gemma encode on a 4-layer slice at 12B widths (CPU).

Writes (once, into --dir, default /tmp) a bf16 file with the real-size embedding table, 4 decoder
layers at 12B widths and the final norm:

* ``--model gemma3`` (default): a ComfyUI-style single file at Gemma 3 12B's widths (table 262208 x 3840,
  hidden 3840, 16 heads / 8 KV heads of 256, MLP 15360) with a tiny SentencePiece tokenizer embedded as
  ``spiece_model``;
* ``--model gemma4``: LTX-2.5's packed text-encoder file (``gemma_config`` metadata, ``tokenizer_json``) of a
  Gemma 4 unified slice: three sliding-window layers and one full-attention layer (heads of 512, proportional
  RoPE), table 262144 x 3840. The released 12B text config is not in the reference code; the widths assumed
  are Gemma 3 12B's (transformers' Gemma 4 unified vision embedder defaults to 3840 = "the text hidden size")
  with transformers' Gemma 4 ``global_head_dim`` (512). The tokenizer is a word-level toy (one token a word).

Each case runs in a fresh interpreter (clean peak RSS); besides wall-clock seconds it reports the process's
CPU seconds (all threads), which stay comparable when other jobs share the cores:

* ``valid columns`` -- the default: columns that are padding for every prompt are skipped;
* ``full 1024 columns`` -- what the reference computes (left padding to 1024, every column run);
* ``layers just in time`` -- what the per-layer loop allows a streaming engine to do: layer weights
  start absent (meta), a forward pre-hook copies the layer out of the memory-mapped file (as a
  copy to the GPU would), a post-hook drops it and releases the mapped pages. Resident layer
  weights are accounted at every hook.

    python benchmarks/gemma_encode.py [--model gemma3|gemma4] [--dir /tmp] [--words 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _util
import torch

from ltx2_nodes.demo.tiny_gemma import GEMMA4_TOKENIZER_CONFIG, WORDS, spm_bytes, wordlevel_tokenizer_json
from ltx2_nodes.loading.safetensors_file import SafetensorsFile, write_safetensors
from ltx2_nodes.model.gemma3 import FULL, SLIDING, GemmaConfig, GemmaLanguageModel
from ltx2_nodes.model.gemma4 import Gemma4Config
from ltx2_nodes.text.gemma import load_gemma_encoder

NAMES = {"gemma3": "gemma3_12b_widths_4layers_bf16.safetensors",
         "gemma4": "gemma4_assumed_12b_widths_4layers_bf16.safetensors"}
LAYERS = 4
GEMMA4_SLICE = {"model_type": "gemma4_unified", "gemma_version": "benchmark", "text_config": {
    "model_type": "gemma4_unified_text", "vocab_size": 262144, "hidden_size": 3840, "intermediate_size": 15360,
    "num_hidden_layers": LAYERS, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
    "global_head_dim": 512, "layer_types": [SLIDING] * (LAYERS - 1) + [FULL]}}


def _bytes_entry(name: str, data: bytes):
    return (name, (len(data),), torch.uint8, lambda: torch.frombuffer(bytearray(data), dtype=torch.uint8))


def write_slice(path: Path, model: str) -> Path:
    if path.exists():
        return path
    if model == "gemma4":
        cfg = Gemma4Config.from_hf(GEMMA4_SLICE)
        extras = [_bytes_entry("tokenizer_json", wordlevel_tokenizer_json()),
                  _bytes_entry("hf_asset__tokenizer_config.json", json.dumps(GEMMA4_TOKENIZER_CONFIG).encode())]
        metadata = {"format": "pt", "gemma_config": json.dumps(GEMMA4_SLICE)}
    else:
        cfg = GemmaConfig(num_hidden_layers=LAYERS, layer_types=GemmaConfig().layer_types[:LAYERS])
        extras, metadata = [_bytes_entry("spiece_model", spm_bytes())], None
    with torch.device("meta"):
        module = GemmaLanguageModel(cfg)
    entries = []
    for i, (key, t) in enumerate(module.state_dict().items()):
        shape, scale = tuple(t.shape), "norm" in key or key.endswith("layer_scalar")
        # Gemma 3 norms are zero-centred (x * (1 + w)); Gemma 4 stores them as is (x * w)
        offset = 1.0 - cfg.norm_weight_offset if scale else 0.0
        std = 0.1 if scale else 0.02
        entries.append((key, shape, torch.bfloat16, lambda shape=shape, i=i, std=std, offset=offset: torch.randn(
            shape, generator=torch.Generator().manual_seed(i)).mul_(std).add_(offset).to(torch.bfloat16)))
    return write_safetensors(path, entries + extras, metadata)


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
    times, cpu = [], []
    for _ in range(case["repeats"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        encoder.hidden_states(tokens.ids, tokens.mask, skip_padding=skip)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"seconds": min(times), "cpu_seconds": min(cpu), "tokens": int(tokens.mask.sum()),
            "columns": tokens.ids.shape[1] if not skip else int(tokens.mask.sum()), "peak": _util.peak_rss_bytes(),
            "baseline": baseline, "slice": slice_bytes, "resident": peak["resident"] if peak else slice_bytes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(NAMES), default="gemma3")
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    path = write_slice(Path(args.dir) / NAMES[args.model], args.model)
    cases = [
        ("valid columns (default)", {"how": "resident", "repeats": 3}),
        ("full 1024 columns (reference)", {"how": "full", "repeats": 1}),
        ("layers just in time (hooks)", {"how": "stream", "repeats": 3}),
    ]
    rows = []
    for name, case in cases:
        r = _util.run_isolated(__file__, {**case, "path": str(path), "words": args.words, "threads": args.threads})
        rows.append([name, r["tokens"], r["columns"], f"{r['seconds']:.2f}", f"{r['seconds'] / LAYERS:.3f}",
                     f"{r['cpu_seconds']:.2f}",
                     _util.gib(r["peak"]), _util.gib(r["peak"] - r["baseline"]), _util.gib(r["resident"]),
                     _util.gib(r["slice"])])
    print(f"gemma_encode: {path.name}, {_util.gib(path.stat().st_size)} on disk ({LAYERS} layers at 12B widths + "
          "full embedding table, bf16); one prompt per encode")
    print(f"machine: {_util.machine()}\n")
    print(_util.table(["case", "tokens", "columns run", "s / prompt", "s / layer", "CPU s / prompt", "peak RSS",
                       "above baseline",
                       "peak resident layer weights", "slice layer weights"], rows))


if __name__ == "__main__":
    main()
