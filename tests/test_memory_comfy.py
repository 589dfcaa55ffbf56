"""The ComfyUI bridge against a fake ``comfy.model_management`` (the real one needs a ComfyUI install)."""

from __future__ import annotations

import enum
import gc
import sys
import types

import pytest
import torch
from torch import nn

from memory_support import allocations, dit_inputs, random_dit  # noqa: F401
from ltx2_nodes.memory import selection as bridge
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes


class VRAMState(enum.Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class InterruptProcessingException(Exception):
    pass


def fake_model_management(state="NORMAL_VRAM", device="cuda:0", reserve=400 * 2 ** 20, smart=True,
                          max_pinned=8 * 2 ** 30, pinned=2 ** 30):
    mm = types.ModuleType("comfy.model_management")
    mm.VRAMState = VRAMState
    mm.vram_state = VRAMState[state]
    mm.DISABLE_SMART_MEMORY = not smart
    mm.MAX_PINNED_MEMORY = max_pinned
    mm.TOTAL_PINNED_MEMORY = pinned
    mm.InterruptProcessingException = InterruptProcessingException
    mm.interrupt_processing = False
    mm.calls = []
    mm.get_torch_device = lambda: torch.device(device)
    mm.extra_reserved_memory = lambda: reserve
    mm.free_memory = lambda memory_required, dev, keep_loaded=(): mm.calls.append(("free_memory", memory_required, dev))
    mm.soft_empty_cache = lambda force=False: mm.calls.append(("soft_empty_cache",))

    def throw_exception_if_processing_interrupted():
        if mm.interrupt_processing:
            mm.interrupt_processing = False
            raise InterruptProcessingException()

    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    return mm


@pytest.fixture()
def comfy(monkeypatch):
    """Install a fake ``comfy.model_management`` (on a CPU machine) and reset the bridge's process-wide engine."""
    mm = fake_model_management(device="cpu")
    package = types.ModuleType("comfy")
    package.model_management = mm
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setattr(bridge, "_ENGINE", None)
    return mm


@pytest.mark.parametrize("state,smart,minimal,keep", [
    ("NORMAL_VRAM", True, False, False), ("LOW_VRAM", True, False, False), ("NO_VRAM", True, True, False),
    ("HIGH_VRAM", True, False, True), ("HIGH_VRAM", False, False, False),
])
def test_flags_map_to_engine_settings(state, smart, minimal, keep):
    mm = fake_model_management(state=state, smart=smart)
    settings = bridge.engine_settings(mm)
    assert settings["minimal"] is minimal and settings["keep_loaded"] is keep
    assert settings["reserve"] == 400 * 2 ** 20 and settings["device"] == torch.device("cuda:0")
    assert settings["pin_memory"] and settings["ram_budget"] == 7 * 2 ** 30 and settings["host_mode"] == "auto"


def test_cpu_mode_and_disabled_pinning():
    settings = bridge.engine_settings(fake_model_management(state="DISABLED", device="cpu", max_pinned=-1, pinned=0))
    assert settings["device"] == "cpu"
    assert not settings["pin_memory"] and settings["ram_budget"] == 0 and settings["host_mode"] == "staged"


def test_make_room_asks_comfy_to_free_what_we_need_plus_its_reserve():
    mm = fake_model_management(reserve=5 * 2 ** 30)
    bridge.engine_settings(mm)["make_room"](2 ** 30)
    assert mm.calls == [("free_memory", 6 * 2 ** 30, torch.device("cuda:0"))]


def _virtual(settings: dict, budget: int) -> MemoryEngine:
    """The bridge's settings on a virtual device, so the whole flow runs without a GPU."""
    return MemoryEngine(**dict(settings, device="cpu", virtual=True, vram_budget=budget))


def test_comfy_interrupt_between_blocks_passes_through_and_clears_the_device(comfy, allocations):
    model = random_dit(layers=4, heads=2)
    size = tensor_bytes(module_tensors(model))
    engine = _virtual(bridge.engine_settings(comfy), budget=2 * size)
    seen = []

    def interrupt_at_block_two(*_args):
        seen.append(1)
        if len(seen) == 3:
            comfy.interrupt_processing = True  # the user pressed Cancel while block 2 was about to run

    hooks = [b.register_forward_pre_hook(interrupt_at_block_two) for b in model.transformer_blocks]
    video, audio = dit_inputs(model.config)
    with pytest.raises(InterruptProcessingException):
        with torch.no_grad(), engine.stage("dit", model, blocks=model.transformer_blocks) as st:
            assert st.mode == "resident"  # fits: only the interrupt check runs between blocks
            model(video, audio)
    for h in hooks:
        h.remove()
    (call, wanted, device), = comfy.calls  # the model (blocks as laid out in slots) plus ComfyUI's reserve
    assert call == "free_memory" and device == torch.device("cpu")
    assert size <= wanted - 400 * 2 ** 20 <= 1.05 * size
    gc.collect()
    assert engine.device_bytes == 0 and allocations.live == 0


def test_parked_models_leave_when_comfy_needs_room(comfy, monkeypatch):
    comfy.vram_state = VRAMState.HIGH_VRAM
    engine = bridge.comfy_engine()
    assert engine.keep_loaded and bridge.comfy_engine() is engine
    virtual = _virtual(bridge.engine_settings(comfy), budget=2 ** 30)
    monkeypatch.setattr(bridge, "_ENGINE", virtual)
    bridge._release_ours_when_comfy_needs_room(comfy, virtual)  # already wrapped: stays a single wrapper
    assert comfy.free_memory._ltx2_wraps.__name__ == "<lambda>"
    monkeypatch.setattr(comfy, "free_memory", comfy.free_memory._ltx2_wraps)
    bridge._release_ours_when_comfy_needs_room(comfy, virtual)
    layer = nn.Linear(64, 64)
    with virtual.stage("connectors", layer):
        pass
    assert virtual.parked_bytes == tensor_bytes(module_tensors(layer))
    comfy.free_memory(10 * 2 ** 30, torch.device("cpu"))  # e.g. ComfyUI loading a VAE, or "Unload models"
    assert virtual.parked_bytes == 0 and virtual.device_bytes == 0
    assert comfy.calls[-1] == ("free_memory", 10 * 2 ** 30, torch.device("cpu"))


def test_keep_loaded_choice_and_release_after_the_prompt(comfy, monkeypatch):
    engine = bridge.comfy_engine(keep_loaded=True)
    assert engine.keep_loaded
    virtual = _virtual(bridge.engine_settings(comfy), budget=2 ** 30)
    virtual.keep_loaded = True
    monkeypatch.setattr(bridge, "_ENGINE", virtual)
    with virtual.stage("connectors", nn.Linear(64, 64)):
        pass
    assert virtual.parked_bytes > 0
    assert not bridge.comfy_engine(keep_loaded=False).keep_loaded  # switching it off releases at once
    assert virtual.parked_bytes == 0
    comfy.calls.clear()
    bridge.release()
    assert comfy.calls == [("soft_empty_cache",)]
    comfy.vram_state = VRAMState.LOW_VRAM
    assert not bridge.comfy_engine(keep_loaded=True).keep_loaded  # --lowvram never keeps models loaded
