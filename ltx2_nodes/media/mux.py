"""Write generated video frames and audio into one MP4 (H.264 yuv420p + AAC), streaming.

Frames can be added chunk by chunk while a tiled VAE decode is still running, so the whole clip
never has to sit in memory as uint8. Audio (small) is given once and encoded when the file is
closed, trimmed to the video's exact duration. Generation metadata (prompt, workflow, settings)
is stored as MP4 tags the way ComfyUI's SaveVideo does (``movflags=use_metadata_tags``, JSON values),
so ComfyUI can load the workflow back from the file.

The file is written under a temporary name and renamed on success: an interrupted or failed
write never leaves a truncated MP4 that looks finished. In a multi-process run (``distributed.world()``) only
rank 0 writes: the other ranks' writers take the same calls and discard them (no file, no encode).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..distributed import world
from ..errors import InputError, NonFiniteError, OutputWriteError
from ..finite import all_finite
from .lengths import exact_fps

AAC_FRAME = 1024


def frames_to_uint8(frames) -> np.ndarray:
    """IMAGE ``[N, H, W, 3]`` float in 0..1 (or uint8) -> contiguous uint8 array."""
    if isinstance(frames, torch.Tensor):
        _refuse_non_finite(frames, "video frames")
        if frames.dtype != torch.uint8:
            frames = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        frames = frames.cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise InputError(f"video frames must be [frames, height, width, 3], got shape {list(frames.shape)}.")
    if frames.dtype != np.uint8:
        _refuse_non_finite(frames, "video frames")
        frames = (np.clip(frames.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(frames[..., :3])


def _refuse_non_finite(values: torch.Tensor | np.ndarray, what: str) -> None:
    """Never mux garbage: NaN would clamp to black (or silence), Inf to white, and the encoder may fail."""
    if isinstance(values, np.ndarray):
        finite = not np.issubdtype(values.dtype, np.floating) or bool(np.isfinite(values).all())
    else:
        finite = all_finite(values)
    if not finite:
        raise NonFiniteError(f"{what} to write hold NaN/Inf values; the node or stage that made them failed "
                             "(a damaged model file, or float16 overflow). No file was written.")


class MP4Writer:
    """``with MP4Writer(path, fps, audio_sample_rate=vocoder.sample_rate) as w: w.add_frames(x); w.set_audio(wave)``."""

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, *, audio_sample_rate: int | None = None,
                 audio_channels: int = 2, metadata: dict | None = None, crf: int = 19, preset: str = "medium"):
        import av  # PyAV is a hard dependency, but keep import cost out of module import

        self._av = av
        self.path = Path(path)
        self.fps = exact_fps(fps)
        self.frames_written = 0
        self._tmp = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self._container = None
        self._discard = not world().is_main  # another rank of a multi-process run: rank 0 writes the file
        self._video = None  # created with the first frames (their size)
        self._audio = None
        self._pending_audio: np.ndarray | None = None
        if self._discard:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                      options={"movflags": "use_metadata_tags"})
        except OSError as exc:  # PyAV's errors are OSErrors too
            self._failed(exc)
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        self._crf, self._preset = crf, preset
        if audio_sample_rate:
            if audio_channels not in (1, 2):
                raise InputError(f"the MP4 audio track must be mono or stereo, got {audio_channels} channels.")
            self._audio = self._container.add_stream("aac", rate=int(audio_sample_rate))
            self._audio.layout = "stereo" if audio_channels == 2 else "mono"
            self._audio_channels = audio_channels

    # -- video --------------------------------------------------------------------------------------

    def _open_video(self, height: int, width: int) -> None:
        stream = self._container.add_stream("libx264", rate=self.fps)
        # yuv420p needs even sizes; LTX-2 output is always a multiple of 32, other inputs get one edge row cropped
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self._crf), "preset": self._preset}
        self._video = stream

    def add_frames(self, frames) -> None:
        """Append ``[N, H, W, 3]`` frames (float 0..1 or uint8)."""
        if self._discard:
            self.frames_written += len(frames)
            return
        arr = frames_to_uint8(frames)
        if self._video is None:
            self._open_video(arr.shape[1], arr.shape[2])
        h, w = self._video.height, self._video.width
        if arr.shape[1] < h or arr.shape[2] < w:
            raise InputError(f"frame size changed mid-video: {arr.shape[2]}x{arr.shape[1]} after {w}x{h}.")
        for image in arr:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
            frame.pts = self.frames_written
            try:
                self._container.mux(self._video.encode(frame.reformat(format="yuv420p")))
            except OSError as exc:  # disk full mid-video
                self._failed(exc)
            self.frames_written += 1

    # -- audio --------------------------------------------------------------------------------------

    def set_audio(self, waveform) -> None:
        """The whole audio track ``[C, T]`` (or ``[1, C, T]``) float in -1..1 at ``audio_sample_rate``."""
        if self._discard:
            return
        if self._audio is None:
            raise InputError("this MP4 was opened without an audio track (audio_sample_rate not given).")
        wave = waveform.detach().float().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
        if wave.ndim == 3:
            if wave.shape[0] != 1:
                raise InputError(f"one audio track per file: got a batch of {wave.shape[0]} waveforms.")
            wave = wave[0]
        if wave.ndim != 2:
            raise InputError(f"audio must be [channels, samples], got shape {list(wave.shape)}.")
        if wave.shape[0] == 1 and self._audio_channels == 2:
            wave = np.repeat(wave, 2, axis=0)
        if wave.shape[0] != self._audio_channels:
            raise InputError(f"audio has {wave.shape[0]} channels; this file's track has {self._audio_channels}.")
        _refuse_non_finite(wave, "the audio waveform")
        self._pending_audio = np.clip(wave.astype(np.float32), -1.0, 1.0)

    def _encode_audio(self) -> None:
        rate = self._audio.rate
        wave = self._pending_audio
        if self.frames_written:  # trim to the video's exact duration (frames / fps seconds)
            wave = wave[:, : int(Fraction(self.frames_written) / self.fps * rate)]
        layout = self._audio.layout.name
        for start in range(0, wave.shape[1], AAC_FRAME):
            chunk = np.ascontiguousarray(wave[:, start:start + AAC_FRAME])
            frame = self._av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            self._container.mux(self._audio.encode(frame))
        self._container.mux(self._audio.encode(None))

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> Path:
        if self._discard:
            return self.path
        if self._video is None:
            self.abort()
            raise InputError("no video frames were written; nothing to save.")
        try:
            self._container.mux(self._video.encode(None))
            if self._audio is not None and self._pending_audio is not None:
                self._encode_audio()
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException as exc:  # disk full while flushing, interrupted: no partial file stays
            self.abort()
            if isinstance(exc, OSError):
                self._failed(exc)
            raise
        return self.path

    def abort(self) -> None:
        if self._discard:  # rank 0's partial file is its own to delete
            return
        try:
            if self._container is not None:
                self._container.close()
        except Exception:  # noqa: BLE001 - the container may be half-written; we delete it anyway
            pass
        self._tmp.unlink(missing_ok=True)

    def _failed(self, exc: OSError):
        """Raise ``OutputWriteError`` naming the file and the fix for a write that failed (partial file gone)."""
        self.abort()
        reason = exc.strerror or str(exc)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise OutputWriteError(f"cannot write {self.path}: {reason}; "
                               + ("free some space on that disk or write elsewhere" if full else
                                  "check that the folder exists and is writable, or write elsewhere")
                               + " (no partial file was left)") from exc

    def __enter__(self) -> "MP4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class MediaInfo:
    """What a written file contains, read back with PyAV (for tests, the CLI and the combine node)."""

    video_frames: int
    width: int
    height: int
    fps: Fraction | None
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_seconds: float | None
    metadata: dict

    @property
    def video_seconds(self) -> float | None:
        return float(self.video_frames / self.fps) if self.fps else None


def probe(path: str | os.PathLike) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        frames = sum(1 for _ in container.decode(video=0)) if video is not None else 0
        audio_samples = 0
        if audio is not None:
            container.seek(0)
            audio_samples = sum(f.samples for f in container.decode(audio=0))
        return MediaInfo(
            video_frames=frames,
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
            fps=Fraction(video.average_rate) if video is not None and video.average_rate else None,
            video_codec=video.codec_context.name if video is not None else None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.rate if audio is not None else None,
            audio_channels=audio.channels if audio is not None else None,
            audio_seconds=audio_samples / audio.rate if audio is not None else None,
            metadata=dict(container.metadata),
        )


def read_video(path: str | os.PathLike) -> tuple[torch.Tensor, dict | None, Fraction]:
    """An MP4's frames ``[N, H, W, 3]`` float in 0..1 (ComfyUI IMAGE), its first audio stream as AUDIO (None
    without one) and its frame rate."""
    import av

    from .audio_io import load_audio_file

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        has_audio = bool(container.streams.audio)
    images = torch.from_numpy(np.stack(frames)).float() / 255.0
    return images, (load_audio_file(path) if has_audio else None), probe(path).fps
