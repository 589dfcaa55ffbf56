#!/usr/bin/env python3
"""Generate the shipped workflows from one source: ``python scripts/build_workflows.py``.

Writes, for every workflow of the families registered in ``FAMILIES`` below:

* ``example_workflows/<name>.json`` -- UI format (what users drag onto the canvas; ComfyUI's template
  browser lists a pack's top-level ``example_workflows``), with Note nodes, a shared ``seed`` and ``fps``
  PrimitiveNode, and the released model file names;
* ``workflows/<name>.api.json`` -- the API-format twin (headless ``run`` / ``queue``, ``/prompt``), same
  released names;
* ``workflows/demo/<name>.api.json`` -- the same graph on the tiny demo models
  (``python -m ltx2_nodes demo-models``) at a CPU-friendly size, and the demo input files it reads in
  ``workflows/demo/input/``. Demo weights never carry released names: the twin names the demo files.

Widget order, socket types and output types are read from the node classes themselves, so a file
can never disagree with the nodes; ``tests/test_workflows.py`` checks the checked-in files equal what
this script writes.
"""

# To add a workflow family: write scripts/workflows_<family>.py with its builders (``make(release) -> Workflow``, from
# the vocabulary of workflow_graph.py) and a list RELEASE_WORKFLOWS of (release, builder) pairs, then register the
# module in FAMILIES below (one line) and run this script.

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import workflows_25
import workflows_basic
import workflows_dubit
import workflows_editing
import workflows_hq
import workflows_iclora
from workflow_demo_media import demo_audio, demo_clip, demo_image, demo_video
from workflow_formats import api_format, ui_format
from workflow_graph import DEMO, DEMO_SIZE, REPO, RELEASED_SIZE

FAMILIES = (
    workflows_basic,
    workflows_editing,
    workflows_25,
    workflows_hq,
    workflows_dubit,
    workflows_iclora,
)
RELEASE_WORKFLOWS = [pair for family in FAMILIES for pair in family.RELEASE_WORKFLOWS]


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[Path, str]:
    """Every generated text file, relative to the repository root -> its content."""
    files = {}
    for release, make in RELEASE_WORKFLOWS:
        workflow = make(release)
        files[Path("example_workflows") / f"{workflow.name}.json"] = _dump(
            ui_format(workflow, release.released, RELEASED_SIZE))
        files[Path("workflows") / f"{workflow.name}.api.json"] = _dump(
            api_format(workflow, release.released, RELEASED_SIZE))
        files[Path("workflows") / "demo" / f"{workflow.name}.api.json"] = _dump(
            api_format(copy.deepcopy(workflow), release.demo, release.demo_size or DEMO_SIZE))
    return files


def main() -> int:
    for relative, text in build().items():
        path = REPO / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(relative)
    inputs = REPO / "workflows" / "demo" / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    print(demo_image(inputs / DEMO["image"]).relative_to(REPO))
    print(demo_audio(inputs / DEMO["audio"]).relative_to(REPO))
    print(demo_image(inputs / DEMO["last_image"], disc_x=0.25).relative_to(REPO))
    print(demo_clip(inputs / DEMO["clip"]).relative_to(REPO))
    if not (inputs / DEMO["video"]).is_file():  # an MP4 is not byte-stable across encoder builds: written once
        print(demo_video(inputs / DEMO["video"]).relative_to(REPO))
    for family in FAMILIES:  # a family's own demo inputs (``write_demo_inputs(folder)``: the files it wrote)
        for written in getattr(family, "write_demo_inputs", lambda _: [])(inputs):
            print(written.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
