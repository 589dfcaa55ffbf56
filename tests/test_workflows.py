"""The shipped workflows: generated from one source, valid against the node definitions (ids, link types,
widget ranges, combos -- model names from folders may be the released names), UI and API twins describing
the same graph, and running end to end on the demo models through ``python -m ltx2_nodes run``."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from demo_support import DEMO_INPUTS, DEMO_WORKFLOWS, REPO, demo_models, headless, load_json  # noqa: F401
from ltx2_nodes import paths
from ltx2_nodes.cli import core_nodes, main
from ltx2_nodes.cli.executor import Executor, default_registry
from ltx2_nodes.cli.jobs import PROMPT_INPUT_NAMES, find_input
from ltx2_nodes.cli.workflow import Workflow
from ltx2_nodes.media.mux import probe

sys.path.insert(0, str(REPO / "scripts"))
import build_workflows as build
import workflow_formats as formats
import workflow_graph as graph

UI_FILES = sorted((REPO / "example_workflows").glob("*.json"))
API_FILES = sorted((REPO / "workflows").glob("*.api.json"))
DEMO_FILES = sorted(DEMO_WORKFLOWS.glob("*.api.json"))
FOLDER_NAMES = {"checkpoints": ["distilled", "dev"], "diffusion_models": [], "text_encoders": ["gemma"],
                "loras": ["lora", "ic_lora", "dubit_lora"],
                "latent_upscale_models": ["upscaler", "upscaler_x1_5", "upscaler_temporal"],
                "vae": [], "model_patches": []}
KINDS_25 = {"t2av_distilled_two_stage", "t2av_dev_two_stage", "i2av_distilled_two_stage", "t2av_keyframes_auto_length"}
CONTROL_WORKFLOWS = {"ltx23_dubit_distilled_two_stage", "ltx23_ic_lora_union_control_two_stage"}  # issue 16


def _two_stage(files: list[Path]) -> list[Path]:
    """The two-stage generation workflows (the editing ones have their own checks: test_workflows_editing.py)."""
    return [p for p in files if "two_stage" in p.name]


def test_every_workflow_kind_ships_per_model_family_in_each_form():
    names = {p.name.split(".")[0] for p in UI_FILES}
    kinds = {"t2av_distilled_two_stage", "t2av_dev_two_stage", "i2av_distilled_two_stage", "a2v_distilled_two_stage",
             "t2av_distilled_tiled_refine", "v2a_distilled_one_stage", "t2a_dev_one_stage",
             "keyframes_distilled_two_stage", "extend_distilled", "retake_distilled", "t2av_hq_two_stage"}
    assert names == (kinds | {"ltx23_" + kind for kind in kinds} | {"ltx25_" + kind for kind in KINDS_25}
                     | {"ltx23_t2av_distilled_x1_5_upscale", "ltx23_t2av_distilled_temporal_x2_upscale"}
                     | CONTROL_WORKFLOWS)
    assert {p.name.split(".")[0] for p in API_FILES} == names == {p.name.split(".")[0] for p in DEMO_FILES}


def test_generated_files_are_up_to_date():
    for relative, text in build.build().items():
        assert (REPO / relative).read_text(encoding="utf-8") == text, \
            f"{relative} is stale: run python scripts/build_workflows.py"
    assert (DEMO_INPUTS / graph.DEMO["image"]).is_file() and (DEMO_INPUTS / graph.DEMO["audio"]).is_file()


@pytest.fixture
def folder_lists(monkeypatch):
    """Model and input combos list the released and the demo names (no files needed to validate)."""
    tables = [table for release, _ in build.RELEASE_WORKFLOWS for table in (release.released, release.demo)]

    def list_models(folder):
        folder = {"clip": "text_encoders", "unet": "diffusion_models"}.get(folder, folder)
        return sorted({table[key] for key in FOLDER_NAMES[folder] for table in tables if key in table})

    monkeypatch.setattr(paths, "list_models", list_models)
    monkeypatch.setattr(core_nodes, "_input_files", lambda kinds: sorted(
        {t[k] for t in tables for k in ("image", "audio", "last_image", "clip", "video", "control_video") if k in t}))
    monkeypatch.setattr(core_nodes.LoadImage, "VALIDATE_INPUTS", classmethod(lambda cls, image: True), raising=False)
    monkeypatch.setattr(core_nodes.LoadAudio, "VALIDATE_INPUTS", classmethod(lambda cls, audio: True), raising=False)
    monkeypatch.setattr(core_nodes.LoadVideo, "VALIDATE_INPUTS", classmethod(lambda cls, file: True), raising=False)


@pytest.mark.parametrize("path", API_FILES + DEMO_FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_api_workflows_validate_against_the_node_definitions(path, folder_lists):
    workflow = Workflow.load(path)
    plan = Executor(default_registry()).plan(workflow)
    # the MP4 node, or core SaveAudio's FLAC for text to audio (LTX-2.5's keyframes clip is saved by "24")
    output = ("23", "SaveAudio") if path.name.split(".")[0].endswith("t2a_dev_one_stage") else ("11", "LTX2AVCombine")
    assert plan.classes[output[0]].class_type == output[1]
    assert plan.order[-1] == output[0] or (plan.order[-1] == "24" and "keyframes_auto_length" in path.name)
    assert len(plan.order) == len(workflow.prompt)  # every node feeds the output
    # the batch queue finds the prompt by itself (the negative prompt is titled as such)
    assert find_input(workflow, None, PROMPT_INPUT_NAMES, str, "--prompt-input") == [("3", "prompt")]


# ------------------------------------------------------------------------------------------------ UI format


def _widgets(node_type: str) -> list[tuple[str, object, dict]]:
    return [(name, kind, options) for name, kind, options, _ in formats._declared(node_type)
            if formats.is_widget(kind, options)]


def ui_to_api(ui: dict) -> dict:
    """The frontend's graphToPrompt for these files: widget values in declaration order (skipping the value of
    control_after_generate), links followed, PrimitiveNodes' values put into their targets, Notes dropped."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in ("Note", "PrimitiveNode"):
            continue
        values = list(node["widgets_values"])
        inputs = {}
        for name, _kind, options in _widgets(node["type"]):
            inputs[name] = values.pop(0)
            if options.get("control_after_generate"):
                assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
        for entry in node["inputs"]:
            if entry["link"] is None:
                continue
            _, source, slot, _, _, _ = links[entry["link"]]
            origin = nodes[source]
            inputs[entry["name"]] = origin["widgets_values"][0] if origin["type"] == "PrimitiveNode" \
                else [str(source), slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflows_are_valid_graphs_of_the_nodes(path, folder_lists):
    ui = load_json(path)
    registry = default_registry()
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == len(ui["links"])
    assert any(n["type"] == "Note" and len(n["widgets_values"][0]) > 200 for n in nodes.values())
    for node in nodes.values():
        assert node["type"] in registry or node["type"] in ("Note", "PrimitiveNode"), node["type"]
    for link_id, source, slot, target, target_slot, kind in ui["links"]:
        origin, dest = nodes[source], nodes[target]
        assert origin["outputs"][slot]["type"] == kind and link_id in origin["outputs"][slot]["links"]
        entry = dest["inputs"][target_slot]
        assert entry["link"] == link_id and entry["type"] == kind
        declared = {name: k for name, k, _, _ in formats._declared(dest["type"])}
        assert declared[entry["name"]] == kind, f"{dest['type']}.{entry['name']} is {declared[entry['name']]}"
        if origin["type"] != "PrimitiveNode":
            assert registry[origin["type"]].RETURN_TYPES[slot] == kind
        else:  # a primitive feeds a widget converted to an input, and holds the value the widget shows
            assert entry["widget"]["name"] == entry["name"]
            position = [name for name, _, _ in _widgets(dest["type"])].index(entry["name"])
            controls = sum(1 for name, _, o in _widgets(dest["type"])[:position] if o.get("control_after_generate"))
            assert dest["widgets_values"][position + controls] == origin["widgets_values"][0]
    # the same graph as the API twin (what ComfyUI would queue), which the executor validates
    api = load_json(REPO / "workflows" / path.name.replace(".json", ".api.json"))
    assert ui_to_api(ui) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    Executor(registry).plan(Workflow(ui_to_api(ui), str(path)))


def test_both_samplers_share_one_seed_and_the_stage_two_recipe():
    for path in _two_stage(API_FILES):
        prompt = load_json(path)
        stage1, stage2 = prompt["6"]["inputs"], prompt["8"]["inputs"]
        assert stage1["seed"] == stage2["seed"] == graph.SEED
        assert stage2["schedule"] == "distilled stage 2" and stage2["start_sigma"] == 0.909375
        assert stage2["video_cfg"] == stage2["audio_cfg"] == 1.0 and stage2["stg_scale"] == 0.0
        assert prompt["5"]["inputs"]["fps"] == prompt["11"]["inputs"]["fps"] == 24.0
        assert (prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"], prompt["5"]["inputs"]["frames"]) \
            == (768, 512, 121)  # the reference's stage-1 size: 1536x1024 after the upscaler
    for prefix, steps, block in (("", 40, "29"), ("ltx23_", 30, "28")):  # each family's dev preset
        dev = load_json(REPO / "workflows" / f"{prefix}t2av_dev_two_stage.api.json")
        assert dev["6"]["inputs"]["negative"] == ["14", 0] and dev["13"]["_meta"]["title"] == "Negative prompt"
        assert dev["8"]["inputs"]["model"] == ["12", 0] and dev["12"]["inputs"]["strength"] == 0.6
        assert (dev["6"]["inputs"]["steps"], dev["6"]["inputs"]["video_cfg"], dev["6"]["inputs"]["audio_cfg"],
                dev["6"]["inputs"]["stg_blocks"]) == (steps, 3.0, 7.0, block)


def test_hq_workflows_carry_the_hq_recipe_and_the_lora_strength_of_each_stage():
    """``t2av_hq_two_stage``: both samplers res_2s, stage 1 the HQ preset against the negative prompt, each stage's
    model the base model through its own distilled-LoRA loader (0.25 / 0.5, ``Recipe.stage_lora_strengths``)."""
    from ltx2_nodes.sampling.recipe import TOKEN_SHIFTED, recipe_for

    for prefix, family in (("", "2.0"), ("ltx23_", "2.3")):
        prompt = load_json(REPO / "workflows" / f"{prefix}t2av_hq_two_stage.api.json")
        stage1, stage2 = prompt["6"]["inputs"], prompt["8"]["inputs"]
        assert (stage1["sampler"], stage1["schedule"], stage1["steps"], stage1["stg_scale"]) == (
            "res_2s", TOKEN_SHIFTED, 15, 0.0)
        assert (stage1["video_cfg"], stage1["audio_cfg"], stage1["rescale"], stage1["audio_rescale"]) == (
            3.0, 7.0, 0.45, 1.0)
        assert stage1["negative"] == ["14", 0] and stage2["sampler"] == "res_2s"
        first, second = prompt[stage1["model"][0]]["inputs"], prompt[stage2["model"][0]]["inputs"]
        assert (first["strength"], second["strength"]) == recipe_for(family).stage_lora_strengths("hq")
        assert first["model"] == second["model"] == ["1", 0] and first["lora_name"] == second["lora_name"]


def test_x1_5_workflow_samples_stage_one_at_two_thirds_and_runs_headless(demo_models, tmp_path, capsys):
    """``ltx23_t2av_distilled_x1_5_upscale``: the LTX-2.3 x1.5 upscaler between the distilled stages; its demo twin
    (256x192 -> 384x288) through ``python -m ltx2_nodes run`` at a smaller size (--set)."""
    prompt = load_json(REPO / "workflows" / "ltx23_t2av_distilled_x1_5_upscale.api.json")
    assert prompt["7"]["inputs"]["upscale_model"] == "ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors"
    assert (prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"]) == (768, 512)
    demo = load_json(DEMO_WORKFLOWS / "ltx23_t2av_distilled_x1_5_upscale.api.json")
    assert (demo["5"]["inputs"]["width"], demo["5"]["inputs"]["height"]) == (256, 192)
    small = [f"--set={k}" for k in ("5.width=128", "5.height=64", "5.frames=9")]
    files = run_cli([str(DEMO_WORKFLOWS / "ltx23_t2av_distilled_x1_5_upscale.api.json"), "--models-dir",
                     str(demo_models.root), "--out", str(tmp_path), *small], capsys)
    check_mp4(files[0], 9, (192, 96), rate=48000)


def test_temporal_x2_workflow_samples_stage_one_at_half_the_rate_and_writes_the_full_rate(demo_models, tmp_path,
                                                                                           capsys):
    """``ltx23_t2av_distilled_temporal_x2_upscale``: spatial x2, then temporal x2 between the distilled stages;
    stage 1 at (F + 1) / 2 frames and half the fps (121 at 12 -> 241 at 24), its demo twin run at 9 -> 17 frames."""
    prompt = load_json(REPO / "workflows" / "ltx23_t2av_distilled_temporal_x2_upscale.api.json")
    assert prompt["12"]["inputs"]["upscale_model"] == "ltx-2.3-temporal-upscaler-x2-1.0.safetensors"
    assert (prompt["5"]["inputs"]["frames"], prompt["5"]["inputs"]["fps"], prompt["11"]["inputs"]["fps"]) == \
        (121, 12.0, 24.0)
    demo = DEMO_WORKFLOWS / "ltx23_t2av_distilled_temporal_x2_upscale.api.json"
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=9")]
    files = run_cli([str(demo), "--models-dir", str(demo_models.root), "--out", str(tmp_path), *small], capsys)
    check_mp4(files[0], 17, (128, 128), fps=24.0, rate=48000)


def test_ltx23_workflows_name_the_ltx23_release_files():
    for path in _two_stage(sorted((REPO / "workflows").glob("ltx23_*.api.json"))):
        prompt = load_json(path)
        assert prompt["1"]["inputs"]["ckpt_name"].startswith("ltx-2.3-22b-")
        assert all(node["inputs"]["upscale_model"] == "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"
                   for node in prompt.values() if "upscale_model" in node["inputs"])
        assert all(node["inputs"].get("lora_name", "ltx-2.3-22b-").startswith("ltx-2.3-22b-")
                   for node in prompt.values())


# ------------------------------------------------------------------------------------------------ running


def check_mp4(path: Path, frames: int, size: tuple[int, int], fps: float = 24.0, rate: int = 24000):
    media = probe(path)
    assert (media.video_codec, media.video_frames, (media.width, media.height)) == ("h264", frames, size)
    assert media.fps == Fraction(fps).limit_denominator(1000)
    assert (media.audio_codec, media.audio_sample_rate, media.audio_channels) == ("aac", rate, 2)
    # AAC codes whole 1024-sample frames: the stream ends within one frame after frames / fps
    assert frames / fps <= media.audio_seconds + 1e-6 <= frames / fps + 1024 / rate
    return media


def run_cli(args: list[str], capsys) -> list[Path]:
    assert main(["run", *args]) == 0
    return [Path(line) for line in capsys.readouterr().out.splitlines()]


def test_demo_text_to_audio_video_workflow_runs_end_to_end(demo_models, tmp_path, capsys):
    files = run_cli([str(DEMO_WORKFLOWS / "t2av_distilled_two_stage.api.json"), "--models-dir", str(demo_models.root),
                     "--out", str(tmp_path)], capsys)
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].parent == tmp_path / "LTX2"
    size = graph.DEMO_SIZE
    media = check_mp4(files[0], size["frames"], (2 * size["width"], 2 * size["height"]))
    prompt = json.loads(media.metadata["prompt"])
    assert prompt["3"]["inputs"]["prompt"] == graph.DEFAULT_PROMPT  # the workflow travels with the video


def test_released_twin_runs_on_demo_models_with_set_overrides(demo_models, tmp_path, capsys):
    """How a user points a shipped API workflow at other files: --set per model widget (tiny size for speed)."""
    names = {"1.ckpt_name": graph.DEMO["distilled"], "2.gemma_name": graph.DEMO["gemma"],
             "7.upscale_model": graph.DEMO["upscaler"], "5.width": 64, "5.height": 64, "5.frames": 9}
    sets = [f"--set={k}={v}" for k, v in names.items()]
    files = run_cli([str(REPO / "workflows" / "t2av_distilled_two_stage.api.json"), "--models-dir",
                     str(demo_models.root), "--out", str(tmp_path), *sets], capsys)
    check_mp4(files[0], 9, (128, 128))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["t2av_dev_two_stage", "i2av_distilled_two_stage", "a2v_distilled_two_stage",
                                  "t2av_hq_two_stage"])
def test_other_demo_workflows_run_end_to_end(name, demo_models, tmp_path, capsys):
    files = run_cli([str(DEMO_WORKFLOWS / f"{name}.api.json"), "--models-dir", str(demo_models.root),
                     "--input-dir", str(DEMO_INPUTS), "--out", str(tmp_path)], capsys)
    check_mp4(files[0], graph.DEMO_SIZE["frames"], (2 * graph.DEMO_SIZE["width"], 2 * graph.DEMO_SIZE["height"]),
              rate=16000 if name.startswith("a2v") else 24000)  # audio to video muxes the input sound (16 kHz)


# the two-stage graphs (the one-stage video-to-audio and text-to-audio ones: tests/test_video_to_audio.py,
# tests/test_audio_only.py)
LTX23_DEMO_FILES = sorted(DEMO_WORKFLOWS.glob("ltx23_*_two_stage.api.json"))


@pytest.mark.parametrize("path", LTX23_DEMO_FILES, ids=lambda p: p.name)
def test_every_ltx23_demo_workflow_runs_headless_with_48khz_audio_as_long_as_the_video(path, demo_models, tmp_path,
                                                                                       capsys):
    """The proof that LTX-2.3 runs end to end: each shipped 2.3 demo graph (2.3 demo checkpoint, its upscaler and
    LoRA) through ``python -m ltx2_nodes run``, at a small size and 2 dev steps for speed (--set; the distilled
    schedules ignore steps), writes an MP4 whose audio (the BigVGAN + bandwidth-extension vocoder) is 48 kHz and
    as long as the video (to the AAC frame); audio to video muxes the input sound itself (16 kHz)."""
    assert len(LTX23_DEMO_FILES) == 8
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=9", "6.steps=2")]
    files = run_cli([str(path), "--models-dir", str(demo_models.root), "--input-dir", str(DEMO_INPUTS),
                     "--out", str(tmp_path), *small], capsys)
    assert len(files) == 1 and files[0].name.startswith("ltx23_")
    check_mp4(files[0], 9, (128, 128), rate=16000 if "_a2v_" in path.name else 48000)


LTX25_DEMO_FILES = sorted(DEMO_WORKFLOWS.glob("ltx25_*.api.json"))


@pytest.mark.parametrize("path", LTX25_DEMO_FILES, ids=lambda p: p.name)
def test_every_ltx25_demo_workflow_runs_headless_with_48khz_audio_as_long_as_the_video(path, demo_models, tmp_path,
                                                                                       capsys):
    """The proof that LTX-2.5 runs end to end: each shipped 2.5 demo graph (the demo transformer's split pack found
    in the folders: packed Gemma 4, diffusion-decoder video VAE, 48 kHz audio VAE, duration head) through ``python
    -m ltx2_nodes run`` at a small size (--set) writes an MP4 as long as its audio; the auto-length graph takes the
    duration head's length and saves its two generated keyframes as a second clip."""
    from ltx2_nodes.demo.models import DEMO_SECONDS_25
    from ltx2_nodes.model.shapes import clamped_frames_for_seconds

    assert len(LTX25_DEMO_FILES) == 4
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=9")]
    small += ["--set=6.steps=2"] if "_dev_" in path.name else []  # the dev schedule: 2 of its 30 steps for speed
    files = run_cli([str(path), "--models-dir", str(demo_models.root), "--input-dir", str(DEMO_INPUTS),
                     "--out", str(tmp_path), *small], capsys)
    videos = [f for f in files if "keyframes_0" not in f.name]
    assert len(videos) == 1 and videos[0].name.startswith("ltx25_")
    auto = "auto_length" in path.name
    check_mp4(videos[0], clamped_frames_for_seconds(DEMO_SECONDS_25, 24.0) if auto else 9, (128, 128), rate=48000)
    if auto:
        (keyframes,) = [f for f in files if "keyframes_0" in f.name]
        assert probe(keyframes).video_frames == 2


def test_local_queue_of_the_demo_workflow_killed_after_the_first_job_resumes(demo_models, tmp_path):
    """``queue --local`` with 3 prompts, SIGKILLed once the first job is done, then run again: 3 jobs done, the
    first one not repeated, one MP4 per prompt."""
    import os
    import signal
    import subprocess
    import time

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox in the snow\na blue whale sings\na parrot on a branch\n")
    manifest = Path(str(prompts) + ".manifest.jsonl")
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=9")]
    command = [sys.executable, "-m", "ltx2_nodes", "queue", str(DEMO_WORKFLOWS / "t2av_distilled_two_stage.api.json"),
               "--prompts", str(prompts), "--local", "--models-dir", str(demo_models.root),
               "--out", str(tmp_path / "out"), *small]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def records() -> list[dict]:
        return [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.exists() else []

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None and not any(r["status"] == "done" for r in records()):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    done_first = [r for r in records() if r["status"] == "done"]
    assert len(done_first) >= 1 and len(records()) == 3
    first_file = Path(done_first[0]["files"][0])
    stamp = first_file.stat().st_mtime_ns
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = records()
    assert [r["status"] for r in final] == ["done"] * 3
    assert final[0]["attempts"] == 1 and first_file.stat().st_mtime_ns == stamp  # nothing ran twice
    assert "already done (manifest)" in resumed.stderr
    files = [Path(r["files"][0]) for r in final]
    assert len(set(files)) == 3 and all(f.suffix == ".mp4" and f.is_file() for f in files)
    for record, path in zip(final, files):
        assert json.loads(probe(path).metadata["prompt"])["3"]["inputs"]["prompt"] == record["prompt"]
