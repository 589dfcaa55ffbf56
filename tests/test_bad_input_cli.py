"""Bad input on the command line and in the nodes (issue 20): each class gets one ``error:`` line naming the
input and the fix, the documented exit code, nothing run past the failing check and no partial file.

Classes covered here (docs/CLI.md, "What bad input gets"): 1 silent numbers, 4 option values, 7 late failures
and debris, 8 signals. Fake nodes (tests/cli_fake_nodes.py) stand in for models wherever a model is not the point;
``generate`` cases replace the model loaders with sentinels that fail the test if they are reached.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cli_fake_nodes as fake
from ltx2_nodes import generate as generate_module
from ltx2_nodes import handles, paths
from ltx2_nodes.cli import main
from ltx2_nodes.errors import CheckpointError, InputError, OutputWriteError
from ltx2_nodes.memory import selection
from ltx2_nodes.model.shapes import MAX_FRAMES, frames_for_seconds
from ltx2_nodes.nodes.decode import LTX2AVCombine  # imported before the sentinels replace handles' loaders
from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent
from ltx2_nodes.nodes.loaders import LTX2CheckpointLoader

REPO = Path(__file__).resolve().parents[1]
REAL_LOAD_LTX2 = handles.load_ltx2
FAKE_NODES = str(Path(fake.__file__).resolve())
WORKFLOW = {"1": {"class_type": "FakeConstant", "inputs": {"value": 4}},
            "4": {"class_type": "FakeText", "inputs": {"text": "a cat", "seed": 5}},
            "5": {"class_type": "FakeSteps", "inputs": {"text": ["4", 0], "steps": 2}},
            "6": {"class_type": "FakeSaveText", "inputs": {"text": ["5", 0], "number": ["1", 0],
                                                           "filename_prefix": "bad/x"}}}


class RanPastTheCheck(AssertionError):
    pass


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Fresh paths and engine; no $LTX2_* from the caller; the model loaders and the sampler of ``generate``
    fail the test when a bad input gets that far."""
    fake.CALLS.clear()
    paths.reset()
    for env in (*selection.ENGINE_ENV.values(), paths.MODELS_DIR_ENV):
        monkeypatch.delenv(env, raising=False)
    previous = selection._HEADLESS_ENGINE

    def sentinel(*args, **kwargs):
        raise RanPastTheCheck("a model was loaded or run after a bad input")

    for module, name in ((handles, "load_ltx2"), (handles, "load_gemma"), (handles, "load_upscaler"),
                         (generate_module, "encode_prompts"), (generate_module, "run_sampler")):
        monkeypatch.setattr(module, name, sentinel)
    yield tmp_path
    selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
    paths.reset()


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def workflow_file(tmp_path: Path, prompt: dict | str = None) -> str:
    path = tmp_path / "wf.json"
    path.write_text(prompt if isinstance(prompt, str) else json.dumps(prompt or WORKFLOW))
    return str(path)


def run_cli(tmp_path, *extra) -> int:
    return main(["run", workflow_file(tmp_path), "--nodes", FAKE_NODES, "--out", str(tmp_path / "out"), *extra])


def generate_cli(tmp_path, *extra) -> int:
    return main(["generate", "--prompt", "a fox", "--models-dir", str(tmp_path), "--device", "cpu", "--width",
                 "256", "--height", "192", "--out", str(tmp_path / "clip.mp4"), *extra])


def files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------
# 1. Silent numbers: refused with the nearest valid values, or changed with a visible line


@pytest.mark.parametrize("extra, message", [
    (["--frames", "0"], "error: argument --frames: '0' is out of range; give a whole number >= 1"),
    (["--seconds", "0"], "error: argument --seconds: '0' is out of range; give a finite number > 0"),
    (["--seconds", "100000"], "error: --seconds 100000: 100000 s at 24 fps is 2400001 frames, more than the 1025 "
                              "frames (1 + 8*k) LTX-2 generates here; the longest clip at 24 fps is 42.71 s (1025 "
                              "frames): ask for at most 42.71 s or a lower fps."),
    (["--frames", "2000"], "error: --frames 2000: at most 1025 frames (42.71 s at 24 fps); ask for fewer"),
    (["--frames", "100"], "Nearest valid size: 256x192, 97 frames."),
    (["--width", "100"], "Nearest valid size: 128x192, 121 frames."),
    (["--frames", "9", "--image", "x.png", "--image-frame", "9"],
     "error: --image-frame 9: the video has frames 0..8; pin the image at one of them"),
], ids=["frames-0", "seconds-0", "seconds-100000", "frames-2000", "frames-100", "width-100", "image-frame"])
def test_generate_refuses_numbers_it_cannot_honour_before_loading_anything(tmp_path, capsys, extra, message):
    assert generate_cli(tmp_path, *extra) == 2
    (line,) = errors(capsys)
    assert message in line
    assert not (tmp_path / "clip.mp4").exists()


def test_node_seconds_beyond_the_frame_maximum_are_refused_and_widget_maxima_are_producible(caplog):
    widgets = LTX2EmptyAVLatent.INPUT_TYPES()["required"]
    assert widgets["frames"][1]["max"] == MAX_FRAMES
    assert frames_for_seconds(widgets["seconds"][1]["max"], widgets["fps"][1]["default"]) <= MAX_FRAMES
    node = LTX2EmptyAVLatent()
    with pytest.raises(InputError, match=r"60 s at 24 fps is 1441 frames, more than the 1025 .* at most 42.71 s"):
        node.create(width=64, height=64, frames=121, seconds=60.0, fps=24.0, batch_size=1)
    with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
        (latent,) = node.create(width=64, height=64, frames=121, seconds=1.0, fps=24.0, batch_size=1)
    assert "1 s at 24 fps -> 25 frames (1.042 s), the nearest 1 + 8k frame count" in caplog.text


def _combine(tmp_path, frames: int, fps: float, audio_seconds: float):
    paths.configure(output_dir=tmp_path / "out")
    images = torch.rand(frames, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    samples = round(audio_seconds * 24000)
    audio = {"waveform": torch.zeros(1, 2, samples), "sample_rate": 24000}
    return LTX2AVCombine().combine(images, fps, "bad/clip", audio=audio)


def test_combine_at_another_fps_than_the_audio_is_refused_with_the_matching_fps(tmp_path):
    """9 frames of a 24 fps latent and their 0.375 s of sound at 1 fps: 9 s of video, 0.4 s of audio."""
    with pytest.raises(InputError, match=r"the audio lasts 0.375 s and the 9 frames at 1 fps last 9.000 s; set fps "
                                         r"to 24 \(the rate at which they match"):
        _combine(tmp_path, 9, 1.0, 9 / 24)
    assert files_under(tmp_path / "out") == []  # refused before a file was opened


def test_combine_cuts_longer_audio_only_with_a_visible_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ltx2_nodes"):
        result = _combine(tmp_path, 9, 30.0, 9 / 24)
    (warning,) = result["ui"]["ltx2_warning"]
    assert "the audio is cut to the video; if both come from one LTX-2 latent, set fps to 24" in warning
    assert warning in caplog.text
    assert "ltx2_warning" not in _combine(tmp_path, 9, 24.0, 9 / 24)["ui"]  # matching lengths: nothing to say


# ------------------------------------------------------------------------------------------------
# 4. Option values: one error line, exit 2, before any model loads or node runs

DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("command, env, message", [
    (["--vram-budget=abc"], {}, "error: argument --vram-budget: cannot read memory size 'abc'; write e.g. '8GiB'"),
    (["--vram-budget=-1GiB"], {}, "error: argument --vram-budget: cannot read memory size '-1GiB' (sizes cannot be "
                                  "negative); write e.g. '8GiB'"),
    (["--ram-budget", "12 potatoes"], {}, "error: argument --ram-budget: cannot read memory size '12 potatoes'"),
    (["--device", "tpu"], {}, "error: argument --device: unknown compute device 'tpu'; use auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:99"], {}, "error: argument --device: compute device 'cuda:99' "),
    ([], {"LTX2_VRAM_BUDGET": "abc"}, "error: $LTX2_VRAM_BUDGET='abc': cannot read memory size 'abc'; write e.g. "
                                      "'8GiB', '12GB', '512MiB' or 'auto' (or unset LTX2_VRAM_BUDGET)"),
    ([], {"LTX2_DEVICE": "tpu"}, "error: $LTX2_DEVICE='tpu': unknown compute device 'tpu'"),
    (["--set", "5.steps=" + DEEP], {}, "error: --set 5.steps=... nests lists/objects more than 100 levels deep"),
    (["--frobnicate"], {}, "error: unrecognized arguments: --frobnicate (see python -m ltx2_nodes --help)"),
], ids=["vram-abc", "vram-negative", "ram-potatoes", "device-tpu", "device-cuda-99", "env-vram", "env-device",
        "deep-set", "unknown-option"])
def test_run_option_errors_are_one_line_and_exit_2_before_any_node_runs(tmp_path, capsys, monkeypatch, command, env,
                                                                         message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run_cli(tmp_path, *command) == 2
    (line,) = errors(capsys)
    assert line.startswith(message)
    assert fake.CALLS == [] and files_under(tmp_path / "out") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_usage_error_naming_the_fix(tmp_path, capsys):
    assert run_cli(tmp_path, "--device", "cuda") == 2
    assert errors(capsys) == ["error: argument --device: compute device 'cuda' is not available on this machine "
                              "(this PyTorch has no CUDA support or sees no NVIDIA GPU); use cpu (or auto, which picks "
                              "CUDA when present) (see python -m ltx2_nodes run --help)"]
    assert fake.CALLS == []


@pytest.mark.parametrize("extra, message", [
    (["--fps", "nan"], "error: argument --fps: 'nan' is not a finite number; give a finite number > 0"),
    (["--fps=-24"], "error: argument --fps: '-24' is out of range; give a finite number > 0"),
    (["--image-strength", "2"], "error: argument --image-strength: '2' is out of range; give a number from 0 to 1"),
    (["--steps", "many"], "error: argument --steps: 'many' is not a whole number >= 1"),
    (["--vram-budget", "lots"], "error: argument --vram-budget: cannot read memory size 'lots'"),
])
def test_generate_option_errors_are_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert generate_cli(tmp_path, *extra) == 2
    (line,) = errors(capsys)
    assert line.startswith(message)


@pytest.mark.parametrize("extra, message", [
    (["--server", "not a url"], "error: argument --server: cannot use server address 'not a url'; expected "
                                "http://HOST:PORT, e.g. http://127.0.0.1:8188"),
    (["--server", "http://127.0.0.1:99999"], "error: argument --server: cannot use server address "
                                             "'http://127.0.0.1:99999'"),
    (["--server", "ftp://example.org"], "error: argument --server: cannot use server address 'ftp://example.org'"),
    (["--poll", "0"], "error: argument --poll: '0' is out of range; give a finite number > 0"),
])
def test_queue_option_errors_contact_nothing_and_write_no_manifest(tmp_path, capsys, extra, message):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    assert main(["queue", workflow_file(tmp_path), "--prompts", str(prompts), *extra]) == 2
    (line,) = errors(capsys)
    assert line.startswith(message)
    assert not Path(str(prompts) + ".manifest.jsonl").exists()


def test_deep_json_workflow_and_prompts_file_are_refused_by_name(tmp_path, capsys):
    assert main(["run", workflow_file(tmp_path, DEEP), "--nodes", FAKE_NODES]) == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('{"prompt": "x", "overrides": ' + '{"a": ' * 150_000 + "1" + "}" * 150_000 + "}\n")
    assert main(["queue", workflow_file(tmp_path), "--prompts", str(prompts), "--local", "--nodes", FAKE_NODES,
                 "--out", str(tmp_path / "out")]) == 2
    first, second = errors(capsys)
    assert first.startswith("error: workflow ") and first.endswith(
        "wf.json nests lists/objects more than 100 levels deep; no workflow, prompt or value needs that many (check "
        "how the file was generated)")
    assert second.startswith("error: ") and "prompts.txt line 1 nests lists/objects more than 100 levels" in second
    assert fake.CALLS == [] and not Path(str(prompts) + ".manifest.jsonl").exists()


# ------------------------------------------------------------------------------------------------
# 7. Late failures and debris: outputs and model parts checked first, no partial file ever left


def test_out_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    assert main(["run", workflow_file(tmp_path), "--nodes", FAKE_NODES, "--out", str(existing)]) == 2
    assert generate_cli(tmp_path, "--out", str(existing)) == 2
    assert generate_cli(tmp_path, "--out", str(existing / "sub" / "clip.mp4")) == 2
    first, second, third = errors(capsys)
    assert first == second == f"error: --out {existing}: is an existing file, not a folder; pass a folder (or a new " \
                              ".mp4 file name where the command writes one file)"
    assert third.startswith(f"error: --out {existing / 'sub'}: cannot write there (") and third.endswith(
        "); pass a folder you can write to")
    assert fake.CALLS == [] and existing.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_refused_before_anything_runs(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    try:
        assert run_cli(tmp_path, "--out", str(folder)) == 2
    finally:
        folder.chmod(0o700)
    assert "cannot write there (Permission denied)" in errors(capsys)[0] and fake.CALLS == []


def _checkpoint_without(folder: Path, prefix: str) -> str:
    """The demo LTX-2 single file with every tensor under ``prefix`` removed (a stripped or broken download)."""
    from ltx2_nodes.demo.models import write_checkpoint
    from ltx2_nodes.loading.safetensors_file import SafetensorsFile, write_safetensors

    full = write_checkpoint(folder / "full.safetensors")
    source = SafetensorsFile(full)
    entries = [(k, source.info(k).shape, source.info(k).dtype, lambda k=k: source.tensor(k))
               for k in source.keys() if not k.startswith(prefix)]
    (folder / "checkpoints").mkdir()
    write_safetensors(folder / "checkpoints" / "ltx-2-stripped.safetensors", entries, source.metadata)
    return "ltx-2-stripped.safetensors"


def test_missing_vocoder_is_found_before_sampling(tmp_path, capsys, monkeypatch):
    name = _checkpoint_without(tmp_path, "vocoder.")
    monkeypatch.setattr(handles, "load_ltx2", REAL_LOAD_LTX2)  # opening the file is the point here
    assert generate_cli(tmp_path, "--checkpoint", name) == 2  # encode_prompts / run_sampler are sentinels
    (line,) = errors(capsys)
    assert line.startswith(f"error: {name} (LTX-2 single-file checkpoint) has no vocoder; load the full ")
    paths.configure(models_dir=tmp_path)
    with pytest.raises(CheckpointError, match="has no vocoder"):  # the loader node: at load, not after sampling
        LTX2CheckpointLoader().load(name)
    assert not (tmp_path / "clip.mp4").exists()


class _FullDisk:
    """A PyAV output container whose disk fills up: ``mux`` fails after ``packets`` packets."""

    def __init__(self, container, packets: int):
        self._container, self._left = container, packets

    def __getattr__(self, name):
        return getattr(self._container, name)

    def mux(self, packets):
        if self._left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1
        return self._container.mux(packets)


@pytest.fixture
def full_disk(monkeypatch):
    import av

    real_open = av.open

    def install(packets: int):
        monkeypatch.setattr(av, "open", lambda *a, **k: _FullDisk(real_open(*a, **k), packets))

    return install


@pytest.mark.parametrize("packets", [0, 3], ids=["while-writing-frames", "while-finishing"])
def test_full_disk_names_the_file_and_leaves_no_partial_mp4(tmp_path, full_disk, packets):
    from ltx2_nodes.media.mux import MP4Writer

    full_disk(packets)
    target = tmp_path / "out" / "clip.mp4"
    with pytest.raises(OutputWriteError, match=rf"cannot write {target}: No space left on device; free some space on "
                                               r"that disk or write elsewhere \(no partial file was left\)"):
        with MP4Writer(target, 24, audio_sample_rate=24000) as writer:
            writer.add_frames(torch.rand(3, 32, 32, 3))
            writer.set_audio(torch.zeros(2, 3000))
    assert files_under(tmp_path / "out") == []


def test_full_disk_in_the_combine_node_leaves_no_partial_mp4(tmp_path, full_disk):
    full_disk(0)
    with pytest.raises(OutputWriteError, match="No space left on device"):
        _combine(tmp_path, 9, 24.0, 9 / 24)
    assert files_under(tmp_path / "out") == []


def test_interrupted_writer_leaves_no_partial_mp4(tmp_path):
    from ltx2_nodes.media.mux import MP4Writer

    with pytest.raises(KeyboardInterrupt):
        with MP4Writer(tmp_path / "clip.mp4", 24) as writer:
            writer.add_frames(torch.rand(9, 32, 32, 3))
            raise KeyboardInterrupt
    assert files_under(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 8. Signals: SIGTERM is Ctrl-C for every command (exit 130, no partial output, run again to resume)


def test_sigterm_during_run_exits_130_like_ctrl_c_and_restores_the_handler(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NODES_SIGTERM_ON", "a cat")
    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(tmp_path) == 130
    assert "interrupted (Ctrl-C or SIGTERM)" in capsys.readouterr().err
    assert [c[0] for c in fake.CALLS][-1] == "FakeSteps" and files_under(tmp_path / "out") == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_during_generate_exits_130(tmp_path, capsys, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ltx-2-19b-distilled.safetensors").write_bytes(b"")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(handles, "load_ltx2", terminated)
    assert generate_cli(tmp_path) == 130
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "clip.mp4").exists()


def test_sigterm_on_a_run_process_exits_130_with_a_message(tmp_path):
    slow = json.loads(json.dumps(WORKFLOW))
    slow["5"]["inputs"].update(steps=400, delay=0.05)
    cmd = [sys.executable, "-m", "ltx2_nodes", "run", workflow_file(tmp_path, slow), "--nodes", FAKE_NODES, "--out",
           str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "FakeSteps" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C or SIGTERM)" in err and "Traceback" not in err
    assert files_under(tmp_path / "out") == []
