"""Transformer parity against the reference implementation's outputs, per fixture flavour.

``2.0-head`` (LTX-2 weights), ``2.3`` and ``2.5`` (the split-layout transformer file: bias-free video FFN,
keyframe absolute-position embedding, generated keyframe slots) were produced by the later reference revision
whose semantics the model follows: every call is checked, the 2.5 keyframe marker's effect (``call2`` vs
``call2_nomarker``) included. The ``2.0`` set comes from the January
release, which differed in STG (a perturbed self-attention contributed nothing) and in the
cross-modal AdaLN gate (taken from the stream's own per-token timesteps, not the other stream's
per-sample sigma); only its calls that those changes cannot affect are checked (no perturbation,
per-sample timesteps equal for both streams: there the old gate input equals the new one).

Inputs are read per call (``callN.*``; positions, sigma and masks fall back to the set-wide tensors); a call that
only changes the keyframe marker or adds perturbations reuses the inputs of the call it names.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.family import LTX_2_5
from ltx2_nodes.model.patchify import audio_positions, video_positions
from ltx2_nodes.model.shapes import AudioTiming, VideoScale
from ltx2_nodes.model.transformer import ModalityInput, Perturbations, SampleSkips, Skip, to_denoised

FLAVOURS = ["2.0", "2.0-head", "2.3", "2.5"]
RELEASE_SEMANTICS = "2.0"  # January release: only calls without the changed behaviour are comparable


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"golden-{f}" for f in FLAVOURS])
def flavour(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def golden(flavour):
    return find_golden("transformer", flavour)


@pytest.fixture(scope="module")
def model(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _calls(golden) -> list[str]:
    return sorted(golden.call["calls"])


def _has_inputs(golden, call: str) -> bool:
    return f"{call}.video_latent" in golden.tensors


def _source(golden, call: str) -> str:
    """The call whose inputs ``call`` uses: itself, the one its name extends (``call2_nomarker``), the one its
    description names ("call2 inputs + perturbations"), else the latest earlier call that has inputs."""
    named = re.match(r"(call\d+)\b", golden.call["calls"][call])
    for candidate in (call, call.split("_")[0], named and named.group(1)):
        if candidate and _has_inputs(golden, candidate):
            return candidate
    return max(c for c in _calls(golden) if _has_inputs(golden, c) and c < call)


def _first(golden, *names: str):
    """The first of ``names`` the fixture has (a per-call tensor before the set-wide one), or None."""
    return next((golden.tensors[n] for n in names if n in golden.tensors), None)


def _inputs(golden, call: str) -> tuple[ModalityInput, ModalityInput]:
    src = _source(golden, call)
    marker = None if call.endswith("_nomarker") else golden.tensors.get(f"{src}.video_keyframes_mask")

    def modality(name: str) -> ModalityInput:
        timesteps = golden[f"{src}.{name}_timesteps"]
        sigma = _first(golden, f"{src}.{name}_sigma", "sigma")
        if sigma is None:  # January release files: per-sample timesteps are the sample's sigma
            assert timesteps[0].numel() == 1, f"{src} has per-token {name} timesteps but no {name}_sigma"
            sigma = timesteps.flatten()
        return ModalityInput(
            latent=golden[f"{src}.{name}_latent"], sigma=sigma, timesteps=timesteps,
            positions=_first(golden, f"{src}.{name}_positions", f"{name}_positions"),
            context=golden[f"{name}_context"],
            context_mask=_first(golden, f"{call}.{name}_context_mask", f"{src}.{name}_context_mask"),
            keyframes_mask=marker if name == "video" else None)

    return modality("video"), modality("audio")


def _skip_texts(golden, call: str) -> list[tuple[int, str]]:
    """(sample, its description) per perturbed sample of ``call``, e.g. (0, 'skips video & audio self-attention in
    blocks [1] (STG)'): up to the next sample's ("; sample1" or ", sample1") or the next ';'."""
    found = re.findall(r"sample(\d+) (skips.*?)(?=[;,] sample\d|;|$)", golden.call["calls"][call])
    return [(int(index), text) for index, text in found]


def _sample_skips(golden, text: str) -> SampleSkips:
    """One sample's skips from its description, e.g. 'skips video & audio self-attention in blocks [1]'; a2v / v2a
    cross-attention skips apply to every block."""
    skips = {}
    if "self-attention" in text:
        listed = re.search(r"blocks \[([\d, ]*)\]", text)
        blocks = [int(b) for b in listed.group(1).split(",") if b.strip()] if listed else golden.call["stg_blocks"]
        skips.update(SampleSkips.stg(blocks, video="video" in text, audio="audio" in text).skips)
    if "a2v" in text or "v2a" in text:
        assert not re.search(r"cross-attention in blocks", text), f"unparsed cross-attention skip: {text!r}"
        skips.update({k: None for k, name in ((Skip.A2V_CROSS_ATTN, "a2v"), (Skip.V2A_CROSS_ATTN, "v2a"))
                      if name in text})
    assert skips, f"unparsed perturbation: {text!r}"
    return SampleSkips(skips)


def _perturbations(golden, call: str, batch: int) -> Perturbations | None:
    parts = _skip_texts(golden, call)
    if not parts:
        return None
    samples = [SampleSkips()] * batch
    for index, text in parts:
        samples[index] = _sample_skips(golden, text)
    return Perturbations(samples)


def _checked_calls(golden, flavour: str) -> list[str]:
    calls = _calls(golden)
    if flavour != RELEASE_SEMANTICS:
        return calls

    def unchanged(call: str) -> bool:
        src = _source(golden, call)
        video, audio = golden[f"{src}.video_timesteps"], golden[f"{src}.audio_timesteps"]
        return (_perturbations(golden, call, video.shape[0]) is None
                and video[0].numel() == 1 and torch.equal(video.flatten(), audio.flatten()))

    return [c for c in calls if unchanged(c)]


def test_positions_match_reference_golden(golden):
    """The grid's positions (the set-wide ones, or the first call's: plain tokens)."""
    first = _calls(golden)[0]
    expected_video = _first(golden, "video_positions", f"{first}.video_positions")
    expected_audio = _first(golden, "audio_positions", f"{first}.audio_positions")
    batch = expected_video.shape[0]
    frames, height, width = golden.call["video_latent_grid_FHW"]
    pixel = golden.call.get("video_pixel_shape") or golden.call["pixel_shape"]
    fps = pixel["fps"]
    scale = VideoScale(time=(pixel["frames"] - 1) // max(frames - 1, 1) if frames > 1 else 8,
                       height=pixel["height"] // height, width=pixel["width"] // width)
    ours = video_positions(batch, frames, height, width, fps, scale)
    assert_close(ours, expected_video, "video_positions", 0)
    tokens = (golden.call.get("audio_latent_shape_for_positions") or golden.call["audio_latent_shape"])["frames"]
    assert_close(audio_positions(batch, tokens, AudioTiming()), expected_audio, "audio_positions", 0)


def test_every_comparable_call_matches_golden(golden, flavour, model):
    calls = _checked_calls(golden, flavour)
    assert calls, "fixture has no call this flavour can be compared on"
    diffs = {}
    for call in calls:
        video, audio = _inputs(golden, call)
        skips = _perturbations(golden, call, video.latent.shape[0])
        with torch.no_grad():
            v, a = model(video, audio, skips)
        diffs[call] = max(assert_close(v, golden[f"{call}.video_velocity"], f"{call}.video_velocity"),
                          assert_close(a, golden[f"{call}.audio_velocity"], f"{call}.audio_velocity"))
        if f"{call}.video_denoised" in golden.tensors:  # the calls that only change the marker or skips have none
            assert_close(to_denoised(video.latent, v, video.timesteps), golden[f"{call}.video_denoised"],
                         f"{call}.video_denoised")
            assert_close(to_denoised(audio.latent, a, audio.timesteps), golden[f"{call}.audio_denoised"],
                         f"{call}.audio_denoised")
    print(f"\n{flavour} transformer max |diff| per call: {diffs}")


def test_a_split_layout_file_builds_its_25_blocks_golden(golden, model):
    """An LTX-2.5 split-layout transformer file: bias-free video FFN, keyframe absolute-position embedding."""
    ckpt = LTX2Checkpoint(golden.weights_path)
    if ckpt.variant.layout != "split":
        pytest.skip("the fixture's transformer is a single file")
    assert ckpt.family is LTX_2_5
    cfg = model.config
    assert cfg.use_keyframes_abs_pos_embedding and not cfg.ff_bias
    block = model.transformer_blocks[0]
    assert block.ff.net[0].proj.bias is None and block.ff.net[2].bias is None
    assert (block.audio_ff.net[2].bias is not None) == cfg.audio_ff_bias
    assert model.keyframes_abs_pos_embedding.shape == (1, cfg.inner_dim)


def test_keyframe_marker_moves_the_video_golden(golden, model):
    """Dropping the marker changes the output as in the reference (call2 vs call2_nomarker)."""
    calls = [c for c in golden.call["calls"] if c.endswith("_nomarker")]
    if not calls:
        pytest.skip("fixture has no call without the keyframe marker")
    base = _source(golden, calls[0])
    video, audio = _inputs(golden, base)
    with torch.no_grad():
        with_marker, _ = model(video, audio)
        without, _ = model(replace(video, keyframes_mask=None), audio)
    expected = (golden[f"{base}.video_velocity"] - golden[f"{calls[0]}.video_velocity"]).abs().max()
    assert_close((with_marker - without).abs().max(), expected, "marker effect")
    assert expected > 1e-3


def test_stg_perturbing_the_whole_batch_equals_the_per_sample_blend_golden(golden, flavour, model):
    """Every sample perturbed takes the value-only shortcut; it must match the reference's blended sample."""
    if flavour == RELEASE_SEMANTICS:
        pytest.skip("the January release had the old STG semantics")
    stg_calls = [(c, i, t) for c in _calls(golden) for i, t in _skip_texts(golden, c) if "self-attention" in t]
    if not stg_calls:
        pytest.skip("fixture has no STG call")
    call, index, text = stg_calls[0]
    video, audio = _inputs(golden, call)
    with torch.no_grad():
        v, a = model(video, audio, Perturbations([_sample_skips(golden, text)] * video.latent.shape[0]))
    assert_close(v[index], golden[f"{call}.video_velocity"][index], f"{call}.video_velocity[{index}]")
    assert_close(a[index], golden[f"{call}.audio_velocity"][index], f"{call}.audio_velocity[{index}]")


def test_intermediates_match_golden(golden, flavour, model):
    """The debug tensors pin down where a mismatch starts (projection, AdaLN, RoPE, per block)."""
    debug_calls = sorted({k.split(".debug.")[0] for k in golden.tensors if ".debug." in k})
    debug_calls = [c for c in debug_calls if c in _checked_calls(golden, flavour)]
    if not debug_calls:
        pytest.skip("fixture has no debug tensors for a comparable call")
    call = debug_calls[0]
    debug = golden.prefixed(f"{call}.debug.")
    video, audio = _inputs(golden, call)
    with torch.no_grad():
        states = model.prepare(video, audio)
        for name, s in zip(("video", "audio"), states):
            tokens = s.x.shape[1]
            assert_close(s.x, debug[f"{name}.x_in"], f"{name}.x_in")
            if f"{name}.context" in debug:  # the 2.5 set records no context and cross-modal RoPE
                assert_close(s.context, debug[f"{name}.context"], f"{name}.context")
            assert_close(s.ada.expanded(tokens), debug[f"{name}.adaln_timestep"], f"{name}.adaln_timestep")
            assert_close(s.embedded_timestep.expanded(tokens), debug[f"{name}.embedded_timestep"], f"{name}.embedded")
            assert_close(s.rope.cos, debug[f"{name}.rope_cos"], f"{name}.rope_cos")
            assert_close(s.rope.sin, debug[f"{name}.rope_sin"], f"{name}.rope_sin")
            if f"{name}.cross_rope_cos" in debug:
                assert_close(s.cross_rope.cos, debug[f"{name}.cross_rope_cos"], f"{name}.cross_rope_cos")
                assert_close(s.cross_rope.sin, debug[f"{name}.cross_rope_sin"], f"{name}.cross_rope_sin")
            assert_close(s.cross_ada.expanded(tokens), debug[f"{name}.cross_scale_shift_timestep"], f"{name}.cross_ss")
            gate = debug[f"{name}.cross_gate_timestep"]
            assert_close(s.cross_gate.expanded(gate.shape[1]), gate, f"{name}.cross_gate")
            if f"{name}.prompt_timestep" in debug:
                prompt = debug[f"{name}.prompt_timestep"]
                assert_close(s.prompt_ada.expanded(prompt.shape[1]), prompt, f"{name}.prompt_timestep")
            else:
                assert s.prompt_ada is None
        seen = []

        def record(index, v, a):
            seen.append(index)
            assert_close(v.x, debug[f"block{index}.video_x"], f"block{index}.video_x")
            assert_close(a.x, debug[f"block{index}.audio_x"], f"block{index}.audio_x")

        model(video, audio, block_hook=record)
    assert seen == list(range(model.config.num_layers))


def test_single_modality_runs_equal_a_joint_run_without_the_exchange_golden(golden, model):
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


def test_cross_modal_gate_follows_the_other_streams_sigma_golden(golden, model):
    """Changing only the audio sigma moves the video output (a2v gate) but not through the audio timesteps."""
    video, audio = _inputs(golden, _calls(golden)[0])
    with torch.no_grad():
        v, _ = model(video, audio)
        v_moved, _ = model(video, replace(audio, sigma=audio.sigma * 0.5))
    assert (v - v_moved).abs().max() > 1e-6
