"""``generate --extend-from CLIP --seconds N`` and ``--retake START-END`` on the demo models: the whole clip written
with its sound, the source's frames kept outside the edit, impossible requests refused (exit 2) before any model
loads."""

from __future__ import annotations

import json

import pytest
import torch

from demo_support import demo_models  # noqa: F401 (fixture)
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import CHECKPOINT, CHECKPOINT_23
from ltx2_nodes.media.mux import MP4Writer, probe


def _clip(path, frames=17, width=64, height=64, sound=True):
    g = torch.Generator().manual_seed(0)
    with MP4Writer(path, 24.0, audio_sample_rate=16000 if sound else None) as writer:
        writer.add_frames(torch.rand(frames, height, width, 3, generator=g))
        if sound:
            writer.set_audio(0.2 * torch.randn(2, int(16000 * frames / 24) + 2000, generator=g))
    return path


def _generate(demo_models, tmp_path, *extra, checkpoint=CHECKPOINT) -> int:
    return main(["generate", "--prompt", "a fox trots through snow", "--models-dir", str(demo_models.root),
                 "--checkpoint", checkpoint, "--device", "cpu", "--out", str(tmp_path / "edited.mp4"), *extra])


@pytest.mark.parametrize("checkpoint", [CHECKPOINT, CHECKPOINT_23])
def test_extend_from_a_clip_writes_the_whole_longer_clip_with_sound(checkpoint, demo_models, tmp_path, isolated):
    source = _clip(tmp_path / "source.mp4")
    assert _generate(demo_models, tmp_path, "--extend-from", str(source), "--seconds", "1.4",
                     "--segment-seconds", "0.7", checkpoint=checkpoint) == 0
    info = probe(tmp_path / "edited.mp4")
    # 17 frames = 3 latent frames, + 2 segments of round(0.7 * 24 / 8) = 2 latent frames: 7 latent frames, 49 frames
    assert (info.video_frames, info.width, info.height) == (49, 64, 64)
    assert abs(info.audio_seconds - 49 / 24) <= 1024 / info.audio_sample_rate + 1e-6
    recorded = json.loads(info.metadata["ltx2_generate"])
    assert recorded["edit"]["extend_seconds"] == 1.4 and recorded["frames"] == 49


def test_retake_keeps_the_clip_length(demo_models, tmp_path, isolated):
    source = _clip(tmp_path / "source.mp4", frames=25)
    assert _generate(demo_models, tmp_path, "--retake", "0.2-0.6", "--retake-from", str(source),
                     "--retake-only", "video") == 0
    info = probe(tmp_path / "edited.mp4")
    assert (info.video_frames, info.width, info.height) == (25, 64, 64)
    assert json.loads(info.metadata["ltx2_generate"])["edit"]["retake"] == [0.2, 0.6]


@pytest.mark.parametrize("clip, extra, message", [
    (dict(frames=20), ("--seconds", "1"), "17 frames of 64x64 fit"),
    (dict(width=70), ("--seconds", "1"), "17 frames of 64x64 fit"),
    (dict(sound=False), ("--seconds", "1"), "has no audio stream"),
    (dict(), ("--seconds", "1", "--overlap", "3"), "keep 1 to 2"),
    (dict(), ("--seconds", "1", "--segment-seconds", "60"), "at most"),
    (dict(), ("--frames", "25"), "--frames does not apply"),
])
def test_impossible_extends_exit_2_before_any_model_loads(clip, extra, message, demo_models, tmp_path, isolated,
                                                          capsys, monkeypatch):
    import ltx2_nodes.handles as handles

    monkeypatch.setattr(handles, "load_ltx2", lambda *a, **k: pytest.fail("a model loaded"))
    source = _clip(tmp_path / "source.mp4", **clip)
    assert _generate(demo_models, tmp_path, "--extend-from", str(source), *extra) == 2
    assert message in capsys.readouterr().err


def test_a_retake_window_outside_the_clip_or_malformed_exits_2(demo_models, tmp_path, isolated, capsys):
    source = _clip(tmp_path / "source.mp4")
    assert _generate(demo_models, tmp_path, "--retake", "3-4", "--retake-from", str(source)) == 2
    assert "choose a window inside 0-0.71" in capsys.readouterr().err
    assert _generate(demo_models, tmp_path, "--retake", "4-3", "--retake-from", str(source)) == 2
    assert "START-END" in capsys.readouterr().err
    assert _generate(demo_models, tmp_path, "--retake", "1-2") == 2
    assert "--retake-from CLIP" in capsys.readouterr().err
