"""Transformer parity against the reference implementation's outputs (generic over fixture sets)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.model.patchify import AudioTiming, VideoScale, audio_positions, video_positions
from ltx2_nodes.model.transformer import ModalityInput, Perturbations, SampleSkips, to_denoised


@pytest.fixture(scope="module")
def golden():
    return find_golden("transformer")


@pytest.fixture(scope="module")
def model(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _calls(golden) -> list[str]:
    return sorted(golden.call["calls"])


def _inputs(golden, call: str) -> tuple[ModalityInput, ModalityInput]:
    # calls that only add perturbations reuse the inputs of the call they perturb
    src = call if f"{call}.video_latent" in golden.tensors else max(
        c for c in _calls(golden) if f"{c}.video_latent" in golden.tensors and c < call)

    def modality(name: str) -> ModalityInput:
        return ModalityInput(
            latent=golden[f"{src}.{name}_latent"], sigma=golden[f"{src}.{name}_timesteps"],
            positions=golden[f"{name}_positions"], context=golden[f"{name}_context"],
            context_mask=golden.tensors.get(f"{call}.{name}_context_mask"))

    return modality("video"), modality("audio")


def _perturbations(golden, call: str, batch: int) -> Perturbations | None:
    text = golden.call["calls"][call].lower()
    if "skip" not in text:
        return None
    assert batch == 2, "the perturbation call pairs one STG sample with one modality-isolation sample"
    return Perturbations([SampleSkips.stg(golden.call["stg_blocks"]), SampleSkips.isolate_modalities()])


def test_positions_match_reference(golden):
    batch = golden["video_positions"].shape[0]
    frames, height, width = golden.call["video_latent_grid_FHW"]
    fps = golden.call["video_pixel_shape"]["fps"]
    pixel = golden.call["video_pixel_shape"]
    scale = VideoScale(time=(pixel["frames"] - 1) // max(frames - 1, 1) if frames > 1 else 8,
                       height=pixel["height"] // height, width=pixel["width"] // width)
    ours = video_positions(batch, frames, height, width, fps, scale)
    assert_close(ours, golden["video_positions"], "video_positions", 0)
    tokens = golden.call["audio_latent_shape_for_positions"]["frames"]
    assert_close(audio_positions(batch, tokens, AudioTiming()), golden["audio_positions"], "audio_positions", 0)


def test_every_call_matches(golden, model):
    calls = _calls(golden)
    assert calls, "fixture lists no calls"
    for call in calls:
        video, audio = _inputs(golden, call)
        skips = _perturbations(golden, call, video.latent.shape[0])
        with torch.no_grad():
            v, a = model(video, audio, skips)
        assert_close(v, golden[f"{call}.video_velocity"], f"{call}.video_velocity")
        assert_close(a, golden[f"{call}.audio_velocity"], f"{call}.audio_velocity")
        assert_close(to_denoised(video.latent, v, video.sigma), golden[f"{call}.video_denoised"],
                     f"{call}.video_denoised")
        assert_close(to_denoised(audio.latent, a, audio.sigma), golden[f"{call}.audio_denoised"],
                     f"{call}.audio_denoised")


def test_intermediates_match(golden, model):
    """The debug tensors pin down where a mismatch starts (projection, AdaLN, RoPE, per block)."""
    debug_calls = sorted({k.split(".debug.")[0] for k in golden.tensors if ".debug." in k})
    if not debug_calls:
        pytest.skip("fixture has no debug tensors")
    call = debug_calls[0]
    debug = golden.prefixed(f"{call}.debug.")
    video, audio = _inputs(golden, call)
    with torch.no_grad():
        states = model.prepare(video, audio)
        for name, s in zip(("video", "audio"), states):
            tokens = s.x.shape[1]
            assert_close(s.x, debug[f"{name}.x_in"], f"{name}.x_in")
            assert_close(s.context, debug[f"{name}.context"], f"{name}.context")
            assert_close(s.ada.expanded(tokens), debug[f"{name}.adaln_timestep"], f"{name}.adaln_timestep")
            assert_close(s.embedded_timestep.expanded(tokens), debug[f"{name}.embedded_timestep"], f"{name}.embedded")
            assert_close(s.rope.cos, debug[f"{name}.rope_cos"], f"{name}.rope_cos")
            assert_close(s.rope.sin, debug[f"{name}.rope_sin"], f"{name}.rope_sin")
            assert_close(s.cross_rope.cos, debug[f"{name}.cross_rope_cos"], f"{name}.cross_rope_cos")
            assert_close(s.cross_rope.sin, debug[f"{name}.cross_rope_sin"], f"{name}.cross_rope_sin")
            assert_close(s.cross_ada.expanded(tokens), debug[f"{name}.cross_scale_shift_timestep"], f"{name}.cross_ss")
            assert_close(s.cross_gate.expanded(tokens), debug[f"{name}.cross_gate_timestep"], f"{name}.cross_gate")
        seen = []

        def record(index, v, a):
            seen.append(index)
            assert_close(v.x, debug[f"block{index}.video_x"], f"block{index}.video_x")
            assert_close(a.x, debug[f"block{index}.audio_x"], f"block{index}.audio_x")

        model(video, audio, block_hook=record)
    assert seen == list(range(model.config.num_layers))


def test_single_modality_runs_match_their_stream_shapes(golden, model):
    video, audio = _inputs(golden, _calls(golden)[0])
    with torch.no_grad():
        v_only, none_a = model(video=video)
        none_v, a_only = model(audio=audio)
        v_both, a_both = model(video, audio)
    assert none_a is None and none_v is None
    assert v_only.shape == v_both.shape and a_only.shape == a_both.shape
    # without the exchange the streams differ from the joint run (the cross-attention matters) ...
    assert (v_only - v_both).abs().max() > 1e-6
    # ... and equal a joint run in which the exchange is switched off for every sample
    iso = Perturbations([SampleSkips.isolate_modalities()] * video.latent.shape[0])
    with torch.no_grad():
        v_iso, a_iso = model(video, audio, iso)
    assert_close(v_only, v_iso, "video-only vs isolated", 1e-6)
    assert_close(a_only, a_iso, "audio-only vs isolated", 1e-6)
