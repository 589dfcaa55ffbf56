"""The frontend extension (js/): Node's unit tests, and the JS numbers checked against the Python they mirror.

js/lib/*.js repeat a few Python facts for the canvas: the sampler presets (sampling/recipe.py, as the
sampler node's widgets), the size rules and token counts (model/shapes.py) and the DiT memory estimate
(memory/estimates.py, memory/precheck.py). Node evaluates the JS side and prints JSON; these tests
compare it with the Python values. Everything here is skipped, with the reason, when Node >= 20 is
not on PATH.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.memory.estimates import TEXT_TOKENS, audio_tokens, dit_activation_bytes, video_tokens
from ltx2_nodes.memory.ledger import gib
from ltx2_nodes.memory.precheck import RunRequest, estimate_run, module_weights
from ltx2_nodes.model.shapes import (AudioTiming, VideoScale, frames_for_seconds, size_multiple, snap_video_size,
                                     video_latent_size)
from ltx2_nodes.model.transformer import LTX2Transformer, TransformerConfig
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.guidance import NO_GUIDANCE
from ltx2_nodes.sampling.recipe import recipe_for

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "js" / "lib"
MIN_NODE_MAJOR = 20


def _node() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    return node if match and int(match.group(1)) >= MIN_NODE_MAJOR else None


NODE = _node()
pytestmark = pytest.mark.skipif(NODE is None, reason=f"Node.js >= {MIN_NODE_MAJOR} is not on PATH: the js/ "
                                "extension's tests need it (install nodejs, e.g. apt-get install nodejs)")


def node_json(imports: dict[str, str], expression: str):
    """Evaluate ``expression`` in an ES module importing ``{name: lib file}`` and return it via JSON."""
    lines = [f"import * as {name} from {json.dumps((LIB / file).as_uri())};" for name, file in imports.items()]
    lines.append(f"console.log(JSON.stringify({expression}));")
    proc = subprocess.run([NODE, "--input-type=module", "-e", "\n".join(lines)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_node_unit_tests_pass():
    """``node --test tests/js/``: the lib modules and the extension loaded as the browser loads it."""
    proc = subprocess.run([NODE, "--test", "tests/js/"], capture_output=True, text=True, timeout=300, cwd=REPO)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    passed = re.search(r"^# pass (\d+)$", output, re.M)
    assert passed and int(passed.group(1)) > 0 and re.search(r"^# fail 0$", output, re.M), output[-3000:]


# ------------------------------------------------------------------------------------------------
# Sampler presets


@pytest.fixture(scope="module")
def presets():
    return node_json({"s": "sampler.js"}, "{presets: s.PRESETS, ratio: s.DEV_CFG_RATIO}")


def _blocks(text: str) -> tuple[int, ...]:
    return tuple(int(b) for b in re.split(r"[\s,]+", text) if b)


# canvas preset -> (model family, its sampling.recipe preset); None: the default family
RECIPE_PRESETS = {"dev": (None, "dev"), "distilled": (None, "distilled"), "distilled 2.5": ("2.5", "distilled"),
                  "stage 2 refine": (None, "refine"), "hq": (None, "hq"), "hq stage 2": (None, "hq_stage2")}


def _recipe_preset(recipe, name: str):
    return {"hq": recipe.preset("hq"), "hq_stage2": recipe.refine_preset("hq")}.get(name) or getattr(recipe, name)


def test_canvas_presets_are_the_recipe_presets(presets):
    """Every value a canvas preset sets is what the recipe preset gives the sampler (``preset_widgets``, the
    workflow builder's values); the dev preset sets every schedule and guidance widget."""
    assert set(presets["presets"]) == set(RECIPE_PRESETS)
    for name, (family, attr) in RECIPE_PRESETS.items():
        recipe = recipe_for(family)
        python = preset_widgets(_recipe_preset(recipe, attr), recipe.stg_blocks)
        for widget, value in presets["presets"][name].items():
            if widget == "stg_blocks":
                assert _blocks(value) == _blocks(python[widget]), name
            else:
                assert value == python[widget], (name, widget)
    assert {"steps", "schedule", "start_sigma", "video_cfg", "audio_cfg", "modality_scale", "stg_scale", "stg_blocks",
            "rescale"} <= set(presets["presets"]["dev"])
    dev = recipe_for().dev
    assert presets["ratio"] == (dev.audio_guidance.cfg - 1) / (dev.video_guidance.cfg - 1)


@pytest.mark.parametrize("name", ["distilled", "distilled 2.5", "stage 2 refine"])
def test_distilled_presets_turn_guidance_off(presets, name):
    preset = presets["presets"][name]
    off = NO_GUIDANCE
    assert (preset["video_cfg"], preset["audio_cfg"]) == (off.cfg, off.cfg)
    assert (preset["modality_scale"], preset["stg_scale"], preset["rescale"]) == (off.modality, off.stg, off.rescale)
    assert "steps" not in preset  # the fixed lists ignore steps


def _sampler_inputs():
    from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS

    if "LTX2Sampler" not in NODE_CLASS_MAPPINGS or "LTX2EmptyAVLatent" not in NODE_CLASS_MAPPINGS:
        pytest.skip("LTX2Sampler / LTX2EmptyAVLatent are not registered in ltx2_nodes.nodes yet")

    def inputs(node_id):
        try:
            spec = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        except ImportError as err:  # a node that needs ComfyUI to describe itself
            pytest.skip(f"{node_id}.INPUT_TYPES needs ComfyUI: {err}")
        return {**spec.get("required", {}), **spec.get("optional", {})}

    return inputs("LTX2Sampler"), inputs("LTX2EmptyAVLatent")


def _options(spec) -> tuple[object, dict]:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 else {}
    if kind == "COMBO":
        return options.get("options", []), options
    return kind, options


def test_presets_and_limits_fit_the_node_definitions(presets):
    """Every widget a preset sets exists, and its value is one the widget accepts."""
    sampler, latent = _sampler_inputs()
    for name, preset in presets["presets"].items():
        for widget, value in preset.items():
            assert widget in sampler, f"preset {name!r} sets {widget!r}, which LTX2Sampler does not have"
            kind, options = _options(sampler[widget])
            if isinstance(kind, list):
                assert value in kind, f"preset {name!r}: {widget}={value!r} is not one of {kind}"
            elif isinstance(value, (int, float)):
                assert options.get("min", value) <= value <= options.get("max", value), (name, widget, value)
    limits = node_json({"s": "shape.js"}, "s.LIMITS")
    for widget, key in (("width", "size"), ("height", "size"), ("frames", "frames"), ("fps", "fps")):
        _, options = _options(latent[widget])
        assert (options["min"], options["max"]) == (limits[key]["min"], limits[key]["max"]), widget


# ------------------------------------------------------------------------------------------------
# Tokens and the DiT memory estimate

REQUESTS = [  # width, height, frames, fps, batch
    (768, 512, 121, 24.0, 1), (1280, 704, 121, 24.0, 1), (1920, 1088, 241, 24.0, 2), (512, 320, 1, 25.0, 1),
    (960, 544, 97, 23.976, 4), (64, 64, 1025, 120.0, 1), (1536, 1024, 121, 30.0, 1), (64, 64, 5, 50.0, 1),
    (64, 96, 3, 50.0, 1),
]


@pytest.fixture(scope="module")
def released_dit():
    """DiT stage weights of the released 19B, bf16 and fp8 blocks (built on the meta device)."""
    with torch.device("meta"):
        dit = LTX2Transformer(TransformerConfig()).to(torch.bfloat16)
    bf16 = module_weights("dit", dit, dit.transformer_blocks)
    cast_linears_to_fp8(dit.transformer_blocks)
    return {"bf16": bf16, "fp8": module_weights("dit", dit, dit.transformer_blocks)}


@pytest.fixture(scope="module")
def js_estimates():
    expr = ("R.map(([w, h, f, fps, b]) => { const tv = sh.videoTokens(w, h, f), ta = sh.audioTokens(f, fps); "
            "return {tv, ta, act: est.ditActivationBytes(tv, ta, {batch: b}), "
            "act_no_audio: est.ditActivationBytes(tv, 0, {batch: b}), "
            "fp8: est.ditVram(tv, ta, {weights: 'fp8', batch: b}), "
            "bf16: est.ditVram(tv, ta, {weights: 'bf16', batch: b})}; })")
    return node_json({"sh": "shape.js", "est": "estimates.js"},
                     f"((R) => {expr})({json.dumps(REQUESTS)})")


def test_model_constants_are_the_19b_config_and_weights(released_dit):
    js = node_json({"est": "estimates.js"}, "est.LTX2_19B")
    cfg = TransformerConfig()
    assert (js["videoWidth"], js["audioWidth"], js["crossModalWidth"], js["captionChannels"], js["blocks"]) == (
        cfg.inner_dim, cfg.audio_inner_dim, cfg.audio_cross_attention_dim, cfg.caption_channels, cfg.num_layers)
    assert js["textTokens"] == TEXT_TOKENS
    for kind, weights in released_dit.items():
        assert set(weights.block_bytes) == {js["blockBytes"][kind]}, kind
        assert weights.fixed_bytes == js["fixedBytes"], kind
    assert released_dit["fp8"].largest_linear == js["largestLinear"]


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_tokens_and_activations_equal_the_python_estimate(js_estimates, index):
    width, height, frames, fps, batch = REQUESTS[index]
    js = js_estimates[index]
    tv, ta = video_tokens(width, height, frames), audio_tokens(frames, fps)
    assert (js["tv"], js["ta"]) == (tv, ta)
    cfg = TransformerConfig()
    assert js["act"] == dit_activation_bytes(cfg, tv, ta, batch=batch)
    assert js["act_no_audio"] == dit_activation_bytes(cfg, tv, 0, batch=batch)


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_vram_equals_the_precheck_dit_stage(js_estimates, released_dit, index):
    width, height, frames, fps, batch = REQUESTS[index]
    request = RunRequest(width, height, frames, fps, batch=batch)
    for kind, weights in released_dit.items():
        stage = estimate_run({"dit": weights}, request, vram_budget=2 ** 50, ram_budget=2 ** 50).stages[0]
        js = js_estimates[index][kind]
        assert (js["activations"], js["streamed"], js["resident"]) == (
            stage.activation_bytes, stage.min_vram, stage.full_vram), kind


def test_sizes_print_like_the_ledger():
    sizes = [0, 1000, 3 * 2 ** 20, 2 ** 30 // 10, 815_000_000, 40 * 2 ** 30]
    assert node_json({"est": "estimates.js"}, f"{json.dumps(sizes)}.map(est.formatBytes)") == [gib(s) for s in sizes]


def test_seconds_to_frames_matches_python():
    """The canvas helper and the nodes/CLI pick the same 8k+1 frame count for a duration."""
    cases = [(s / 20, fps) for s in range(1, 200, 7) for fps in (23.976, 24, 25, 30)]
    ours = node_json({"shape": "shape.js"}, f"{json.dumps(cases)}.map(([s, f]) => shape.framesForSeconds(s, f))")
    assert ours == [frames_for_seconds(s, f) for s, f in cases]


# ------------------------------------------------------------------------------------------------
# The size rules (model/shapes.py)


def test_shape_constants_are_the_python_rules():
    js = node_json({"s": "shape.js"}, "{spatial: s.SPATIAL_STRIDE, temporal: s.TEMPORAL_STRIDE, "
                   "twoStage: s.TWO_STAGE_MULTIPLE, audio: s.AUDIO_LATENTS_PER_SECOND}")
    scale = VideoScale()
    assert (js["spatial"], js["temporal"], js["twoStage"], js["audio"]) == (
        size_multiple(scale), scale.time, size_multiple(scale, two_stage=True), AudioTiming().latents_per_second)


def test_latent_grid_and_snapping_equal_the_python_rules():
    """Grid per request, and the widget snapping: Python's nearest valid size clamped to the widget range."""
    sizes, frames = list(range(-40, 4200, 23)), list(range(-5, 1100, 7))
    js = node_json({"s": "shape.js"}, f"{{grid: {json.dumps(REQUESTS)}.map(([w, h, f]) => s.videoLatentGrid(w, h, f)), "
                   f"size: {json.dumps(sizes)}.map((v) => s.snapSize(v)), "
                   f"frames: {json.dumps(frames)}.map((v) => s.snapFrames(v)), limits: s.LIMITS}}")
    assert js["grid"] == [list(video_latent_size(f, h, w)) for w, h, f, _, _ in REQUESTS]
    size, count = js["limits"]["size"], js["limits"]["frames"]
    assert js["size"] == [min(max(snap_video_size(1, v, v)[1], size["min"]), size["max"]) for v in sizes]
    assert js["frames"] == [min(max(snap_video_size(v, 32, 32)[0], count["min"]), count["max"]) for v in frames]
