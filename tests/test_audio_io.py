"""Reading audio files (and audio tracks of videos) into ComfyUI AUDIO dicts; bad files.

Every file is generated here with PyAV in a temporary directory.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_audio_encoder
from ltx2_nodes.media.audio_codec import encode_audio
from ltx2_nodes.media.audio_io import load_audio_file, write_audio_file
from ltx2_nodes.media.mel import audio_to_mel


def _tones(rate: int, seconds: float, channels: int, peak: float = 0.8) -> torch.Tensor:
    """One distinct tone per channel, so channel order and content can be checked: [1, C, N]."""
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    freqs = [220.0 * (c + 2) for c in range(channels)]
    return torch.stack([peak * torch.sin(2 * math.pi * f * t) for f in freqs]).float()[None]


def _write_raw(path: Path, planar: np.ndarray, rate: int, codec: str, fmt: str, layout: str) -> Path:
    """Audio-only file with an explicit sample format/layout (for float WAVs and unusual layouts)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar.T.reshape(1, -1)), format=fmt, layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _write_video(path: Path, audio: torch.Tensor | None, rate: int = 48000, frames: int = 12, fps: int = 24) -> Path:
    """A small mp4/mov with an mpeg4 video track and, optionally, an AAC audio track."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=rate)
            sound.layout = "stereo"
        for i in range(frames):
            image = np.full((48, 64, 3), i * 20 % 255, dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(audio[0].numpy(), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, 0
            for packet in sound.encode(frame):
                container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    n = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :n].flatten().double(), b[..., :n].flatten().double()
    return float((a * b).sum() / (a.norm() * b.norm()))


# ------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("suffix, exact", [(".wav", True), (".flac", True), (".mp3", False), (".m4a", False)])
def test_audio_formats_round_trip(tmp_path, suffix, exact):
    source = _tones(44100, 0.5, 2)
    path = write_audio_file(tmp_path / f"tone{suffix}", {"waveform": source, "sample_rate": 44100})
    audio = load_audio_file(path)
    waveform = audio["waveform"]
    assert audio["sample_rate"] == 44100 and waveform.dtype == torch.float32 and waveform.shape[:2] == (1, 2)
    if exact:  # 16-bit PCM: one quantisation step
        assert waveform.shape[-1] == source.shape[-1]
        assert (waveform - source).abs().max() <= 1 / 32768 + 1e-7
    else:  # lossy codecs: same tones in the same channels, length within one codec frame (+ priming)
        assert abs(waveform.shape[-1] - source.shape[-1]) <= 2048
        assert _correlation(waveform[:, 0], source[:, 0]) > 0.9
        assert _correlation(waveform[:, 1], source[:, 1]) > 0.9
        assert abs(_correlation(waveform[:, 0], source[:, 1])) < 0.1


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_audio_track_of_a_video(tmp_path, suffix):
    source = _tones(48000, 0.5, 2)
    audio = load_audio_file(_write_video(tmp_path / f"clip{suffix}", source))
    assert audio["sample_rate"] == 48000 and audio["waveform"].shape[1] == 2
    assert _correlation(audio["waveform"][:, 0], source[:, 0]) > 0.9


def test_video_without_audio_is_refused(tmp_path):
    path = _write_video(tmp_path / "silent_film.mp4", None)
    with pytest.raises(InputError, match="'silent_film.mp4' has no audio track .*video"):
        load_audio_file(path)


# ------------------------------------------------------------------------------------------------
# Rates, channels, levels


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_native_rate_is_kept_and_the_front_end_resamples(tmp_path, rate):
    path = write_audio_file(tmp_path / f"r{rate}.wav", {"waveform": _tones(rate, 0.5, 2), "sample_rate": rate})
    audio = load_audio_file(path)
    assert audio["sample_rate"] == rate and audio["waveform"].shape[-1] == rate // 2
    assert audio_to_mel(audio).shape == (1, 2, 51, 64)  # 0.5 s at 100 mel frames/s, centred: 1 + 8000 // 160


def test_mono_file_stays_mono(tmp_path):
    audio = load_audio_file(write_audio_file(tmp_path / "mono.wav", {"waveform": _tones(16000, 0.2, 1),
                                                                       "sample_rate": 16000}))
    assert audio["waveform"].shape[:2] == (1, 1)


def test_six_channel_file_keeps_its_channels_in_order(tmp_path):
    source = _tones(48000, 0.2, 6)
    audio = load_audio_file(write_audio_file(tmp_path / "surround.wav", {"waveform": source, "sample_rate": 48000}))
    assert audio["waveform"].shape[:2] == (1, 6)
    assert (audio["waveform"] - source).abs().max() <= 1 / 32768 + 1e-7


def test_other_layouts_are_downmixed_to_stereo_by_ffmpeg(tmp_path):
    source = _tones(48000, 0.2, 4, peak=0.4)
    path = _write_raw(tmp_path / "quad.wav", (source[0].numpy() * 32767).astype(np.int16), 48000, "pcm_s16le", "s16",
                      "quad")
    audio = load_audio_file(path)
    assert audio["waveform"].shape[:2] == (1, 2)
    left = audio["waveform"][0, 0]
    assert _correlation(left, source[0, 0]) > 0.3 and _correlation(left, source[0, 2]) > 0.3  # FL + BL


def test_float_file_beyond_full_scale_is_not_clipped(tmp_path):
    source = _tones(16000, 0.2, 2, peak=1.7)
    path = _write_raw(tmp_path / "hot.wav", source[0].numpy(), 16000, "pcm_f32le", "flt", "stereo")
    audio = load_audio_file(path)
    assert torch.allclose(audio["waveform"], source)
    assert audio["waveform"].abs().max() > 1.6


# ------------------------------------------------------------------------------------------------
# Broken files


def test_zero_length_file_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as f:  # a valid 44-byte WAV header announcing 0 frames
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"")
    with pytest.raises(InputError, match="'empty.wav' has an audio track with no samples"):
        load_audio_file(path)


@pytest.mark.parametrize("content", [b"", b"not audio at all " * 64, b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_corrupt_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match="'broken.wav' could not be read"):
        load_audio_file(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="nowhere.flac' does not exist"):
        load_audio_file(tmp_path / "nowhere.flac")


# ------------------------------------------------------------------------------------------------
# File -> latent


def test_loaded_file_encodes_through_the_golden_encoder(tmp_path):
    golden = find_golden("audio_vae")
    encoder = load_audio_encoder(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    path = write_audio_file(tmp_path / "voice.flac", {"waveform": _tones(44100, 0.3, 1), "sample_rate": 44100})
    latent = encode_audio(load_audio_file(path), encoder, source=path.name)
    # one file -> batch 1; channels and mel bins as the golden encoder's latents
    reference = golden["encode.latent"]
    assert latent.shape[0] == 1 and latent.shape[1] == reference.shape[1] and latent.shape[3] == reference.shape[3]
    assert torch.isfinite(latent).all()
