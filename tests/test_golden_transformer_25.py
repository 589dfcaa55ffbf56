"""LTX-2.5 transformer parity (bias-free video FFN, keyframe absolute-position embedding, generated keyframe
slots, STG) against the reference's outputs on the 2.5 split-layout transformer file.

Every call of the fixture is checked, the keyframe marker's effect (``call2`` vs ``call2_nomarker``)
included. Inputs are read per call (``callN.*``); a call that only changes the marker or adds
perturbations reuses the inputs of the call it names.
"""

from __future__ import annotations

import re

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.family import LTX_2_5
from ltx2_nodes.model.transformer import ModalityInput, Perturbations, SampleSkips, Skip, to_denoised

FLAVOUR = "2.5"


@pytest.fixture(scope="module")
def golden():
    return find_golden("transformer", FLAVOUR)


@pytest.fixture(scope="module")
def model(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _source(golden, call: str) -> str:
    """The call whose inputs ``call`` uses: itself, or the one its name / description extends."""
    if f"{call}.video_latent" in golden.tensors:
        return call
    base = call.split("_")[0]
    if f"{base}.video_latent" in golden.tensors:
        return base
    named = re.match(r"(call\d+)\b", golden.call["calls"][call])
    assert named and f"{named.group(1)}.video_latent" in golden.tensors, f"no inputs for {call}"
    return named.group(1)


def _inputs(golden, call: str) -> tuple[ModalityInput, ModalityInput]:
    src = _source(golden, call)
    marker = None if "nomarker" in call else golden.tensors.get(f"{src}.video_keyframes_mask")

    def modality(name: str) -> ModalityInput:
        return ModalityInput(
            latent=golden[f"{src}.{name}_latent"], sigma=golden["sigma"], timesteps=golden[f"{src}.{name}_timesteps"],
            positions=golden[f"{src}.{name}_positions"], context=golden[f"{name}_context"],
            context_mask=golden.tensors.get(f"{src}.{name}_context_mask"),
            keyframes_mask=marker if name == "video" else None)

    return modality("video"), modality("audio")


def _perturbations(golden, call: str, batch: int) -> Perturbations | None:
    """Per-sample skips from the call's description, e.g. 'sample0 skips video+audio self-attention in
    blocks [1] ..., sample1 skips a2v and v2a cross-attention'."""
    parts = re.findall(r"sample(\d+) skips ([^,;]*)", golden.call["calls"][call])
    if not parts:
        return None
    samples = [SampleSkips()] * batch
    for index, text in parts:
        skips = {}
        if "self-attention" in text:
            blocks = [int(b) for b in re.search(r"blocks \[([\d, ]*)\]", text).group(1).split(",") if b.strip()]
            skips.update(SampleSkips.stg(blocks, video="video" in text, audio="audio" in text).skips)
        skips.update({kind: None for kind, name in ((Skip.A2V_CROSS_ATTN, "a2v"), (Skip.V2A_CROSS_ATTN, "v2a"))
                      if name in text})
        assert skips, f"unparsed perturbation {text!r}"
        samples[int(index)] = SampleSkips(skips)
    return Perturbations(samples)


def test_golden_25_transformer_file_is_a_split_layout_25_model(golden, model):
    ckpt = LTX2Checkpoint(golden.weights_path)
    assert ckpt.family is LTX_2_5 and ckpt.variant.layout == "split"
    cfg = model.config
    assert cfg.use_keyframes_abs_pos_embedding and not cfg.ff_bias
    block = model.transformer_blocks[0]
    assert block.ff.net[0].proj.bias is None and block.ff.net[2].bias is None
    assert (block.audio_ff.net[2].bias is not None) == cfg.audio_ff_bias
    assert model.keyframes_abs_pos_embedding.shape == (1, cfg.inner_dim)


def test_every_call_matches_golden(golden, model):
    diffs = {}
    for call in sorted(golden.call["calls"]):
        video, audio = _inputs(golden, call)
        with torch.no_grad():
            v, a = model(video, audio, _perturbations(golden, call, video.latent.shape[0]))
        diffs[call] = max(assert_close(v, golden[f"{call}.video_velocity"], f"{call}.video_velocity"),
                          assert_close(a, golden[f"{call}.audio_velocity"], f"{call}.audio_velocity"))
        if f"{call}.video_denoised" in golden.tensors:
            assert_close(to_denoised(video.latent, v, video.timesteps), golden[f"{call}.video_denoised"],
                         f"{call}.video_denoised")
            assert_close(to_denoised(audio.latent, a, audio.timesteps), golden[f"{call}.audio_denoised"],
                         f"{call}.audio_denoised")
    print(f"\n2.5 transformer max |diff| per call: {diffs}")


def test_keyframe_marker_moves_the_video_golden(golden, model):
    """Dropping the marker changes the output as in the reference (call2 vs call2_nomarker)."""
    calls = [c for c in golden.call["calls"] if c.endswith("_nomarker")]
    if not calls:
        pytest.skip("fixture has no call without the keyframe marker")
    base = _source(golden, calls[0])
    video, audio = _inputs(golden, base)
    with torch.no_grad():
        with_marker, _ = model(video, audio)
        without, _ = model(ModalityInput(**{**video.__dict__, "keyframes_mask": None}), audio)
    expected = (golden[f"{base}.video_velocity"] - golden[f"{calls[0]}.video_velocity"]).abs().max()
    assert_close((with_marker - without).abs().max(), expected, "marker effect")
    assert expected > 1e-3


def test_intermediates_match_golden(golden, model):
    debug_calls = sorted({k.split(".debug.")[0] for k in golden.tensors if ".debug." in k})
    if not debug_calls:
        pytest.skip("fixture has no debug tensors")
    call = debug_calls[0]
    debug = golden.prefixed(f"{call}.debug.")
    video, audio = _inputs(golden, call)
    with torch.no_grad():
        for name, s in zip(("video", "audio"), model.prepare(video, audio)):
            tokens = s.x.shape[1]
            assert_close(s.x, debug[f"{name}.x_in"], f"{name}.x_in")
            assert_close(s.ada.expanded(tokens), debug[f"{name}.adaln_timestep"], f"{name}.adaln_timestep")
            assert_close(s.embedded_timestep.expanded(tokens), debug[f"{name}.embedded_timestep"], f"{name}.embedded")
            assert_close(s.rope.cos, debug[f"{name}.rope_cos"], f"{name}.rope_cos")
            assert_close(s.rope.sin, debug[f"{name}.rope_sin"], f"{name}.rope_sin")
            assert_close(s.cross_ada.expanded(tokens), debug[f"{name}.cross_scale_shift_timestep"], f"{name}.cross_ss")
            gate, prompt = debug[f"{name}.cross_gate_timestep"], debug[f"{name}.prompt_timestep"]
            assert_close(s.cross_gate.expanded(gate.shape[1]), gate, f"{name}.cross_gate")
            assert_close(s.prompt_ada.expanded(prompt.shape[1]), prompt, f"{name}.prompt_timestep")
        seen = []

        def record(index, v, a):
            seen.append(index)
            assert_close(v.x, debug[f"block{index}.video_x"], f"block{index}.video_x")
            assert_close(a.x, debug[f"block{index}.audio_x"], f"block{index}.audio_x")

        model(video, audio, block_hook=record)
    assert seen == list(range(model.config.num_layers))
