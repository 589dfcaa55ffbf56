"""distributed: one step of each multi-process piece on 1 vs N processes, with its communication per step.

Pieces (issue 18): ``sp`` = the sequence-parallel DiT forward of stage 1 (``model.sequence_parallel``, the
whole grid, video tokens split over the ranks, heads exchanged with ``all_to_all``); ``tdp`` = the tiled data
parallel stage-2 forward (``model.dit_tiling.TiledDiT(world=)``, 2x2 refine tiles round robin, one
``all_reduce``); ``decode`` = the distributed conv VAE decode (``model.vae_tiling.decode_chunks(world=)``, tiles
round robin, sent to rank 0). One process runs the same code with a world of one (the single-process path).

Each case runs under ``torchrun --standalone --nproc-per-node N`` through the pack's own launch
(``ltx2_nodes.distributed.init_from_env``: gloo on the CPU, NCCL on CUDA), every process one thread on the
CPU. Measured per step (after one warm-up): wall seconds (the slowest rank's, median of ``--steps``), and every
collective the step calls, counted from the shapes of the tensors handed to ``torch.distributed`` (bytes of
the buffer each rank passes: all_reduce buffer, all_to_all send buffer, all_gather input, send/recv tensor)
with the seconds spent inside the blocking calls on rank 0 (on the CPU this includes waiting for the slowest
rank: it is an upper bound of the communication time).

Sizes: ``tiny`` (2 blocks, video 4 heads x 32, 2x8x12 latent grid) and ``mid`` (4 blocks, video 16 x 64 = 1024
wide, 2x16x24 grid), random weights, float32, 32 text tokens, 1 s of audio. The ``modeled`` table applies the
same byte counts (formulas below, checked against the counted CPU bytes) to the released 19B shapes and
assumed GPU rates (sources in benchmarks/RESULTS.md).

``--pool``: the sampler node's ``gpus`` option (``ltx2_nodes.worker_pool``) on the demo model, 4 euler steps of
a 256x192x25 latent: ``gpus`` 1 (in this process) against N worker processes, the first run (workers started,
model opened in each) and warm runs (median of ``--steps``; the workers kept the model): what the pool costs
around the same sampling.

    python benchmarks/distributed.py [--sizes tiny,mid] [--modes sp,tdp,decode] [--ranks 1,2] [--steps 2]
    python benchmarks/distributed.py --device cuda --ranks 1,2      # measured GPU rows (needs 2 GPUs)
    python benchmarks/distributed.py --pool [--ranks 1,2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import _util  # puts the repo on sys.path
import torch
import torch.distributed as dist

from ltx2_nodes.model.vae_tiling import TilingConfig

SIZES = {"tiny": dict(layers=2, heads=4, head_dim=32, audio_heads=4, audio_head_dim=16, grid=(2, 8, 12)),
         "mid": dict(layers=4, heads=16, head_dim=64, audio_heads=8, audio_head_dim=32, grid=(2, 16, 24))}
TEXT, AUDIO_TOKENS = 32, 25
DECODE_LATENT = (1, 8, 3, 8, 8)  # demo conv VAE: 17 frames of 256x256
DECODE_TILING = TilingConfig(128, 64, None, 0)  # 3 x 3 spatial tiles
COUNTED = {"all_reduce": 0, "all_to_all_single": 1, "all_gather": 1, "isend": 0, "send": 0, "recv": 0, "irecv": 0}


# ------------------------------------------------------------------------------------------------
# Counting collectives (by shapes)


@contextmanager
def counting(stats: dict, sync):
    """Wrap ``torch.distributed``'s collectives: per kind, calls, bytes of the tensor argument at position
    ``COUNTED[kind]`` and seconds inside the call."""
    originals = {name: getattr(dist, name) for name in COUNTED}

    def wrap(name, fn):
        def counted(*args, **kw):
            tensor = args[COUNTED[name]]
            sync()
            start = time.perf_counter()
            out = fn(*args, **kw)
            sync()
            entry = stats.setdefault(name, [0, 0, 0.0])
            entry[0] += 1
            entry[1] += tensor.numel() * tensor.element_size()
            entry[2] += time.perf_counter() - start
            return out
        return counted

    for name, fn in originals.items():
        setattr(dist, name, wrap(name, fn))
    try:
        yield stats
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)


# ------------------------------------------------------------------------------------------------
# One rank (under torchrun)


def dit_config(size: dict):
    from ltx2_nodes.model.transformer import TransformerConfig

    return TransformerConfig(num_layers=size["layers"], num_attention_heads=size["heads"],
                             attention_head_dim=size["head_dim"], audio_num_attention_heads=size["audio_heads"],
                             audio_attention_head_dim=size["audio_head_dim"],
                             cross_attention_dim=size["heads"] * size["head_dim"],
                             audio_cross_attention_dim=size["audio_heads"] * size["audio_head_dim"],
                             caption_channels=96)


def dit_step(mode: str, size: dict, world, device: str):
    from ltx2_nodes.model.dit_tiling import RefineTiles, TiledDiT, plan_refine_tiles
    from ltx2_nodes.model.patchify import audio_positions, video_positions
    from ltx2_nodes.model.sequence_parallel import SequenceParallelDiT
    from ltx2_nodes.model.transformer import ModalityInput

    cfg = dit_config(size)
    model = _util.random_dit(cfg, device)
    gen = torch.Generator().manual_seed(1)
    f, h, w = grid = size["grid"]
    tokens, sigma = f * h * w, torch.full((1,), 0.7, device=device)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    video = ModalityInput(randn(1, tokens, cfg.in_channels), sigma, torch.full((1, tokens, 1), 0.7, device=device),
                          video_positions(1, f, h, w, 24.0, device=device), randn(1, TEXT, cfg.context_width("video")))
    audio = ModalityInput(randn(1, AUDIO_TOKENS, cfg.audio_in_channels), sigma, sigma,
                          audio_positions(1, AUDIO_TOKENS, device=device), randn(1, TEXT, cfg.context_width("audio")))
    if mode == "sp":
        wrapped = SequenceParallelDiT(model, group=world.group)
    else:
        wrapped = TiledDiT(model, grid, plan_refine_tiles(grid, RefineTiles(2, 2, overlap=2)), world=world)
    return lambda: wrapped(video, audio)


def decode_step(world, device: str):
    from ltx2_nodes.demo.models import demo_config
    from ltx2_nodes.model.vae_tiling import decode_chunks
    from ltx2_nodes.model.video_vae import VideoDecoder, VideoVAEConfig

    torch.manual_seed(0)
    decoder = VideoDecoder(VideoVAEConfig.from_metadata(demo_config()["vae"])).to(device).eval()
    for p in decoder.parameters():
        p.data.normal_(0, 0.02)
    latent = torch.randn(DECODE_LATENT, generator=torch.Generator().manual_seed(1)).to(device)
    return lambda: list(decode_chunks(decoder, latent, DECODE_TILING, world=world))


def run_rank(case: dict) -> None:
    from ltx2_nodes import distributed

    device = case["device"]
    world = distributed.init_from_env(device)
    if device == "cuda":
        device = f"cuda:{world.local_rank}"
    if device == "cpu":
        torch.set_num_threads(1)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        step = decode_step(world, device) if case["mode"] == "decode" else \
            dit_step(case["mode"], SIZES[case["size"]], world, device)
        step()  # warm-up
        walls, own, stats = [], 0.0, {}
        for _ in range(case["steps"]):
            if world.size > 1:
                dist.barrier()
            sync()
            start = time.perf_counter()
            with counting(stats, sync):
                step()
            sync()
            own += time.perf_counter() - start
            wall = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
            if world.size > 1:
                dist.all_reduce(wall, op=dist.ReduceOp.MAX)  # the slowest rank's
            walls.append(float(wall))
    if world.is_main:
        per_step = {k: [c // case["steps"], b // case["steps"], s / case["steps"]] for k, (c, b, s) in stats.items()}
        share = sum(s for *_, s in stats.values()) / own  # of rank 0's own step time, same steps
        print(json.dumps({"wall": statistics.median(walls), "collectives": per_step, "share": share}), flush=True)
    distributed.shutdown()


# ------------------------------------------------------------------------------------------------
# The parent: one torchrun per case


def launch(case: dict, ranks: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               str(Path(__file__).resolve()), "--case", json.dumps(case)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{case} on {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def describe(collectives: dict) -> tuple[str, float, int]:
    text = ", ".join(f"{kind} {calls}x {total / 1e6:.3g} MB" for kind, (calls, total, _) in sorted(collectives.items()))
    return text or "none", sum(s for *_, s in collectives.values()), sum(b for _, b, _ in collectives.values())


def measured_rows(args) -> list[list]:
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            if mode == "decode" and size != args.sizes[0]:
                continue  # the decode does not depend on the DiT size
            base = None
            for ranks in args.ranks:
                result = launch({"mode": mode, "size": size, "steps": args.steps, "device": args.device}, ranks)
                text, seconds, total = describe(result["collectives"])
                base = base or result["wall"]
                if mode == "decode":
                    formula = decode_bytes(DECODE_LATENT[2:], ranks, DECODE_TILING)[0] if ranks > 1 else 0
                else:
                    formula = sum(modeled_bytes(mode, dit_config(SIZES[size]), SIZES[size]["grid"], AUDIO_TOKENS,
                                                ranks, 4).values())
                rows.append([size if mode != "decode" else "demo VAE", mode, ranks, f"{result['wall']:.3f}",
                             f"{base / result['wall']:.2f}x", text, f"{formula / 1e6:.3g} MB", f"{seconds:.4f}",
                             f"{result['share']:.1%}"])
                print(f"  {rows[-1]}  (load {_util.load_average()})", file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------------------
# The GPU model: the same bytes at the released shapes, NCCL bus bandwidths and assumed compute rates


def modeled_bytes(mode: str, cfg, grid, audio_tokens: int, ranks: int, itemsize: int, batch: int = 1) -> dict:
    """Per collective kind, the bytes handed to ``torch.distributed`` per rank and step (the formulas behind the
    counted CPU columns): sp, per block, 4 all_to_all of the rank's q/k/v/out ``[B, T/N, D]`` and 2 of the video
    keys/values at the audio width, an all_gather of its audio heads, then the all_gather of the velocity; tdp,
    one all_reduce of the float32 (blended video, weights, audio velocity)."""
    tokens = math.prod(grid)
    if ranks == 1:
        return {}
    if mode == "sp":
        local = math.ceil(tokens / ranks)
        a2a = cfg.num_layers * (4 * local * cfg.inner_dim + 2 * local * cfg.audio_inner_dim)
        gather = cfg.num_layers * audio_tokens * cfg.audio_inner_dim // ranks + local * cfg.out_channels
        return {"all_to_all_single": batch * itemsize * a2a, "all_gather": batch * itemsize * gather}
    audio = batch * audio_tokens * cfg.audio_out_channels
    return {"all_reduce": 4 * (batch * tokens * cfg.out_channels + tokens + audio)}


def decode_bytes(latent_fhw, ranks: int, tiling=None) -> tuple[int, int]:
    """(bytes, tiles) of float32 pixels rank 0 receives in a distributed conv decode: the other ranks' tiles."""
    from ltx2_nodes.model.vae_tiling import plan_tiles

    tiles = [t for i, t in enumerate(plan_tiles(latent_fhw, tiling or TilingConfig.default())) if i % ranks]
    return sum(3 * 4 * math.prod(s.stop - s.start for s in t.pixels) for t in tiles), len(tiles)


# (name, compute FLOP/s, NCCL bus bandwidth B/s, latency s per collective): see RESULTS.md for the sources
GPUS = [("H100 SXM, NVLink", 600e12, 360e9, 10e-6), ("consumer, PCIe 4.0", 100e12, 20e9, 20e-6)]
# bytes on the wire per rank, per byte handed in (nccl-tests bus bandwidth convention)
WIRE = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_to_all_single": lambda n: (n - 1) / n,
        "all_gather": lambda n: n - 1}
REAL_CASES = [("sp", "stage 1, 960x544x121", (16, 17, 30)), ("tdp", "stage 2, 1920x1088x121, 2x2 tiles", (16, 34, 60)),
              ("decode", "decode 1920x1088x121, 512 px / 64 f tiles", (16, 34, 60))]


def modeled_rows() -> list[list]:
    from ltx2_nodes.memory.estimates import dit_block_flops
    from ltx2_nodes.model.dit_tiling import RefineTiles, plan_refine_tiles
    from ltx2_nodes.model.transformer import TransformerConfig

    cfg, audio_tokens, rows = TransformerConfig(), 126, []
    for mode, label, grid in REAL_CASES:
        for ranks in (2, 4):
            flops = None
            if mode == "decode":
                received, calls = decode_bytes(grid, ranks)
                kinds = {"recv": received}
                wire = kinds["recv"]  # all of it into rank 0's link
            else:
                kinds = modeled_bytes(mode, cfg, grid, audio_tokens, ranks, 2 if mode == "sp" else 4)
                wire = sum(WIRE[k](ranks) * b for k, b in kinds.items())
            if mode == "sp":
                flops = dit_block_flops(cfg, math.prod(grid), audio_tokens) * cfg.num_layers / ranks
                calls = 7 * cfg.num_layers + 1
            elif mode == "tdp":
                tiles = [t.tokens for t in plan_refine_tiles(grid, RefineTiles(2, 2))]
                flops = max(sum(tiles[r::ranks]) for r in range(ranks)) * \
                    dit_block_flops(cfg, tiles[0], audio_tokens) / tiles[0] * cfg.num_layers
                calls = 1
            for name, rate, bandwidth, latency in GPUS:
                comm = wire / bandwidth + calls * latency
                compute = "" if flops is None else f"{flops / rate:.3f}"
                share = "" if flops is None else f"{comm / (flops / rate + comm):.2%}"
                rows.append([label, mode, ranks, name, f"{sum(kinds.values()) / 1e6:.1f} MB", compute,
                             f"{comm * 1e3:.2f}", share])
    return rows


def pool_rows(args) -> list[list]:
    """The sampler node with ``gpus`` 1 and N (``--pool``): first and warm runs, seconds per run."""
    import tempfile

    from ltx2_nodes import stages, worker_pool
    from ltx2_nodes.demo.models import write_demo_models
    from ltx2_nodes.handles import load_gemma, load_ltx2
    from ltx2_nodes.memory import selection
    from ltx2_nodes.nodes.comfy_types import to_conditioning
    from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent
    from ltx2_nodes.nodes.sampler import LTX2Sampler

    widgets = dict(seed=1, steps=4, schedule="ltx2", sigmas="", sampler="euler", video_cfg=1.0, audio_cfg=1.0,
                   modality_scale=1.0, stg_scale=0.0, stg_blocks="29", rescale=0.0, start_sigma=1.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ltx2_pool_bench_") as folder:
        demo = write_demo_models(folder)
        selection.configure_engine(device=args.device)
        ltx2 = load_ltx2(demo.checkpoint, device=args.device)
        text = stages.connect_text(ltx2.text_connector,
                                   stages.encode_prompts(load_gemma(demo.gemma, device=args.device), ["a fox"]))
        conditioning = to_conditioning(stages.split_text(text, 0))
        latent = LTX2EmptyAVLatent().create(256, 192, 25, 0.0, 25.0, 1)[0]

        def timed() -> float:
            started = time.perf_counter()
            LTX2Sampler().sample(ltx2.dit, conditioning, latent, gpus=gpus, **widgets)
            return time.perf_counter() - started

        for gpus in args.ranks:
            first = timed()
            warm = statistics.median(timed() for _ in range(args.steps))
            rows.append([gpus, "this process" if gpus == 1 else f"{gpus} workers", f"{first:.2f}", f"{warm:.3f}"])
            print(f"  {rows[-1]}  (load {_util.load_average()})", file=sys.stderr)
        worker_pool.close_pool()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="tiny,mid")
    parser.add_argument("--modes", default="sp,tdp,decode")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--pool", action="store_true", help="the sampler's gpus option on the demo model")
    args = parser.parse_args()
    if args.case:
        return run_rank(json.loads(args.case))
    args.sizes, args.modes = args.sizes.split(","), args.modes.split(",")
    args.ranks = [int(r) for r in args.ranks.split(",")]
    if args.device == "cuda" and torch.cuda.device_count() < max(args.ranks):
        raise SystemExit(f"--device cuda with {max(args.ranks)} ranks needs as many GPUs; this machine has "
                         f"{torch.cuda.device_count()}. Use --ranks 1 or the CPU rows.")
    if args.pool:
        print(f"machine: {_util.machine()}; load {_util.load_average()}; device {args.device}\n")
        print(_util.table(["gpus", "runs in", "first run s", "warm run s"], pool_rows(args)))
        return
    print(f"machine: {_util.machine()}; load {_util.load_average()}; device {args.device}, 1 thread per process\n")
    print(_util.table(["size", "mode", "ranks", "step s", "speed-up", "collectives per step (rank 0, counted)",
                       "formula", "s in collectives", "share"], measured_rows(args)))
    print("\nmodeled GPU step (released 19B shapes; bf16 exchanges for sp, float32 for tdp):\n")
    print(_util.table(["case", "mode", "GPUs", "interconnect", "bytes/rank/step (decode: into rank 0)", "compute s",
                       "comm ms", "comm share"], modeled_rows()))


if __name__ == "__main__":
    main()
