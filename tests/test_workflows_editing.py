"""The editing workflows (issue 15): extend (three segments, one clip with its sound) and retake (a video file's
window regenerated) run headless on the demo models of every family, and the UI/API/demo twins agree with the nodes
(the generic checks of test_workflows.py cover them too)."""

from __future__ import annotations

import json
import sys

import pytest

from demo_support import DEMO_INPUTS, DEMO_WORKFLOWS, REPO, demo_models, load_json  # noqa: F401
from ltx2_nodes.model.shapes import pixel_frames
from test_workflows import check_mp4, run_cli

sys.path.insert(0, str(REPO / "scripts"))
import workflow_graph as graph
import workflows_editing as editing

EDITING = [make.__name__ for make in editing.EDITING_WORKFLOWS]


def test_each_editing_workflow_ships_for_every_family_in_each_form():
    for release in graph.RELEASES:
        for name in EDITING:
            stem = release.prefix + name
            assert (REPO / "example_workflows" / f"{stem}.json").is_file()
            assert (REPO / "workflows" / f"{stem}.api.json").is_file()
            assert (DEMO_WORKFLOWS / f"{stem}.api.json").is_file()
    assert (DEMO_INPUTS / graph.DEMO["video"]).is_file()


def test_the_extend_workflow_chains_window_sampler_join_from_the_first_clip():
    prompt = load_json(REPO / "workflows" / "extend_distilled.api.json")
    assert prompt["19"]["inputs"]["latent"] == ["6", 0] and prompt["21"]["inputs"]["clip"] == ["6", 0]
    assert prompt["20"]["inputs"]["latent"] == ["19", 0] and prompt["21"]["inputs"]["window"] == ["20", 0]
    assert prompt["22"]["inputs"]["latent"] == ["21", 0] and prompt["24"]["inputs"]["clip"] == ["21", 0]
    assert prompt["9"]["inputs"]["latent"] == prompt["10"]["inputs"]["latent"] == ["24", 0]
    assert (prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"]) == (768, 512)


@pytest.mark.parametrize("prefix", [r.prefix for r in graph.RELEASES], ids=lambda p: p or "ltx2_")
def test_the_demo_extend_workflow_writes_one_clip_with_sound_as_long_as_its_three_segments(prefix, demo_models,
                                                                                          tmp_path, capsys):
    path = DEMO_WORKFLOWS / f"{prefix}extend_distilled.api.json"
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=17")]
    files = run_cli([str(path), "--models-dir", str(demo_models.root), "--out", str(tmp_path), *small], capsys)
    new = round(graph.DEMO_SIZE["extend_seconds"] * graph.FPS / 8)  # latent frames per extension
    frames = pixel_frames(3 + 2 * new)
    check_mp4(files[0], frames, (64, 64), rate=48000 if prefix else 24000)


@pytest.mark.parametrize("prefix", [r.prefix for r in graph.RELEASES], ids=lambda p: p or "ltx2_")
def test_the_demo_retake_workflow_regenerates_a_window_of_the_demo_video(prefix, demo_models, tmp_path, capsys):
    path = DEMO_WORKFLOWS / f"{prefix}retake_distilled.api.json"
    files = run_cli([str(path), "--models-dir", str(demo_models.root), "--input-dir", str(DEMO_INPUTS),
                     "--out", str(tmp_path)], capsys)
    media = check_mp4(files[0], 49, (256, 160), rate=48000 if prefix else 24000)
    assert json.loads(media.metadata["prompt"])["28"]["class_type"] == "LTX2Retake"
