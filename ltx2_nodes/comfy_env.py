"""The one place that asks "are we running inside ComfyUI?" and hands out the ComfyUI parts the pack uses.

ComfyUI's server imports its own modules (``folder_paths``, ``comfy.cli_args``, ``comfy.model_management``,
``comfy.utils``) long before it loads any node pack, so "inside ComfyUI" means ``comfy.model_management`` is
already in ``sys.modules``; a module ComfyUI has not imported yet is imported here, lazily, and only inside it.
Nothing here imports ComfyUI at module level, and every function answers ``None`` (or does nothing) headless,
so the package imports and runs without ComfyUI. Every other module reaches ComfyUI through these functions
(``tests/test_layers.py`` holds the tree to that).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def inside_comfyui() -> bool:
    """True when ComfyUI's model management is loaded (the server imports it before any node pack)."""
    return "comfy.model_management" in sys.modules


def _loaded(name: str) -> ModuleType | None:
    """A ComfyUI module the server already imported, else None."""
    return sys.modules.get(name)


def model_management() -> ModuleType:
    """``comfy.model_management``; call it only inside ComfyUI (``memory.selection``)."""
    return importlib.import_module("comfy.model_management")


def folder_paths() -> ModuleType | None:
    """ComfyUI's ``folder_paths`` (model folders, input/output/user directories), None headless."""
    return _loaded("folder_paths")


def cli_args():
    """ComfyUI's parsed command line (``comfy.cli_args.args``: preview method, ``--disable-metadata``, ...),
    None headless."""
    module = _loaded("comfy.cli_args")
    return None if module is None else module.args


def progress_bar(total: int):
    """A ``comfy.utils.ProgressBar`` (the canvas bar and the websocket ``progress`` messages), None headless."""
    module = _loaded("comfy.utils")
    return None if module is None else module.ProgressBar(total)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's own interrupt exception when the user pressed Cancel; nothing headless."""
    module = _loaded("comfy.model_management")
    if module is not None:
        module.throw_exception_if_processing_interrupted()


def nested_tensor_class() -> type | None:
    """Core's ``comfy.nested_tensor.NestedTensor`` (the audio+video LATENT container), None headless."""
    module = _loaded("comfy.nested_tensor")
    if module is None and inside_comfyui():
        module = importlib.import_module("comfy.nested_tensor")
    return None if module is None else module.NestedTensor


def video_from_file_class() -> type | None:
    """``comfy_api``'s ``VideoFromFile`` (core's VIDEO type) inside a ComfyUI that has it, else None."""
    if not inside_comfyui():
        return None
    try:
        return getattr(importlib.import_module("comfy_api.input_impl"), "VideoFromFile", None)
    except ImportError:
        return None
