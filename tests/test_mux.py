"""MP4 writing: streams, exact frame count and durations, metadata round trip, atomic writes."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from ltx2_nodes.errors import InputError
from ltx2_nodes.media.lengths import exact_fps
from ltx2_nodes.media.mux import MP4Writer, probe


def _frames(n=25, h=64, w=96):
    t = torch.linspace(0, 1, n).view(n, 1, 1, 1)
    return (t * torch.ones(n, h, w, 3)).clamp(0, 1)


@pytest.mark.parametrize("fps,expected", [(24, Fraction(24)), (25.0, Fraction(25)), (23.976, Fraction(24000, 1001)),
                                          (29.97, Fraction(30000, 1001)), (30, Fraction(30))])
def test_frame_rates_are_exact(fps, expected):
    assert exact_fps(fps) == expected


def test_video_and_audio_streams_with_exact_durations(tmp_path):
    frames, fps, rate = 25, 24, 24000
    wave = torch.sin(torch.linspace(0, 800, rate * 2)).repeat(2, 1) * 0.5  # 2 s: longer than the video
    with MP4Writer(tmp_path / "clip.mp4", fps, audio_sample_rate=rate,
                   metadata={"prompt": {"1": {"class_type": "X"}}, "workflow": {"nodes": []}}) as writer:
        writer.add_frames(_frames(frames))
        writer.set_audio(wave)
    path = writer.path
    info = probe(path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.video_frames == frames and (info.width, info.height) == (96, 64) and info.fps == fps
    assert (info.audio_sample_rate, info.audio_channels) == (rate, 2)
    # trimmed to frames/fps = 1.0417 s; AAC adds at most one frame of priming/padding
    assert abs(info.audio_seconds - frames / fps) <= 1024 / rate + 1e-6
    assert json.loads(info.metadata["prompt"]) == {"1": {"class_type": "X"}}
    assert json.loads(info.metadata["workflow"]) == {"nodes": []}


def test_frames_can_stream_in_chunks(tmp_path):
    with MP4Writer(tmp_path / "chunks.mp4", 25) as writer:
        for chunk in _frames(33).split(8):
            writer.add_frames(chunk)
    info = probe(tmp_path / "chunks.mp4")
    assert info.video_frames == 33 and info.audio_codec is None


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with MP4Writer(path, 24, audio_sample_rate=24000) as writer:
            writer.add_frames(_frames(9))
            raise RuntimeError("decoder crashed")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_explained(tmp_path):
    with pytest.raises(InputError, match=r"\[frames, height, width, 3\]"):
        with MP4Writer(tmp_path / "x.mp4", 24) as writer:
            writer.add_frames(torch.zeros(4, 8, 8))
    with pytest.raises(InputError, match="positive"):
        exact_fps(0)
    with pytest.raises(InputError, match="no video frames"):
        MP4Writer(tmp_path / "empty.mp4", 24).close()
    assert not list(tmp_path.glob("*.mp4"))
