"""Which memory engine places a stage: the one process-wide engine, ComfyUI's or the headless one.

``default_engine()`` is what every stage function uses when it is given no engine: inside ComfyUI
the engine configured from its model management (``comfy_engine``), headless the engine set by
``configure_engine`` (the CLI's ``--device`` / ``--vram-budget`` / ``--ram-budget``), else one built
from ``$LTX2_DEVICE``, ``$LTX2_VRAM_BUDGET``, ``$LTX2_RAM_BUDGET`` on first use.

Inside ComfyUI the engine coexists with its model management. ComfyUI is reached through ``comfy_env``
(lazily, inside functions), so the package imports without it. What we take from
``comfy.model_management``:
* device and VRAM state: ``--cpu`` -> plain CPU engine; ``--novram`` -> every block model streams
  through two slots (``minimal``); ``--lowvram`` -> never keep models on the device between
  stages; ``--highvram`` / ``--gpu-only`` -> keep our models loaded (parked) after their stage;
  ``--disable-smart-memory`` -> never keep;
* ``--reserve-vram`` (``extra_reserved_memory()``) as the engine's device reserve;
* before a stage takes VRAM, ``free_memory(needed + reserve, device)`` evicts ComfyUI's models;
* between blocks, its Cancel button (``progress.check_interrupted`` polls it; its own exception passes
  through unchanged, so ComfyUI reports a normal cancel);
* its pinned-memory allowance (``MAX_PINNED_MEMORY`` minus what it pinned, none with
  ``--disable-pinned-memory``) as our RAM budget for packing streamed blocks.
Models we keep loaded stay invisible to ComfyUI's list, so ``free_memory`` is wrapped once: when
ComfyUI needs room (another model, "Unload models"), our parked models leave first.
One engine serves the whole process, so stages run by different nodes see each other.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from .. import comfy_env
from .engine import MemoryEngine

log = logging.getLogger("ltx2_nodes")

ENGINE_ENV = {"device": "LTX2_DEVICE", "vram_budget": "LTX2_VRAM_BUDGET", "ram_budget": "LTX2_RAM_BUDGET"}
_ENGINE: MemoryEngine | None = None
_HEADLESS_ENGINE: MemoryEngine | None = None


def configure_engine(engine: MemoryEngine | None = None, **settings) -> MemoryEngine:
    """Set the process-wide headless engine: a given one, or one built from ``MemoryEngine`` keyword
    arguments (``device``, ``vram_budget``, ...), defaults from ``$LTX2_DEVICE``, ``$LTX2_VRAM_BUDGET``,
    ``$LTX2_RAM_BUDGET`` ("auto" when unset)."""
    global _HEADLESS_ENGINE
    if engine is None:
        kwargs = {key: os.environ.get(env, "auto") for key, env in ENGINE_ENV.items()}
        kwargs.update(settings)
        device = kwargs.pop("device")
        engine = MemoryEngine(device, **kwargs)
    _HEADLESS_ENGINE = engine
    return engine


def default_engine() -> MemoryEngine:
    """ComfyUI's engine (``comfy_engine``) inside ComfyUI, else the headless one."""
    if comfy_env.inside_comfyui():
        return comfy_engine()
    return _HEADLESS_ENGINE or configure_engine()


def compute_device() -> torch.device:
    return default_engine().device.device


# ------------------------------------------------------------------------------------------------
# Inside ComfyUI


def engine_settings(mm=None) -> dict:
    """``MemoryEngine`` keyword arguments for ComfyUI's current flags and state."""
    mm = mm or comfy_env.model_management()
    device = mm.get_torch_device()
    state = mm.vram_state.name
    smart = not getattr(mm, "DISABLE_SMART_MEMORY", False)
    reserve = int(mm.extra_reserved_memory())
    pin_allowance = int(getattr(mm, "MAX_PINNED_MEMORY", -1)) - int(getattr(mm, "TOTAL_PINNED_MEMORY", 0))
    cpu = state == "DISABLED" or getattr(device, "type", "cpu") == "cpu"
    settings = dict(
        device="cpu" if cpu else device,
        vram_budget="auto",
        reserve=reserve,
        minimal=state == "NO_VRAM",
        keep_loaded=smart and state == "HIGH_VRAM",
        pin_memory=pin_allowance > 0,
        ram_budget=max(pin_allowance, 0),
        host_mode="auto" if pin_allowance > 0 else "staged",
        make_room=functools.partial(_make_room, mm, device, reserve),
    )
    return settings


def _make_room(mm, device, reserve: int, nbytes: int) -> None:
    mm.free_memory(nbytes + reserve, device)


def comfy_engine(keep_loaded: bool | None = None) -> MemoryEngine:
    """The process-wide engine, configured from ComfyUI. ``keep_loaded``: the user's choice (a node
    widget) to keep our models on the device after their stage; None follows ComfyUI's flags."""
    global _ENGINE
    mm = comfy_env.model_management()
    if _ENGINE is None:
        _ENGINE = MemoryEngine(**engine_settings(mm))
        _release_ours_when_comfy_needs_room(mm, _ENGINE)
    if keep_loaded is not None:
        keep = keep_loaded and not getattr(mm, "DISABLE_SMART_MEMORY", False) and mm.vram_state.name != "LOW_VRAM"
        if _ENGINE.keep_loaded and not keep:
            _ENGINE.release()
        _ENGINE.keep_loaded = keep
    return _ENGINE


def release(mm=None) -> None:
    """Give back everything our engine holds (end of a prompt without keep-loaded, or on request)."""
    if _ENGINE is not None:
        _ENGINE.release()
        (mm or comfy_env.model_management()).soft_empty_cache()


def _release_ours_when_comfy_needs_room(mm, engine: MemoryEngine) -> None:
    original = mm.free_memory
    if getattr(original, "_ltx2_wraps", None) is not None:
        return

    @functools.wraps(original)
    def free_memory(memory_required, device, *args, **kwargs):
        if engine.parked_bytes:
            log.info("ltx2_nodes: releasing %d parked bytes for ComfyUI", engine.parked_bytes)
            engine.release()
        return original(memory_required, device, *args, **kwargs)

    free_memory._ltx2_wraps = original
    mm.free_memory = free_memory
