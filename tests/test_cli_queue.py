"""``python -m ltx2_nodes queue``: prompts files, job keys, the manifest, local mode (killed and resumed), and
server mode against an in-process fake ComfyUI (websocket and polling)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cli_fake_nodes as fake
from fake_comfy_server import FakeComfy
from ltx2_nodes import paths
from ltx2_nodes.cli import main
from ltx2_nodes.cli.jobs import (PROMPT_INPUT_NAMES, SEED_INPUT_NAMES, JobSpec, build_jobs, expand_seeds, find_input,
                                 parse_seeds, read_prompts_file)
from ltx2_nodes.cli.manifest import Manifest
from ltx2_nodes.cli.websocket import WebSocket, WebSocketError
from ltx2_nodes.cli.workflow import UsageError, Workflow

REPO = Path(__file__).resolve().parents[1]
FAKE_NODES = str(Path(fake.__file__).resolve())


def queue_graph() -> dict:
    return {"1": {"class_type": "FakeConstant", "inputs": {"value": 4}},
            "4": {"class_type": "FakeText", "inputs": {"text": "placeholder", "seed": 5}, "_meta": {"title": "Prompt"}},
            "5": {"class_type": "FakeSteps", "inputs": {"text": ["4", 0], "steps": 2}},
            "6": {"class_type": "FakeSaveText", "inputs": {"text": ["5", 0], "number": ["1", 0],
                                                           "filename_prefix": "q/job"}}}


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A workflow, a 3-prompt file and an output folder; the fake nodes log their saves to ``saves.log``."""
    fake.CALLS.clear()
    paths.reset()
    monkeypatch.setenv("FAKE_NODES_LOG", str(tmp_path / "saves.log"))
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(queue_graph()))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt\n\nsecond prompt\n{\"prompt\": \"third prompt\", \"seed\": 9}\n")
    yield {"wf": str(wf), "prompts": str(prompts), "out": str(tmp_path / "out"),
           "manifest": Path(str(prompts) + ".manifest.jsonl"), "log": tmp_path / "saves.log"}
    paths.reset()


def records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def saves(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def local(files, *extra) -> int:
    return main(["queue", files["wf"], "--prompts", files["prompts"], "--local", "--nodes", FAKE_NODES,
                 "--out", files["out"], *extra])


# ---------------------------------------------------------------------------------------------- jobs
def test_prompts_file_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('a plain prompt\n"a json string\\nwith a newline"\n"unbalanced quote\n'
                    '{"prompt": "p", "seed": 3, "overrides": {"5.steps": 8}}\n{"seed": 1}\n')
    assert read_prompts_file(path) == [
        JobSpec(1, "a plain prompt"), JobSpec(2, "a json string\nwith a newline"), JobSpec(3, '"unbalanced quote'),
        JobSpec(4, "p", 3, {"5.steps": 8}), JobSpec(5, None, 1)]


@pytest.mark.parametrize("content, message", [
    ("", "holds no prompts (one prompt or JSON job per line)"),
    ('{"prompt": 1}', 'line 1: "prompt" must be a string'),
    ('ok\n{"prompt": "x", "steps": 3}', "line 2: unknown key(s) steps; a job has prompt, seed, overrides"),
    ('{"prompt": "x",}', "line 1: not valid JSON (Expecting property name enclosed in double quotes)"),
    ('{"seed": "7"}', 'line 1: "seed" must be an integer'),
])
def test_prompts_file_errors(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        read_prompts_file(path)
    assert message in str(info.value)


def test_seeds():
    assert parse_seeds("1,2, 10-12") == [1, 2, 10, 11, 12]
    for bad in ("x", "5-2", "-1", "1,,2"):
        with pytest.raises(UsageError, match="expected non-negative integers and ranges like 1,2,10-12"):
            parse_seeds(bad)
    specs = [JobSpec(1, "a"), JobSpec(2, "b", 9)]
    assert expand_seeds(specs, [1, 2]) == [JobSpec(1, "a", 1), JobSpec(1, "a", 2), JobSpec(2, "b", 9)]


def test_prompt_and_seed_input_detection():
    prompt = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "pos", "clip": ["9", 1]},
                    "_meta": {"title": "CLIP Text Encode (Positive Prompt)"}},
              "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "neg", "clip": ["9", 1]},
                    "_meta": {"title": "CLIP Text Encode (Negative Prompt)"}},
              "3": {"class_type": "KSampler", "inputs": {"seed": 4, "steps": 20}}}
    workflow = Workflow.from_json(prompt)
    assert find_input(workflow, None, PROMPT_INPUT_NAMES, str, "--prompt-input") == [("1", "text")]
    assert find_input(workflow, None, SEED_INPUT_NAMES, int, "--seed-input") == [("3", "seed")]
    assert find_input(workflow, "KSampler.steps", SEED_INPUT_NAMES, int, "--seed-input") == [("3", "steps")]
    prompt["4"] = {"class_type": "Note", "inputs": {"text": "another"}}
    with pytest.raises(UsageError, match=r"several possible prompt inputs \(1.text, 4.text\); choose one with "
                                         r"--prompt-input NODE.INPUT"):
        find_input(Workflow.from_json(prompt), None, PROMPT_INPUT_NAMES, str, "--prompt-input")
    prompt["5"] = {"class_type": "Enhancer", "inputs": {"prompt": "p"}}  # "prompt" beats "text"
    assert find_input(Workflow.from_json(prompt), None, PROMPT_INPUT_NAMES, str, "--prompt-input") == [("5", "prompt")]
    with pytest.raises(UsageError, match="no seed input found"):
        find_input(Workflow.from_json({"1": prompt["1"]}), None, SEED_INPUT_NAMES, int, "--seed-input")
    # a two-stage graph: both samplers share one seed value, so they are one logical seed and both get it
    prompt["6"] = {"class_type": "KSampler", "inputs": {"seed": 4, "steps": 3}}
    two_stage = Workflow.from_json(prompt)
    assert find_input(two_stage, None, SEED_INPUT_NAMES, int, "--seed-input") == [("3", "seed"), ("6", "seed")]
    jobs = build_jobs(two_stage, [JobSpec(1, "x", seed=77)], [("5", "prompt")], [("3", "seed"), ("6", "seed")])
    assert jobs[0].workflow.prompt["3"]["inputs"]["seed"] == jobs[0].workflow.prompt["6"]["inputs"]["seed"] == 77
    prompt["6"]["inputs"]["seed"] = 5  # different values: genuinely ambiguous
    with pytest.raises(UsageError, match=r"several possible seed inputs \(3.seed, 6.seed\)"):
        find_input(Workflow.from_json(prompt), None, SEED_INPUT_NAMES, int, "--seed-input")


def test_job_keys_hash_the_final_workflow_and_number_repeats():
    workflow = Workflow.from_json(queue_graph())
    specs = [JobSpec(1, "a"), JobSpec(2, "b"), JobSpec(3, "a"), JobSpec(4, "a", overrides={"5.steps": 3})]
    jobs = build_jobs(workflow, specs, [("4", "text")], None)
    assert jobs[0].key == build_jobs(workflow, specs[:1], [("4", "text")], None)[0].key  # stable
    assert jobs[2].key == jobs[0].key + "-2"
    assert len({j.key for j in jobs}) == 4
    assert jobs[3].workflow.prompt["5"]["inputs"]["steps"] == 3 and workflow.prompt["5"]["inputs"]["steps"] == 2
    with pytest.raises(UsageError, match=r"prompts file line 9: no node 'Sampler'"):
        build_jobs(workflow, [JobSpec(9, "a", overrides={"Sampler.steps": 3})], [("4", "text")], None)


# ---------------------------------------------------------------------------------------------- manifest
def test_manifest_is_rewritten_atomically_and_locked(tmp_path):
    path = tmp_path / "m.jsonl"
    with Manifest(path).locked() as manifest:
        manifest.update("k1", status="queued")
        manifest.update("k2", status="queued")
        manifest.update("k1", status="done", files=["a"])
        assert [r["status"] for r in records(path)] == ["done", "queued"]
        assert sorted(os.listdir(tmp_path)) == ["m.jsonl", "m.jsonl.lock"]  # no temporary file left behind
        with pytest.raises(UsageError, match="is in use by another queue process"):
            with Manifest(path).locked():
                pass
    path.write_text('{"key": "k1"}\nnot json\n')
    with pytest.raises(UsageError, match=r"m.jsonl line 2 is not a job record"):
        Manifest(path).load()


# ---------------------------------------------------------------------------------------------- local mode
def test_local_queue_runs_every_job_and_skips_them_when_rerun(files, capsys):
    assert local(files, "--seeds", "1") == 0
    out = capsys.readouterr()
    assert saves(files["log"]) == ["saved first prompt#1", "saved second prompt#1", "saved third prompt#9"]
    recs = records(files["manifest"])
    assert [(r["line"], r["prompt"], r["seed"], r["status"], r["attempts"]) for r in recs] == [
        (1, "first prompt", 1, "done", 1), (3, "second prompt", 1, "done", 1), (4, "third prompt", 9, "done", 1)]
    assert out.out.splitlines() == [r["files"][0] for r in recs]
    assert [Path(r["files"][0]).read_text() for r in recs] == ["first prompt#1 6.0", "second prompt#1 6.0",
                                                               "third prompt#9 6.0"]
    assert "3 job(s): 3 done, 0 failed; manifest" in out.err
    assert local(files, "--seeds", "1") == 0
    assert len(saves(files["log"])) == 3  # nothing ran twice
    assert capsys.readouterr().err.count("already done (manifest)") == 3


def test_local_queue_killed_during_the_second_job_resumes_without_duplicates(files, tmp_path):
    env = {**os.environ, "FAKE_NODES_KILL_ON": "second", "FAKE_NODES_KILL_MARKER": str(tmp_path / "killed"),
           "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-m", "ltx2_nodes", "queue", files["wf"], "--prompts",
                             files["prompts"], "--local", "--nodes", FAKE_NODES, "--out", files["out"]],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [r["status"] for r in records(files["manifest"])] == ["done", "running", "queued"]
    assert saves(files["log"]) == ["saved first prompt#5"]
    os.environ.update({k: env[k] for k in ("FAKE_NODES_KILL_ON", "FAKE_NODES_KILL_MARKER")})
    try:
        assert local(files) == 0
    finally:
        for k in ("FAKE_NODES_KILL_ON", "FAKE_NODES_KILL_MARKER"):
            os.environ.pop(k)
    recs = records(files["manifest"])
    assert [(r["status"], r["attempts"]) for r in recs] == [("done", 1), ("done", 2), ("done", 1)]
    assert sorted(saves(files["log"])) == ["saved first prompt#5", "saved second prompt#5", "saved third prompt#9"]


def test_local_queue_interrupted_then_resumed(files, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NODES_INTERRUPT_ON", "second")
    assert local(files) == 130
    err = capsys.readouterr().err
    assert "interrupted: 2 job(s) unfinished; run the same command again to resume" in err
    recs = records(files["manifest"])
    assert [(r["status"], r["error"]) for r in recs] == [("done", None), ("queued", "interrupted"), ("queued", None)]
    monkeypatch.delenv("FAKE_NODES_INTERRUPT_ON")
    assert local(files) == 0
    assert saves(files["log"]) == ["saved first prompt#5", "saved second prompt#5", "saved third prompt#9"]


def test_local_queue_failed_job_exit_1_and_retried_on_rerun(files, capsys):
    Path(files["prompts"]).write_text("good one\nplease fail\nanother good one\n")
    assert local(files) == 1
    recs = records(files["manifest"])
    assert [r["status"] for r in recs] == ["done", "failed", "done"]
    assert recs[1]["error"] == "node 6 (FakeSaveText) failed: ValueError: cannot save 'please fail#5'"
    assert "job 2 (line 2) failed: node 6 (FakeSaveText) failed: ValueError" in capsys.readouterr().err
    assert local(files) == 1
    assert [r["attempts"] for r in records(files["manifest"])] == [1, 2, 1]
    assert len(saves(files["log"])) == 2


def test_broken_workflow_or_unreadable_prompts_leave_no_manifest(files, capsys, tmp_path):
    assert main(["queue", files["wf"], "--prompts", str(tmp_path / "none.txt"), "--local", "--nodes",
                 FAKE_NODES]) == 2
    assert capsys.readouterr().err.strip().endswith("none.txt: No such file or directory")
    assert main(["queue", files["wf"], "--prompts", str(tmp_path), "--local", "--nodes", FAKE_NODES]) == 2
    assert "cannot read prompts file" in capsys.readouterr().err
    assert local(files, "--set", "5.steps=0") == 2
    assert capsys.readouterr().err.strip() == "error: node 5 (FakeSteps), input 'steps': 0 is below the minimum 1"
    assert not files["manifest"].exists()


# ---------------------------------------------------------------------------------------------- server mode
def server_queue(files, url, *extra) -> int:
    return main(["queue", files["wf"], "--prompts", files["prompts"], "--server", url, "--poll", "0.05", *extra])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_exit_3_and_leaves_the_manifest_alone(files, capsys):
    files["manifest"].write_text('{"key": "old", "status": "done"}\n')
    url = f"http://127.0.0.1:{free_port()}"
    assert server_queue(files, url) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach ComfyUI at {url} (")
    assert err.endswith("); start it or pass --server URL")
    assert "\n" not in err
    assert files["manifest"].read_text() == '{"key": "old", "status": "done"}\n'
    assert server_queue(files, url, "--out", "x") == 2
    assert capsys.readouterr().err.strip() == ("error: --out: only used with --local or --ray; a ComfyUI server uses "
                                               "its own folders and nodes")


@pytest.mark.parametrize("websocket", [True, False])
def test_server_queue_submits_follows_progress_and_collects_files(files, capsys, websocket):
    with FakeComfy(websocket=websocket, step_delay=0.05) as server:
        assert server_queue(files, server.url) == 0
    out, err = capsys.readouterr()
    recs = records(files["manifest"])
    assert [r["status"] for r in recs] == ["done"] * 3
    assert [r["prompt_id"] for r in recs] == [p for p, _ in server.submitted]  # our ids, submitted once each
    assert len({c for _, c in server.submitted}) == 1 and recs[0]["client_id"] == server.submitted[0][1]
    assert recs[0]["files"] == [f"output/fake/{recs[0]['prompt_id'][:8]}_00001_.png"]
    assert out.splitlines() == [r["files"][0] for r in recs]
    if websocket:
        assert server.ws_clients == [recs[0]["client_id"]] and server.pongs >= 1
        assert re.search(r"^\[2/3\] node 1 \(FakeConstant\) [123]/3$", err, re.M)  # progress reached the display
    else:
        assert "following progress by polling" in err
    assert "3 job(s): 3 done, 0 failed" in err


def test_server_rejection_and_execution_error_fail_their_jobs(files, capsys):
    Path(files["prompts"]).write_text("fine\nreject me\nexplode\n")
    with FakeComfy(reject_on="reject me", fail_on="explode") as server:
        assert server_queue(files, server.url) == 1
    recs = records(files["manifest"])
    assert [r["status"] for r in recs] == ["done", "failed", "failed"]
    assert recs[1]["error"] == ("the server rejected the prompt: node 1 (FakeConstant): Value not in list: "
                                "mode: 'x' not in [...]")
    assert recs[2]["error"] == "node 1 (FakeConstant) failed: ValueError: boom"
    assert len(server.submitted) == 2


def test_server_queue_killed_after_submitting_resumes_without_resubmitting(files, tmp_path):
    with FakeComfy(paused=True) as server:
        cmd = [sys.executable, "-m", "ltx2_nodes", "queue", files["wf"], "--prompts", files["prompts"],
               "--server", server.url, "--poll", "0.05"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while len(server.submitted) < 3 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert len(server.submitted) == 3
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
        recs = records(files["manifest"])
        assert [r["status"] for r in recs] == ["queued"] * 3
        ids = [r["prompt_id"] for r in recs]
        # the server finishes job 1 while nobody watches, then "restarts" and loses job 3
        server.forget(ids[2])
        server.resume()
        deadline = time.monotonic() + 10
        while ids[0] not in server.history and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server_queue(files, server.url) == 0
    recs = records(files["manifest"])
    assert [r["status"] for r in recs] == ["done"] * 3
    assert [r["prompt_id"] for r in recs] == ids  # the same prompt ids throughout
    assert [p for p, _ in server.submitted] == ids + [ids[2]]  # only the lost job was submitted again
    assert [r["attempts"] for r in recs] == [1, 1, 2]


# ---------------------------------------------------------------------------------------------- websocket
def test_websocket_client_reassembles_fragments_answers_pings_and_reads_long_frames():
    with FakeComfy(steps=1) as server:
        ws = WebSocket.connect(server.url.replace("http", "ws") + "/ws?clientId=c1")
        assert json.loads(ws.recv(5))["type"] == "status"
        long_text = json.dumps({"x": "y" * 70000})
        server._frame("c1", [(0x01, long_text.encode(), True)])
        assert ws.recv(5) == long_text
        server._frame("c1", [(0x09, b"p", True), (0x01, b"ab", False), (0x00, b"cd", True)])
        assert ws.recv(5) == "abcd"
        assert ws.recv(0.05) is None  # timeout, nothing lost
        server._frame("c1", [(0x08, b"\x03\xe8", True)])
        with pytest.raises(WebSocketError, match="closed by the server"):
            ws.recv(5)
        ws.close()
        deadline = time.monotonic() + 5
        while server.pongs < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.pongs == 1
    with pytest.raises(OSError):
        WebSocket.connect(f"ws://127.0.0.1:{free_port()}/ws", timeout=2)


def test_a_server_that_is_not_comfyui_is_refused(files, capsys):
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert server_queue(files, url) == 3
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert capsys.readouterr().err.strip() == f"error: {url} answered HTTP 404 to GET /queue; is it a ComfyUI server?"
    assert not files["manifest"].exists()
