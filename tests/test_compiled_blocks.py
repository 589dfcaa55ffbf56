"""Compiled DiT blocks (``model.compiling``) equal the eager ones and compile once per block configuration:
not once per block, not once per sampling step.

The fast tests use the ``aot_eager`` backend: Dynamo captures, guards and reuses graphs exactly as it does for
inductor (the graph count is the same), without the inductor C++ build, which takes about a minute per graph on
this machine; the slow test runs inductor itself on the golden calls.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from conftest import assert_close, find_golden
from demo_support import demo_models, headless  # noqa: F401
from memory_support import add_lora, dit_inputs, random_dit
from test_golden_transformer import FLAVOURS, _calls, _checked_calls, _inputs, _perturbations
from ltx2_nodes import stages
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2
from ltx2_nodes.latents import GenerationSettings, empty_latents
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.model.compiling import CompileOptions, compiled_blocks
from ltx2_nodes.model.transformer import Perturbations, SampleSkips
from ltx2_nodes.sampling.guidance import GuidanceParams

TRACED = CompileOptions(backend="aot_eager")
TOL = 1e-5  # compiled vs eager; the golden tolerance is 1e-4


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _golden_model(flavour: str):
    golden = find_golden("transformer", flavour)
    return golden, load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _compare_every_call(golden, flavour: str, model, options: CompileOptions) -> None:
    for call in _checked_calls(golden, flavour):  # the calls the golden test checks (2.0: those it can build)
        video, audio = _inputs(golden, call)
        skips = _perturbations(golden, call, video.latent.shape[0])
        with torch.no_grad():
            eager = model(video, audio, skips)
            with compiled_blocks(model.transformer_blocks, options):
                got = model(video, audio, skips)
        assert_close(got[0], eager[0], f"{call}.video_velocity", TOL)
        assert_close(got[1], eager[1], f"{call}.audio_velocity", TOL)


# the 2.0-head and 2.3 sets hold batched STG / isolation calls: about ten graphs, over 20 s here -> slow
@pytest.mark.parametrize("flavour", [pytest.param(f, marks=[pytest.mark.slow] if f != "2.0" else [])
                                     for f in FLAVOURS], ids=[f"golden-{f}" for f in FLAVOURS])
def test_compiled_blocks_equal_eager_on_every_golden_transformer_call(flavour):
    golden, model = _golden_model(flavour)
    first = _calls(golden)[0]
    video, audio = _inputs(golden, first)
    with torch.no_grad(), compiled_blocks(model.transformer_blocks, TRACED):
        model(video, audio)
    # every block of an unperturbed forward ran the one graph, traced whole (no graph break)
    assert graphs() == 1 and model.config.num_layers > 1
    assert not counters["graph_break"], dict(counters["graph_break"])
    _compare_every_call(golden, flavour, model, TRACED)
    # the eager path is back after the with-block
    assert all(block.compiled_run is None for block in model.transformer_blocks)


@pytest.mark.parametrize("fp8,flavour", [(False, "2.0-head"), (True, "2.3")])
def test_compiled_streamed_blocks_with_a_lora_equal_the_eager_resident_run_golden(fp8, flavour):
    golden, model = _golden_model(flavour)
    if fp8:
        assert cast_linears_to_fp8(model.transformer_blocks) > 0
    assert add_lora(model.transformer_blocks, style="hook") > 0
    video, audio = _inputs(golden, _calls(golden)[0])
    with torch.no_grad():
        expected = model(video, audio)
    budget = 2 * tensor_bytes(module_tensors(model))
    engine = MemoryEngine("cpu", virtual=True, vram_budget=budget, minimal=True, host_mode="packed")
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage, \
            compiled_blocks(model.transformer_blocks, TRACED):
        assert stage.mode == "streamed"
        first, second = model(video, audio), model(video, audio)
    for got in (first, second):
        assert_close(got[0], expected[0], "video_velocity", TOL)
        assert_close(got[1], expected[1], "audio_velocity", TOL)
    assert stage.stats.copies >= 2 * len(model.transformer_blocks)
    # weights re-pointed at slot views between blocks do not make a block recompile
    assert graphs() == 1


def test_steps_with_per_token_timesteps_and_stg_reuse_the_compiled_graphs():
    model = random_dit(layers=4, heads=2)
    video, audio = dit_inputs(model.config)  # per-token video timesteps: the first latent frame at 0
    conditioned = video.timesteps == 0
    stg = Perturbations([SampleSkips.stg([2])])

    def step(sigma: float):
        video.sigma = audio.sigma = audio.timesteps = torch.full((1,), sigma)
        video.timesteps = torch.full_like(video.timesteps, sigma).masked_fill(conditioned, 0.0)
        return model(video, audio), model(video, audio, stg)

    sigmas = (0.9, 0.6, 0.3)
    with torch.no_grad():
        eager = [step(s) for s in sigmas]
        seen = []
        with compiled_blocks(model.transformer_blocks, TRACED):
            for sigma, expected in zip(sigmas, eager):
                got = step(sigma)
                seen.append(graphs())
                for g, e in zip(got, expected):
                    assert_close(g[0], e[0], f"video at sigma {sigma}", TOL)
                    assert_close(g[1], e[1], f"audio at sigma {sigma}", TOL)
    # one graph for the plain blocks, one for the STG-perturbed block, both compiled at the first step only
    assert seen == [2, 2, 2]


def test_a_compiled_tiny_run_compiles_at_its_first_step_only(headless, demo_models):
    clear_caches()
    ltx2, gemma = load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu")
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox", "blurry"], headless))
    positive, negative = stages.split_text(text, 0), stages.split_text(text, 1)
    latents = empty_latents(1, 9, 64, 64, 24.0, video_channels=8)
    guidance = GuidanceParams(cfg=3.0, stg=1.0, stg_blocks=(0,))  # cond, uncond and STG passes
    settings = GenerationSettings(torch.tensor([1.0, 0.6, 0.3, 0.0]), seed=5, video_guidance=guidance,
                                  audio_guidance=guidance)
    expected = stages.run_sampler(ltx2.dit, positive, latents, settings, negative=negative)
    per_step = []
    got = stages.run_sampler(ltx2.dit.with_compile(options=TRACED), positive, latents, settings, negative=negative,
                             callback=lambda *_: per_step.append(graphs()))
    assert len(per_step) == settings.steps and per_step[0] > 0
    assert per_step == per_step[:1] * len(per_step), f"graphs compiled after each step: {per_step}"
    assert_close(got.video, expected.video, "video", TOL)
    assert_close(got.audio, expected.audio, "audio", TOL)


@pytest.mark.slow
def test_inductor_compiled_blocks_equal_eager_on_every_golden_transformer_call():
    golden, model = _golden_model("2.0-head")
    _compare_every_call(golden, "2.0-head", model, CompileOptions())


def test_the_compile_node_switches_the_handle_and_describes_it(headless, demo_models):
    from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS

    clear_caches()
    dit = load_ltx2(demo_models.checkpoint, device="cpu").dit
    node = NODE_CLASS_MAPPINGS["LTX2CompileDiT"]()
    (compiled,) = node.compile(dit, enabled=True)
    (plain,) = node.compile(compiled, enabled=False)
    assert dit.compiled is None and compiled.compiled == CompileOptions() and plain.compiled is None
    assert compiled.describe().endswith("(compiled)") and compiled.model is dit.model  # the module is shared
