"""The headless executor and ``python -m ltx2_nodes run``, with fake V1 node classes (tests/cli_fake_nodes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli_fake_nodes as fake
from ltx2_nodes import paths
from ltx2_nodes.cli import main
from ltx2_nodes.cli.executor import ExecutionError, Executor
from ltx2_nodes.cli.workflow import Assignment, UsageError, Workflow, WorkflowError

FAKE_NODES = str(Path(fake.__file__).resolve())


def graph(**nodes) -> dict:
    """``graph(n1=("FakeConstant", {...}), ...)`` -> API workflow with ids "1", ...; a third item is the title."""
    prompt = {}
    for name, spec in nodes.items():
        node = {"class_type": spec[0], "inputs": dict(spec[1])}
        if len(spec) > 2:
            node["_meta"] = {"title": spec[2]}
        prompt[name.lstrip("n")] = node
    return prompt


def base_graph() -> dict:
    return graph(n1=("FakeConstant", {"value": 4}),
                 n2=("FakeConstant", {"value": 2, "scale": 1.0}),
                 n3=("FakeAdd", {"a": ["1", 0], "b": ["2", 0]}),
                 n4=("FakeText", {"text": "a cat", "seed": 5}, "Prompt"),
                 n5=("FakeSteps", {"text": ["4", 0], "steps": 3}),
                 n6=("FakeSaveText", {"text": ["5", 0], "number": ["3", 0], "filename_prefix": "fake/x"}),
                 n7=("FakeText", {"text": "orphan", "seed": 1}))


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch):
    fake.CALLS.clear()
    paths.reset()
    paths.configure(output_dir=tmp_path / "out", input_dir=tmp_path)
    monkeypatch.delenv(paths.MODELS_DIR_ENV, raising=False)
    yield
    paths.reset()


def run(prompt: dict, executor: Executor | None = None, **kw):
    executor = executor or Executor(fake.NODE_CLASS_MAPPINGS)
    return executor.run(Workflow.from_json(prompt), **kw)


def error_of(prompt, registry=None) -> str:
    with pytest.raises(WorkflowError) as info:
        Executor(registry or fake.NODE_CLASS_MAPPINGS).plan(Workflow.from_json(prompt))
    return str(info.value)


# ---------------------------------------------------------------------------------------------- execution
def test_runs_upstream_of_outputs_in_dependency_order_with_comfyui_picking(tmp_path):
    result = run(base_graph())
    # ComfyUI's ExecutionList: depth-first pending order 6,3,2,1,5,4; node 2 and 1 are two links from
    # the output, 4 is three links away, so 2, 1, 3 come first; the orphan node 7 never runs
    assert result.executed == ["2", "1", "3", "4", "5", "6"]
    assert [c[0] for c in fake.CALLS] == ["FakeConstant", "FakeConstant", "FakeAdd", "FakeText", "FakeSteps",
                                          "FakeSaveText"]
    written = tmp_path / "out" / "fake" / "x_00001_.txt"
    assert result.files == [written]
    assert written.read_text() == "a cat#5 8.0"  # 4 * default scale 1.5 + 2 * 1.0
    assert result.outputs == {"6": {"texts": [{"filename": "x_00001_.txt", "subfolder": "fake", "type": "output"}]}}


def test_missing_optional_widget_gets_its_default_and_hidden_inputs_are_filled():
    body = {"prompt": base_graph(), "extra_data": {"extra_pnginfo": {"workflow": {"id": "w"}}}}
    Executor(fake.NODE_CLASS_MAPPINGS).run(Workflow.from_json(body))
    assert ("FakeConstant", (4, 1.5)) in fake.CALLS  # scale omitted -> widget default 1.5, not make()'s 1.0
    assert ("FakeText", ("a cat", 5, "keep")) in fake.CALLS  # combo without default -> first choice
    save = next(c[1] for c in fake.CALLS if c[0] == "FakeSaveText")
    assert save["unique_id"] == "6"
    assert save["prompt_nodes"] == ["1", "2", "3", "4", "5", "6", "7"]
    assert save["extra_pnginfo"] == {"workflow": {"id": "w"}}


def test_outputs_are_cached_between_runs_by_input_signature():
    executor = Executor(fake.NODE_CLASS_MAPPINGS)
    first = run(base_graph(), executor)
    again = run(base_graph(), executor)
    assert again.executed == [] and sorted(again.cached) == sorted(first.executed)
    assert again.outputs == first.outputs  # cached output nodes still report their ui
    changed = base_graph()
    changed["4"]["inputs"]["text"] = "a dog"
    third = run(changed, executor)
    assert third.executed == ["4", "5", "6"]  # the constants and the adder are reused


def test_is_changed_nan_reruns_every_time():
    prompt = graph(n1=("FakeVolatile", {"value": 2}), n2=("FakeCollect", {"number": ["1", 0]}))
    executor = Executor(fake.NODE_CLASS_MAPPINGS)
    run(prompt, executor)
    second = run(prompt, executor)
    assert second.executed == ["1", "2"]  # a changed node invalidates everything downstream
    assert [c for c in fake.CALLS if c[0] == "FakeVolatile"] == [("FakeVolatile", 2)] * 2


def test_list_semantics_output_is_list_and_input_is_list():
    prompt = graph(n1=("FakeListSource", {"count": 3}),
                   n2=("FakeConstant", {"value": ["1", 0], "scale": 2.0}),
                   n3=("FakeListSum", {"numbers": ["2", 0]}),
                   n4=("FakeCollect", {"number": ["3", 0]}))
    prompt["2"]["class_type"] = "FakeAdd"
    prompt["2"]["inputs"] = {"a": ["1", 0], "b": ["1", 0]}
    result = run(prompt)
    assert [c for c in fake.CALLS if c[0] == "FakeAdd"] == [("FakeAdd", (i, i)) for i in range(3)]
    assert ("FakeListSum", [0, 2, 4]) in fake.CALLS
    assert result.outputs["4"] == {"numbers": [6]}


def test_progress_events_name_the_node():
    events = []
    Executor(fake.NODE_CLASS_MAPPINGS, on_event=lambda kind, data: events.append((kind, data))).run(
        Workflow.from_json(base_graph()), prompt_id="p1")
    progress = [(d["node"], d["value"], d["max"]) for k, d in events if k == "progress"]
    assert progress == [("5", 1, 3), ("5", 2, 3), ("5", 3, 3)]
    kinds = [k for k, _ in events]
    assert kinds[0] == "execution_start" and kinds[-2:] == ["execution_success", "executing"]
    assert all(d["prompt_id"] == "p1" for _, d in events if "prompt_id" in d)


def test_failing_node_raises_one_line_execution_error():
    prompt = base_graph()
    prompt["4"]["inputs"]["text"] = "please fail"
    with pytest.raises(ExecutionError) as info:
        run(prompt)
    assert str(info.value) == ("node 6 (FakeSaveText) failed: ValueError: cannot save 'please fail#5'")
    assert "Traceback" in info.value.details


def test_return_value_count_must_match_return_types():
    prompt = graph(n1=("FakeConstant", {"value": 1}), n2=("FakeBadReturn", {"number": ["1", 0]}),
                   n3=("FakeCollect", {"number": ["2", 1]}))
    with pytest.raises(ExecutionError, match=r"^node 2 \(FakeBadReturn\) returned 1 values; RETURN_TYPES "
                                             r"declares 2 \(NUMBER, NUMBER\)$"):
        run(prompt)


# ---------------------------------------------------------------------------------------------- validation
def test_unknown_node_is_refused_by_name():
    prompt = base_graph()
    prompt["8"] = {"class_type": "KSampler", "inputs": {}}
    assert error_of(prompt) == (
        "node 8 (KSampler): unknown node type; headless runs support this pack's nodes and the core nodes "
        "none only; run this workflow in ComfyUI (python -m ltx2_nodes queue --server URL)")


def test_unknown_node_message_lists_the_core_nodes_of_the_default_registry():
    prompt = {"1": {"class_type": "SaveVideo", "inputs": {}}}
    message = error_of(prompt, Executor().registry)
    assert "the core nodes GetVideoComponents, LoadAudio, LoadImage, LoadVideo, SaveAudio only" in message


def test_cycle_is_reported_with_its_path():
    prompt = base_graph()
    prompt["3"]["inputs"]["b"] = ["9", 0]
    prompt["9"] = {"class_type": "FakeAdd", "inputs": {"a": ["3", 0], "b": ["1", 0]}}
    assert error_of(prompt) == "dependency cycle: node 3 (FakeAdd) -> node 9 (FakeAdd) -> node 3 (FakeAdd)"


def test_missing_required_input():
    prompt = base_graph()
    del prompt["3"]["inputs"]["b"]
    assert error_of(prompt) == "node 3 (FakeAdd): required input 'b' is missing"


def test_broken_links():
    prompt = base_graph()
    prompt["3"]["inputs"]["a"] = ["42", 0]
    prompt["3"]["inputs"]["b"] = ["2", 3]
    prompt["5"]["inputs"]["text"] = ["4", 0, 1]
    assert error_of(prompt).splitlines() == [
        "node 3 (FakeAdd), input 'a': linked to node 42, which is not in the workflow",
        "node 3 (FakeAdd), input 'b': linked to output 3 of node 2 (FakeConstant), which has 1 output(s) (NUMBER)",
        "node 5 (FakeSteps), input 'text': ['4', 0, 1] is not a link; expected [\"<node id>\", <output index>]",
    ]


def test_link_type_mismatch():
    prompt = base_graph()
    prompt["5"]["inputs"]["text"] = ["3", 0]
    assert error_of(prompt) == "node 5 (FakeSteps), input 'text': node 3 (FakeAdd) output 0 is NUMBER, expected TEXT"


@pytest.mark.parametrize("node, name, value, message", [
    ("1", "value", 101, "101 is above the maximum 100"),
    ("1", "value", -1, "-1 is below the minimum 0"),
    ("1", "value", "many", "'many' is not a valid INT"),
    ("1", "scale", 10.5, "10.5 is above the maximum 10.0"),
    ("4", "mode", "title", "'title' is not one of 'keep', 'upper', 'lower'"),
])
def test_widget_values_are_converted_and_range_checked(node, name, value, message):
    prompt = base_graph()
    prompt[node]["inputs"][name] = value
    label = {"1": "node 1 (FakeConstant)", "4": "node 4 (FakeText)"}[node]
    assert error_of(prompt) == f"{label}, input {name!r}: {message}"


def test_numeric_strings_convert_like_comfyui():
    prompt = base_graph()
    prompt["1"]["inputs"]["value"] = "7"
    run(prompt)
    assert ("FakeConstant", (7, 1.5)) in fake.CALLS


def test_validate_inputs_replaces_builtin_checks_for_its_inputs():
    ok = graph(n1=("FakeConstant", {"value": 1}), n2=("FakeChecked", {"path": "c.txt", "value": ["1", 0]}),
               n3=("FakeCollect", {"number": ["2", 0]}))
    run(ok)  # "c.txt" is not in the combo, but VALIDATE_INPUTS takes "path" and accepts it
    ok["2"]["inputs"]["path"] = "c.png"
    assert error_of(ok) == "node 2 (FakeChecked): VALIDATE_INPUTS rejected the inputs: c.png is not a .txt file"


def test_workflow_without_output_node():
    assert error_of(graph(n1=("FakeConstant", {"value": 1}))) == (
        "workflow has no output node (a node class with OUTPUT_NODE = True), so nothing would run")


def test_nodes_not_upstream_of_outputs_are_not_validated():
    prompt = base_graph()
    prompt["7"]["inputs"]["seed"] = -5  # invalid, but node 7 feeds no output: ComfyUI ignores it too
    run(prompt)


def test_ui_format_and_malformed_workflows(tmp_path):
    with pytest.raises(WorkflowError, match=r"is a UI-format workflow \(nodes and links\); in ComfyUI use "
                                            r"Workflow > Export \(API\)"):
        Workflow.from_json({"nodes": [], "links": []})
    with pytest.raises(WorkflowError, match=r'^node 3: no "class_type"'):
        Workflow.from_json({"3": {"inputs": {}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WorkflowError, match=r"bad.json is not a JSON workflow"):
        Workflow.load(bad)
    with pytest.raises(UsageError, match=r"cannot read workflow .*missing.json: No such file or directory"):
        Workflow.load(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------- --set
def test_set_by_id_class_type_and_title():
    workflow = Workflow.from_json(base_graph())
    declared = Executor(fake.NODE_CLASS_MAPPINGS).declared_inputs
    assert workflow.assign(Assignment.parse("5.steps=7"), declared) == "5"
    assert workflow.assign(Assignment.parse("FakeAdd.a=[\"2\", 0]"), declared) == "3"
    assert workflow.assign(Assignment.parse("Prompt.text=a red fox"), declared) == "4"
    assert workflow.assign(Assignment.parse("Prompt.mode=\"upper\""), declared) == "4"
    assert workflow.prompt["5"]["inputs"]["steps"] == 7
    assert workflow.prompt["3"]["inputs"]["a"] == ["2", 0]
    assert workflow.prompt["4"]["inputs"] == {"text": "a red fox", "seed": 5, "mode": "upper"}


@pytest.mark.parametrize("text, message", [
    ("FakeConstant.value=1", "'FakeConstant' is ambiguous: 2 nodes have that class_type (1, 2); use the node id "
                             "instead"),
    ("Sampler.steps=1", "no node 'Sampler' in workflow; use a node id (1, 2, 3, 4, 5, 6, 7), a class_type or a title"),
    ("5.stpes=1", "node 5 (FakeSteps) has no input 'stpes'; its inputs: delay, steps, text"),
    ("5steps=1", "cannot read input reference '5steps': expected NODE.INPUT, e.g. 5.steps or LTX2Sampler.seed"),
    ("5.steps", "cannot read override '5.steps': expected NODE.INPUT=VALUE, e.g. 5.steps=30"),
])
def test_set_errors(text, message):
    workflow = Workflow.from_json(base_graph())
    with pytest.raises(UsageError) as info:
        workflow.assign(Assignment.parse(text), Executor(fake.NODE_CLASS_MAPPINGS).declared_inputs)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------- the command
def write_workflow(tmp_path, prompt) -> str:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(prompt))
    return str(path)


def test_run_command_writes_outputs_and_lists_them(tmp_path, capsys):
    wf = write_workflow(tmp_path, base_graph())
    out = tmp_path / "elsewhere"
    code = main(["run", wf, "--nodes", FAKE_NODES, "--out", str(out), "--set", "FakeSteps.steps=2",
                 "--set", "6.filename_prefix=clip"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines() == [str(out / "clip_00001_.txt")]
    assert (out / "clip_00001_.txt").read_text() == "a cat#5 8.0"
    assert "[1/1] node 5 (FakeSteps) 2/2" in captured.err  # plain progress lines when not a terminal
    assert "[1/1] done in" in captured.err


@pytest.mark.parametrize("change, code, message", [
    (lambda p: p["3"]["inputs"].pop("b"), 2, "error: node 3 (FakeAdd): required input 'b' is missing"),
    (lambda p: p["4"]["inputs"].update(text="fail"), 1,
     "error: node 6 (FakeSaveText) failed: ValueError: cannot save 'fail#5'"),
])
def test_run_command_errors_are_one_line_with_exit_codes(tmp_path, capsys, change, code, message):
    prompt = base_graph()
    change(prompt)
    assert main(["run", write_workflow(tmp_path, prompt), "--nodes", FAKE_NODES]) == code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [message]


def test_run_command_usage_errors(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.json")]) == 2
    assert main(["run", write_workflow(tmp_path, base_graph()), "--nodes", str(tmp_path / "nodes.py")]) == 2
    assert main(["run", write_workflow(tmp_path, base_graph()), "--models-dir", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: cannot read workflow ") and err[0].endswith("nope.json: No such file or directory")
    assert err[1].startswith("error: --nodes ") and "cannot import it" in err[1]
    assert err[2].startswith("error: models directory ") and err[2].endswith(
        "does not exist; pass the folder that holds checkpoints/, text_encoders/, ... (ComfyUI's models/ folder works)")


def test_terminal_display_redraws_one_status_line():
    import io

    from ltx2_nodes.cli.display import Display

    stream = io.StringIO()
    display = Display(total_jobs=3, stream=stream, tty=True)
    workflow = Workflow.from_json(base_graph())
    display.start_job(2, "a cat", workflow)
    display.event("executing", {"node": "5"})
    display.event("progress", {"node": "5", "value": 3, "max": 3})
    display.finish_job(2, True, "x.mp4")
    display.close()
    text = stream.getvalue()
    assert "\rbatch [----------] 0/3 | job 2: node 5 (FakeSteps) [####################] 3/3 0:00\x1b[K" in text
    assert "[2/3] done in " in text and text.endswith("\r\x1b[K")
    assert "\n" in text and text.count("\n") == 1  # only the job result is a line of its own
