"""sampler_step: time of one sampling step, unguided vs dev-default guidance, batched vs sequential passes.

Mid-size random-weight DiT on CPU (float32): 8 blocks, video 512 wide (8x64), audio 256 wide
(8x32); 512x384x25 frames -> 768 video tokens + 26 audio tokens, 256 text tokens. One step =
one iteration of the real loop (``sampling.loop.denoise`` over a 2-sigma schedule): the guided
denoiser's forwards, guidance combination, mask post-processing and the Euler / res_2s update.
Dev defaults: video cfg 3 / audio cfg 7, STG 1.0 (block 29 in the 48-block model; the last block
here), modality 3, rescale 0.7 -> 4 passes per evaluation. Timings interleave the cases round by
round in one process (a shared machine's load hits them alike); each case's peak RSS is measured
in a fresh interpreter of its own.

    python benchmarks/sampler_step.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _util  # puts the repo on sys.path
import torch

from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.model.transformer import TransformerConfig
from ltx2_nodes.sampling.guidance import NO_GUIDANCE, GuidanceParams, GuidedDenoiser
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.loop import denoise
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

CONFIG = dict(num_layers=8, num_attention_heads=8, attention_head_dim=64, cross_attention_dim=512,
              audio_num_attention_heads=8, audio_attention_head_dim=32, audio_cross_attention_dim=256,
              caption_channels=512)
W, H, FRAMES, FPS, TEXT = 512, 384, 25, 24.0, 256
REPEATS = 5


def _on_last_block(params: GuidanceParams, layers: int) -> GuidanceParams:
    return GuidanceParams(params.cfg, params.stg, (layers - 1,), params.rescale, params.modality)


CASES = [
    ("unguided (distilled / stage 2), euler", {"guided": False, "batched": True, "sampler": "euler"}),
    ("dev guidance, batched passes, euler", {"guided": True, "batched": True, "sampler": "euler"}),
    ("dev guidance, sequential passes, euler", {"guided": True, "batched": False, "sampler": "euler"}),
    ("dev guidance, batched passes, res_2s", {"guided": True, "batched": True, "sampler": "res_2s"}),
]


def setup():
    cfg = TransformerConfig(**CONFIG)
    model = _util.random_dit(cfg)
    vgrid = VideoGrid.from_pixels(cfg.in_channels, FRAMES, H, W, FPS)
    agrid = AudioGrid.for_video(8, cfg.audio_in_channels // 8, FRAMES, FPS)
    video, audio = initial_state(vgrid, 1), initial_state(agrid, 1)
    nv, na = SeededNoise(0, 1).draw((vgrid.tokens, cfg.in_channels), (agrid.tokens, cfg.audio_in_channels))
    video, audio = add_noise(video, nv, 1.0), add_noise(audio, na, 1.0)
    gen = torch.Generator().manual_seed(1)

    def text():
        return TextConditioning(torch.randn(1, TEXT, cfg.caption_channels, generator=gen),
                                torch.randn(1, TEXT, cfg.caption_channels, generator=gen),
                                torch.ones(1, TEXT, dtype=torch.int64))

    return model, video, audio, text(), text()


def stepper(model, video, audio, positive, negative, case: dict):
    """One loop iteration for ``case`` and the denoiser that counts its forwards."""
    layers = model.config.num_layers
    vp = _on_last_block(recipe_for().dev.video_guidance, layers) if case["guided"] else NO_GUIDANCE
    ap = _on_last_block(recipe_for().dev.audio_guidance, layers) if case["guided"] else NO_GUIDANCE
    denoiser = GuidedDenoiser(model, positive, negative, vp, ap, batched=case["batched"])
    sigmas = torch.tensor([0.6, 0.5])
    return (lambda: denoise(denoiser, video, audio, sigmas, sampler=case["sampler"])), denoiser


def run_case(case: dict) -> dict:
    """Peak RSS of one case on its own (fresh interpreter): warm-up step + one step."""
    step, _ = stepper(*setup(), case)
    step()
    step()
    return {"peak_rss": _util.peak_rss_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser()
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    # Timings: all cases in one process, interleaved round by round, so a shared machine's load
    # hits them alike; CPU seconds (both threads) are reported next to wall seconds for that reason.
    parts = setup()
    steps = [stepper(*parts, case) for _, case in CASES]
    for step, _ in steps:
        step()  # warm-up
    wall = [[] for _ in CASES]
    cpu = [[] for _ in CASES]
    forwards = []
    for _ in range(REPEATS):
        for k, (step, _) in enumerate(steps):
            w, c = time.perf_counter(), time.process_time()
            step()
            wall[k].append(time.perf_counter() - w)
            cpu[k].append(time.process_time() - c)
    for _, denoiser in steps:
        forwards.append(denoiser.forwards // (REPEATS + 1))
    rows = []
    base_wall, base_cpu = statistics.median(wall[0]), statistics.median(cpu[0])
    for k, (name, case) in enumerate(CASES):
        rss = _util.run_isolated(__file__, case)["peak_rss"]
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        rows.append([name, len(steps[k][1].passes()), forwards[k], f"{w:.2f}", f"{c:.2f}",
                     f"{w / base_wall:.1f}x / {c / base_cpu:.1f}x", _util.gib(rss)])
    vgrid = VideoGrid.from_pixels(128, FRAMES, H, W, FPS)
    print(f"sampler_step: 8 blocks, video 512 wide (8x64), audio 256 wide (8x32), float32, CPU; {W}x{H}x{FRAMES} -> "
          f"{vgrid.tokens} video tokens + {AudioGrid.for_video(8, 16, FRAMES, FPS).tokens} audio tokens, "
          f"{TEXT} text tokens; median of {REPEATS} interleaved rounds")
    print(f"machine: {_util.machine()}, load average {os.getloadavg()[0]:.1f}\n")
    print(_util.table(["step", "passes / eval", "forwards / step", "wall s / step", "CPU s / step",
                       "vs unguided (wall / CPU)", "peak RSS (own process)"], rows))


if __name__ == "__main__":
    main()
