"""``run``: execute an API-format workflow headless, the way ComfyUI would, and list the files it wrote."""

from __future__ import annotations

from .common import (add_engine_options, add_path_options, apply_engine_options, apply_path_options,
                     node_registry)
from .display import Display
from .executor import Executor
from .workflow import Assignment, Workflow

HELP = "run an API-format workflow (ComfyUI 'Export (API)') of this pack's nodes headless"


def add_parser(p) -> None:
    p.add_argument("workflow", help="API-format workflow JSON (or a POST /prompt body)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override one input; NODE is a node id, a unique class_type or a unique title; VALUE is "
                        "read as JSON when it parses (30, 1.5, true, \"text\"), else taken as text; repeatable")
    add_path_options(p)
    add_engine_options(p)


def run(args) -> int:
    apply_path_options(args)
    apply_engine_options(args)
    workflow = Workflow.load(args.workflow)
    display = Display(total_jobs=1)
    executor = Executor(node_registry(args), on_event=display.event)
    for text in args.overrides:
        workflow.assign(Assignment.parse(text), executor.declared_inputs)
    executor.plan(workflow)  # refuse a broken workflow before printing any progress
    display.start_job(1, workflow.source, workflow)
    try:
        result = executor.run(workflow)
    finally:
        display.close()
    display.finish_job(1, True, f"{len(result.executed)} node(s) ran, {len(result.cached)} cached")
    display.close()
    for path in result.files:
        print(path)
    return 0
