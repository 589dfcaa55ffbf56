"""``queue --ray``: a 6-job queue on a private local Ray instance with 2 CPU workers, one of them killed with
SIGKILL mid-job; the driver's manifest, the published files, resume; and the errors (Ray not installed, an
unreachable address) that need no running cluster. Tests that start Ray skip when it is not installed."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

import cli_fake_nodes as fake
from demo_support import DEMO_WORKFLOWS, demo_models  # noqa: F401
from ltx2_nodes import paths
from ltx2_nodes.cli import main, ray_queue
from ltx2_nodes.cli.display import Display
from ltx2_nodes.cli.jobs import JobSpec, build_jobs
from ltx2_nodes.cli.manifest import Manifest
from ltx2_nodes.cli.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]
FAKE_NODES = str(Path(fake.__file__).resolve())
PROMPTS = [f"prompt {n}" for n in range(1, 7)]


def graph() -> dict:
    return {"1": {"class_type": "FakeConstant", "inputs": {"value": 4}},
            "4": {"class_type": "FakeText", "inputs": {"text": "placeholder", "seed": 5}},
            "5": {"class_type": "FakeSteps", "inputs": {"text": ["4", 0], "steps": 2, "delay": 0.2}},
            "6": {"class_type": "FakeSaveText", "inputs": {"text": ["5", 0], "number": ["1", 0],
                                                           "filename_prefix": "q/job"}}}


@pytest.fixture
def batch(tmp_path, monkeypatch, isolated):
    """A workflow, a 6-prompt file, an output folder and the fake nodes' save log (one line per finished save,
    from every process: Ray workers inherit this environment)."""
    monkeypatch.setenv("FAKE_NODES_LOG", str(tmp_path / "saves.log"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(graph()))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return {"wf": str(wf), "prompts": str(prompts), "out": tmp_path / "out", "log": tmp_path / "saves.log",
            "manifest": Path(str(prompts) + ".manifest.jsonl"), "tmp": tmp_path}


def queue(batch, *extra) -> int:
    return main(["queue", batch["wf"], "--prompts", batch["prompts"], "--nodes", FAKE_NODES,
                 "--out", str(batch["out"]), *extra])


def records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_queue_with_a_worker_killed_mid_job_runs_every_job_exactly_once(batch, monkeypatch, capsys):
    pytest.importorskip("ray")
    monkeypatch.setenv("FAKE_NODES_KILL_ON", "prompt 3#")  # the worker saving job 3 SIGKILLs itself, once
    monkeypatch.setenv("FAKE_NODES_KILL_MARKER", str(batch["tmp"] / "killed"))
    assert queue(batch, "--ray", "local", "--ray-workers", "2", "--ray-cpus", "1") == 0
    out, err = capsys.readouterr()
    assert (batch["tmp"] / "killed").exists()  # a worker really died mid-job
    assert "Ray cluster at local: 2 worker(s), each 0 GPU(s) and 1 CPU(s)" in err
    assert re.search(r"job 3: its worker died \(.*\); running it again", err)
    # every job saved exactly once (the killed attempt died before its save), whatever the order
    assert sorted(batch["log"].read_text().splitlines()) == [f"saved {p}#5" for p in PROMPTS]
    recs = records(batch["manifest"])
    assert [(r["prompt"], r["status"], r["attempts"], r["error"]) for r in recs] == [
        (p, "done", 2 if p == "prompt 3" else 1, None) for p in PROMPTS]
    assert all(r["target"] == "ray:local" for r in recs)
    files = [Path(f) for r in recs for f in r["files"]]
    assert len(files) == 6 and len(set(files)) == 6 and out.splitlines() == [str(f) for f in files]
    assert [f.read_text() for f in files] == [f"{p}#5 6.0" for p in PROMPTS]  # each job's own file
    assert sorted(f.name for f in files) == [f"job_0000{n}_.txt" for n in range(1, 7)]  # numbered here
    assert sorted(p.name for p in (batch["out"] / "q").iterdir()) == sorted(f.name for f in files)  # no .partial
    assert "6 job(s): 6 done, 0 failed" in err
    # resumed: nothing left to do, so no Ray instance is even started
    assert queue(batch, "--ray", "local") == 0
    assert capsys.readouterr().err.count("already done (manifest)") == 6
    assert len(batch["log"].read_text().splitlines()) == 6


@pytest.mark.slow
def test_a_job_whose_worker_dies_more_often_than_retries_allow_fails_and_runs_again_on_rerun(batch, monkeypatch,
                                                                                            capsys):
    pytest.importorskip("ray")
    Path(batch["prompts"]).write_text("prompt 1\nprompt 2\n")
    monkeypatch.setenv("FAKE_NODES_KILL_ON", "prompt 1#")
    monkeypatch.setenv("FAKE_NODES_KILL_MARKER", str(batch["tmp"] / "killed"))
    assert queue(batch, "--ray", "local", "--ray-workers", "1", "--ray-retries", "0") == 1
    recs = records(batch["manifest"])
    assert [r["status"] for r in recs] == ["failed", "done"]
    assert recs[0]["error"].startswith("its worker died during 1 attempt(s) (last: ")
    assert recs[0]["error"].endswith("); run the queue again, raise --ray-retries, or give the workers more memory")
    assert queue(batch, "--ray", "local", "--ray-workers", "1") == 0  # failed jobs run again, done ones do not
    assert [(r["status"], r["attempts"]) for r in records(batch["manifest"])] == [("done", 2), ("done", 1)]
    assert sorted(batch["log"].read_text().splitlines()) == ["saved prompt 1#5", "saved prompt 2#5"]


@pytest.mark.slow
def test_ray_and_local_queues_write_identical_files_for_a_demo_workflow(batch, demo_models, capsys):
    """The real pack nodes on the demo models: a Ray worker runs the same job code as ``--local``."""
    pytest.importorskip("ray")
    Path(batch["prompts"]).write_text('a dog barking\n{"prompt": "rain on a roof", "seed": 3}\n')
    common = ["queue", str(DEMO_WORKFLOWS / "t2a_dev_one_stage.api.json"), "--prompts", batch["prompts"],
              "--models-dir", str(demo_models.root)]
    assert main([*common, "--ray", "local", "--ray-workers", "2", "--out", str(batch["tmp"] / "ray")]) == 0
    assert main([*common, "--local", "--manifest", str(batch["tmp"] / "local.jsonl"),
                 "--out", str(batch["tmp"] / "local")]) == 0
    ray_files = [Path(r["files"][0]) for r in records(batch["manifest"])]
    local_files = [Path(r["files"][0]) for r in records(batch["tmp"] / "local.jsonl")]
    assert [f.suffix for f in ray_files] == [".flac", ".flac"]
    assert [f.read_bytes() for f in ray_files] == [f.read_bytes() for f in local_files]


def test_a_driver_killed_between_publishing_and_recording_finds_the_files(batch):
    """Files renamed into place and named in the manifest, status not yet ``done``: resumed, the job is done
    and nothing runs (no Ray needed: nothing is left to run)."""
    workflow = Workflow.load(batch["wf"])
    jobs = build_jobs(workflow, [JobSpec(1, "a")], [("4", "text")], None)
    published = batch["out"] / "q" / "job_00001_.txt"
    published.parent.mkdir(parents=True)
    published.write_text("a#5 6.0")
    manifest = Manifest(batch["manifest"])
    manifest.register(jobs, "ray:local")
    manifest.begin(jobs[0].key, "ray:local")
    manifest.update(jobs[0].key, files=[str(published)])
    settings = ray_queue.RaySettings(ray_queue.WorkerSettings(None, str(batch["tmp"]), (), None, None, None),
                                     None, None, 1.0, 0)
    ray_queue.RayQueue("local", settings, manifest, Display(1)).run(jobs)
    assert [(r["status"], r["attempts"], r["files"]) for r in records(batch["manifest"])] == [
        ("done", 1, [str(published)])]


def test_published_files_get_the_next_free_counter_and_appear_only_whole(tmp_path, isolated):
    paths.configure(output_dir=tmp_path)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "job_00004_.txt").write_text("earlier")
    staged = [("q/job_00001_.txt", b"a"), ("q/job_00002_.txt", b"b"), ("fixed.json", b"{}")]
    targets = ray_queue.publish_targets(staged)
    assert targets == [tmp_path / "q" / "job_00005_.txt", tmp_path / "q" / "job_00006_.txt", tmp_path / "fixed.json"]
    for target, (_, data) in zip(targets, staged):
        ray_queue.write_atomically(target, data)
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["job_00004_.txt", "job_00005_.txt",
                                                                   "job_00006_.txt"]
    assert targets[1].read_bytes() == b"b"


# ---------------------------------------------------------------------------------------------- errors
def test_ray_not_installed_is_refused_with_the_install_hint_before_any_work(batch, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["queue", str(batch["tmp"] / "missing.json"), "--prompts", batch["prompts"], "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --ray needs Ray, which is not installed for {sys.executable}; install it with pip install "
                   "'ltx2_nodes[cluster]' (or pip install -r requirements-cluster.txt) on this machine and on every "
                   "worker machine")
    assert not batch["manifest"].exists()


def test_an_unreachable_ray_address_is_exit_2_naming_it_and_the_fix(batch, monkeypatch, capsys):
    pytest.importorskip("ray")
    batch["manifest"].write_text('{"key": "old", "status": "done"}\n')
    address = f"127.0.0.1:{free_port()}"
    assert queue(batch, "--ray", address) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach a Ray cluster at {address} (")
    assert err.endswith("); start one there (ray start --head on that machine), check the address and firewall, "
                        "or pass --ray local to run on this machine alone")
    assert "\n" not in err and "Traceback" not in err
    # a host that never answers (or a proxy that answers for it): bounded, not Ray's minutes of retries
    monkeypatch.setattr(ray_queue, "CONNECT_TIMEOUT", 1.0)
    start = time.monotonic()
    assert queue(batch, "--ray", "198.51.100.1:6379") == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: cannot (reach|connect to) a Ray cluster at 198\.51\.100\.1:6379 \(.*\); start one "
                        r"there .*--ray local to run on this machine alone", err)
    assert batch["manifest"].read_text() == '{"key": "old", "status": "done"}\n'  # untouched


@pytest.mark.parametrize("args, message", [
    (["--ray", "http://head:6379"], "--ray 'http://head:6379': expected HOST:PORT (the head's GCS, e.g. "
                                    "10.0.0.5:6379), ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001), auto or "
                                    "local"),
    (["--ray", "head"], "--ray 'head': expected HOST:PORT"),
    (["--local", "--ray-workers", "2", "--ray-gpus", "1"], "--ray-workers, --ray-gpus: only used with --ray ADDRESS"),
    (["--ray", "local", "--local"], "argument --local: not allowed with argument --ray"),
])
def test_bad_ray_options_are_usage_errors(batch, capsys, args, message):
    pytest.importorskip("ray")
    assert queue(batch, *args) == 2
    assert message in capsys.readouterr().err
    assert not batch["manifest"].exists()
