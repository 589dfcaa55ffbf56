#!/usr/bin/env python3
"""``python -m ltx2_nodes queue`` against a REAL ComfyUI server, killed mid-batch and resumed.

Starts ComfyUI (CPU) with the shared harness (``../shared/tools/comfy_harness``, override with
``$COMFY_HARNESS``) from the exported tree in ``$COMFYUI_SRC`` or ``--comfyui-src``, with the harness's demo
pack and ``tests/comfy/ltx2_probe_pack`` loaded, then:

1. queues 3 prompts x 1 seed (workflow: DemoGradientImage -> DemoSaveStats, plus LTX2ProbeSave taking the
   prompt, which reports progress through ``ltx2_nodes.progress`` and saves through ``ltx2_nodes.paths``);
2. SIGKILLs the queue process as soon as the first job is done;
3. runs the same command again and checks: exit 0, manifest 3 x done, every prompt id submitted exactly once
   (the server's /history holds exactly the manifest's ids), the probe files hold the right prompt/seed and
   sit in the server's output folder under ComfyUI's counter names, and websocket progress reached the
   terminal output of one of the runs.

4. then, on a second server with this pack and its demo models, queues the shipped demo text-to-AV workflow
   (``workflows/demo/t2av_distilled_two_stage.api.json``) for 2 prompts with ``--seeds 5`` and checks that
   both jobs finish with an MP4 holding video and audio streams, and that both samplers got the seed.

Exit status 0 when every check passes, 1 otherwise, 77 (skipped) without a ComfyUI tree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIPPED = 77


def harness_dir() -> Path:
    return Path(os.environ.get("COMFY_HARNESS") or REPO.parent / "shared" / "tools" / "comfy_harness").resolve()


def workflow() -> dict:
    return {"1": {"class_type": "DemoGradientImage", "inputs": {"width": 32, "height": 24, "batch_size": 1,
                                                               "seed": 0}},
            "2": {"class_type": "DemoSaveStats", "inputs": {"images": ["1", 0], "filename_prefix": "demo/q"}},
            "3": {"class_type": "LTX2ProbeSave", "inputs": {"text": "placeholder", "seed": 0, "steps": 5,
                                                           "step_seconds": 0.5}}}


def queue_command(work: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "ltx2_nodes", "queue", str(work / "wf.json"), "--prompts", str(work / "prompts.txt"),
            "--server", url, "--seeds", "11", "--seed-input", "3.seed", "--set", "1.seed=11",
            "--manifest", str(work / "manifest.jsonl"), "--poll", "0.2"]


def manifest(work: Path) -> list[dict]:
    path = work / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def check(condition: bool, what: str, failures: list[str]) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui-src", default=os.environ.get("COMFYUI_SRC"))
    args = parser.parse_args(argv)
    if not args.comfyui_src:
        print("skipped: no ComfyUI tree (set COMFYUI_SRC or pass --comfyui-src)")
        return SKIPPED
    sys.path.insert(0, str(harness_dir()))
    import run_comfy  # the harness: server start/stop by PID, stubs, pack links

    packs = [harness_dir() / "examples" / "demo_pack", REPO / "tests" / "comfy" / "ltx2_probe_pack"]
    hargs = run_comfy.parse_args(["--comfyui-src", args.comfyui_src] + [f"--pack={p}" for p in packs]
                                 + ["--", "--disable-api-nodes"])
    base = run_comfy.make_base(hargs)
    run_comfy.link_packs(hargs, base)
    server = run_comfy.Server(hargs, base, run_comfy.copy_stubs(base, run_comfy.pick_stubs(hargs)))
    failures: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        info = server.start()
        check("LTX2ProbeSave" in info and "DemoSaveStats" in info, "the demo and probe packs are registered",
              failures)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "wf.json").write_text(json.dumps(workflow()))
            prompts = ["a red fox", "a blue whale", "a green parrot"]
            (work / "prompts.txt").write_text("\n".join(prompts) + "\n")
            first = subprocess.Popen(queue_command(work, server.url), cwd=work, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and first.poll() is None:
                if any(r.get("status") == "done" for r in manifest(work)):
                    break
                time.sleep(0.1)
            killed = first.poll() is None
            if killed:
                os.kill(first.pid, signal.SIGKILL)
            _, first_err = first.communicate()
            statuses = [r.get("status") for r in manifest(work)]
            check(killed and statuses.count("done") >= 1 and len(statuses) == 3,
                  f"first run killed after a job finished (manifest: {statuses})", failures)
            second = subprocess.run(queue_command(work, server.url), cwd=work, env=env, capture_output=True,
                                    text=True, timeout=300)
            print(second.stderr[-2000:])
            records = manifest(work)
            check(second.returncode == 0, f"resumed run exits 0 (got {second.returncode})", failures)
            check([r.get("status") for r in records] == ["done"] * 3, "manifest: 3 jobs done", failures)
            with urllib.request.urlopen(server.url + "/history?max_items=100", timeout=30) as response:
                history = json.loads(response.read())
            ids = [r.get("prompt_id") for r in records]
            check(sorted(history) == sorted(ids), f"server history holds exactly the 3 manifest prompt ids "
                                                  f"({len(history)} entries): nothing submitted twice", failures)
            texts = []
            for record in records:
                probe = [f for f in record.get("files", []) if f.startswith("output/probe/")]
                texts += [(Path(base) / f).read_text() for f in probe if (Path(base) / f).is_file()]
            check(sorted(texts) == sorted(f"{p} #11" for p in prompts),
                  f"probe files hold each prompt with seed 11 (ltx2_nodes.paths inside ComfyUI): {texts}", failures)
            names = sorted(p.name for p in (Path(base) / "output" / "probe").glob("*.txt"))
            check(names == ["job_00001_.txt", "job_00002_.txt", "job_00003_.txt"],
                  f"ComfyUI's counter names in the server's output folder: {names}", failures)
            progress_seen = any("node 3 (LTX2ProbeSave)" in err and "/5" in err for err in (first_err, second.stderr))
            check(progress_seen, "websocket progress from ltx2_nodes.progress reached the terminal", failures)
    finally:
        server.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    check_shipped_workflow(args.comfyui_src, env, failures)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


def check_shipped_workflow(comfyui_src: str, env: dict, failures: list[str]) -> None:
    """Queue the shipped demo t2av workflow into a real ComfyUI running this pack on its demo models."""
    import run_comfy

    sys.path.insert(0, str(REPO))
    from ltx2_nodes.demo.models import write_demo_models
    from ltx2_nodes.media.mux import probe

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = write_demo_models(work / "models").root
        hargs = run_comfy.parse_args(["--comfyui-src", comfyui_src, f"--pack={REPO}", f"--models-dir={models}",
                                      "--", "--disable-api-nodes"])
        base = run_comfy.make_base(hargs)
        run_comfy.link_packs(hargs, base)
        server = run_comfy.Server(hargs, base, run_comfy.copy_stubs(base, run_comfy.pick_stubs(hargs)))
        try:
            info = server.start()
            check("LTX2Sampler" in info, "ltx2_nodes registered in the second server", failures)
            (work / "prompts.txt").write_text("a red fox in the snow\na whale singing under water\n")
            shipped = REPO / "workflows" / "demo" / "t2av_distilled_two_stage.api.json"
            result = subprocess.run([sys.executable, "-m", "ltx2_nodes", "queue", str(shipped), "--prompts",
                                     str(work / "prompts.txt"), "--server", server.url, "--seeds", "5",
                                     "--manifest", str(work / "manifest.jsonl"), "--poll", "0.5"],
                                    cwd=work, env=env, capture_output=True, text=True, timeout=600)
            print(result.stderr[-1500:])
            records = manifest(work)
            check(result.returncode == 0 and [r.get("status") for r in records] == ["done", "done"],
                  f"shipped workflow queued twice: exit {result.returncode}, manifest "
                  f"{[r.get('status') for r in records]}", failures)
            for record in records:
                videos = [Path(base) / f for f in record.get("files", []) if f.endswith(".mp4")]
                media = probe(videos[0]) if videos and videos[0].is_file() else None
                check(media is not None and media.video_codec == "h264" and media.audio_codec == "aac"
                      and media.video_frames == 49,
                      f"job {record.get('line')}: MP4 with h264 + aac, 49 frames ({videos})", failures)
            with urllib.request.urlopen(server.url + "/history?max_items=10", timeout=30) as response:
                history = json.loads(response.read())
            seeds = [[node["inputs"]["seed"] for node in entry["prompt"][2].values()
                      if node["class_type"] == "LTX2Sampler"] for entry in history.values()]
            check(seeds and all(s == [5, 5] for s in seeds), f"both samplers got --seeds 5: {seeds}", failures)
        finally:
            server.stop()
            import shutil

            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
