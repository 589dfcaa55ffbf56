"""What every node module shares: categories, model file lists, the engine, handle checks."""

from __future__ import annotations

import os
from pathlib import Path

from .. import comfy_env, paths
from ..errors import InputError, ModelNotFoundError
from ..handles import file_signature

CATEGORY = "LTX-2"
LOADERS = CATEGORY + "/loaders"
TEXT = CATEGORY + "/text"
LATENT = CATEGORY + "/latent"
SAMPLING = CATEGORY + "/sampling"
DECODE = CATEGORY + "/decode"
OUTPUT = CATEGORY + "/output"

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def checkpoint_names() -> list[str]:
    """LTX-2 files: ``checkpoints`` (single files) then ``diffusion_models`` (DiT-only files)."""
    names = paths.list_models("checkpoints")
    return names + [n for n in paths.list_models("diffusion_models") if n not in names]


def find_checkpoint(name: str) -> Path:
    try:
        return paths.find_model("checkpoints", name)
    except ModelNotFoundError:
        try:
            return paths.find_model("diffusion_models", name)
        except ModelNotFoundError:
            raise ModelNotFoundError(f"LTX-2 model {name!r} is in neither checkpoints/ nor diffusion_models/; put "
                                     "ltx-2-19b-*.safetensors in models/checkpoints.") from None


def _hf_folders(base: Path) -> list[Path]:
    """Folders under ``base`` holding a Hugging Face model (config.json beside *.safetensors)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "config.json" in filenames and any(f.endswith(".safetensors") for f in filenames):
            found.append(Path(dirpath))
            dirnames[:] = []  # the folder is one model; its sub folders are part of it
    return found


def text_encoder_names() -> list[str]:
    """``text_encoders`` single files plus Hugging Face folders (listed by folder name, their shards hidden)."""
    folders, names = [], []
    for base in paths.model_folders("text_encoders"):
        if base.is_dir():
            folders += [(base, f) for f in _hf_folders(base) if f != base]
    hidden = {f.relative_to(base).as_posix() for base, f in folders}
    for name in paths.list_models("text_encoders"):
        if not any(name.startswith(folder + "/") for folder in hidden):
            names.append(name)
    return sorted(set(names) | hidden)


def find_text_encoder(name: str) -> Path:
    return paths.find_model("text_encoders", name)


def signature(folder: str, name: str) -> str:
    """``IS_CHANGED`` of loaders: a replaced or edited file reloads."""
    try:
        path = find_checkpoint(name) if folder == "checkpoints" else paths.find_model(folder, name)
    except ModelNotFoundError:
        return "missing"
    if path.is_dir():
        return ";".join(f"{p.name}:{file_signature(p)}" for p in sorted(path.rglob("*")) if p.is_file())
    return file_signature(path)


def engine():
    from ..memory.selection import default_engine

    return default_engine()


def device():
    return engine().device.device


def require(handle, what: str, hint: str):
    """Refuse a missing model input (a DiT-only file has no VAE) with what to connect instead."""
    if handle is None:
        raise InputError(f"no {what}: {hint}")
    return handle


def prompt_cache_dir() -> Path:
    """Disk prompt cache: ComfyUI's user folder inside ComfyUI, else ``$LTX2_CACHE_DIR`` or ~/.cache."""
    folder_paths = comfy_env.folder_paths()
    if folder_paths is not None and hasattr(folder_paths, "get_user_directory"):
        return Path(folder_paths.get_user_directory()) / "ltx2_prompt_cache"
    root = os.environ.get("LTX2_CACHE_DIR") or Path.home() / ".cache" / "ltx2_nodes"
    return Path(root) / "prompt_cache"
