"""tiled_refine: peak activation memory of one stage-2 DiT evaluation, untiled vs in refine tiles.

Stage 2 at 1280x704 (the budget the tiles are sized to), and at 2x and 4x its pixel count (1792x1024,
2560x1408), 9 frames (2 latent frames); the tiled rows use ``auto_refine_tiles`` with the 1280x704 area
(``model.dit_tiling.AUTO_TILE_CELLS``), overlap 4. One forward of a 2-block DiT with the released layout at
reduced widths (video 8 heads x 64, audio 4 x 32: the CPU cannot run the 19B widths at 4x 1280x704 in
reasonable time; activation memory scales with the widths, the ratios between rows do not), float32,
random weights, 256 text tokens, per-token timesteps (first frame conditioned).

Measured: the activation high-water mark of the forward (``memory.measure.LiveBytes``: every storage
allocated inside it, weights and inputs excluded; the tiled rows include the whole-latent blend
accumulators) and seconds; each case in a fresh interpreter, whose peak RSS is reported as well. The
``estimate`` column is ``memory.estimates.dit_activation_bytes`` for the tokens one call sees (what the
pre-check plans with). On a CUDA machine ``--device cuda`` adds ``torch.cuda.max_memory_allocated`` over
the forward (weights excluded) and ``--real-widths`` the 19B widths (GPU rows).

    python benchmarks/tiled_refine.py [--device cuda] [--real-widths]   # prints a markdown table
"""

from __future__ import annotations

import argparse
import time

import _util  # puts the repo on sys.path
import torch

from ltx2_nodes.memory.estimates import dit_activation_bytes
from ltx2_nodes.memory.measure import LiveBytes
from ltx2_nodes.model.dit_tiling import TiledDiT, auto_refine_tiles, plan_refine_tiles
from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.shapes import audio_latent_frames, video_latent_size
from ltx2_nodes.model.transformer import ModalityInput, TransformerConfig

SIZES = {"1x": (1280, 704), "2x": (1792, 1024), "4x": (2560, 1408)}
FRAMES, FPS, TEXT = 9, 24.0, 256
BASE_CELLS = (704 // 32) * (1280 // 32)


def config(real: bool) -> TransformerConfig:
    if real:
        return TransformerConfig(num_layers=2)
    return TransformerConfig(num_layers=2, num_attention_heads=8, attention_head_dim=64, audio_num_attention_heads=4,
                             audio_attention_head_dim=32, cross_attention_dim=512, audio_cross_attention_dim=128,
                             caption_channels=512)


def inputs(cfg: TransformerConfig, grid, device: str):
    gen = torch.Generator().manual_seed(1)
    f, h, w = grid
    tokens, audio_tokens = f * h * w, audio_latent_frames(FRAMES, FPS)
    sigma = torch.full((1,), 0.9)
    timesteps = torch.full((1, tokens, 1), 0.9)
    timesteps[:, : h * w] = 0.0
    video = ModalityInput(torch.randn(1, tokens, cfg.in_channels, generator=gen), sigma, timesteps,
                          video_positions(1, f, h, w, FPS),
                          torch.randn(1, TEXT, cfg.context_width("video"), generator=gen))
    audio = ModalityInput(torch.randn(1, audio_tokens, cfg.audio_in_channels, generator=gen), sigma, sigma,
                          audio_positions(1, audio_tokens), torch.randn(1, TEXT, cfg.context_width("audio"),
                                                                        generator=gen))
    move = lambda m: ModalityInput(*(t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
                                     for t in (m.latent, m.sigma, m.timesteps, m.positions, m.context)))
    return move(video), move(audio)


def run_case(case: dict) -> dict:
    device = case["device"]
    cfg = config(case["real"])
    width, height = SIZES[case["size"]]
    grid = video_latent_size(FRAMES, height, width)
    model = _util.random_dit(cfg, device)
    video, audio = inputs(cfg, grid, device)
    tiles = auto_refine_tiles(grid, max_cells=BASE_CELLS) if case["tiled"] else None
    plan = plan_refine_tiles(grid, tiles) if tiles is not None else None
    runner = TiledDiT(model, grid, plan) if plan is not None and len(plan) > 1 else model
    call_tokens = max(t.tokens for t in plan) if plan else grid[0] * grid[1] * grid[2]
    with torch.no_grad():
        runner(video, audio)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        if device == "cuda":
            runner(video, audio)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            with LiveBytes() as live:
                runner(video, audio)
            peak = live.peak
        seconds = time.perf_counter() - start
    return {"tiles": tiles.describe() if tiles is not None and tiles.count > 1 else "untiled",
            "tokens": grid[0] * grid[1] * grid[2], "call_tokens": call_tokens, "peak": peak, "seconds": seconds,
            "estimate": dit_activation_bytes(cfg, call_tokens, audio.latent.shape[1], text_tokens=TEXT,
                                             dtype=torch.float32),
            "peak_rss": _util.peak_rss_bytes()}


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-widths", action="store_true")
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    print(_util.machine())
    rows = []
    for size in SIZES:
        for tiled in ((False,) if size == "1x" else (False, True)):
            r = _util.run_isolated(__file__, {"size": size, "tiled": tiled, "device": args.device,
                                              "real": args.real_widths})
            width, height = SIZES[size]
            rows.append([f"{width}x{height} ({size})", r["tiles"], r["tokens"], r["call_tokens"], _mib(r["peak"]),
                         _mib(r["estimate"]), f"{r['seconds']:.2f}", _mib(r["peak_rss"])])
    print(_util.table(["stage 2 size", "tiles", "tokens", "tokens / call", "activation peak", "estimate / call",
                       "seconds / forward", "peak RSS"], rows))


if __name__ == "__main__":
    main()
