#!/usr/bin/env python3
"""The pack inside a REAL ComfyUI: every node registers, every shipped workflow runs, core interoperates.

Given an exported ComfyUI tree (``$COMFYUI_SRC`` or ``--comfyui-src``; set up with the shared harness,
``../shared/tools/comfy_harness``, override with ``$COMFY_HARNESS``), this script

1. writes the tiny demo models (``python -m ltx2_nodes demo-models``) into a temporary models folder;
2. starts ComfyUI (CPU) with this repository in ``custom_nodes/`` through the harness and checks that all
   the pack's node ids are in ``/object_info`` (with their LTX-2 categories);
3. runs through ``POST /prompt``, on one server:
   * every ``workflows/demo/*.api.json`` (the API twins of the shipped workflows on the demo models);
   * every UI-format ``example_workflows/*.json``, converted by the harness from ``/object_info`` (shared seed /
     fps PrimitiveNodes, Notes), after swapping the released model and input names for the demo ones and the
     sizes for the demo sizes -- exactly what a user re-pointing the widgets does;
   * a mixed graph: Gemma prompt enhancement -> our sampler (gpus 2: two worker processes spawned from the
     server, the tokens split over them) -> core ``LTXVSeparateAVLatent`` -> core
     ``LTXVConcatAVLatent`` -> our sampler -> core ``LTXVSeparateAVLatent`` -> core ``LTXVAudioVAEDecode``
     (audio VAE from core's ``LTXVAudioVAELoader`` on the demo checkpoint) + our tiled video decode -> our MP4
     node, plus core ``SaveAudio`` of core's decoded audio;
   with ComfyUI's latent previews on (``--preview-method auto``), so the samplers' live previews run as well;
4. requires every run to succeed and every MP4 to hold an H.264 video stream of the expected frame count and
   an AAC audio stream of the video's duration (the text-to-audio workflows: a FLAC).

Exit 0 when every check passes, 1 otherwise, 77 (skipped) without a ComfyUI tree. ``--keep DIR`` keeps the
outputs and the JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIPPED = 77
sys.path.insert(0, str(REPO))

from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS  # noqa: E402 -- the pack's own registry: every node id

NODE_IDS = tuple(NODE_CLASS_MAPPINGS)


def harness_dir() -> Path:
    return Path(os.environ.get("COMFY_HARNESS") or REPO.parent / "shared" / "tools" / "comfy_harness").resolve()


def demo_ui_workflow(path: Path) -> dict:
    """A shipped UI workflow re-pointed at the demo models, inputs and sizes (what a user does in the widgets)."""
    import build_workflows as build
    import workflow_graph as graph

    # every registered family's releases (a family may add its own files, e.g. the Dub-It LoRA)
    names = {release.released[k]: release.demo[k] for release, _ in build.RELEASE_WORKFLOWS for k in release.released}
    twin = json.loads((REPO / "workflows" / "demo" / f"{path.stem}.api.json").read_text())  # its sizes per node
    data = json.loads(path.read_text())
    for node in data["nodes"]:
        values = node.get("widgets_values") or []
        node["widgets_values"] = [names.get(v, v) if isinstance(v, str) else v for v in values]
        if node["type"] == "LTX2EmptyAVLatent":
            assert values[0] == graph.RELEASED_SIZE["width"], f"{path.name}: unexpected empty-latent widgets {values}"
            node["widgets_values"][:3] = [twin[str(node["id"])]["inputs"][k] for k in ("width", "height", "frames")]
        if node["type"] == "LTX2ExtendWindow":
            node["widgets_values"][0] = graph.DEMO_SIZE["extend_seconds"]
    return data


def demo_size(name: str) -> dict:
    """The demo twins' size of the release a workflow file belongs to (by its prefix)."""
    import workflow_graph as graph
    import workflows_iclora

    if "ic_lora_" in name:  # IC-LoRA control: its own demo size (the reference at half size in whole latent cells)
        return workflows_iclora.ICLORA_23.demo_size
    release = next((r for r in graph.ALL_RELEASES if r.prefix and name.removeprefix("ui_").startswith(r.prefix)),
                   graph.LTX_2)
    return release.demo_size or graph.DEMO_SIZE


def expected_media(name: str, mp4: str) -> tuple[int, int | None]:
    """(video frames, audio rate or None) of an MP4 a demo workflow writes: the release's demo frames (LTX-2.5's
    auto-length graph: the demo duration head's length, its keyframes clip: 2 silent frames); 48 kHz from LTX-2.3."""
    import workflow_graph as graph
    from ltx2_nodes.demo.models import DEMO_SECONDS_25
    from ltx2_nodes.model.shapes import clamped_frames_for_seconds

    # audio to video muxes the input sound itself (the 16 kHz demo file)
    rate = 16000 if "a2v_" in name else 48000 if any(p in name for p in (graph.LTX_2_3.prefix,
                                                                          graph.LTX_2_5.prefix)) else 24000
    if "keyframes_0" in mp4:
        return 2, None
    if "auto_length" in name:
        return clamped_frames_for_seconds(DEMO_SECONDS_25, graph.FPS), rate
    return expected_frames(Path(name)), rate


def expected_frames(path: Path) -> int:
    """Pixel frames of a demo run: the empty latent's, plus the extend workflow's two extensions."""
    import workflow_graph as graph
    from ltx2_nodes.model.shapes import pixel_frames

    frames = demo_size(path.name)["frames"]
    if "extend_" in path.name:
        new = round(graph.DEMO_SIZE["extend_seconds"] * graph.FPS / 8)
        frames = pixel_frames((frames - 1) // 8 + 1 + 2 * new)
    return frames


def mixed_graph(checkpoint: str, gemma: str) -> dict:
    """Our nodes and ComfyUI core's LTX-2 latent / audio nodes in one graph."""
    sampler = {"seed": 3, "steps": 8, "schedule": "distilled", "sigmas": "", "sampler": "euler", "video_cfg": 1.0,
               "audio_cfg": 1.0, "modality_scale": 1.0, "stg_scale": 0.0, "stg_blocks": "29", "rescale": 0.0,
               "start_sigma": 1.0, "guidance_passes": "sequential"}
    return {
        "1": {"class_type": "LTX2CheckpointLoader", "inputs": {"ckpt_name": checkpoint, "weight_dtype": "auto",
                                                              "fp8": "as stored"}},
        "2": {"class_type": "LTX2GemmaLoader", "inputs": {"gemma_name": gemma, "weight_dtype": "auto",
                                                         "fp8": "as stored"}},
        "16": {"class_type": "LTX2PromptEnhance", "inputs": {"gemma": ["2", 0], "prompt": "a drum solo in a garage",
                                                            "mode": "t2v", "seed": 42, "max_new_tokens": 16}},
        "3": {"class_type": "LTX2GemmaEncode", "inputs": {"gemma": ["2", 0], "prompt": ["16", 0]}},
        "4": {"class_type": "LTX2TextConnector", "inputs": {"text_connector": ["1", 3], "features": ["3", 0]}},
        "5": {"class_type": "LTX2EmptyAVLatent", "inputs": {"width": 256, "height": 192, "frames": 25, "seconds": 0.0,
                                                           "fps": 25.0, "batch_size": 1, "audio": True}},
        "6": {"class_type": "LTX2Sampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "latent": ["5", 0],
                                                     **sampler, "gpus": 2}},
        "7": {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": ["6", 0]}},
        "8": {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["7", 0], "audio_latent": ["7", 1]}},
        "9": {"class_type": "LTX2Sampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "latent": ["8", 0],
                                                     **dict(sampler, schedule="distilled stage 2",
                                                            start_sigma=0.909375)}},
        "10": {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": ["9", 0]}},
        "11": {"class_type": "LTXVAudioVAELoader", "inputs": {"ckpt_name": checkpoint}},
        "12": {"class_type": "LTXVAudioVAEDecode", "inputs": {"samples": ["10", 1], "audio_vae": ["11", 0]}},
        "13": {"class_type": "LTX2VideoDecodeTiled", "inputs": {"latent": ["10", 0], "video_vae": ["1", 1],
                                                               "tile_size": 0, "tile_overlap": 64, "temporal_tile": 0,
                                                               "temporal_overlap": 24}},
        "14": {"class_type": "LTX2AVCombine", "inputs": {"images": ["13", 0], "fps": 25.0,
                                                        "filename_prefix": "mixed/ltx2_core", "audio": ["12", 0]}},
        "15": {"class_type": "SaveAudio", "inputs": {"audio": ["12", 0], "filename_prefix": "mixed/core_audio"}},
    }


def check(condition: bool, what: str, failures: list[str]) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui-src", default=os.environ.get("COMFYUI_SRC"))
    parser.add_argument("--keep", metavar="DIR", help="keep outputs and the report here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per workflow")
    parser.add_argument("--match", default="", help="only the shipped workflows whose file name contains this "
                        "(e.g. ltx23_); the mixed core graph always runs")
    args = parser.parse_args(argv)
    if not args.comfyui_src:
        print("skipped: no ComfyUI tree (set COMFYUI_SRC or pass --comfyui-src)")
        return SKIPPED
    sys.path.insert(0, str(REPO / "scripts"))
    from ltx2_nodes.demo.models import write_demo_models
    from ltx2_nodes.media.mux import probe

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ltx2_verify_") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        demo = write_demo_models(work / "models")
        workflows = sorted(p for p in (REPO / "workflows" / "demo").glob("*.api.json") if args.match in p.name)
        for ui in sorted(p for p in (REPO / "example_workflows").glob("*.json") if args.match in p.name):
            converted = work / f"ui_{ui.name}"
            converted.write_text(json.dumps(demo_ui_workflow(ui)))
            workflows.append(converted)
        mixed = work / "mixed_core_graph.api.json"
        mixed.write_text(json.dumps(mixed_graph(demo.checkpoint.name, demo.gemma.name)))
        workflows.append(mixed)
        outputs, report = work / "outputs", work / "report.json"
        inputs = sorted((REPO / "workflows" / "demo" / "input").iterdir())
        command = [sys.executable, str(harness_dir() / "run_comfy.py"), "--comfyui-src", args.comfyui_src,
                   "--pack", str(REPO), "--models-dir", str(demo.root), "--require-outputs",
                   "--copy-outputs", str(outputs), "--json-report", str(report), "--timeout", str(args.timeout),
                   "--dump-object-info", str(work / "object_info.json")]
        command += [f"--expect-node={n}" for n in NODE_IDS + ("LTXVSeparateAVLatent", "LTXVAudioVAEDecode")]
        command += [f"--input-file={p}" for p in inputs] + [f"--workflow={w}" for w in workflows]
        command += ["--", "--preview-method", "auto"]  # the sampler's live preview runs too
        print("$ " + " ".join(command), flush=True)
        result = subprocess.run(command, text=True, capture_output=True, timeout=args.timeout * len(workflows) + 300)
        print(result.stdout[-12000:] + result.stderr[-4000:], flush=True)
        check(result.returncode == 0, f"harness exit 0 (got {result.returncode})", failures)
        data = json.loads(report.read_text()) if report.exists() else {}
        check(not data.get("pack_import_failed") and not data.get("expected_nodes_missing"),
              f"pack imported, every node registered (missing: {data.get('expected_nodes_missing')})", failures)
        info = json.loads((work / "object_info.json").read_text()) if (work / "object_info.json").exists() else {}
        categories = {n: info.get(n, {}).get("category", "") for n in NODE_IDS}
        check(all(c.startswith("LTX-2") for c in categories.values()), f"categories under LTX-2: {categories}",
              failures)
        runs = data.get("workflows", [])
        check(len(runs) == len(workflows), f"{len(workflows)} workflows submitted ({len(runs)} reported)", failures)
        for path, run in zip(workflows, runs):
            check(run.get("status") == "success", f"{path.name}: status {run.get('status')} "
                                                  f"{run.get('errors') or ''}", failures)
            if "t2a_" in path.name:  # text to audio: core SaveAudio's FLAC, no video
                flacs = [f for f in json.dumps(run.get("outputs", {})).split('"') if f.endswith(".flac")]
                check(bool(flacs), f"{path.name}: wrote a FLAC {flacs}", failures)
                continue
            mp4s = sorted({Path(f["path"] if isinstance(f, dict) else f).name for f in run.get("files", [])
                           if str(f.get("path") if isinstance(f, dict) else f).endswith(".mp4")})
            check(bool(mp4s), f"{path.name}: wrote an MP4 {mp4s}", failures)
            for name in mp4s:
                found = list(outputs.rglob(name))
                if not found:
                    check(False, f"{name} copied from the server", failures)
                    continue
                media = probe(found[0])
                # the vocoder's rate: 48 kHz for the LTX-2.3 and LTX-2.5 workflows, 24 kHz for LTX-2
                expected, rate = (25, 24000) if path == mixed else expected_media(path.name, name)
                duration_ok = rate is None or (media.audio_seconds is not None
                                               and abs(media.audio_seconds - media.video_seconds) < 0.05)
                check(media.video_codec == "h264" and media.video_frames == expected and duration_ok
                      and (media.audio_codec, media.audio_sample_rate) == (("aac", rate) if rate else (None, None)),
                      f"{name}: h264 {media.video_frames} frames {media.width}x{media.height}, "
                      f"{media.audio_codec} {media.audio_sample_rate} Hz {media.audio_seconds} s "
                      f"(video {media.video_seconds:.3f} s)", failures)
        mixed_run = runs[-1] if runs else {}
        flacs = [f for f in json.dumps(mixed_run.get("outputs", {})).split('"') if f.endswith(".flac")]
        check(bool(flacs), f"core SaveAudio wrote the audio core decoded from our latent: {flacs}", failures)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
