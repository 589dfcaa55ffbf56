"""dit_forward: one DiT forward, paired and interleaved: the pack eager, the pack compiled, official ltx-core HEAD.

Shapes: 2 blocks at the real LTX-2 19B widths (video 4096 = 32x128, audio 2048 = 32x64, FFN x4), video
768x512x25 frames -> 4x16x24 = 1536 tokens, audio 25 frames @ 24 fps -> 26 tokens, 1024 text tokens per stream;
random weights (only their shapes matter for speed). ``--family 2.3``: the LTX-2.3 flags at the same widths.

Variants: the pack eager and compiled (``model.compiling``), official HEAD eager and through its own compiled
path (``compile_transformer``: one ``torch.compile`` per block), all holding the same weight tensors.

Method (one long-lived process): every variant runs once untimed (warm-up; compiles the compiled one), then
``--rounds`` rounds each run every variant once, interleaved (A B C M A B C M ...), M being a matmul of the
video projection's shape that measures the machine's own matmul rate in the same rounds. Reported: median wall
and CPU seconds per forward, the median over rounds of the paired ratio official / variant, FLOPs per forward
counted from the shapes of the matmuls and attentions (``torch.utils.flop_counter``), and the median per-round
fraction of the matmul rate reached. The official model holds the very same weight tensors (state dict
assigned) and gets the same inputs.

Cases: ``shared`` -- one sigma for the whole video (what ComfyUI passes; the official model gets timesteps
``[B, 1]``); ``per_token`` -- the first latent frame conditioned at timestep 0 (image-to-video), which the
official model embeds per token (``[B, T]``) and the pack per distinct value; its FLOP difference is printed.

GPU rows (CUDA present, ``--device cuda``): bf16 and fp8 (``cast_linears_to_fp8``) weights, eager vs
compiled, official HEAD in bf16, with the SDPA backend given by ``--sdpa``. Without CUDA they are skipped.

    LTX2_REFERENCE_HEAD_SRC=<Lightricks/LTX-2>/packages/ltx-core/src python benchmarks/dit_forward.py --rounds 5
    python benchmarks/dit_forward.py --small --rounds 2       # smoke run at toy widths
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import types
from dataclasses import replace

import _util  # puts the repo on sys.path
import torch

from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.model.compiling import CompileOptions, compiled_blocks
from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.shapes import audio_latent_frames, video_latent_size
from ltx2_nodes.model.transformer import LTX2Transformer, ModalityInput, TransformerConfig

FPS, TEXT = 24.0, 1024
REAL = dict(width=768, height=512, frames=25, text=TEXT, cfg={})
SMALL = dict(width=256, height=256, frames=9, text=64,
             cfg=dict(num_attention_heads=4, attention_head_dim=32, audio_num_attention_heads=4,
                      audio_attention_head_dim=16, cross_attention_dim=128, audio_cross_attention_dim=64,
                      caption_channels=96))
LTX23 = dict(apply_gated_attention=True, cross_attention_adaln=True, caption_proj_before_connector=True)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.bfloat16}


def inputs(cfg: TransformerConfig, shape: dict, per_token: bool, device: str):
    gen = torch.Generator().manual_seed(1)
    f, h, w = video_latent_size(shape["frames"], shape["height"], shape["width"])
    tokens, audio_tokens = f * h * w, audio_latent_frames(shape["frames"], FPS)
    sigma = torch.full((1,), 0.7)
    timesteps = sigma.view(1, 1)
    if per_token:
        timesteps = torch.full((1, tokens), 0.7)
        timesteps[:, : h * w] = 0.0  # first latent frame conditioned (image-to-video)
    video = ModalityInput(torch.randn(1, tokens, cfg.in_channels, generator=gen), sigma, timesteps,
                          video_positions(1, f, h, w, FPS),
                          torch.randn(1, shape["text"], cfg.context_width("video"), generator=gen))
    audio = ModalityInput(torch.randn(1, audio_tokens, cfg.audio_in_channels, generator=gen), sigma, sigma.view(1, 1),
                          audio_positions(1, audio_tokens),
                          torch.randn(1, shape["text"], cfg.context_width("audio"), generator=gen))
    move = lambda m: replace(m, **{k: getattr(m, k).to(device) for k in  # noqa: E731
                                   ("latent", "sigma", "timesteps", "positions", "context")})
    return move(video), move(audio)


@contextlib.contextmanager
def _reference_imports(src: str):
    """The official ``ltx-core`` sources on the path; ``triton`` stubbed while they import when it is absent (a
    CPU run never calls it) and taken out again, so torch.compile does not mistake the stub for Triton."""
    import torch._dynamo  # noqa: F401 - imported before any stub exists

    sys.path.insert(0, src)
    try:
        import triton  # noqa: F401
        yield
        return
    except ImportError:
        pass
    stub = types.ModuleType("triton")
    stub.jit = lambda *a, **k: (lambda f: f)
    stub.autotune = lambda *a, **k: (lambda f: f)
    stub.language = types.ModuleType("triton.language")
    stub.language.constexpr = int
    sys.modules.update({"triton": stub, "triton.language": stub.language})
    try:
        yield
    finally:
        del sys.modules["triton"], sys.modules["triton.language"]


def official(model: LTX2Transformer, compiled: bool = False):
    """The official HEAD ``LTXModel`` holding the same weight tensors, and a call taking our inputs; ``compiled``:
    through the official compiled path (``ltx_core.model.transformer.compiling.compile_transformer``, defaults)."""
    with _reference_imports(os.environ["LTX2_REFERENCE_HEAD_SRC"]):
        from ltx_core.guidance.perturbations import BatchedPerturbationConfig
        from ltx_core.model.transformer.modality import Modality
        from ltx_core.model.transformer.model import LTXModel
        from ltx_core.model.transformer.rope import LTXRopeType
        from ltx_core.model.transformer.text_projection import create_caption_projection
        from ltx_core.model.transformer.compiling import CompilationConfig, compile_transformer

    cfg = model.config
    meta = dict(caption_channels=cfg.caption_channels, num_attention_heads=cfg.num_attention_heads,
                attention_head_dim=cfg.attention_head_dim, audio_num_attention_heads=cfg.audio_num_attention_heads,
                audio_attention_head_dim=cfg.audio_attention_head_dim)
    with torch.device("meta"):
        captions = {} if cfg.caption_proj_before_connector else dict(
            caption_projection=create_caption_projection(meta),
            audio_caption_projection=create_caption_projection(meta, audio=True))
        ref = LTXModel(num_layers=cfg.num_layers, num_attention_heads=cfg.num_attention_heads,
                       attention_head_dim=cfg.attention_head_dim, cross_attention_dim=cfg.cross_attention_dim,
                       audio_num_attention_heads=cfg.audio_num_attention_heads,
                       audio_attention_head_dim=cfg.audio_attention_head_dim,
                       audio_cross_attention_dim=cfg.audio_cross_attention_dim, rope_type=LTXRopeType.SPLIT,
                       double_precision_rope=True, av_ca_timestep_scale_multiplier=1000,
                       apply_gated_attention=cfg.apply_gated_attention, cross_attention_adaln=cfg.cross_attention_adaln,
                       **captions)
    ref.load_state_dict(model.state_dict(), assign=True, strict=True)
    if compiled:
        ref = compile_transformer(ref, CompilationConfig())
    empty = BatchedPerturbationConfig.empty(1, cfg.num_layers)

    def call(video: ModalityInput, audio: ModalityInput):
        dtype = model.compute_dtype  # the official model computes in its inputs' dtype
        mods = [Modality(latent=m.latent.to(dtype), sigma=m.sigma, timesteps=m.timesteps, positions=m.positions,
                         context=m.context.to(dtype)) for m in (video, audio)]
        return ref(mods[0], mods[1], empty)

    return call


def variants_for(model, refs: dict, video, audio, compile_: bool) -> dict:
    """``{implementation: call}`` for one case's inputs."""

    def eager():
        with torch.no_grad():
            return model(video, audio)

    def compiled():
        with torch.no_grad(), compiled_blocks(model.transformer_blocks, CompileOptions()):
            return model(video, audio)

    def reference(ref):
        def call():
            with torch.no_grad():
                return ref(video, audio)
        return call

    out = {"pack eager": eager}
    if compile_:
        out["pack compiled"] = compiled
    out.update({name: reference(ref) for name, ref in refs.items()})
    return out


def _max_diff(a, b) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


CASES = {"shared": "one shared sigma", "per_token": "per-token sigma (I2V)"}


def run_dtype(name: str, args, shape: dict, cfg: TransformerConfig) -> tuple[list[list], list[str]]:
    """Rows for one weight dtype: every case x implementation, timed in the same interleaved rounds."""
    model = _util.random_dit(cfg, args.device, DTYPES[name])
    if name == "fp8":
        cast_linears_to_fp8(model.transformer_blocks)
    use_ref = bool(os.environ.get("LTX2_REFERENCE_HEAD_SRC")) and name != "fp8" and not args.no_official
    refs = {"official HEAD": official(model)} if use_ref else {}
    if use_ref and not args.no_compile and not args.no_official_compiled:
        refs["official HEAD compiled"] = official(model, compiled=True)
    variants, flops, outputs = {}, {}, {}
    for case in args.cases:
        video, audio = inputs(cfg, shape, case == "per_token", args.device)
        for impl, fn in variants_for(model, refs, video, audio, not args.no_compile).items():
            key = (case, impl)
            eager_twin = {"pack compiled": "pack eager", "official HEAD compiled": "official HEAD"}.get(impl)
            flops[key] = flops[(case, eager_twin)] if eager_twin else _util.flops_of(fn)
            outputs[key] = fn()  # warm-up (compiles the compiled variant) and the outputs compared below
            variants[key] = fn
    tokens = math.prod(video_latent_size(shape["frames"], shape["height"], shape["width"]))
    probe, probe_flops = _util.matmul_probe(DTYPES[name], tokens, cfg.inner_dim, cfg.inner_dim, device=args.device)
    probe()  # warm-up; every other variant ran above
    variants[("-", "matmul probe")] = probe
    flops[("-", "matmul probe")] = probe_flops
    variants = {f"{case}/{impl}": fn for (case, impl), fn in variants.items()}
    print(f"{name}: {len(variants)} variants, {args.rounds} rounds (load {_util.load_average()})", file=sys.stderr)
    with _sdpa_context(args.sdpa) if args.device == "cuda" else contextlib.nullcontext():
        timings = _util.interleaved(variants, args.rounds, warmup=0,
                                    log=lambda m: print(m, file=sys.stderr))
    timings = {tuple(key.split("/")): t for key, t in timings.items()}
    probe_t = timings[("-", "matmul probe")]
    rows, notes = [], []
    for impl in ("pack eager", "official HEAD"):
        if ("shared", impl) in flops and ("per_token", impl) in flops:
            extra = flops[("per_token", impl)] - flops[("shared", impl)]
            notes.append(f"{name}, {impl}: per-token sigma costs {extra / 1e9:+.3f} GFLOP "
                         f"({extra / flops[('shared', impl)]:+.2%}) over one shared sigma")
    for (case, impl), t in timings.items():
        fl = flops[(case, impl)]
        ref_t = timings.get((case, "official HEAD"))
        ratio = f"{t.paired_ratio(ref_t, args.clock):.2f}x" if ref_t is not None else "-"
        fraction = statistics.median((fl / w) / (probe_flops / p)
                                     for w, p in zip(t.seconds(args.clock), probe_t.seconds(args.clock)))
        diff = _max_diff(outputs[(case, impl)], outputs[(case, "pack eager")]) if (case, impl) in outputs else None
        rows.append([name, CASES.get(case, case), impl, f"{t.median_wall:.3f}", f"{t.median_cpu:.3f}", ratio,
                     f"{fl / 1e9:.2f}", f"{fl / t.median_wall / 1e9:.1f}", f"{fraction:.0%}",
                     "-" if diff is None else f"{diff:.1e}"])
    return rows, notes


def _sdpa_context(choice: str):
    if choice == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[choice])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="toy widths and 256x256x9 (smoke run)")
    parser.add_argument("--family", choices=("2.0", "2.3"), default="2.0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", default=None, help="comma list of fp32, bf16, fp8 (default: fp32,bf16 on CPU, "
                                                       "bf16,fp8 on CUDA)")
    parser.add_argument("--cases", default="shared,per_token", help="comma list of shared, per_token")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--no-official-compiled", action="store_true", help="skip the official compiled path")
    parser.add_argument("--sdpa", choices=("default", "flash", "efficient", "cudnn", "math"), default="default",
                        help="SDPA backend on CUDA (default: PyTorch's choice)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="clock of the paired ratios and the matmul-rate fraction; on a shared machine use "
                             "'cpu' with --threads 1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.cases = args.cases.split(",")
    dtypes = (args.dtypes or ("bf16,fp8" if args.device == "cuda" else "fp32,bf16")).split(",")
    shape = SMALL if args.small else REAL
    cfg = TransformerConfig(num_layers=2, **shape["cfg"], **(LTX23 if args.family == "2.3" else {}))
    load_before = _util.load_average()
    rows, notes = [], []
    for name in dtypes:
        dtype_rows, dtype_notes = run_dtype(name, args, shape, cfg)
        rows, notes = rows + dtype_rows, notes + dtype_notes
    f, h, w = video_latent_size(shape["frames"], shape["height"], shape["width"])
    print(f"dit_forward: LTX-{args.family}, 2 blocks, video {cfg.inner_dim} wide ({cfg.num_attention_heads}x"
          f"{cfg.attention_head_dim}), audio {cfg.audio_inner_dim} wide; {shape['width']}x{shape['height']}x"
          f"{shape['frames']} -> {f * h * w} video + {audio_latent_frames(shape['frames'], FPS)} audio tokens, "
          f"{shape['text']} text tokens; {args.device}" + (f", SDPA {args.sdpa}" if args.device == "cuda" else ""))
    print(f"machine: {_util.machine()}; load average before / after: {load_before} / {_util.load_average()}; "
          f"peak RSS {_util.gib(_util.peak_rss_bytes())}; median of {args.rounds} interleaved rounds; ratios and "
          f"matmul-rate fractions on the {args.clock} clock\n")
    print(_util.table(["dtype", "case", "implementation", "wall s", "CPU s", f"official / this (paired, {args.clock})",
                       "GFLOP / fwd", "GFLOP/s", "of matmul rate", "max |diff| vs pack eager"], rows))
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
