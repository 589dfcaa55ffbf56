"""audio_decode: audio VAE decoder + vocoder at the released LTX-2 19B widths on CPU (float32).

Decoder 31.9M and vocoder 55.6M parameters with random weights (only shapes matter for speed and
memory); latents at 25 per second of audio. Each case runs in a fresh interpreter so its peak RSS
is its own; "activations" is that peak minus the RSS right after the models were built.
Reported per second of audio: wall time and CPU time (user+sys of this process, less sensitive to
other load on the machine).

The cases run with ``MALLOC_MMAP_THRESHOLD_=1048576``: glibc otherwise raises its mmap threshold
after the first large free (up to 32 MiB), so tensors just under 32 MiB (the activations of a 10 s
chunk) are carved from a heap that is not handed back, and RSS then measures fragmentation rather
than live activations.

    python benchmarks/audio_decode.py                     # prints a markdown table
    python benchmarks/audio_decode.py --seconds 4 12 30   # choose the clip lengths
"""

from __future__ import annotations

import argparse
import os
import time

import _util
import torch

from ltx2_nodes.media.audio_codec import DEFAULT_CHUNK_LATENTS, DEFAULT_CHUNK_MEL_FRAMES, decode_mel, vocode
from ltx2_nodes.model.audio_vae import AudioDecoder, AudioVAEConfig
from ltx2_nodes.model.vocoder import Vocoder, VocoderConfig


def build() -> tuple[AudioDecoder, Vocoder]:
    torch.manual_seed(0)
    decoder, vocoder = AudioDecoder(AudioVAEConfig()), Vocoder(VocoderConfig())
    decoder.per_channel_statistics.get_buffer("std-of-means").fill_(1.0)
    decoder.per_channel_statistics.get_buffer("mean-of-means").zero_()
    return decoder.eval().requires_grad_(False), vocoder.eval().requires_grad_(False)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_case(case: dict) -> dict:
    decoder, vocoder = build()
    base_rss = _util.current_rss_bytes()
    timing = decoder.cfg.timing
    latents = round(case["seconds"] * timing.latents_per_second)
    latent = torch.randn(1, decoder.cfg.z_channels, latents, decoder.cfg.mel_bins // 4)
    chunk = case.get("chunk_seconds")
    chunk_latents = round(chunk * timing.latents_per_second) if chunk else None
    chunk_frames = round(chunk * timing.sample_rate / timing.hop_length) if chunk else None
    mel, dec_wall, dec_cpu = timed(lambda: decode_mel(latent, decoder, chunk_latents))
    wave, voc_wall, voc_cpu = timed(lambda: vocode(mel, vocoder, chunk_frames))
    seconds = wave.shape[-1] / vocoder.sample_rate
    return {"seconds": seconds, "dec_wall": dec_wall / seconds, "dec_cpu": dec_cpu / seconds,
            "voc_wall": voc_wall / seconds, "voc_cpu": voc_cpu / seconds,
            "base_rss": base_rss, "peak_rss": _util.peak_rss_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[4.0, 12.0, 30.0])
    parser.add_argument("--chunk-seconds", type=float, nargs="+",
                        default=[DEFAULT_CHUNK_LATENTS / 25, 2.0],
                        help=f"chunk lengths to compare with the whole decode (default chunks: "
                             f"{DEFAULT_CHUNK_LATENTS} latents / {DEFAULT_CHUNK_MEL_FRAMES} mel frames = 10 s)")
    args = _util.parse_or_answer_case(parser, run_case)
    if args is None:
        return
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "1048576"  # inherited by the case subprocesses (see module doc)
    cases = [{"seconds": s} for s in args.seconds]
    cases += [{"seconds": max(args.seconds), "chunk_seconds": c} for c in args.chunk_seconds]
    rows = []
    for case in cases:
        r = _util.run_isolated(__file__, case)
        mode = f"chunked {case['chunk_seconds']:g} s" if "chunk_seconds" in case else "whole"
        rows.append([f"{r['seconds']:.2f} s", mode,
                     f"{r['dec_wall']:.2f} / {r['dec_cpu']:.2f}", f"{r['voc_wall']:.2f} / {r['voc_cpu']:.2f}",
                     _util.gib(r["peak_rss"]), _util.gib(r["peak_rss"] - r["base_rss"])])
    print(f"Machine: {_util.machine()}\n")
    print(_util.table(["audio", "mode", "decoder s/s (wall / CPU)", "vocoder s/s (wall / CPU)", "peak RSS",
                       "activations"], rows))


if __name__ == "__main__":
    main()
