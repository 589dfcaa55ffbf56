"""quantized: what a quantized DiT block costs to hold, stream, load and dequantize, per storage format.

One transformer block at the real LTX-2 19B widths (video 4096, audio 2048, FFN x4; ~0.4 G weights)
with random weights, written once into --dir as a DiT-only file per format: bf16 safetensors, fp8
safetensors (``weight_scale`` per block Linear, as the released ``-fp8`` files), and GGUF Q8_0 / Q4_K
(block Linears quantized, the rest BF16; random valid blocks: only sizes and timings matter here).
Every case runs in a fresh interpreter:

* bytes / block: what block streaming copies per block (``memory.precheck.module_weights``);
* load: ``LTX2Checkpoint`` + ``load_transformer`` (memory-mapped, weights as stored);
* peak RSS: after the load and one dequantization of every block Linear;
* CPU dequant / block: dequantizing every quantized Linear of the block to bf16 once (best of 3),
  wall and CPU (user+sys) time; bf16 has nothing to dequantize;
* with CUDA, GPU rows: the same dequantization on the GPU, and one forward of the block at 768x512x25
  (1536 video + 26 audio tokens) resident on the GPU.

    python benchmarks/quantized.py [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _util
import numpy as np
import torch

from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import QuantLinear, quantize_weight
from ltx2_nodes.loading.safetensors_file import write_safetensors
from ltx2_nodes.memory.precheck import module_weights

FORMATS = ("bf16", "fp8", "Q8_0", "Q4_K")
BLOCK_LINEAR = ".weight"


def _is_block_linear(key: str, shape: tuple[int, ...]) -> bool:
    return "transformer_blocks." in key and key.endswith(BLOCK_LINEAR) and len(shape) == 2 and shape[1] % 256 == 0


def write_file(fmt: str, folder: Path) -> Path:
    entries, config = _util.synthetic_dit_entries(1)
    meta = {"config": json.dumps({"transformer": config})}
    if fmt == "bf16":
        return _once(folder / "ltx2_1block_bf16.safetensors", lambda p: write_safetensors(p, entries, meta))
    if fmt == "fp8":
        out = []
        for key, shape, dtype, make in entries:
            if _is_block_linear(key, shape):
                pair = {}
                out.append((key, shape, torch.float8_e4m3fn, lambda make=make, pair=pair: pair.setdefault(
                    "q", quantize_weight(make()))[0]))
                out.append((key + "_scale", (), torch.float32, lambda pair=pair: pair.pop("q")[1]))
            else:
                out.append((key, shape, dtype, make))
        return _once(folder / "ltx2_1block_fp8.safetensors", lambda p: write_safetensors(p, out, meta))
    return _once(folder / f"ltx2_1block_{fmt}.gguf", lambda p: _write_gguf(p, fmt, entries, meta))


def _once(path: Path, write) -> Path:
    if not path.exists():
        write(path)
    return path


def _write_gguf(path: Path, fmt: str, entries, meta: dict) -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    qtype = GGMLQuantizationType[fmt]
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(0)
    writer = GGUFWriter(str(path), "ltxv")
    writer.add_string("config", meta["config"])
    for key, shape, _, make in entries:
        if _is_block_linear(key, shape):
            raw = rng.integers(0, 256, size=(shape[0] * shape[1] // block, size), dtype=np.uint8)
            for at in ((0, 2) if fmt == "Q4_K" else (0,)):  # finite float16 scales
                raw[:, at:at + 2] = rng.uniform(0, 1e-3, (len(raw), 1)).astype(np.float16).view(np.uint8)
            writer.add_tensor(key, raw.reshape(shape[0], -1), raw_dtype=qtype)
        else:
            values = make().contiguous()
            writer.add_tensor(key, values.view(torch.uint8).numpy().reshape(*shape[:-1], -1) if values.dim()
                              else values.float().numpy(), raw_dtype=GGMLQuantizationType.BF16 if values.dim()
                              else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _dequant_seconds(layers, device: str) -> tuple[float, float]:
    best_wall = best_cpu = float("inf")
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        for layer in layers:
            layer.dequantized_weight(torch.bfloat16)
        if device == "cuda":
            torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def run_case(case: dict) -> dict:
    torch.set_num_threads(case.get("threads") or torch.get_num_threads())
    start = time.perf_counter()
    model = load_transformer(LTX2Checkpoint(case["path"]))
    load = time.perf_counter() - start
    block = model.transformer_blocks[0]
    layers = [m for m in block.modules() if isinstance(m, QuantLinear)]
    with torch.no_grad():
        wall, cpu = _dequant_seconds(layers, "cpu") if layers else (0.0, 0.0)
    out = {"bytes": module_weights("dit", model, model.transformer_blocks).block_bytes[0], "load": load,
           "peak": _util.peak_rss_bytes(), "dequant_wall": wall, "dequant_cpu": cpu, "layers": len(layers)}
    if torch.cuda.is_available():
        out.update(_gpu(model, layers))
    return out


def _gpu(model, layers, device: str = "cuda") -> dict:
    """Dequantization of the block's quantized Linears on ``device`` and one resident block forward at
    768x512x25 (the inputs of ``dit_forward.py``, in bf16)."""
    from dataclasses import fields, replace

    from dit_forward import inputs

    def move(m):
        return replace(m, **{f.name: getattr(m, f.name).to(device, torch.bfloat16 if f.name in ("latent", "context")
                                                            else None)
                             for f in fields(m) if isinstance(getattr(m, f.name), torch.Tensor)})

    model = model.to(device)
    video, audio = (move(m) for m in inputs(model.config, per_token=False))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        wall, _ = _dequant_seconds(layers, device) if layers else (0.0, 0.0)
        model(video, audio)
        sync()
        start = time.perf_counter()
        model(video, audio)
        sync()
    return {"gpu_dequant": wall, "gpu_forward": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp")
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    folder = Path(args.dir)
    rows, bf16 = [], None
    for fmt in FORMATS:
        path = write_file(fmt, folder)
        r = _util.run_isolated(__file__, {"path": str(path)})
        bf16 = bf16 or r["bytes"]
        row = [fmt, f"{r['bytes'] / 2**20:.0f} MiB", f"{r['bytes'] / bf16:.2f}", f"{r['load']:.2f} s",
               _util.gib(r["peak"]), f"{r['dequant_wall'] * 1e3:.0f} ms", f"{r['dequant_cpu'] * 1e3:.0f} ms"]
        if "gpu_dequant" in r:
            row += [f"{r['gpu_dequant'] * 1e3:.2f} ms", f"{r['gpu_forward'] * 1e3:.1f} ms"]
        rows.append(row)
    print(f"quantized: one DiT block at the 19B widths, files in {folder}")
    print(f"machine: {_util.machine()}\n")
    headers = ["format", "bytes / block", "vs bf16", "load", "peak RSS", "CPU dequant / block (wall)",
               "(CPU time)"]
    if len(rows[0]) > len(headers):
        headers += ["GPU dequant / block", "GPU block forward (resident)"]
    print(_util.table(headers, rows))


if __name__ == "__main__":
    main()
