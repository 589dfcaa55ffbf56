"""LTX-2.5 diffusion video decoder vs the conv decoder: decode time and peak memory per second of video.

Both decoders are random-weight models at real widths: the conv decoder is the released LTX-2 19B video
decoder (``VideoVAEConfig`` defaults: widths 1024 .. 128, res_x(5)); the diffusion decoder is the reference
constructor's ladder (``DiffusionDecoderConfig`` defaults: stage widths 1024/512/256/256/128, depths
4/6/4/2/8, kernels 3x7x7 .. 3x3x3, stage-5 kernel 3x7x7, 2 Euler steps; the released file's own ladder is
gated metadata, see the golden-2.5 README). Every case runs in a fresh subprocess; the table gives wall
and CPU time (user + sys) and peak memory (CPU: the child's peak RSS; CUDA: ``max_memory_allocated``),
each also per second of video (``frames / fps``, fps 24), and ``memory.vae``'s estimate for the call.

    python benchmarks/diffusion_decode.py                    # CPU, 768x512, 2 latent frames (9 frames)
    python benchmarks/diffusion_decode.py --frames 3         # 17 frames
    python benchmarks/diffusion_decode.py --tile 512         # plus a tiled diffusion row (512 px, 128 overlap)
    python benchmarks/diffusion_decode.py --device cuda --frames 16 --tile 512   # GPU rows (bf16; natten if installed)

On the CPU a full second of 768x512 video takes many minutes per decoder, so the default decodes 9 frames
and reports the per-second figures scaled from them (the first frame costs like the others here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _util import REPO, gib, machine, parse_or_answer_case, peak_rss_bytes, run_isolated, table

FPS = 24.0


def run_case(case: dict) -> dict:
    import torch

    from ltx2_nodes.memory.vae import estimate_decode_bytes
    from ltx2_nodes.model.diffusion_vae import DiffusionDecoderConfig, DiffusionVideoDecoder
    from ltx2_nodes.model.neighborhood_attention import natten_available
    from ltx2_nodes.model.vae_tiling import TilingConfig, decode_chunks
    from ltx2_nodes.model.video_vae import VideoDecoder, VideoVAEConfig

    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    if case["decoder"] == "conv":
        cfg = VideoVAEConfig()
        module, channels = VideoDecoder(cfg), cfg.latent_channels
    else:
        cfg = DiffusionDecoderConfig()
        module, channels = DiffusionVideoDecoder(cfg), cfg.in_channels
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            tensor.copy_(torch.ones_like(tensor) if "std-of-means" in name else torch.randn_like(tensor) * 0.02)
    module = module.to(device, dtype).eval()
    latent = torch.randn(1, channels, case["frames"], case["height"] // 32, case["width"] // 32, device=device)
    tiling = TilingConfig(**case["tiling"]) if case["tiling"] else None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    frames = 0
    with torch.no_grad():
        for chunk in decode_chunks(module, latent, tiling, output_device="cpu", seed=10):
            frames += chunk.shape[2]
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()
    return {"wall": wall, "cpu": cpu, "peak": peak, "frames": frames, "natten": natten_available(),
            "estimate": estimate_decode_bytes(cfg, tuple(latent.shape), tiling, dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=2, help="latent frames (pixel frames 8k+1)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--tile", type=int, default=0, help="adds a tiled diffusion row with tiles of this many px")
    args = parse_or_answer_case(parser, run_case)
    if args is None:
        return
    base = {"device": args.device, "frames": args.frames, "height": args.height, "width": args.width}
    cases = [("conv (LTX-2 19B layout)", {"decoder": "conv", "tiling": None}),
             ("diffusion, untiled", {"decoder": "diffusion", "tiling": None})]
    if args.tile:
        cases.append((f"diffusion, {args.tile} px tiles", {"decoder": "diffusion", "tiling": {
            "tile_size_in_pixels": args.tile, "tile_overlap_in_pixels": 128, "tile_size_in_frames": None,
            "tile_overlap_in_frames": 0}}))
    rows = []
    for name, case in cases:
        result = run_isolated(__file__, {**base, **case})
        seconds = result["frames"] / FPS
        rows.append([name, result["frames"], f"{result['wall']:.1f} s", f"{result['cpu']:.1f} s",
                     f"{result['wall'] / seconds:.0f} s", gib(result["peak"]), gib(result["peak"] / seconds),
                     gib(result["estimate"]), "yes" if result["natten"] else "no"])
        print(name, json.dumps(result), file=sys.stderr, flush=True)
    print(f"machine: {machine()}\nvideo {args.width}x{args.height}, {rows[0][1]} frames, device {args.device}\n")
    print(table(["decoder", "frames", "wall", "cpu", "wall / s of video", "peak", "peak / s of video",
                 "estimate", "natten"], rows))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
