"""Video VAE decode: time and peak RSS versus clip length at a fixed tile size, and tiled vs untiled.

Runs on the CPU with a mid-size random-weight decoder built from the released block layout but
narrower and shallower, so a case takes seconds rather than hours:

    latent_channels 32, decoder_blocks = res_x(2), compress_all(residual, x2) x3 interleaved
    -> widths 256 / 128 / 64 / 32 (release: 128 latent channels, res_x(5), widths 1024 .. 128)

Every case runs in a fresh subprocess and reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
so one case's allocations cannot raise another's peak. Time is reported as wall clock and as the
child's CPU time (user + sys; less sensitive to other load on a shared machine). Decoded chunks
are converted to uint8 and dropped, as a muxer streaming them to disk would. ``estimate`` is
``memory.vae.estimate_decode_bytes`` for the same call (float32), printed next to the measured
growth over the process's baseline (model + latent loaded and one tiny warm-up decode done).

The children run with ``MALLOC_MMAP_THRESHOLD_=131072`` so freed blocks go back to the OS and
RSS tracks live memory; glibc's default (a threshold that grows up to 32 MB) keeps freed
multi-MB blocks in the heap, so RSS creeps with the number of allocations. ``--glibc-default``
measures that behaviour instead.

    python benchmarks/vae_decode.py            # the table recorded in benchmarks/RESULTS.md
    python benchmarks/vae_decode.py --quick    # smaller frames, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DECODER_BLOCKS = [["res_x", {"num_layers": 2}], ["compress_all", {"residual": True, "multiplier": 2}],
                  ["res_x", {"num_layers": 2}], ["compress_all", {"residual": True, "multiplier": 2}],
                  ["res_x", {"num_layers": 2}], ["compress_all", {"residual": True, "multiplier": 2}],
                  ["res_x", {"num_layers": 2}]]
LATENT_CHANNELS = 32


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(latent_frames: int, height: int, width: int, tiling: dict | None, channels: int = LATENT_CHANNELS) -> dict:
    """Body of one subprocess: build, decode (streaming), report time and peak RSS."""
    import torch

    sys.path.insert(0, str(REPO))
    from ltx2_nodes.memory.vae import estimate_decode_bytes
    from ltx2_nodes.model.vae_tiling import TilingConfig, decode_chunks
    from ltx2_nodes.model.video_vae import VideoDecoder, VideoVAEConfig, video_to_uint8

    torch.manual_seed(0)
    cfg = VideoVAEConfig.from_metadata({"latent_channels": channels, "decoder_blocks": DECODER_BLOCKS})
    decoder = VideoDecoder(cfg).eval()  # PyTorch's default init: weights allocated once, no state-dict copy
    stats = decoder.per_channel_statistics
    stats.get_buffer("mean-of-means").zero_()
    stats.get_buffer("std-of-means").fill_(1.0)
    latent = torch.randn(1, channels, latent_frames, height // 32, width // 32)
    tiling_cfg = TilingConfig.from_dict(tiling) if tiling else None
    estimate = estimate_decode_bytes(cfg, tuple(latent.shape), tiling_cfg, torch.float32)
    with torch.no_grad():  # warm-up: kernel caches and thread pools count as baseline, not as decode memory
        decoder(latent[:, :, :2, :2, :2])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    frames = chunks = 0
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    with torch.no_grad():
        for chunk in decode_chunks(decoder, latent, tiling_cfg):
            frames += video_to_uint8(chunk).shape[1]
            chunks += 1
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"frames": frames, "chunks": chunks, "seconds": seconds, "cpu": cpu, "baseline": baseline, "peak": peak,
            "estimate": estimate}


def in_subprocess(latent_frames: int, height: int, width: int, tiling: dict | None, env: dict,
                  channels: int = LATENT_CHANNELS) -> dict:
    args = json.dumps([latent_frames, height, width, tiling, channels])
    out = subprocess.run([sys.executable, __file__, "--case", args], capture_output=True, text=True, check=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="25/49/97 frames at 128x192")
    parser.add_argument("--glibc-default", action="store_true", help="keep glibc's dynamic mmap threshold")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure live activation tensors per output voxel (memory.vae.LIVE_ACTIVATIONS)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        return

    env = dict(os.environ)
    if not args.glibc_default:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    if args.calibrate:
        calibrate(env)
        return
    # every multiple already has several temporal chunks, so all cases are in the steady state
    height, width, base = (128, 192, 3) if args.quick else (256, 384, 6)
    tiling = {"tile_size_in_pixels": 256, "tile_overlap_in_pixels": 64,
              "tile_size_in_frames": 24, "tile_overlap_in_frames": 8}
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
          f"malloc {'glibc default' if args.glibc_default else 'MALLOC_MMAP_THRESHOLD_=131072'}")
    print(f"mid-size random decoder (latent_channels {LATENT_CHANNELS}, widths 256/128/64/32), {width}x{height}")
    print("| case | frames | chunks | wall s | CPU s | CPU s/frame | peak RSS MB | growth MB | estimate MB |")
    print("|---|---|---|---|---|---|---|---|---|")

    def row(name: str, r: dict) -> None:
        mb = 1 << 20
        print(f"| {name} | {r['frames']} | {r['chunks']} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
              f"{r['cpu'] / r['frames']:.3f} | "
              f"{r['peak'] / mb:.0f} | {(r['peak'] - r['baseline']) / mb:.0f} | {r['estimate'] / mb:.0f} |")

    for multiple in (1, 2, 4):
        row(f"tiled 256/64 px, 24/8 frames, x{multiple}",
            in_subprocess(1 + base * multiple, height, width, tiling, env))
    row("untiled, x1", in_subprocess(1 + base, height, width, None, env))


def calibrate(env: dict) -> None:
    """Marginal peak-RSS growth per output voxel between two untiled decode sizes, in units of the
    widest decoder stage's float32 bytes per voxel (channels / 16 for a 4x4 final patch)."""
    print("| latent channels | final width | bytes/voxel (marginal) | live tensors |")
    print("|---|---|---|---|")
    sizes = ((3, 128, 192), (5, 256, 384))
    for channels in (32, 64):
        growth, voxels = [], []
        for latent_frames, height, width in sizes:
            r = in_subprocess(latent_frames, height, width, None, env, channels)
            growth.append(r["peak"] - r["baseline"])
            voxels.append(r["frames"] * height * width)
        per_voxel = (growth[1] - growth[0]) / (voxels[1] - voxels[0])
        print(f"| {channels} | {channels} | {per_voxel:.1f} | {per_voxel / (4 * channels / 16):.1f} |")


if __name__ == "__main__":
    main()
