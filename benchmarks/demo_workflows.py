#!/usr/bin/env python3
"""Wall time of every shipped demo workflow (``workflows/demo/*.api.json``) on the tiny demo models, per node.

    python benchmarks/demo_workflows.py [--size WxHxF] [--threads N]

Writes the demo models to a temporary folder, then runs each workflow through the headless executor in a
fresh interpreter (model loading included, nothing cached between workflows) and prints one row per workflow:
total seconds and the share of the samplers, decodes and the MP4 writer. ``--size`` overrides the empty
latent (stage-1 size and frames) to see how the tiny models scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO, machine, parse_or_answer_case, run_isolated, table

GROUPS = {"LTX2Sampler": "sampling", "LTX2VideoDecodeTiled": "video decode", "LTX2AudioDecode": "audio decode",
          "LTX2AVCombine": "mp4 write"}


def run_case(case: dict) -> dict:
    import torch

    from ltx2_nodes import paths
    from ltx2_nodes.cli.executor import Executor
    from ltx2_nodes.cli.workflow import Workflow

    torch.set_num_threads(case["threads"])
    paths.configure(models_dir=case["models"], output_dir=case["out"], input_dir=case["inputs"])
    workflow = Workflow.load(case["workflow"])
    if case.get("size"):
        width, height, frames = case["size"]
        workflow.prompt["5"]["inputs"].update(width=width, height=height, frames=frames)
    seconds: dict[str, float] = {}
    started: dict[str, float] = {}

    def event(kind, data):
        node = data.get("node")
        now = time.perf_counter()
        for running, t0 in list(started.items()):
            if kind == "executing":
                group = GROUPS.get(workflow.prompt[running]["class_type"], "other")
                seconds[group] = seconds.get(group, 0.0) + now - t0
                del started[running]
        if kind == "executing" and node is not None:
            started[node] = now

    start = time.perf_counter()
    Executor(on_event=event).run(workflow)
    return {"total": time.perf_counter() - start, **seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", help="stage-1 WIDTHxHEIGHTxFRAMES, e.g. 768x512x121")
    parser.add_argument("--threads", type=int, default=2)
    args = parse_or_answer_case(parser, run_case)
    if args is None:
        return 0
    from ltx2_nodes.demo.models import write_demo_models

    size = [int(v) for v in args.size.split("x")] if args.size else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = write_demo_models(Path(tmp) / "models")
        for workflow in sorted((REPO / "workflows" / "demo").glob("*.api.json")):
            case = {"workflow": str(workflow), "models": str(models.root), "out": str(Path(tmp) / "out"),
                    "inputs": str(REPO / "workflows" / "demo" / "input"), "threads": args.threads, "size": size}
            result = run_isolated(__file__, case)
            rows.append([workflow.name.split(".")[0], f"{result['total']:.1f}",
                         *(f"{result.get(g, 0.0):.1f}" for g in ("sampling", "video decode", "audio decode",
                                                                  "mp4 write", "other"))])
    print(machine())
    print(f"stage-1 size: {args.size or 'as shipped (256x160, 49 frames -> 512x320 output)'}")
    print(table(["workflow", "total s", "sampling", "video decode", "audio decode", "mp4 write",
                 "other (load, text, upscale)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
