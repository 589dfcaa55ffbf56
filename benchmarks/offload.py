"""offload: DiT step time and memory, fully resident vs block-streamed by the memory engine.

GPU rows (CUDA only; without it they print "no CUDA device"): the full 48-block 19B DiT with
random weights (Linear weights of the blocks cast to fp8 by default, ``--weights bf16`` for
bf16), at 768x512x121 and 1280x704x121, batch 1, 1024 text tokens. Seconds per step = one DiT
forward (mean of 3 after a warm-up), fully resident and streamed at budgets 24/16/12/8 GiB;
peak VRAM is ``torch.cuda.max_memory_allocated`` over the stage, peak RSS the process high-water
mark (reset per case). The model is built once per process, block by block.

Prediction rows (always): what the streaming planner's cost model expects for those GPU cases on
two assumed devices (not a measurement).

CPU rows (always): the accounting run on a virtual compute device. A slice of the 19B DiT (real
widths, 4 blocks, bf16, weights memory-mapped from a synthetic checkpoint written to ``--dir``)
at 512x320x25 (640 video + 26 audio tokens, 256 text tokens). Budget = non-block weights +
activation estimate + two (or three) block slots. Reported: the engine ledger's peak and the
independently counted device allocations vs the budget, bytes left on the device afterwards,
seconds per step and peak RSS of the process (each case in a fresh interpreter).

Pre-check rows (always, LTX-2 19B and LTX-2.3 22B): block bytes bf16 / fp8 and ``precheck`` of
1280x704x121 with fp8-cast blocks at 8 GiB VRAM / 32 GiB RAM (estimates; prediction rows likewise per family).

    python benchmarks/offload.py [--dir /tmp] [--weights fp8|bf16] [--skip-cpu] [--precheck-only]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import _util
import torch

from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.loading.safetensors_file import write_safetensors
from ltx2_nodes.memory import MemoryEngine, dit_profile, plan_streaming
from ltx2_nodes.memory.estimates import audio_tokens, video_tokens
from ltx2_nodes.model.shapes import video_latent_size
from ltx2_nodes.memory.host import BlockLayout
from ltx2_nodes.memory.measure import DeviceAllocations
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.transformer import LTX2Transformer, ModalityInput, TransformerConfig

GiB = 2 ** 30
FPS = 24.0
GPU_SIZES = [(768, 512, 121), (1280, 704, 121)]
GPU_BUDGETS = [24, 16, 12, 8]
CPU_SIZE, CPU_TEXT, CPU_BLOCKS = (512, 320, 25), 256, 4
NAME = "ltx2_synthetic_4blocks_bf16.safetensors"


def inputs(cfg: TransformerConfig, size: tuple[int, int, int], text: int, device) -> tuple[ModalityInput, ...]:
    width, height, frames = size
    f, h, w = video_latent_size(frames, height, width)
    ta = audio_tokens(frames, FPS)
    gen = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    sigma = torch.full((1,), 0.7, device=device)
    video = ModalityInput(rand(1, f * h * w, cfg.in_channels), sigma, sigma,
                          video_positions(1, f, h, w, FPS).to(device), rand(1, text, cfg.context_width("video")))
    audio = ModalityInput(rand(1, ta, cfg.audio_in_channels), sigma, sigma, audio_positions(1, ta).to(device),
                          rand(1, text, cfg.context_width("audio")))
    return video, audio


def reset_peak_rss() -> None:
    """Linux: reset VmHWM so the next peak is this case's own (no-op where unsupported)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed_steps(model, video, audio, sync, steps: int) -> float:
    with torch.no_grad():
        model(video, audio)  # warm-up (and first prefetch)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model(video, audio)
        sync()
    return (time.perf_counter() - start) / steps


# ------------------------------------------------------------------------------------------------
# GPU: the real 19B shapes


def build_19b(weights: str) -> LTX2Transformer:
    """Random weights of the true size, one block at a time (never a full bf16 copy when fp8)."""
    with torch.device("meta"):
        model = LTX2Transformer(TransformerConfig()).to(torch.bfloat16)
    gen = torch.Generator(device="cuda").manual_seed(0)

    def materialise(module):
        module.to_empty(device="cpu")
        with torch.no_grad():
            for p in module.parameters(recurse=True):
                p.copy_(torch.empty(p.shape, device="cuda", dtype=p.dtype).normal_(0, 0.02, generator=gen))

    for name, child in model.named_children():
        if name != "transformer_blocks":
            materialise(child)
    for name, p in list(model.named_parameters(recurse=False)):
        setattr(model, name, torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype).normal_(0, 0.02),
                                                requires_grad=False))
    for block in model.transformer_blocks:
        materialise(block)
        if weights == "fp8":
            cast_linears_to_fp8(block)
    return model.eval().requires_grad_(False)


def gpu_rows(weights: str) -> list[list]:
    if not torch.cuda.is_available():
        return [[f"{w}x{h}x{f}", weights, b, "no CUDA device", "", "", "", ""]
                for (w, h, f) in GPU_SIZES for b in ["resident"] + [f"{g} GiB" for g in GPU_BUDGETS]]
    device_name = torch.cuda.get_device_name(0)
    model = build_19b(weights)
    cfg = model.config
    rows = []
    for size in GPU_SIZES:
        video, audio = inputs(cfg, size, 1024, "cuda")
        profile = dit_profile(cfg, video.latent.shape[1], audio.latent.shape[1])
        resident_s = None
        for budget in [None] + [g * GiB for g in GPU_BUDGETS]:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            reset_peak_rss()
            engine = MemoryEngine("cuda", vram_budget="auto" if budget is None else budget)
            label = "resident" if budget is None else f"{budget // GiB} GiB"
            try:
                start = time.perf_counter()
                with engine.stage("dit", model, blocks=model.transformer_blocks, profile=profile) as st:
                    entry = time.perf_counter() - start
                    seconds = timed_steps(model, video, audio, torch.cuda.synchronize, 3)
            except Exception as err:  # noqa: BLE001 - a budget that cannot fit is a result too
                rows.append([_util_size(size), weights, label, f"refused: {str(err)[:80]}", "", "", "", ""])
                continue
            if budget is None:
                resident_s = seconds
            plan = f"{st.plan.slots} slots, {len(st.plan.resident)} resident, {st.host}" if st.plan else st.mode
            ratio = f"{seconds / resident_s:.2f}x" if resident_s else ""
            rows.append([_util_size(size), weights, label, f"{seconds:.3f}", ratio,
                         _util.gib(torch.cuda.max_memory_allocated()), _util.gib(_util.peak_rss_bytes()),
                         f"{plan}; entry {entry:.1f} s"])
    print(f"GPU: {device_name}, driver/CUDA {torch.version.cuda}")
    return rows


def _util_size(size) -> str:
    return "x".join(map(str, size))


# ------------------------------------------------------------------------------------------------
# The planner's prediction for the same GPU cases (a model, not a measurement)

ASSUMED = {"consumer (100 TFLOP/s, PCIe4 22 GB/s)": (100e12, 22e9),
           "H100-class (600 TFLOP/s, PCIe5 50 GB/s)": (600e12, 50e9)}


FAMILIES = {"2.0": {}, "2.3": dict(apply_gated_attention=True, cross_attention_adaln=True,
                                   caption_proj_before_connector=True)}


def predicted_rows(family: str = "2.0") -> list[list]:
    with torch.device("meta"):
        model = LTX2Transformer(TransformerConfig(**FAMILIES[family])).to(torch.bfloat16)
    blocks = model.transformer_blocks
    fixed = tensor_bytes(module_tensors(model, skip=[blocks]))
    bf16 = [BlockLayout(b).nbytes for b in blocks]
    for block in blocks:
        cast_linears_to_fp8(block)
    fp8 = [BlockLayout(b).nbytes for b in blocks]
    rows = []
    for device, (flops, copy) in ASSUMED.items():
        for size in GPU_SIZES:
            tv = video_tokens(*size)
            profile = dit_profile(model.config, tv, audio_tokens(size[2], FPS))
            compute = profile.block_seconds(len(blocks), flops)
            for weights, sizes in (("fp8", fp8), ("bf16", bf16)):
                for budget in GPU_BUDGETS:
                    room = budget * GiB - fixed - profile.activation_bytes
                    plan = plan_streaming(sizes, room, compute_s=compute, copy_bytes_per_s=copy)
                    if plan is None:
                        rows.append([device, _util_size(size), weights, f"{budget} GiB", "does not fit", "", ""])
                        continue
                    rows.append([device, _util_size(size), weights, f"{budget} GiB", f"{plan.predicted_s:.2f}",
                                 f"{plan.predicted_s / plan.compute_s:.2f}x",
                                 f"{plan.slots} slots, {len(plan.resident)} resident"])
    return rows


# ------------------------------------------------------------------------------------------------
# Pre-check of a whole run (estimates, not measurements)

# bf16 parameters of the stages not built here (ltx2-architecture.md §2.2/§7 for LTX-2, §12 for LTX-2.3)
SMALL_STAGES = {"2.0": {"connectors": 2 * 354_500_000 + 722_500_000, "video_vae": 528_400_000,
                        "audio_vae": 31_900_000 + 55_600_000},
                "2.3": {"connectors": 2_020_000_000 + 1_160_000_000, "video_vae": 407_200_000,
                        "audio_vae": 31_900_000}}


def precheck_report(family: str, size=(1280, 704, 121), vram_gib: int = 8, ram_gib: int = 32) -> str:
    """Block bytes (bf16 / fp8) and the pre-check of ``size`` with fp8-cast blocks under the budgets."""
    from dataclasses import replace

    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel

    from ltx2_nodes.memory.precheck import RunRequest, StageWeights, module_weights, precheck
    from ltx2_nodes.model.bigvgan import BWEVocoder, BWEVocoderConfig

    cfg = TransformerConfig(**FAMILIES[family])
    with torch.device("meta"):
        dit = LTX2Transformer(cfg).to(torch.bfloat16)
        gemma = Gemma3TextModel(Gemma3TextConfig(
            vocab_size=262208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
            num_attention_heads=16, num_key_value_heads=8, head_dim=256)).to(torch.bfloat16)
        vocoder = BWEVocoder(BWEVocoderConfig()) if family == "2.3" else None
    bf16 = module_weights("dit", dit, dit.transformer_blocks)
    cast_linears_to_fp8(dit.transformer_blocks)
    fp8 = module_weights("dit", dit, dit.transformer_blocks)
    small = {name: StageWeights(name, 2 * n) for name, n in SMALL_STAGES[family].items()}
    if vocoder is not None:  # always float32: converted on load, RAM of its own
        fp32 = tensor_bytes(vocoder.state_dict().values())
        small["audio_vae"] = StageWeights("audio_vae", small["audio_vae"].fixed_bytes + fp32, host_bytes=fp32)
    weights = {"gemma": module_weights("gemma", gemma, gemma.layers),
               "dit": replace(bf16, fp8_block_bytes=fp8.block_bytes).as_fp8(), **small}
    estimate = precheck(weights, RunRequest(*size), vram_budget=vram_gib * GiB, ram_budget=ram_gib * GiB,
                        dit_config=cfg)
    return (f"LTX-{family}: DiT {bf16.total / 1e9:.2f} GB bf16 ({len(bf16.block_bytes)} blocks of "
            f"{bf16.block_bytes[0] / 1e9:.3f} GB bf16 / {fp8.block_bytes[0] / 1e9:.3f} GB fp8, outside blocks "
            f"{bf16.fixed_bytes / 1e9:.3f} GB)\n"
            f"{_util_size(size)}, fp8 blocks, {vram_gib} GiB VRAM, {ram_gib} GiB RAM:\n" + estimate.table())


# ------------------------------------------------------------------------------------------------
# CPU: accounting run on a virtual device


def write_checkpoint(path: Path) -> Path:
    """A DiT-only file in the released layout: the real 19B widths with 4 blocks, bf16, config metadata."""
    if path.exists():
        return path
    entries, config = _util.synthetic_dit_entries(CPU_BLOCKS)
    return write_safetensors(path, entries, {"config": json.dumps({"transformer": config})})


def cpu_case(case: dict) -> dict:
    ckpt = LTX2Checkpoint(case["path"])
    model = load_transformer(ckpt)  # bf16 views of the memory map
    cfg = model.config
    video, audio = inputs(cfg, CPU_SIZE, CPU_TEXT, "cpu")
    profile = dit_profile(cfg, video.latent.shape[1], audio.latent.shape[1], text_tokens=CPU_TEXT)
    blocks = model.transformer_blocks
    fixed = tensor_bytes(module_tensors(model, skip=[blocks]))
    slot = BlockLayout(blocks[0]).nbytes
    budget = {"host": None, "resident": 2 * tensor_bytes(module_tensors(model)),
              "packed": fixed + profile.activation_bytes + 2 * slot,
              "staged": fixed + profile.activation_bytes + 2 * slot,
              "staged+1": fixed + profile.activation_bytes + 3 * slot}[case["how"]]
    if budget is None:
        engine = MemoryEngine("cpu")
    else:
        engine = MemoryEngine("cpu", virtual=True, vram_budget=budget,
                              host_mode="packed" if case["how"] == "packed" else "staged")
    with DeviceAllocations() as allocations:
        with engine.stage("dit", model, blocks=blocks, profile=profile, release_pages=ckpt.release_pages) as st:
            seconds = timed_steps(model, video, audio, lambda: None, 2)
        gc.collect()
    plan = f"{st.plan.slots} slots, {len(st.plan.resident)} resident" if st.plan else st.mode
    return {"seconds": seconds, "budget": budget, "ledger_peak": engine.ledger.peak,
            "allocated_peak": allocations.peak, "left": engine.device_bytes + allocations.live,
            "rss": _util.peak_rss_bytes(), "plan": plan, "weights": tensor_bytes(module_tensors(model))}


def cpu_rows(directory: Path) -> list[list]:
    path = write_checkpoint(directory / NAME)
    rows = []
    for how in ["host", "resident", "packed", "staged", "staged+1"]:
        r = _util.run_isolated(__file__, {"cpu": True, "path": str(path), "how": how})
        budget = _util.gib(r["budget"]) if r["budget"] else "none (host)"
        within = "yes" if r["budget"] is None or max(r["ledger_peak"], r["allocated_peak"]) <= r["budget"] else "NO"
        rows.append([how, r["plan"], budget, _util.gib(r["ledger_peak"]), _util.gib(r["allocated_peak"]), within,
                     r["left"], f"{r['seconds']:.2f}", _util.gib(r["rss"])])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--weights", choices=["fp8", "bf16"], default="fp8")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--precheck-only", action="store_true", help="only the block sizes and pre-check figures")
    args = _util.parse_or_answer_case(parser, cpu_case)
    if args is None:
        return
    print(_util.machine())
    print()
    for family in FAMILIES:
        print(precheck_report(family))
        print()
    if args.precheck_only:
        return
    print(_util.table(["size", "weights", "budget", "s/step", "vs resident", "peak VRAM", "peak RSS", "plan"],
                      gpu_rows(args.weights)))
    print()
    print("Planner prediction for the same cases (cost model of memory/planner.py with assumed speeds; "
          "activation reserve from memory/estimates.py, batch 1):")
    for family in FAMILIES:
        print(f"LTX-{family}:")
        print(_util.table(["assumed device", "size", "weights", "budget", "predicted s/step", "vs resident", "plan"],
                          predicted_rows(family)))
    if not args.skip_cpu:
        print()
        print(f"CPU accounting run: 19B widths, {CPU_BLOCKS} blocks bf16 (memory-mapped), "
              f"{_util_size(CPU_SIZE)}, {CPU_TEXT} text tokens, virtual device")
        print(_util.table(["case", "plan", "budget", "ledger peak", "allocated peak", "within", "bytes left",
                           "s/step", "peak RSS"], cpu_rows(Path(args.dir))))


if __name__ == "__main__":
    main()
