"""The demo input files the demo workflows read (``workflows/demo/input/``): deterministic image, animated GIF,
audio chirp and MP4, written by ``scripts/build_workflows.py``."""

from __future__ import annotations

import math
from pathlib import Path

from workflow_graph import DEMO, DEMO_SIZE, FPS


def _demo_pixels(width: int, height: int, disc_x: float = 0.6):
    """A colour gradient with a yellow disc centred at ``disc_x`` of the width, ``[H, W, 3]`` uint8."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 23.0) * np.cos(y / 17.0)], axis=-1)
    disc = (x - width * disc_x) ** 2 + (y - height * 0.45) ** 2 < (height * 0.2) ** 2
    rgb[disc] = (0.95, 0.85, 0.2)
    return (rgb * 255).round().astype(np.uint8)


def demo_image(path: Path, width: int = 384, height: int = 256, disc_x: float = 0.6) -> Path:
    """A deterministic colour-gradient PNG with a disc (written with PyAV, no Pillow needed)."""
    import av

    pixels = _demo_pixels(width, height, disc_x)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def demo_clip(path: Path, frames: int = DEMO_SIZE["frames"], width: int = DEMO_SIZE["width"],
              height: int = DEMO_SIZE["height"]) -> Path:
    """A deterministic animated GIF (the disc crossing the picture), the video-to-audio demo input: Load Image
    reads every frame of it."""
    import av

    with av.open(str(path), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb8"
        for i in range(frames):
            pixels = _demo_pixels(width, height, 0.2 + 0.6 * i / max(frames - 1, 1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def demo_audio(path: Path, seconds: float = 4.0, rate: int = 16000) -> Path:
    """A deterministic stereo chirp with a beat, as 16-bit WAV."""
    import torch

    from ltx2_nodes.media.audio_io import write_audio_file

    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * (220 * t + 110 * t * t / seconds))
    beat = (torch.sin(2 * math.pi * 2 * t) > 0.9).double() * torch.sin(2 * math.pi * 60 * t)
    wave = torch.stack([0.3 * tone + 0.3 * beat, 0.3 * tone - 0.2 * beat]).float()
    return write_audio_file(path, {"waveform": wave.unsqueeze(0), "sample_rate": rate})


def demo_video(path: Path, frames: int = 49, width: int = 256, height: int = 160, fps: float = FPS) -> Path:
    """A deterministic moving-gradient MP4 with the demo chirp as its sound (the retake demo's input)."""
    import torch

    from ltx2_nodes.media.audio_io import load_audio_file
    from ltx2_nodes.media.mux import MP4Writer

    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1)
    y = torch.arange(height, dtype=torch.float32).view(1, -1, 1) / height
    x = torch.arange(width, dtype=torch.float32).view(1, 1, -1) / width
    images = torch.stack([(x + t / frames) % 1.0 * torch.ones_like(y), y * torch.ones_like(x) + 0 * t,
                          0.5 + 0.5 * torch.sin(6.28 * (x - t / frames)) * torch.ones_like(y)], dim=-1)
    audio = load_audio_file(path.parent / DEMO["audio"], downmix=False)
    with MP4Writer(path, fps, audio_sample_rate=int(audio["sample_rate"]),
                   audio_channels=audio["waveform"].shape[1]) as writer:
        writer.add_frames(images)
        writer.set_audio(audio["waveform"][0])
    return path
