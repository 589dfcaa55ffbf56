"""The CUDA paths of the memory engine: side-stream copies, pinned host buffers, real VRAM accounting."""

from __future__ import annotations

import pytest
import torch

from memory_support import dit_inputs, random_dit
from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.memory import MemoryEngine, dit_profile
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _to(inputs, device):
    from dataclasses import replace

    return [replace(m, latent=m.latent.to(device), sigma=m.sigma.to(device), timesteps=m.timesteps.to(device),
                    positions=m.positions.to(device), context=m.context.to(device)) for m in inputs]


@pytest.mark.parametrize("host_mode", ["packed", "staged"])
@pytest.mark.parametrize("fp8", [False, True])
def test_cuda_streamed_equals_resident_without_device_syncs(host_mode, fp8, monkeypatch):
    model = random_dit(layers=8, heads=4).to(torch.bfloat16)
    if fp8:
        cast_linears_to_fp8(model.transformer_blocks)
    video, audio = _to(dit_inputs(model.config, grid=(3, 8, 8), audio=16, text=32), "cuda")
    size = tensor_bytes(module_tensors(model))
    baseline = torch.cuda.memory_allocated()
    with torch.no_grad(), MemoryEngine("cuda", vram_budget=4 * size).stage("dit", model) as st:
        assert st.mode == "resident"
        expected = model(video, audio)
    assert torch.cuda.memory_allocated() == baseline + sum(t.numel() * t.element_size() for t in expected)

    syncs = []
    real_sync = torch.cuda.synchronize
    engine = MemoryEngine("cuda", vram_budget=4 * size, minimal=True, host_mode=host_mode)
    with torch.no_grad(), engine.stage("dit", model, blocks=model.transformer_blocks) as st:
        assert st.mode == "streamed"
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: (syncs.append(1), real_sync(*a))[1])
        outputs = [model(video, audio) for _ in range(3)]
        monkeypatch.setattr(torch.cuda, "synchronize", real_sync)
    assert not syncs  # ordering by events only
    assert all(torch.equal(o[0], expected[0]) and torch.equal(o[1], expected[1]) for o in outputs)
    assert st.stats.misses == 1 and engine.device_bytes == 0
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_cuda_peak_stays_within_the_budget():
    model = random_dit(layers=8, heads=8).to(torch.bfloat16)
    video, audio = _to(dit_inputs(model.config, grid=(5, 16, 16), audio=32, text=64), "cuda")
    profile = dit_profile(model.config, video.latent.shape[1], audio.latent.shape[1], text_tokens=64)
    blocks = tensor_bytes(module_tensors(model.transformer_blocks))
    budget = tensor_bytes(module_tensors(model)) - blocks // 2 + profile.activation_bytes
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    engine = MemoryEngine("cuda", vram_budget=budget)
    with torch.no_grad(), engine.stage("dit", model, blocks=model.transformer_blocks, profile=profile) as st:
        assert st.mode == "streamed"
        model(video, audio)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - baseline <= budget
    assert torch.cuda.memory_allocated() - baseline < 2 ** 20  # only the returned velocities remain
