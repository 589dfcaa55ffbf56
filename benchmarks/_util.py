"""Helpers shared by the benchmark scripts: machine description, peak RSS, subprocess isolation, tables, and
interleaved paired timing (wall + CPU seconds, paired ratios, FLOPs from shapes, the machine's matmul rate)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {gpu}")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process image so far.

    Reads VmHWM: unlike ``getrusage().ru_maxrss``, Linux does not carry it over from the parent
    across fork+exec, so a subprocess reports its own peak even if its parent was large.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_isolated(script: str, case: dict) -> dict:
    """Run ``script --case JSON`` in a fresh interpreter (clean peak RSS) and parse its JSON result line."""
    proc = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_or_answer_case(parser: argparse.ArgumentParser, run):
    """The script's arguments, plus the hidden ``--case JSON`` that ``run_isolated`` passes: given one, print
    ``run(case)`` as the JSON result line and return None (the script then exits)."""
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run(json.loads(args.case))))
        return None
    return args


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def synthetic_dit_entries(num_layers: int, seed_base: int = 0) -> list:
    """``write_safetensors`` entries for a DiT at the real 19B widths with ``num_layers`` blocks (bf16,
    released key names), plus its ``config.transformer`` dict. Tensors are generated one at a time."""
    from dataclasses import asdict

    import torch

    from ltx2_nodes.model.transformer import LTX2Transformer, TransformerConfig

    cfg = TransformerConfig(num_layers=num_layers)
    with torch.device("meta"):
        model = LTX2Transformer(cfg)
    entries = []
    for i, (key, t) in enumerate(model.state_dict().items()):
        shape = tuple(t.shape)
        entries.append((f"model.diffusion_model.{key}", shape, torch.bfloat16,
                        lambda shape=shape, i=i: torch.randn(shape, generator=torch.Generator().manual_seed(
                            seed_base + i)).mul_(0.02).to(torch.bfloat16)))
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    return entries, config


# -- interleaved timing ------------------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return "/".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> tuple[float, float]:
    """Wall and CPU (user + sys of every thread of this process) seconds of one ``fn()`` call."""
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


@dataclass
class Timings:
    """Per-round wall / CPU seconds of one variant."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    def seconds(self, clock: str = "wall") -> list[float]:
        """Per-round seconds on ``clock``: ``"wall"``, or ``"cpu"`` (this process's CPU time: with one thread on
        a shared machine it counts the work, not the time other processes held the cores)."""
        return self.wall if clock == "wall" else self.cpu

    def paired_ratio(self, other: "Timings", clock: str = "wall") -> float:
        """Median over rounds of ``other / self`` seconds on ``clock``: how many times faster this variant ran
        than ``other`` in the same round (load changes between rounds cancel out)."""
        return statistics.median(o / s for s, o in zip(self.seconds(clock), other.seconds(clock)))


def interleaved(variants: dict[str, object], rounds: int, warmup: int = 1, log=print) -> dict[str, Timings]:
    """Time every ``variants[name]()`` once per round, rounds interleaved (A B C A B C ...) in this process,
    after ``warmup`` untimed calls of each (compilation, allocator, caches)."""
    for name, fn in variants.items():
        for _ in range(warmup):
            start = time.perf_counter()
            fn()
            log(f"  warm-up {name}: {time.perf_counter() - start:.1f} s")
    results = {name: Timings() for name in variants}
    for r in range(rounds):
        for name, fn in variants.items():
            wall, cpu = timed(fn)
            results[name].wall.append(wall)
            results[name].cpu.append(cpu)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {t.wall[-1]:.2f}s" for n, t in results.items())
            + f" (load {load_average()})")
    return results


def flops_of(fn) -> int:
    """Floating-point operations of one ``fn()`` call, counted from the shapes of its matmuls and attentions
    (``torch.utils.flop_counter``; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_probe(dtype, m: int = 1536, k: int = 4096, n: int = 4096, device: str = "cpu"):
    """A ``[m, k] @ [k, n]`` matmul (the video stream's q/k/v/out projection at 768x512x25) and its FLOPs: the
    machine's own matmul rate, timed in the same rounds as the forwards."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device, dtype)
    b = torch.randn(k, n, generator=gen).to(device, dtype)
    return (lambda: torch.mm(a, b)), 2 * m * k * n


def random_dit(cfg, device: str = "cpu", dtype=None):
    """An ``LTX2Transformer`` of ``cfg`` with N(0, 0.02) weights drawn on ``device`` from seed 0 (no checkpoint
    needed: the benchmarks time shapes, not values), in ``dtype`` (default float32), eval mode, no grad."""
    import torch

    from ltx2_nodes.model.transformer import LTX2Transformer

    with torch.device("meta"):
        model = LTX2Transformer(cfg)
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=gen)
    return model.to(dtype or torch.float32).eval().requires_grad_(False)
