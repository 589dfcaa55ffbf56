"""Audio file reading and writing through PyAV, in ComfyUI's AUDIO layout.

``load_audio_file`` reads wav / flac / mp3 / aac / ogg / ... or the first audio track of a video
container (mp4, mov, mkv, webm) into ``{"waveform": [1, C, N] float32, "sample_rate": int}`` at
the file's own rate. Mono, stereo and 5.1 keep their channels (the mel front end knows how to
fold them to stereo); any other layout is downmixed to stereo by FFmpeg here, because only the
file knows which channel is which. Integer formats land in [-1, 1); float formats keep values
beyond +-1 untouched.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from ..distributed import world
from ..errors import InputError

KEPT_CHANNEL_COUNTS = (1, 2, 6)
_ENCODERS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def _open(path: Path):
    if not path.is_file():
        raise InputError(f"audio file '{path}' does not exist (or is not a file).")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"'{path.name}' could not be read as an audio or video file ({exc}). The file is damaged, incomplete or "
            "not a media file; re-export it as wav, flac, mp3 or mp4."
        ) from exc


def load_audio_file(path: str | Path, downmix: bool = True) -> dict:
    """First audio track of ``path`` as a ComfyUI AUDIO dict (see the module doc); ``downmix=False`` keeps
    every channel of a surround track, as ComfyUI's own LoadAudio does."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(
                f"'{path.name}' has no audio track (its streams: {', '.join(kinds)}). Choose a file with sound, or "
                "generate without audio conditioning."
            )
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        if not rate:
            raise InputError(f"'{path.name}': the audio track does not declare a sample rate; the file is damaged.")
        channels = stream.codec_context.channels
        layout = stream.layout.name if channels in KEPT_CHANNEL_COUNTS or not downmix else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise InputError(
                f"'{path.name}': decoding the audio track failed after {sum(c.shape[1] for c in chunks)} samples "
                f"({exc}). The file is damaged or truncated; re-export it."
            ) from exc
    samples = sum(c.shape[1] for c in chunks)
    if samples == 0:
        raise InputError(f"'{path.name}' has an audio track with no samples (zero length).")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    return {"waveform": waveform.unsqueeze(0), "sample_rate": int(rate)}


def write_audio_file(path: str | Path, audio: dict) -> Path:
    """Write the first item of an AUDIO dict as .wav (16-bit PCM), .flac, .mp3 or .m4a (AAC); in a
    multi-process run only rank 0 writes (the path is answered on every rank)."""
    path = Path(path)
    codec = _ENCODERS.get(path.suffix.lower())
    if codec is None:
        raise InputError(f"cannot write '{path.name}': use one of {sorted(_ENCODERS)}.")
    if not world().is_main:
        return path
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if waveform.dim() == 3:
        waveform = waveform[0]
    channels = waveform.shape[0]
    if channels not in _LAYOUTS:
        raise InputError(f"cannot write {channels}-channel audio to '{path.name}'; expected 1, 2 or 6 channels.")
    planar = np.ascontiguousarray(waveform.detach().cpu().float().clamp(-1, 1).numpy())
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = _LAYOUTS[channels]
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=_LAYOUTS[channels])
        frame.sample_rate = rate
        frame.pts = 0  # a timestamped first frame lets the muxer record the encoder delay (AAC/MP3 priming)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
