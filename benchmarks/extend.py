#!/usr/bin/env python3
"""Extend on the demo models: peak RSS and seconds per generated second for chains of 1, 3 and 6 segments.

    python benchmarks/extend.py [--segments 1 3 6] [--segment-seconds 10] [--size 768x512] [--steps 8]
                                [--threads 2] [--decode]

Each chain runs in a fresh interpreter (its own peak RSS): a first clip of ``--segment-seconds`` is sampled from
an empty latent, then each segment samples an extend window (2 kept latent frames + the new span) and joins it
(``ltx2_nodes.editing``), with the distilled preset (``--steps`` of it: the first ``steps`` sigmas). The rows give
the clip's final length, the peak RSS of the whole chain and after each segment (flat = the window, not the clip,
sets the memory), and the sampling seconds per generated second. ``--decode`` also decodes the whole clip (tiled
video, audio) and times it: that part grows with the clip by design (it writes every frame).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import gib, machine, parse_or_answer_case, peak_rss_bytes, run_isolated, table


def run_case(case: dict) -> dict:
    import dataclasses

    import torch

    from ltx2_nodes import stages
    from ltx2_nodes.editing import extend_window, join_extension, plan_extend
    from ltx2_nodes.handles import load_gemma, load_ltx2
    from ltx2_nodes.latents import GenerationSettings, empty_latents
    from ltx2_nodes.model.shapes import frames_for_seconds
    from ltx2_nodes.sampling.recipe import recipe_for

    torch.set_num_threads(case["threads"])
    ltx2 = load_ltx2(case["checkpoint"], device="cpu")
    gemma = load_gemma(case["gemma"], device="cpu")
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox runs through snow"]))
    preset = recipe_for(ltx2.dit.family.version).distilled
    settings = GenerationSettings.from_preset(preset, seed=1)
    sigmas = torch.cat([settings.sigmas[: case["steps"]], settings.sigmas.new_zeros(1)])
    settings = dataclasses.replace(settings, sigmas=sigmas)
    width, height, seconds, fps = case["width"], case["height"], case["segment_seconds"], 24.0
    vae, audio_vae = ltx2.video_vae, ltx2.audio_vae
    first = empty_latents(1, frames_for_seconds(seconds, fps), height, width, fps, video_channels=vae.latent_channels,
                          audio_channels=audio_vae.latent_channels, audio_mel_bins=audio_vae.latent_mel_bins)
    clip = stages.run_sampler(ltx2.dit, text, first, settings)
    base_seconds = clip.video_grid().pixel_frames / fps
    rss_after, sampling, tokens = [], 0.0, 0
    for segment in range(case["segments"]):
        window = extend_window(clip, plan_extend(clip, seconds, overlap=2))
        tokens = window.video_grid().tokens
        start = time.perf_counter()
        sampled = stages.run_sampler(ltx2.dit, text, window, dataclasses.replace(settings, seed=2 + segment))
        sampling += time.perf_counter() - start
        clip = join_extension(clip, sampled)
        rss_after.append(peak_rss_bytes())
    total_seconds = clip.video_grid().pixel_frames / fps
    result = {"clip_seconds": total_seconds, "generated_seconds": total_seconds - base_seconds,
              "sampling_seconds": sampling, "peak_rss": peak_rss_bytes(), "rss_after": rss_after,
              "window_tokens": tokens}
    if case["decode"]:
        start = time.perf_counter()
        chunks = sum(chunk.shape[2] for chunk in stages.decode_video_chunks(clip.video, vae))
        stages.decode_audio(clip.audio, audio_vae)
        result.update(decode_seconds=time.perf_counter() - start, decoded_frames=chunks, peak_rss=peak_rss_bytes())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--steps", type=int, default=8, help="distilled sigmas used (8 = the whole preset)")
    parser.add_argument("--family", choices=("2.0", "2.3"), default="2.0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode", action="store_true")
    args = parse_or_answer_case(parser, run_case)
    if args is None:
        return 0
    from ltx2_nodes.demo.models import write_demo_models

    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = write_demo_models(Path(tmp) / "models")
        checkpoint = models.checkpoint if args.family == "2.0" else models.checkpoint_23
        for segments in args.segments:
            case = {"checkpoint": str(checkpoint), "gemma": str(models.gemma), "segments": segments,
                    "segment_seconds": args.segment_seconds, "width": width, "height": height, "steps": args.steps,
                    "threads": args.threads, "decode": args.decode}
            r = run_isolated(__file__, case)
            rows.append([segments, f"{r['clip_seconds']:.1f}", f"{r['generated_seconds']:.1f}", r["window_tokens"],
                         f"{r['sampling_seconds'] / r['generated_seconds']:.2f}", gib(r["peak_rss"]),
                         " / ".join(gib(v).split()[0] for v in r["rss_after"]),
                         f"{r['decode_seconds']:.1f}" if "decode_seconds" in r else "-"])
    print(machine())
    print(f"demo models LTX-{args.family}, {args.size}, segments of {args.segment_seconds:g} s (2 kept latent frames), "
          f"{args.steps} distilled steps")
    print(table(["segments", "clip s", "generated s", "window tokens", "sampling s / generated s", "peak RSS",
                 "peak RSS after each segment (GiB)", "decode s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
