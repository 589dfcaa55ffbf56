"""The one cancellation protocol, end to end on the demo models: a cancel requested in any stage of ``generate``
raises ``RunInterrupted`` and leaves nothing behind (nothing on the device, no stage open, no output file, the
request used up), whether the stage's models run resident or stream block by block."""

from __future__ import annotations

import contextlib

import pytest

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes import progress
from ltx2_nodes.errors import RunInterrupted
from ltx2_nodes.generate import GenerateRequest, generate
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2, load_upscaler
from ltx2_nodes.text.cache import SESSION_CACHE

REQUEST = dict(prompt="a fox in the snow", width=128, height=128, frames=9, fps=24.0, seed=3)
STAGES = ("gemma", "connectors", "dit", "upscaler", "audio_vae", "video_vae")  # generate's order, two DiT stages
# stages whose model call has check points inside (layers, steps, blocks, tiles); the others are single calls,
# so a cancel that arrives while they run is honoured at the next stage's entry
CHECKED_INSIDE = {"gemma", "dit", "audio_vae", "video_vae"}


@pytest.fixture
def loaded(headless, demo_models):
    clear_caches()
    return (load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu"),
            load_upscaler(demo_models.upscaler, device="cpu"))


def _cancelling(engine: MemoryEngine, target: str, when: str, entered: list[str]):
    """``engine.stage`` that requests a cancel as the ``target`` stage is entered or once it runs."""
    real_stage = MemoryEngine.stage.__get__(engine)

    @contextlib.contextmanager
    def stage(name, *args, **kwargs):
        entered.append(name)
        if name == target and when == "entry":
            progress.request_interrupt()
        with real_stage(name, *args, **kwargs) as handle:
            if name == target and when == "inside":
                progress.request_interrupt()
            yield handle

    return stage


@pytest.mark.parametrize("minimal", [False, True], ids=["resident", "streamed"])
def test_a_cancel_in_any_stage_raises_run_interrupted_and_leaves_nothing_behind(loaded, tmp_path, minimal):
    ltx2, gemma, upscaler = loaded
    request = GenerateRequest(**REQUEST)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=256 << 20, ram_budget="1GiB", minimal=minimal)
    for target in STAGES:
        for when in ("entry", "inside"):
            entered = []
            engine.stage = _cancelling(engine, target, when, entered)
            SESSION_CACHE.clear()  # Gemma runs (a cached prompt would skip its stage)
            out = tmp_path / f"cut_{target}_{when}.mp4"
            with pytest.raises(RunInterrupted) as info:
                generate(ltx2, gemma, request, out, upscaler=upscaler, engine=engine)
            case = f"cancel at {when} of {target}"
            assert target in entered, case
            stopped_in = entered[-1]
            if when == "entry" or target not in CHECKED_INSIDE:
                assert f"during the {stopped_in} stage" in str(info.value), case
            if when == "entry" or target in CHECKED_INSIDE:
                assert stopped_in == target, f"{case}: stopped in {stopped_in}"
            assert engine.device_bytes == 0 and engine._current is None, f"{case}: left on the device"
            assert not list(tmp_path.glob("cut_*")), f"{case}: left an output file"
            progress.check_interrupted()  # the request was used up by the raise (the next case runs again)
