"""Block streaming and stage placement give bit-identical results, on a virtual compute device.

The virtual device (host memory standing in for a GPU) makes every placement a real copy into
fresh buffers, so the slot rotation, prefetch, host packing/staging and re-pointing all run as
they do on CUDA; only the side stream is replaced by synchronous copies.
"""

from __future__ import annotations

import gc

import pytest
import torch

from conftest import find_golden
from memory_support import add_lora, dit_inputs, host_pointers, one_thread, random_dit, tiny_gemma  # noqa: F401
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import FP8Linear, cast_linears_to_fp8
from ltx2_nodes.memory import MemoryEngine, StreamPlan
from ltx2_nodes.memory.devices import ComputeDevice, CopyQueue
from ltx2_nodes.memory.host import PackedHost, StagedHost
from ltx2_nodes.memory.ledger import DeviceLedger
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.memory.streaming import BlockStreamer


def _golden_dit(fp8: bool, lora: str | None, flavour: str = "2.0"):
    golden = find_golden("transformer", flavour)
    model = load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    if fp8:
        assert cast_linears_to_fp8(model.transformer_blocks) > 0
    if lora:
        assert add_lora(model.transformer_blocks, style=lora) > 0
    from test_golden_transformer import _inputs

    return model, _inputs(golden, "call1")


def _watch_block_tensors(blocks) -> list[bool]:
    """Per block call: whether each of its tensors pointed elsewhere while it ran than right after.

    Hooks registered after the engine's run after them: the pre-hook sees the slot views, the post-hook
    the host storage the engine pointed the block back at."""
    results, during = [], {}
    for i, block in enumerate(blocks):
        tensors = module_tensors(block)
        block.register_forward_pre_hook(lambda *_, i=i, ts=tensors: during.__setitem__(i, [t.data_ptr() for t in ts]))
        block.register_forward_hook(lambda *_, i=i, ts=tensors: results.append(
            all(a != t.data_ptr() for a, t in zip(during[i], ts))))
    return results


def _bytes(model) -> int:
    return tensor_bytes(module_tensors(model))


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("fp8,lora,host_mode,flavour", [
    (False, None, "packed", "2.0"), (False, None, "staged", "2.0"), (True, None, "packed", "2.0"),
    (False, "wrapper", "staged", "2.0"), (False, "hook", "packed", "2.0"), (True, "wrapper", "packed", "2.0"),
    (True, "hook", "staged", "2.0"),
    # LTX-2.3 blocks: gate-logit Linears and prompt tables stream, cast to fp8 and take LoRAs like the rest
    (True, "hook", "staged", "2.3"), (False, "wrapper", "packed", "2.3"),
])
def test_golden_dit_streamed_equals_resident(fp8, lora, host_mode, flavour):
    model, (video, audio) = _golden_dit(fp8, lora, flavour)
    with torch.no_grad():
        expected = model(video, audio)
    before = host_pointers(model) if host_mode == "staged" else None
    # minimal=True streams every block through two slots even though the whole model would fit
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * _bytes(model), minimal=True, host_mode=host_mode)
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed" and stage.host == host_mode
        moved = _watch_block_tensors(model.transformer_blocks)
        first, second = model(video, audio), model(video, audio)
    assert _equal(first, expected) and _equal(second, expected)
    # every tensor of every block (LoRA factors included) ran from a slot, and pointed home again afterwards
    assert moved and all(moved)
    assert stage.stats.copies >= 2 * len(model.transformer_blocks)
    assert engine.device_bytes == 0
    if before is not None:  # staged blocks are read where they are: nothing was re-pointed for good
        assert host_pointers(model) == before
    if fp8:
        assert any(isinstance(m, FP8Linear) for m in model.transformer_blocks.modules())


def test_golden_dit_resident_stage_equals_host_run():
    model, (video, audio) = _golden_dit(False, None)
    with torch.no_grad():
        expected = model(video, audio)
    before = host_pointers(model)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * _bytes(model))
    with torch.no_grad(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "resident"
        # the weights really are copies now
        assert all(host_pointers(model)[k] != v for k, v in before.items())
        got = model(video, audio)
    assert _equal(got, expected)
    assert host_pointers(model) == before and engine.device_bytes == 0


@pytest.mark.parametrize("plan,host_cls", [
    (StreamPlan(2), PackedHost), (StreamPlan(3), StagedHost), (StreamPlan(4, frozenset({2})), PackedHost),
    (StreamPlan(2, frozenset({0, 3, 5})), StagedHost), (StreamPlan(3, frozenset({1, 4})), PackedHost),
])
def test_every_plan_gives_identical_output(plan, host_cls):
    model = random_dit(layers=6, heads=2)
    video, audio = dit_inputs(model.config)
    with torch.no_grad():
        expected = model(video, audio)
    device, ledger, copies = ComputeDevice.resolve("cpu", virtual=True), DeviceLedger(), CopyQueue()
    blocks = model.transformer_blocks
    host = host_cls({i: blocks[i] for i in range(len(blocks)) if i not in plan.resident}, copies, pinned=False)
    streamer = BlockStreamer(blocks, device, ledger, copies, host, plan, owner="dit").attach()
    try:
        with torch.no_grad():
            outputs = [model(video, audio) for _ in range(2)]
    finally:
        streamer.detach()
        host.close()
    assert all(_equal(out, expected) for out in outputs)
    streamed = len(blocks) - len(plan.resident)
    # after the first forward every block was prefetched: one miss in total
    assert streamer.stats.misses == 1
    assert streamer.stats.copies == 2 * streamed + (plan.slots - 1)
    assert ledger.used == 0 and ledger.peak == (
        sum(tensor_bytes(module_tensors(blocks[i])) for i in plan.resident) + streamer.slot_bytes)


def test_prefetch_recovers_when_blocks_run_out_of_order():
    x = torch.randn(1, 4, 8)
    blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(5))
    order = [0, 2, 4, 1, 3, 3, 0]
    with torch.no_grad():
        expected = x
        for i in order:
            expected = blocks[i](expected)
    device, ledger, copies = ComputeDevice.resolve("cpu", virtual=True), DeviceLedger(), CopyQueue()
    host = StagedHost(dict(enumerate(blocks)), copies, pinned=False)
    streamer = BlockStreamer(blocks, device, ledger, copies, host, StreamPlan(2), owner="x").attach()
    try:
        with torch.no_grad():
            got = x
            for i in order:
                got = blocks[i](got)
    finally:
        streamer.detach()
        host.close()
    assert torch.equal(got, expected)
    assert streamer.stats.misses > 1 and ledger.used == 0


@pytest.mark.parametrize("fp8,lora", [(False, None), (True, None), (True, "wrapper"), (False, "hook")])
def test_tiny_gemma_streamed_equals_resident(fp8, lora):
    model = tiny_gemma()
    if fp8:
        assert cast_linears_to_fp8(model.layers) > 0
    if lora:
        assert add_lora(model.layers, style=lora) > 0
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as the pack encodes prompts

    def run():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return torch.stack(out.hidden_states)

    with torch.no_grad():
        expected = run()
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * _bytes(model), minimal=True)
    with torch.no_grad(), engine.stage("gemma", model, blocks=model.layers) as stage:
        assert stage.mode == "streamed"
        got = run()
    assert torch.equal(got, expected)
    assert engine.device_bytes == 0


def test_blocks_sharing_weights_with_the_rest_are_refused():
    model = random_dit(layers=2)
    model.proj_out.weight = model.transformer_blocks[0].ff.net[2].weight
    engine = MemoryEngine("cpu", virtual=True, vram_budget=10 * _bytes(model), minimal=True)
    with pytest.raises(ValueError, match="shared with a streamed block or a module kept on the host"):
        with engine.stage("dit", model, blocks=model.transformer_blocks):
            pass
    assert engine.device_bytes == 0
    gc.collect()


def test_pack_gemma_encoder_streamed_with_its_embedding_table_left_on_the_host(tmp_path):
    """The text encoder of issue 3 (its own Gemma module, weights memory-mapped from an HF folder)."""
    from tiny_gemma import hf_model, write_hf_folder
    from ltx2_nodes.memory import DecoderShape, decoder_profile
    from ltx2_nodes.text.gemma import load_gemma_encoder

    encoder = load_gemma_encoder(write_hf_folder(hf_model(seed=0, sliding_window=6), tmp_path / "g",
                                                 tokenizer="wordlevel"), max_length=32)
    prompts = ["a small red bird flies in the sky and a big dog runs in the park", "a cat"]
    expected = encoder.encode(prompts, cache=None).hidden_states
    embedding = encoder.lm.model.embed_tokens
    table = embedding.weight.data_ptr()
    engine = MemoryEngine("cpu", virtual=True, vram_budget=_bytes(encoder.lm), minimal=True)
    profile = decoder_profile(DecoderShape.of(encoder.config), 32, batch=2, dtype=encoder.dtype)
    with engine.stage("gemma", encoder.lm, blocks=encoder.decoder_layers, keep_on_host=[embedding],
                      profile=profile) as stage:
        assert stage.mode == "streamed" and embedding.weight.data_ptr() == table
        encoder.compute_device = stage.device
        got = encoder.encode(prompts, cache=None).hidden_states
    assert torch.equal(got, expected) and engine.device_bytes == 0
    assert engine.ledger.peak < _bytes(encoder.lm) - _bytes(embedding) + profile.activation_bytes


def test_staged_blocks_read_from_the_memory_map_release_their_pages():
    ckpt = LTX2Checkpoint(find_golden("transformer").weights_path)
    model = load_transformer(ckpt)  # file dtype: every weight is a view of the memory map
    from test_golden_transformer import _inputs

    video, audio = _inputs(find_golden("transformer"), "call1")
    with torch.no_grad():
        expected = model(video, audio)
    released = []

    def release(t):
        released.append(t.data_ptr())
        ckpt.release_pages(t)

    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * _bytes(model), minimal=True, host_mode="staged")
    with torch.no_grad(), engine.stage("dit", model, blocks=model.transformer_blocks, release_pages=release):
        got = model(video, audio)
    assert _equal(got, expected)
    block_tensors = {t.data_ptr() for t in module_tensors(model.transformer_blocks)}
    assert block_tensors <= set(released)
