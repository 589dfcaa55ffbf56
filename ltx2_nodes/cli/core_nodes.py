"""The core ComfyUI I/O nodes a shipped workflow may use, re-implemented for headless runs.

``LoadImage`` and ``LoadAudio`` (the media inputs of image-to-video and audio-conditioned workflows) and
``SaveAudio`` (the output of text-to-audio).
Same ids, inputs, outputs and values as ComfyUI's (``nodes.py`` / ``comfy_extras/nodes_audio.py``):

- ``LoadImage`` -> IMAGE ``[N, H, W, 3]`` float32 in 0..1 and MASK (``1 - alpha``, ``[N, H, W]``, or a
  ``[1, 64, 64]`` zero mask without alpha); every frame of an animated file with the first frame's size.
  Decoded with Pillow when installed (exactly ComfyUI's code path, EXIF rotation included), else with PyAV
  (FFmpeg's PNG/JPEG/WebP/GIF decoders; EXIF orientation is not applied there).
- A file that is missing, empty, damaged or not an image is refused with an ``InputError`` naming it (never
  the decoder's own text alone), and so is one whose frames hold more than :data:`MAX_IMAGE_PIXELS` pixels
  together, checked from the header before a pixel is decoded (ComfyUI lets Pillow refuse single pictures
  above the same count; the float32 IMAGE of that many pixels takes 2 GiB).
- ``LoadAudio`` -> AUDIO ``{"waveform": [1, C, T] float32, "sample_rate": int}`` decoded with PyAV.

Inside ComfyUI these classes are never registered: ComfyUI's own nodes run.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import struct
import warnings

import numpy as np
import torch

from .. import paths
from ..errors import InputError
from ..media.audio_io import load_audio_file, write_audio_file

# Pixels one image file may hold, all frames together: Pillow's own decompression-bomb limit (twice its
# ``Image.MAX_IMAGE_PIXELS``), applied to both decoders and to animations as a whole.
MAX_IMAGE_PIXELS = 178_956_970
_IMAGE_FIX = "use a PNG, JPEG, WebP or GIF image (re-export it from an image editor if it is damaged)"


def _input_files(kinds: tuple[str, ...]) -> list[str]:
    folder = paths.input_directory()
    if not folder.is_dir():
        return []
    return sorted(f for f in os.listdir(folder)
                  if (folder / f).is_file() and (mimetypes.guess_type(f, strict=False)[0] or "").split("/")[0]
                  in kinds)


def _sha256(name: str) -> str:
    return hashlib.sha256(paths.input_file(name).read_bytes()).hexdigest()


def _check_exists(name: str, what: str):
    return True if paths.input_file(name).exists() else f"Invalid {what} file: {name}"


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_files(("image",)), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        frames = _read_image(image, paths.input_file(image))
        width, height = frames[0][0].shape[1], frames[0][0].shape[0]
        images, masks = [], []
        for rgb, alpha in frames:
            if rgb.shape[1] != width or rgb.shape[0] != height:
                continue  # like ComfyUI: frames of another size are skipped
            images.append(torch.from_numpy(rgb.astype(np.float32) / 255.0)[None])
            if alpha is None:
                masks.append(torch.zeros((1, 64, 64), dtype=torch.float32))
            else:
                masks.append(1.0 - torch.from_numpy(alpha.astype(np.float32) / 255.0)[None])
        return torch.cat(images, dim=0), torch.cat(masks, dim=0)

    @classmethod
    def IS_CHANGED(cls, image):
        return _sha256(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        """The file exists and decodes as an image of at most MAX_IMAGE_PIXELS, checked before anything runs (the
        decode is repeated when the node runs; a damaged file must not fail a workflow half-way)."""
        try:
            _read_image(image, paths.input_file(image))
        except InputError as exc:
            return str(exc)
        return True


def _has_pillow() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _read_image(name: str, path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The frames of image file ``name`` (at ``path``); every way the file can fail is an ``InputError`` naming it."""
    if not path.is_file():
        raise InputError(f"image {name!r}: no such file ({path}); check the name, or put the image in the input "
                         f"folder ({paths.input_directory()}).")
    if path.stat().st_size == 0:
        raise InputError(f"image {name!r} ({path}) is an empty file (0 bytes); {_IMAGE_FIX}.")
    import av

    failures = [OSError, ValueError, SyntaxError, EOFError, RuntimeError, struct.error, av.error.FFmpegError]
    if _has_pillow():
        from PIL import Image

        failures.append(Image.DecompressionBombError)
    try:
        return _frames_pillow(path) if _has_pillow() else _frames_pyav(path)
    except InputError:
        raise
    except tuple(failures) as exc:  # what Pillow (broken chunks: SyntaxError) and FFmpeg raise on a bad file
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or type(exc).__name__
        raise InputError(f"image {name!r} ({path}) could not be decoded as an image ({reason}); {_IMAGE_FIX}.") \
            from None


def _check_pixels(path, width: int, height: int, frames: int) -> None:
    """Refuse a file whose ``frames`` frames of ``width x height`` exceed :data:`MAX_IMAGE_PIXELS` (before decoding)."""
    if width * height * frames > MAX_IMAGE_PIXELS:
        what = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
        raise InputError(f"image {path.name!r} is {what} = {width * height * frames:,} pixels; at most "
                         f"{MAX_IMAGE_PIXELS:,} are loaded (the video is far smaller anyway). Downscale it (e.g. to "
                         "4096 pixels on the long side) or keep fewer frames.")


def _frames_pillow(path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """ComfyUI's LoadImage frame loop: EXIF transpose, 32-bit 'I' scaled, alpha or palette transparency."""
    from PIL import Image, ImageOps, ImageSequence

    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS is checked instead
        img = Image.open(path)
    with img:
        _check_pixels(path, *img.size, 1 if img.format == "MPO" else getattr(img, "n_frames", 1))
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = np.array(frame.convert("RGB"))
            alpha = None
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A"))
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A"))
            frames.append((rgb, alpha))
            if img.format == "MPO":
                break  # ComfyUI keeps only the first picture of a multi-picture JPEG
    return frames


def _frames_pyav(path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    import av

    frames = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("the file holds no picture")
        header = container.streams.video[0].codec_context
        _check_pixels(path, header.width, header.height, 1)
        for frame in container.decode(video=0):
            _check_pixels(path, frame.width, frame.height, len(frames) + 1)
            if any(c.is_alpha for c in frame.format.components):
                rgba = frame.to_ndarray(format="rgba")
                frames.append((rgba[..., :3], rgba[..., 3]))
            else:
                frames.append((frame.to_ndarray(format="rgb24"), None))
    if not frames:
        raise ValueError("no picture could be decoded")
    return frames


class LoadAudio:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": (_input_files(("audio", "video")), {"audio_upload": True})}}

    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    def load(self, audio):
        # ComfyUI's nodes_audio.load: the first audio stream, every channel, PCM scaled to float
        return (load_audio_file(paths.input_file(audio), downmix=False),)

    @classmethod
    def IS_CHANGED(cls, audio):
        return _sha256(audio)

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        return _check_exists(audio, "audio")


class SaveAudio:
    """ComfyUI's ``SaveAudio`` (``comfy_extras/nodes_audio.py``): the first item of AUDIO as FLAC,
    ``<prefix>_<counter:05>_.flac`` in the output folder (the text-to-audio workflows' output)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "filename_prefix": ("STRING", {"default": "audio/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    CATEGORY = "audio"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save_flac"

    def save_flac(self, audio, filename_prefix="audio/ComfyUI", prompt=None, extra_pnginfo=None):
        out = paths.next_output_file(filename_prefix, "flac")
        write_audio_file(out.path, audio)
        return {"ui": {"audio": [out.ui_entry()]}}



class LoadVideo:
    """ComfyUI's ``LoadVideo``: an input video file as a VIDEO (read lazily, like ``VideoFromFile``)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": (_input_files(("video",)), {"video_upload": True})}}

    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "load"

    def load(self, file):
        from ..nodes.comfy_types import SavedVideo

        return (SavedVideo(paths.input_file(file)),)

    @classmethod
    def IS_CHANGED(cls, file):
        return _sha256(file)

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        return _check_exists(file, "video")


class GetVideoComponents:
    """ComfyUI's ``GetVideoComponents``: a VIDEO's frames (IMAGE), sound (AUDIO) and frame rate."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",)}}

    CATEGORY = "image/video"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    FUNCTION = "components"

    def components(self, video):
        parts = video.get_components()
        return parts.images, parts.audio, float(parts.frame_rate)


CORE_NODE_CLASSES: dict[str, type] = {"LoadImage": LoadImage, "LoadAudio": LoadAudio, "SaveAudio": SaveAudio,
                                      "LoadVideo": LoadVideo, "GetVideoComponents": GetVideoComponents}
