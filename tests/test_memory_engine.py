"""Stage placement: budgets respected, nothing left on the device after a run, an interrupt or an OOM."""

from __future__ import annotations

import gc
import sys
import types
from dataclasses import replace

import pytest
import torch
from torch import nn

from memory_support import allocations, dit_inputs, host_pointers, one_thread, random_dit, tiny_gemma  # noqa: F401
from ltx2_nodes import progress
from ltx2_nodes.errors import OutOfMemoryError, RunInterrupted
from ltx2_nodes.memory import engine as engine_module
from ltx2_nodes.memory import DecoderShape, DeviceSpeed, MemoryEngine, decoder_profile, dit_profile, parse_size
from ltx2_nodes.memory.host import BlockLayout
from ltx2_nodes.memory.measure import DeviceAllocations
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes

SPEED = DeviceSpeed(flops_per_s=1e9, copy_bytes_per_s=1e9)  # fixed, so plans do not depend on the machine


def _bytes(module: nn.Module) -> int:
    return tensor_bytes(module_tensors(module))


class TinyPipeline:
    """Gemma -> connector -> DiT (2 steps) -> decoder, each a stage, as the real pipeline runs them."""

    TEXT = 12

    def __init__(self):
        self.gemma = tiny_gemma(layers=4, hidden=128)
        torch.manual_seed(5)
        self.connector = nn.Sequential(nn.Linear(128, 96), nn.GELU(), nn.Linear(96, 96)).eval()
        self.dit = random_dit(layers=4, heads=2)
        self.decoder = nn.Sequential(nn.Conv1d(128, 64, 3, padding=1), nn.SiLU(), nn.Conv1d(64, 3, 1)).eval()
        cfg = self.dit.config
        self.gemma_profile = decoder_profile(DecoderShape.of(self.gemma.config), self.TEXT, dtype=torch.float32)
        self.video, self.audio = dit_inputs(cfg, text=self.TEXT)
        tv, ta = self.video.latent.shape[1], self.audio.latent.shape[1]
        self.dit_profile = dit_profile(cfg, tv, ta, text_tokens=self.TEXT, dtype=torch.float32)
        self.ids = torch.randint(0, 128, (1, self.TEXT), generator=torch.Generator().manual_seed(7))

    def budget(self) -> int:
        """Room for the DiT's non-block weights, its activations and three blocks: both block models stream."""
        blocks = self.dit.transformer_blocks
        dit_fixed = _bytes(self.dit) - sum(_bytes(b) for b in blocks)
        return dit_fixed + self.dit_profile.activation_bytes + 3 * BlockLayout(blocks[0]).nbytes

    def run(self, engine: MemoryEngine, modes: dict | None = None) -> torch.Tensor:
        modes = {} if modes is None else modes
        with torch.no_grad():
            with engine.stage("gemma", self.gemma, blocks=self.gemma.layers, profile=self.gemma_profile) as st:
                modes[st.name] = st.mode
                text = self.gemma(input_ids=self.ids).last_hidden_state
            with engine.stage("connectors", self.connector) as st:
                modes[st.name] = st.mode
                context = self.connector(text)
            video, audio = replace(self.video, context=context), replace(self.audio, context=context)
            with engine.stage("dit", self.dit, blocks=self.dit.transformer_blocks, profile=self.dit_profile) as st:
                modes[st.name] = st.mode
                for _ in range(2):
                    velocity, _audio_velocity = self.dit(video, audio)
                    video = replace(video, latent=video.latent - 0.1 * velocity)
            with engine.stage("decoder", self.decoder) as st:
                modes[st.name] = st.mode
                return self.decoder(video.latent.transpose(1, 2))


@pytest.fixture(scope="module")
def pipeline():
    return TinyPipeline()


@pytest.fixture(scope="module")
def reference(pipeline):
    return pipeline.run(MemoryEngine("cpu"))


def _sampled(engine: MemoryEngine, allocations: DeviceAllocations, pipeline: TinyPipeline):
    """Record the engine's ledger and the real device allocations before every block of both block models."""
    ledger_samples = []
    engine.ledger.observers.append(lambda _e, _o, _n, used: ledger_samples.append(used))

    def sample(*_args) -> None:
        allocations.sample()
        ledger_samples.append(engine.device_bytes)

    hooks = [b.register_forward_pre_hook(sample)
             for b in list(pipeline.gemma.layers) + list(pipeline.dit.transformer_blocks)]
    return ledger_samples, hooks


def test_device_bytes_stay_within_budget_and_nothing_remains(pipeline, reference, allocations):
    budget = pipeline.budget()
    engine = MemoryEngine("cpu", virtual=True, vram_budget=budget, speed=SPEED)
    ledger_samples, hooks = _sampled(engine, allocations, pipeline)
    modes = {}
    try:
        out = pipeline.run(engine, modes)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(out, reference)
    assert modes == {"gemma": "streamed", "connectors": "resident", "dit": "streamed", "decoder": "resident"}
    assert max(ledger_samples) <= budget and engine.ledger.peak <= budget
    # real allocations: weights and slots only (activations are not engine allocations), so they stay within
    # the budget minus the activation reserve of the stage running at the time
    assert allocations.peak <= budget - min(pipeline.dit_profile.activation_bytes,
                                             pipeline.gemma_profile.activation_bytes)
    assert len(allocations.samples) == 2 * len(pipeline.dit.transformer_blocks) + len(pipeline.gemma.layers)
    gc.collect()
    assert engine.device_bytes == 0 and allocations.live == 0


def test_interrupt_at_any_block_leaves_nothing_on_the_device(pipeline, reference, allocations, monkeypatch):
    calls = []
    monkeypatch.setattr(engine_module, "check_interrupted", calls.append)  # count the engine's check points
    engine = MemoryEngine("cpu", virtual=True, vram_budget=pipeline.budget(), speed=SPEED)
    pipeline.run(engine)
    checks = len(calls)  # stage entries + one check before every block
    assert checks == 4 + len(pipeline.gemma.layers) + 2 * len(pipeline.dit.transformer_blocks)
    before = host_pointers(pipeline.dit), host_pointers(pipeline.gemma)
    for stop_at in range(checks):
        count = iter(range(checks))

        def check(where):
            if next(count) == stop_at:
                progress.request_interrupt()  # what a UI thread does; takes effect at this very check
            progress.check_interrupted(where)

        monkeypatch.setattr(engine_module, "check_interrupted", check)
        with pytest.raises(RunInterrupted, match="nothing was left on the compute device"):
            pipeline.run(engine)
        gc.collect()
        assert engine.device_bytes == 0 and allocations.live == 0, f"left on device after interrupt #{stop_at}"
        assert (host_pointers(pipeline.dit), host_pointers(pipeline.gemma)) == before
    monkeypatch.setattr(engine_module, "check_interrupted", progress.check_interrupted)
    assert torch.equal(pipeline.run(engine), reference)


def test_interrupt_from_the_host_application_passes_through_unchanged(pipeline, allocations, monkeypatch):
    class HostInterrupt(Exception):  # ComfyUI's InterruptProcessingException
        pass

    count = iter(range(1000))

    def throw_exception_if_processing_interrupted():
        if next(count) == 7:
            raise HostInterrupt()

    monkeypatch.setitem(sys.modules, "comfy.model_management", types.SimpleNamespace(
        throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted))
    engine = MemoryEngine("cpu", virtual=True, vram_budget=pipeline.budget(), speed=SPEED)
    with pytest.raises(HostInterrupt):
        pipeline.run(engine)
    gc.collect()
    assert engine.device_bytes == 0 and allocations.live == 0


def test_cuda_oom_inside_a_stage_becomes_our_error_with_advice(pipeline, reference, allocations):
    block = pipeline.dit.transformer_blocks[3]

    def fail(*_args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = block.register_forward_pre_hook(fail)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=pipeline.budget(), speed=SPEED)
    try:
        with pytest.raises(OutOfMemoryError) as info:
            pipeline.run(engine)
    finally:
        handle.remove()
    message = str(info.value)
    assert "during the dit stage (CUDA out of memory. Tried to allocate 2.00 GiB)" in message
    assert "dit:slots" in message and "Lower the resolution or the number of frames" in message
    assert "Nothing from this run was left on the device" in message
    assert not isinstance(info.value, torch.OutOfMemoryError)
    gc.collect()
    assert engine.device_bytes == 0 and allocations.live == 0
    assert torch.equal(pipeline.run(engine), reference)


def test_a_budget_too_small_to_stream_is_refused_before_anything_moves(pipeline, allocations):
    dit = pipeline.dit
    block = _bytes(dit.transformer_blocks[0])
    fixed = _bytes(dit) - len(dit.transformer_blocks) * block
    budget = fixed + pipeline.dit_profile.activation_bytes + block  # one slot short
    engine = MemoryEngine("cpu", virtual=True, vram_budget=budget, speed=SPEED)
    with pytest.raises(OutOfMemoryError, match=r"The dit stage does not fit the .* VRAM budget even when streamed: "
                                               r"it needs at least .* two block slots"):
        with engine.stage("dit", dit, blocks=dit.transformer_blocks, profile=pipeline.dit_profile):
            pass
    with pytest.raises(OutOfMemoryError, match="cannot be streamed block by block"):
        with engine.stage("decoder", nn.Linear(4096, 4096)):
            pass
    assert engine.device_bytes == 0 and allocations.peak == 0


@pytest.mark.parametrize("copy_bytes_per_s,resident", [(1e6, 1), (1e12, 0)])
def test_spare_room_keeps_blocks_resident_when_copies_dominate(pipeline, copy_bytes_per_s, resident):
    blocks = pipeline.dit.transformer_blocks
    speed = DeviceSpeed(flops_per_s=1e9, copy_bytes_per_s=copy_bytes_per_s)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=pipeline.budget(), speed=speed)  # room for 3 blocks
    with torch.no_grad(), engine.stage("dit", pipeline.dit, blocks=blocks, profile=pipeline.dit_profile) as st:
        pipeline.dit(pipeline.video, pipeline.audio)
    # slow copies: fill the room with resident blocks; fast copies: two slots hide them, keep VRAM free
    assert st.mode == "streamed" and st.plan.slots == 2 and len(st.plan.resident) == resident


def test_keep_loaded_parks_a_resident_stage_until_the_room_is_needed(pipeline, allocations):
    engine = MemoryEngine("cpu", virtual=True, vram_budget=10 * _bytes(pipeline.dit), keep_loaded=True)
    with engine.stage("connectors", pipeline.connector) as st:
        assert st.mode == "resident"
    parked = _bytes(pipeline.connector)
    assert engine.device_bytes == parked and engine.ledger.owners() == {"connectors": parked}
    copies = allocations.peak
    with engine.stage("connectors", pipeline.connector):  # reused: no new copies
        assert allocations.peak == copies
    with engine.stage("decoder", pipeline.decoder):  # another model: the connector leaves first
        assert engine.ledger.owners() == {"decoder": _bytes(pipeline.decoder)}
    engine.release()
    gc.collect()
    assert engine.device_bytes == 0 and allocations.live == 0


def test_plain_cpu_device_moves_nothing_but_accounts(pipeline):
    engine = MemoryEngine("cpu")
    before = host_pointers(pipeline.dit)
    seen = []
    engine.ledger.observers.append(lambda event, owner, n, used: seen.append((event, owner, n)))
    with torch.no_grad(), engine.stage("dit", pipeline.dit, blocks=pipeline.dit.transformer_blocks,
                                       profile=pipeline.dit_profile) as st:
        assert st.mode == "host" and host_pointers(pipeline.dit) == before
        pipeline.dit(pipeline.video, pipeline.audio)
    act = pipeline.dit_profile.activation_bytes
    assert seen == [("charge", "dit:activations", act), ("charge", "dit", _bytes(pipeline.dit)),
                    ("credit", "dit:activations", act), ("credit", "dit", _bytes(pipeline.dit))]
    assert engine.device_bytes == 0


@pytest.mark.parametrize("text,expected", [("8GiB", 8 * 2 ** 30), ("12GB", 12 * 2 ** 30), ("512MiB", 2 ** 29),
                                           ("1.5g", 3 * 2 ** 29), (1000, 1000), ("auto", None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_refuses_nonsense():
    with pytest.raises(ValueError, match="cannot read memory size 'lots'; write e.g. '8GiB'"):
        parse_size("lots")


def test_fp8_blocks_add_their_dequantisation_to_the_activation_reserve(pipeline):
    from ltx2_nodes.loading.quant import cast_linears_to_fp8
    from ltx2_nodes.memory.estimates import fp8_upcast_bytes

    model = random_dit(layers=2, heads=2)
    cast_linears_to_fp8(model.transformer_blocks)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=10 * _bytes(model))
    with engine.stage("dit", model, blocks=model.transformer_blocks, profile=pipeline.dit_profile):
        reserve = engine.ledger.held("dit:activations")
    assert reserve == pipeline.dit_profile.activation_bytes + fp8_upcast_bytes(model) > \
        pipeline.dit_profile.activation_bytes


def test_stages_do_not_nest(pipeline):
    engine = MemoryEngine("cpu", virtual=True, vram_budget=10 * _bytes(pipeline.dit))
    with engine.stage("connectors", pipeline.connector):
        with pytest.raises(RuntimeError, match="stage 'decoder' entered while stage 'connectors' runs"):
            with engine.stage("decoder", pipeline.decoder):
                pass
    assert engine.device_bytes == 0
