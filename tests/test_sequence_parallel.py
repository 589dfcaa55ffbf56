"""Sequence-parallel DiT (``model/sequence_parallel.py``) on 2 gloo processes equals the single-process forward.

Measured on 2 CPU processes in float32: max |diff| against the single-process forward 6e-7 on the tiny
random DiTs (padded, per-token, frozen-audio, guidance-batch, LTX-2.3 and LTX-2.5 layouts, block-streamed) and
9.5e-7 on the golden transformer fixtures (2.0-head, 2.3, 2.5), which also stay within the golden
tolerance (1e-4) of the reference's outputs. ``SP_TOLERANCE`` is the bound the tests hold.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close, find_golden
from gloo_ranks import run_ranks
from memory_support import LTX23_FLAGS, dit_inputs, random_dit

from ltx2_nodes.errors import InputError
from ltx2_nodes.model.sequence_parallel import SequenceParallelDiT, TokenShard, check_heads
from ltx2_nodes.model.transformer import Perturbations, SampleSkips

SP_TOLERANCE = 1e-5  # float32; reduction order only (measured <= 9.5e-7; golden calls vs the reference <= 2.1e-6)

# name: (model flags, video grid (F, H, W), audio tokens, batch); odd grids pad the split sequence
CASES = {
    "t2av_padded": ({}, (3, 3, 3), 7, 1),
    "i2av_per_token": ({}, (3, 3, 3), 8, 1),
    "a2v_frozen_audio": ({}, (2, 3, 3), 9, 1),
    "guidance_batch": ({}, (3, 2, 3), 8, 4),
    "ltx23": (LTX23_FLAGS, (3, 3, 3), 8, 2),
    "ltx25_keyframes": ({"ff_bias": False, "use_keyframes_abs_pos_embedding": True}, (2, 2, 3), 5, 1),
}


def case(name: str):
    """The model, inputs and perturbations of one case (built the same way in every process)."""
    flags, grid, audio_tokens, batch = CASES[name]
    model = random_dit(layers=3, heads=4, seed=3, **flags)
    video, audio = dit_inputs(model.config, grid=grid, audio=audio_tokens, batch=batch, seed=5)
    perturbations = None
    if name == "t2av_padded":  # per-sample timesteps and masked text tokens
        video.timesteps = video.sigma.clone()
        video.context_mask = torch.ones(batch, video.context.shape[1])
        video.context_mask[:, -5:] = 0
    if name == "a2v_frozen_audio":  # the given sound: audio at sigma 0 everywhere
        audio.sigma, audio.timesteps = torch.zeros(batch), torch.zeros(batch)
    if name == "guidance_batch":  # CFG pair, an STG sample and a modality-isolated sample in one batch
        perturbations = Perturbations([SampleSkips(), SampleSkips(), SampleSkips.stg([1]),
                                       SampleSkips.isolate_modalities()])
    if name == "ltx23":  # every sample perturbed: the value pass-through shortcut skips the exchange
        perturbations = Perturbations([SampleSkips.stg([0, 2])] * batch)
    if name == "ltx25_keyframes":
        video.keyframes_mask = torch.zeros(batch, video.latent.shape[1])
        video.keyframes_mask[:, :grid[1] * grid[2]] = 1
    return model, video, audio, perturbations


def sequence_parallel_cases(world, names):
    from ltx2_nodes.memory import MemoryEngine

    out = {}
    for name in names:
        model, video, audio, perturbations = case(name)
        with torch.no_grad():
            out[name] = SequenceParallelDiT(model, world.group)(video, audio, perturbations)
    # block streaming: each rank streams its own copy through two slots of a virtual device
    model, video, audio, perturbations = case("guidance_batch")
    engine = MemoryEngine("cpu", virtual=True, vram_budget=1 << 30, minimal=True)
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed"
        out["streamed"] = SequenceParallelDiT(model, world.group)(video, audio, perturbations)
    return out


def test_sequence_parallel_forward_on_two_processes_equals_one_process():
    results = run_ranks(sequence_parallel_cases, 2, list(CASES))
    for name in [*CASES, "streamed"]:
        model, video, audio, perturbations = case("guidance_batch" if name == "streamed" else name)
        with torch.no_grad():
            expected = model(video, audio, perturbations)
        for rank, answer in enumerate(results):
            for stream, got, want in zip(("video", "audio"), answer[name], expected):
                assert_close(got, want, f"{name} rank {rank} {stream}", SP_TOLERANCE)


def compiled_sequence_parallel(world):
    from ltx2_nodes.model.compiling import CompileOptions, compiled_blocks

    model, video, audio, perturbations = case("guidance_batch")
    with torch.no_grad(), compiled_blocks(model.transformer_blocks, CompileOptions(backend="eager")):
        return SequenceParallelDiT(model, world.group)(video, audio, perturbations)


@pytest.mark.slow
def test_sequence_parallel_through_compiled_blocks_equals_one_process():
    """The exchanges run eagerly inside a compiled block body (``torch.compiler.disable``: graph breaks); Dynamo's
    eager backend checks the tracing without a C++ compiler (about 2 minutes on 2 busy cores)."""
    results = run_ranks(compiled_sequence_parallel, 2, timeout=600)
    model, video, audio, perturbations = case("guidance_batch")
    with torch.no_grad():
        expected = model(video, audio, perturbations)
    for rank, answer in enumerate(results):
        for stream, got, want in zip(("video", "audio"), answer, expected):
            assert_close(got, want, f"compiled rank {rank} {stream}", SP_TOLERANCE)


def golden_sequence_parallel(world, golden, flavour):
    from test_golden_transformer import _checked_calls, _inputs, _perturbations

    from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
    from ltx2_nodes.loading.components import load_transformer

    model = SequenceParallelDiT(load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32),
                                world.group)
    out = {}
    for call in _checked_calls(golden, flavour):
        video, audio = _inputs(golden, call)
        with torch.no_grad():
            out[call] = model(video, audio, _perturbations(golden, call, video.latent.shape[0]))
    return out


@pytest.mark.parametrize("flavour", ["2.0-head", "2.3", "2.5"], ids=["golden-2.0-head", "golden-2.3", "golden-2.5"])
def test_sequence_parallel_golden_calls_equal_the_reference_and_one_process(flavour):
    """T2AV (call1), I2AV per-token timesteps (call2), STG and modality guidance (call3), A2V frozen audio
    (call4) (2.5: its calls, keyframe markers included): every call on 2 processes against the reference's
    outputs and against our single process."""
    from test_golden_transformer import _inputs, _perturbations

    from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
    from ltx2_nodes.loading.components import load_transformer

    golden = find_golden("transformer", flavour)
    model = load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
    results = run_ranks(golden_sequence_parallel, 2, golden, flavour)
    assert results[0], "no call compared"
    for call in results[0]:
        video, audio = _inputs(golden, call)
        with torch.no_grad():
            expected = model(video, audio, _perturbations(golden, call, video.latent.shape[0]))
        for rank, answer in enumerate(results):
            for stream, got, want in zip(("video", "audio"), answer[call], expected):
                assert_close(got, golden[f"{call}.{stream}_velocity"], f"{call} rank {rank} {stream} vs reference")
                assert_close(got, want, f"{call} rank {rank} {stream} vs one process", SP_TOLERANCE)


def test_a_world_size_that_does_not_divide_the_heads_is_refused_with_the_sizes_that_do():
    config = random_dit(layers=1, heads=4).config
    check_heads(config, 4)
    with pytest.raises(InputError, match=r"3 processes cannot split .* 4 attention heads.*\[1, 2, 4\]"):
        check_heads(config, 3)


def test_a_split_sequence_pads_to_equal_shares_and_masks_only_the_padding():
    shards = [TokenShard(None, rank, 4, 10) for rank in range(4)]
    assert [(s.local, s.padded, s.start) for s in shards] == [(3, 12, 0), (3, 12, 3), (3, 12, 6), (3, 12, 9)]
    x = torch.arange(10.0).view(1, 10, 1)
    assert torch.equal(torch.cat([s.split(x) for s in shards], dim=1)[:, :10], x)
    assert shards[0].key_mask("cpu").flatten().tolist() == [True] * 10 + [False] * 2
    assert TokenShard(None, 0, 2, 10).key_mask("cpu") is None
