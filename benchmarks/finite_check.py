#!/usr/bin/env python3
"""Cost of the NaN/Inf checks (``ltx2_nodes/finite.py``): per tensor, and their share of an end-to-end run.

    python benchmarks/finite_check.py [--threads N] [--size WxHxF]

1. ``check_finite`` on tensors the size of what the stages hand over at 1536x1024x121 (the DiT's latent, one
   decoded chunk, the waveform), on the CPU and, when present, on CUDA (one sync each).
2. ``generate`` on the tiny demo models (two-stage, default 256x160x49): total wall time, the time spent inside
   every stage's check and the MP4 writer's, and the number of checks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _util import machine, table

SHAPES = {"DiT video latent [1,128,16,32,48]": (1, 128, 16, 32, 48), "audio latent [1,8,126,16]": (1, 8, 126, 16),
          "decoded chunk [1,3,64,1024,1536]": (1, 3, 64, 1024, 1536), "waveform [1,2,121000]": (1, 2, 121000)}


def per_tensor(devices: list[str], repeats: int = 5) -> list[list]:
    import torch

    from ltx2_nodes.finite import check_finite

    rows = []
    for name, shape in SHAPES.items():
        row = [name]
        for device in devices:
            x = torch.randn(shape, device=device)
            check_finite([x], stage="bench", model="-")  # warm up
            start = time.perf_counter()
            for _ in range(repeats):
                check_finite([x], stage="bench", model="-")
            row.append(f"{(time.perf_counter() - start) / repeats * 1e3:.2f} ms")
        rows.append(row)
    return rows


def end_to_end(size: tuple[int, int, int]) -> list:
    import ltx2_nodes.finite as finite
    from ltx2_nodes import stages
    from ltx2_nodes.demo.models import write_demo_models
    from ltx2_nodes.generate import GenerateRequest, generate
    from ltx2_nodes.handles import load_gemma, load_ltx2, load_upscaler
    from ltx2_nodes.media import mux

    spent = {"seconds": 0.0, "calls": 0}

    def timed(function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - start
                spent["calls"] += 1
        return wrapper

    stages.check_finite = timed(finite.check_finite)
    mux.all_finite = timed(finite.all_finite)
    with tempfile.TemporaryDirectory() as folder:
        models = write_demo_models(Path(folder) / "models")
        width, height, frames = size
        request = GenerateRequest("a fox in the snow", width=width, height=height, frames=frames)
        args = (load_ltx2(models.checkpoint), load_gemma(models.gemma), request)
        generate(*args, Path(folder) / "warm.mp4", upscaler=load_upscaler(models.upscaler))  # caches, warm-up
        spent.update(seconds=0.0, calls=0)
        start = time.perf_counter()
        generate(*args, Path(folder) / "clip.mp4", upscaler=load_upscaler(models.upscaler))
        total = time.perf_counter() - start
    return [f"{width}x{height}x{frames}", f"{total:.2f} s", f"{spent['seconds'] * 1e3:.1f} ms", spent["calls"],
            f"{spent['seconds'] / total * 100:.2f} %"]


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="512x320x49", help="final WxHxF of the two-stage demo run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(machine())
    print(table(["tensor"] + [f"check_finite on {d}" for d in devices], per_tensor(devices)))
    size = tuple(int(v) for v in args.size.split("x"))
    print(table(["demo generate", "total", "in checks", "checks", "share"], [end_to_end(size)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
