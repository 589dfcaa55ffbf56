"""Where model files, inputs and outputs live: ComfyUI's ``folder_paths`` inside ComfyUI, a models folder headless.

Nodes and the pipeline resolve every user-chosen file name through this module, never through
``folder_paths`` directly, so the same node code runs inside ComfyUI and from ``python -m ltx2_nodes``:

- inside ComfyUI (``folder_paths`` already imported by the server) every call delegates to ``folder_paths``,
  so ``extra_model_paths.yaml``, ``--output-directory`` and friends apply;
- headless, model folders are ``<models dir>/<folder>`` with the models dir from :func:`configure` (the CLI's
  ``--models-dir``) or ``$LTX2_MODELS_DIR``; outputs go to the configured output directory (default
  ``./output``), relative input names resolve against the input directory (default: the working directory).

Folder names are ComfyUI's (``checkpoints``, ``text_encoders``, ``diffusion_models``, ``loras``,
``latent_upscale_models``, ``vae``, ``model_patches``); the legacy aliases ComfyUI also searches (``clip``,
``unet``) are searched too.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import comfy_env
from .errors import InputError, ModelNotFoundError

MODELS_DIR_ENV = "LTX2_MODELS_DIR"

# ComfyUI's supported_pt_extensions: files with these suffixes are listed in model combos (pickles are listed
# so that the loader can refuse them with a clear message instead of the file silently not appearing).
MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
# GGUF DiTs and Gemma text encoders are listed next to the safetensors files of these folders (ComfyUI lists
# .gguf only where ComfyUI-GGUF registered it, so inside ComfyUI the pack adds them itself).
GGUF_EXTENSION = ".gguf"
GGUF_FOLDERS = frozenset({"diffusion_models", "text_encoders"})

# Sub-folders searched for each ComfyUI folder name, in ComfyUI's order.
_FOLDERS = {
    "checkpoints": ("checkpoints",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "loras": ("loras",),
    "latent_upscale_models": ("latent_upscale_models",),
    "vae": ("vae",),
    "model_patches": ("model_patches",),
}
_LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models"}


@dataclass
class _Headless:
    models_dir: Path | None = None
    output_dir: Path | None = None
    input_dir: Path | None = None


_headless = _Headless()


def configure(models_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
              input_dir: str | os.PathLike | None = None) -> None:
    """Set the headless folders (the CLI calls this once from its options); ``None`` keeps the default."""
    if models_dir is not None:
        models = Path(models_dir).expanduser().resolve()
        if not models.is_dir():
            raise ModelNotFoundError(f"models directory {models} does not exist; pass the folder that holds "
                                     f"checkpoints/, text_encoders/, ... (ComfyUI's models/ folder works)")
        _headless.models_dir = models
    if output_dir is not None:
        _headless.output_dir = Path(output_dir).expanduser().resolve()
    if input_dir is not None:
        _headless.input_dir = Path(input_dir).expanduser().resolve()


def reset() -> None:
    """Forget :func:`configure` (tests)."""
    _headless.models_dir = _headless.output_dir = _headless.input_dir = None


def _canonical(folder: str) -> str:
    folder = _LEGACY_NAMES.get(folder, folder)
    if folder not in _FOLDERS:
        raise InputError(f"unknown model folder {folder!r}; expected one of {', '.join(sorted(_FOLDERS))}")
    return folder


def models_dir() -> Path | None:
    """The headless models folder: :func:`configure`'s, else ``$LTX2_MODELS_DIR``, else ``None``."""
    if _headless.models_dir is not None:
        return _headless.models_dir
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser().resolve() if env else None


def model_folders(folder: str) -> list[Path]:
    """The directories searched for ``folder`` (e.g. ``"checkpoints"``), in order."""
    folder = _canonical(folder)
    fp = comfy_env.folder_paths()
    if fp is not None:
        return [Path(p) for p in fp.get_folder_paths(folder)]
    root = models_dir()
    return [] if root is None else [root / sub for sub in _FOLDERS[folder]]


def list_models(folder: str) -> list[str]:
    """Model file names for a combo widget, relative to their folder (``sub/x.safetensors``), sorted.

    Headless without a models dir this is empty (``INPUT_TYPES`` must not fail at import time). ``.gguf``
    files are listed in ``GGUF_FOLDERS`` (``diffusion_models``/``unet``, ``text_encoders``/``clip``)."""
    gguf = {GGUF_EXTENSION} if _canonical(folder) in GGUF_FOLDERS else set()
    fp = comfy_env.folder_paths()
    if fp is not None:
        names = list(fp.get_filename_list(_canonical(folder)))
        return names + [n for n in _files_in(folder, gguf) if n not in names] if gguf else names
    return _files_in(folder, MODEL_EXTENSIONS | gguf)


def _files_in(folder: str, suffixes) -> list[str]:
    names: set[str] = set()
    for base in model_folders(folder):
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if Path(name).suffix.lower() in suffixes:
                    names.add(Path(dirpath, name).relative_to(base).as_posix())
    return sorted(names)


def find_model(folder: str, name: str) -> Path:
    """The file (or folder, e.g. a multi-file text encoder) ``name`` in model folder ``folder``.

    Raises :class:`ModelNotFoundError` naming every directory searched."""
    if not name:
        raise ModelNotFoundError(f"no {folder} file chosen; pick one of the files in {folder}/")
    # like folder_paths: a name is relative to its folder and may not climb out of it
    relative = os.path.relpath(os.path.join(os.sep, name), os.sep)
    searched = model_folders(folder)
    for base in searched:
        candidate = base / relative
        if candidate.exists():
            return candidate
    if searched:
        where = ", ".join(str(p) for p in searched)
        hint = "put the file there" + ("" if comfy_env.folder_paths() else
                                       f" or point --models-dir / ${MODELS_DIR_ENV} at the folder that holds {folder}/")
    else:
        where = "nowhere (no models directory configured)"
        hint = f"pass --models-dir DIR or set ${MODELS_DIR_ENV} to the folder that holds {folder}/"
    raise ModelNotFoundError(f"{folder} file {name!r} not found; searched {where}; {hint}")


def output_directory() -> Path:
    """Where output nodes write (ComfyUI's output folder; headless ``--out``, default ``./output``)."""
    fp = comfy_env.folder_paths()
    if fp is not None:
        return Path(fp.get_output_directory())
    return _headless.output_dir or Path.cwd() / "output"


def input_directory() -> Path:
    """Where relative input file names resolve (ComfyUI's input folder; headless the working directory)."""
    fp = comfy_env.folder_paths()
    if fp is not None:
        return Path(fp.get_input_directory())
    return _headless.input_dir or Path.cwd()


def temp_directory() -> Path:
    """Scratch outputs (previews): ComfyUI's temp folder; headless ``<output>/temp``."""
    fp = comfy_env.folder_paths()
    if fp is not None:
        return Path(fp.get_temp_directory())
    return output_directory() / "temp"


def directory_for(kind: str) -> Path | None:
    """The folder behind a UI output entry's ``type`` (``output``, ``input``, ``temp``)."""
    return {"output": output_directory, "input": input_directory, "temp": temp_directory}.get(kind, lambda: None)()


_ANNOTATION = re.compile(r"^(.*?)\s*\[(output|input|temp)\]$")


def input_file(name: str) -> Path:
    """Resolve an input file name like ComfyUI's ``get_annotated_filepath``: ``x.png`` is relative to the input
    folder, ``x.png [output]`` / ``[temp]`` to that folder; absolute paths stay as they are."""
    fp = comfy_env.folder_paths()
    if fp is not None:
        return Path(fp.get_annotated_filepath(name))
    match = _ANNOTATION.match(name)
    base = directory_for(match.group(2)) if match else input_directory()
    return base / (match.group(1) if match else name)


@dataclass(frozen=True)
class OutputFile:
    """One file an output node is about to write, plus the entry its ``{"ui": ...}`` result reports."""

    path: Path
    filename: str
    subfolder: str

    def ui_entry(self) -> dict:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": "output"}


def next_output_file(filename_prefix: str, extension: str, width: int = 0, height: int = 0) -> OutputFile:
    """The next free ``<prefix>_<counter:05>_.<ext>`` in the output folder, numbered like ComfyUI's save nodes.

    ``filename_prefix`` may contain a sub folder (``ltx2/clip``) and ComfyUI's ``%width%``/``%year%``/... fields;
    the folder is created. Writing outside the output folder is refused."""
    extension = extension.lstrip(".")
    fp = comfy_env.folder_paths()
    if fp is not None:
        folder, name, counter, subfolder, _ = fp.get_save_image_path(filename_prefix, fp.get_output_directory(),
                                                                      width, height)
        folder = Path(folder)
    else:
        folder, name, counter, subfolder = _headless_save_path(filename_prefix, width, height)
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}_{counter:05}_.{extension}"
    return OutputFile(folder / filename, filename, subfolder)


def _headless_save_path(prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    now = time.localtime()
    fields = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02}",
              "day": f"{now.tm_mday:02}", "hour": f"{now.tm_hour:02}", "minute": f"{now.tm_min:02}",
              "second": f"{now.tm_sec:02}"}
    for key, value in fields.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    normalized = os.path.normpath(prefix)
    subfolder, name = os.path.dirname(normalized), os.path.basename(normalized)
    out = output_directory().resolve()
    folder = (out / subfolder).resolve()
    if folder != out and out not in folder.parents:
        raise InputError(f"filename_prefix {prefix!r} points outside the output folder {out}; "
                         f"use a relative prefix such as 'ltx2/clip'")
    counter = 1
    if folder.is_dir():
        # ComfyUI's rule: the highest existing "<name>_<digits>_..." counter + 1
        pattern = re.compile(re.escape(name) + r"_(\d+)(?:_|$)", re.IGNORECASE if os.name == "nt" else 0)
        numbers = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
        counter = max(numbers, default=0) + 1
    return folder, name, counter, subfolder
