"""dit_forward: one transformer forward of 2 blocks at the real LTX-2 19B widths on CPU (float32).

Shapes: video 768x512x25 frames -> 4x16x24 = 1536 tokens, audio 25 frames @ 24 fps -> 26 tokens,
1024 text tokens of width 3840 per stream; random weights (only their shapes matter for speed).
Each case runs in a fresh interpreter so its peak RSS is its own.

The LTX-2.3 (22B) row: same widths with gated attention, 9-row AdaLN tables with the prompt AdaLN on the
text cross-attention, and text contexts at the inner widths (no caption projection in the DiT).

Optional reference rows: set LTX2_REFERENCE_SRC to the `packages/ltx-core/src` folder of
Lightricks/LTX-2 at commit 5cb97a9 (LTX-2 rows) and/or LTX2_REFERENCE_HEAD_SRC to that folder at a recent
HEAD (LTX-2.3 row; not shipped here) to time the official LTXModel on the same weights and inputs.

    python benchmarks/dit_forward.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import _util  # puts the repo on sys.path
import torch

from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.shapes import audio_latent_frames, video_latent_size
from ltx2_nodes.model.transformer import LTX2Transformer, ModalityInput, TransformerConfig

W, H, FRAMES, FPS, TEXT = 768, 512, 25, 24.0, 1024
LATENT = video_latent_size(FRAMES, H, W)
AUDIO_TOKENS = audio_latent_frames(FRAMES, FPS)


def build(cfg: TransformerConfig) -> LTX2Transformer:
    with torch.device("meta"):
        model = LTX2Transformer(cfg)
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def inputs(cfg: TransformerConfig, per_token: bool):
    gen = torch.Generator().manual_seed(1)
    f, h, w = LATENT
    video_tokens = f * h * w
    sigma = torch.full((1,), 0.7)
    timesteps_v = torch.full((1, video_tokens), 0.7)
    if per_token:
        timesteps_v[:, : h * w] = 0.0  # first latent frame conditioned (image-to-video)
    video = ModalityInput(torch.randn(1, video_tokens, cfg.in_channels, generator=gen), sigma, timesteps_v,
                          video_positions(1, f, h, w, FPS),
                          torch.randn(1, TEXT, cfg.context_width("video"), generator=gen))
    audio = ModalityInput(torch.randn(1, AUDIO_TOKENS, cfg.audio_in_channels, generator=gen), sigma, sigma,
                          audio_positions(1, AUDIO_TOKENS),
                          torch.randn(1, TEXT, cfg.context_width("audio"), generator=gen))
    return video, audio


def _reference_imports(src: str) -> None:
    """Put the official ``ltx-core`` sources on the path (triton stubbed: a CPU run never uses it)."""
    sys.path.insert(0, src)
    if "triton" not in sys.modules:
        triton = types.ModuleType("triton")
        triton.jit = lambda *a, **k: (lambda f: f)
        triton.autotune = lambda *a, **k: (lambda f: f)
        triton.language = types.ModuleType("triton.language")
        triton.language.constexpr = int
        sys.modules.update({"triton": triton, "triton.language": triton.language})


def _timed(ref, video, audio, perturbations):
    with torch.no_grad():
        ref(video, audio, perturbations)  # warm-up, as for ours
        start = time.perf_counter()
        out = ref(video, audio, perturbations)
    return time.perf_counter() - start, out


def reference_forward(model: LTX2Transformer, video: ModalityInput, audio: ModalityInput):
    """Time the official implementation at commit 5cb97a9 (LTX-2 only) on the same weights."""
    _reference_imports(os.environ["LTX2_REFERENCE_SRC"])
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig
    from ltx_core.model.transformer.attention import AttentionFunction
    from ltx_core.model.transformer.model import LTXModel
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.rope import LTXRopeType

    cfg = model.config
    with torch.device("meta"):
        ref = LTXModel(num_layers=cfg.num_layers, rope_type=LTXRopeType.SPLIT, double_precision_rope=True,
                       av_ca_timestep_scale_multiplier=1000, attention_type=AttentionFunction.PYTORCH)
    ref.load_state_dict(model.state_dict(), assign=True, strict=True)
    mods = [Modality(latent=m.latent, sigma=m.sigma, timesteps=m.timesteps.reshape(1, -1, 1),
                     positions=m.positions, context=m.context) for m in (video, audio)]
    return _timed(ref, mods[0], mods[1], BatchedPerturbationConfig.empty(1))


def head_reference_forward(model: LTX2Transformer, video: ModalityInput, audio: ModalityInput):
    """Time the official implementation at HEAD (LTX-2 and LTX-2.3 flags) on the same weights."""
    _reference_imports(os.environ["LTX2_REFERENCE_HEAD_SRC"])
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig
    from ltx_core.model.transformer.model import LTXModel
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.rope import LTXRopeType

    cfg = model.config
    with torch.device("meta"):
        ref = LTXModel(num_layers=cfg.num_layers, rope_type=LTXRopeType.SPLIT, double_precision_rope=True,
                       av_ca_timestep_scale_multiplier=1000, apply_gated_attention=cfg.apply_gated_attention,
                       cross_attention_adaln=cfg.cross_attention_adaln)
    ref.load_state_dict(model.state_dict(), assign=True, strict=True)
    mods = [Modality(latent=m.latent, sigma=m.sigma, timesteps=m.timesteps.expand(1, m.latent.shape[1]),
                     positions=m.positions, context=m.context) for m in (video, audio)]
    return _timed(ref, mods[0], mods[1], BatchedPerturbationConfig.empty(1, cfg.num_layers))


LTX23 = dict(apply_gated_attention=True, cross_attention_adaln=True, caption_proj_before_connector=True)


def run_case(case: dict) -> dict:
    torch.manual_seed(0)
    cfg = TransformerConfig(num_layers=2, **(LTX23 if case.get("family") == "2.3" else {}))
    model = build(cfg)
    video, audio = inputs(cfg, case["per_token"])
    with torch.no_grad():
        model(video, audio)  # warm-up (allocator, kernels)
        start = time.perf_counter()
        ours = model(video, audio)
        seconds = time.perf_counter() - start
    result = {"seconds": seconds}
    if case.get("reference"):
        forward = head_reference_forward if case["reference"] == "head" else reference_forward
        ref_seconds, ref_out = forward(model, video, audio)
        result["seconds"] = ref_seconds
        result["max_diff_vs_ours"] = max((a - b).abs().max().item() for a, b in zip(ours, ref_out))
    result["peak_rss"] = _util.peak_rss_bytes()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    cases = [("ltx2_nodes", {"per_token": False}), ("ltx2_nodes, per-token sigma (I2V)", {"per_token": True}),
             ("ltx2_nodes, LTX-2.3 (22B)", {"per_token": False, "family": "2.3"})]
    if os.environ.get("LTX2_REFERENCE_SRC"):
        cases += [("official ltx-core @5cb97a9", {"per_token": False, "reference": True}),
                  ("official ltx-core, per-token sigma", {"per_token": True, "reference": True})]
    if os.environ.get("LTX2_REFERENCE_HEAD_SRC"):
        cases += [("official ltx-core HEAD, LTX-2.3 (22B)", {"per_token": False, "family": "2.3", "reference": "head"})]
    rows = []
    for name, case in cases:
        r = _util.run_isolated(__file__, case)
        note = f"max |diff| vs ours {r['max_diff_vs_ours']:.1e}" if "max_diff_vs_ours" in r else ""
        rows.append([name, f"{r['seconds']:.2f}", _util.gib(r["peak_rss"]), note])
    f, h, w = LATENT
    print(f"dit_forward: 2 blocks, video 4096 wide (32x128), audio 2048 wide (32x64), float32, CPU; "
          f"{W}x{H}x{FRAMES} -> {f * h * w} video tokens + {AUDIO_TOKENS} audio tokens, {TEXT} text tokens")
    print(f"machine: {_util.machine()}\n")
    print(_util.table(["implementation", "seconds / forward", "peak RSS", "note"], rows))


if __name__ == "__main__":
    main()
