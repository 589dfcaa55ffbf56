"""Generated keyframe slots (LTX-2.5): token states built as the reference builds them for the fixture's keyframe
settings (positions, markers, masks), the model run on them, and slots returned apart from the video."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.latents import AVLatents, GenerationSettings, empty_latents, sample
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.model.shapes import VideoScale
from ltx2_nodes.model.transformer import ModalityInput
from ltx2_nodes.nodes.comfy_types import from_av_latents, to_av_latents
from ltx2_nodes.nodes.latent import LTX2GeneratedKeyframes, LTX2KeyframeSlots
from ltx2_nodes.sampling.conditioning import GeneratedKeyframeSlots, LatentAtIndex, keyframe_slot_frames
from ltx2_nodes.sampling.state import VideoGrid, initial_state


@pytest.fixture(scope="module")
def golden():
    return find_golden("transformer", "2.5")


@pytest.fixture(scope="module")
def model(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


def _grid(golden, channels: int) -> VideoGrid:
    frames, height, width = golden.call["video_latent_grid_FHW"]
    pixel = golden.call["pixel_shape"]
    scale = VideoScale(time=(pixel["frames"] - 1) // max(frames - 1, 1) if frames > 1 else 8,
                       height=pixel["height"] // height, width=pixel["width"] // width)
    return VideoGrid(channels, frames, height, width, float(pixel["fps"]), scale)


def _slot_call(golden) -> tuple[str, tuple[int, ...], int]:
    """(call, slot pixel frames, conditioned latent index) of the fixture call that appends slots."""
    for call, text in sorted(golden.call["calls"].items()):
        slots = re.search(r"VideoGeneratedKeyframeSlots\(\[([\d, ]+)\]\)", text)
        if slots and f"{call}.video_positions" in golden.tensors:
            index = re.search(r"VideoConditionByLatentIndex\(latent_idx=(\d+)", text)
            return call, tuple(int(f) for f in slots.group(1).split(",")), int(index.group(1)) if index else -1
    pytest.skip("fixture has no keyframe-slot call")


def _state(golden, call: str, frames: tuple[int, ...], index: int):
    """The reference's state for ``call``: grid, first-frame condition at ``index`` (strength 1), then the slots."""
    clean = golden[f"{call}.video_clean_latent"]
    batch, channels = clean.shape[0], clean.shape[2]
    grid = _grid(golden, channels)
    state = initial_state(grid, batch)
    if index >= 0:
        per_frame = grid.height * grid.width
        tokens = clean[:, index * per_frame:(index + 1) * per_frame]
        frame = tokens.transpose(1, 2).reshape(batch, channels, 1, grid.height, grid.width)
        state = LatentAtIndex(frame, index, 1.0).apply(state)
    return GeneratedKeyframeSlots(frames).apply(state), grid


def test_plain_grid_positions_and_first_frame_marker_match_reference_golden(golden):
    call = "call1"
    batch, _, channels = golden[f"{call}.video_latent"].shape
    state = initial_state(_grid(golden, channels), batch)
    assert_close(state.positions, golden[f"{call}.video_positions"], "positions", 0)
    assert torch.equal(state.keyframes, golden[f"{call}.video_keyframes_mask"])


def test_slot_positions_markers_and_masks_match_reference_golden(golden):
    call, frames, index = _slot_call(golden)
    state, grid = _state(golden, call, frames, index)
    assert state.latent.shape[1] == grid.tokens + len(frames) * grid.height * grid.width
    assert_close(state.positions, golden[f"{call}.video_positions"], "positions", 0)
    assert torch.equal(state.keyframes, golden[f"{call}.video_keyframes_mask"])
    assert torch.equal(state.mask, golden[f"{call}.video_denoise_mask"])
    assert_close(state.clean, golden[f"{call}.video_clean_latent"], "clean latent", 0)
    assert state.slots.pixel_frames == frames and state.slots.first_token == grid.tokens


def test_the_model_on_our_slot_state_gives_the_reference_velocity_golden(golden, model):
    call, frames, index = _slot_call(golden)
    state, _ = _state(golden, call, frames, index)
    state = state.replace(latent=golden[f"{call}.video_latent"])
    sigma = golden["sigma"]
    video = ModalityInput(state.latent, sigma, state.timesteps(sigma.view(-1, 1, 1)), state.positions,
                          golden["video_context"], keyframes_mask=state.keyframes)
    audio = ModalityInput(golden[f"{call}.audio_latent"], sigma, golden[f"{call}.audio_timesteps"],
                          golden[f"{call}.audio_positions"], golden["audio_context"])
    with torch.no_grad():
        v, _ = model(video, audio)
    assert_close(v, golden[f"{call}.video_velocity"], "video velocity")


def test_sampling_returns_the_slots_apart_from_the_video_and_passes_them_on_golden(golden, model):
    cfg = model.config
    pixel = golden.call["pixel_shape"]
    latents = empty_latents(1, pixel["frames"], pixel["height"], pixel["width"], pixel["fps"],
                            video_channels=cfg.in_channels, audio_channels=2,
                            audio_mel_bins=cfg.audio_in_channels // 2,
                            video_scale=_grid(golden, cfg.in_channels).scale).with_keyframe_slots(2)
    assert latents.keyframe_slots == keyframe_slot_frames(2, pixel["frames"])
    text = TextConditioning(golden["video_context"][:1], golden["audio_context"][:1], torch.ones(1, 12))
    with torch.no_grad():
        out = sample(model, text, latents, GenerationSettings(torch.tensor([1.0, 0.5, 0.0]), seed=3))
    assert out.video.shape == latents.video.shape  # slots never leak into the decoded video
    batch, channels, _, height, width = latents.video.shape
    assert out.keyframes.shape == (batch, channels, 2, height, width)
    assert out.keyframe_frames == latents.keyframe_slots and out.keyframe_slots == ()
    assert out.keyframe_clips().shape == (batch * 2, channels, 1, height, width)
    assert out.keyframes.abs().sum() > 0
    with torch.no_grad():  # a later stage without a request passes the generated keyframes on, adds no slots
        again = sample(model, text, out, GenerationSettings(torch.tensor([0.5, 0.0]), seed=4))
    assert torch.equal(again.keyframes, out.keyframes) and again.keyframe_frames == out.keyframe_frames


def test_slot_requests_resolve_like_the_reference():
    assert keyframe_slot_frames(2, 121) == (40, 80)
    assert keyframe_slot_frames(1, 17) == (8,)
    assert keyframe_slot_frames([12, 4, 4], 17) == (4, 12)
    assert keyframe_slot_frames(0, 17) == () and keyframe_slot_frames([], 17) == ()
    with pytest.raises(InputError, match="at least 5 frames"):
        keyframe_slot_frames(3, 4)
    with pytest.raises(InputError, match="0..16"):
        keyframe_slot_frames([17], 17)


def test_slots_on_a_model_without_the_keyframe_embedding_are_refused():
    ckpt = LTX2Checkpoint(find_golden("transformer", "2.3").weights_path)
    model = load_transformer(ckpt, dtype=torch.float32)
    cfg = model.config
    latents = empty_latents(1, 17, 64, 64, 24.0, video_channels=cfg.in_channels, audio=False).with_keyframe_slots(1)
    text = TextConditioning(torch.zeros(1, 4, cfg.cross_attention_dim),
                            torch.zeros(1, 4, cfg.audio_cross_attention_dim), torch.ones(1, 4))
    with pytest.raises(InputError, match="LTX-2.5"):
        sample(model, text, latents, GenerationSettings(torch.tensor([1.0, 0.0])))


def test_keyframe_nodes_request_slots_and_hand_back_one_frame_latents():
    latent = from_av_latents(empty_latents(1, 33, 64, 64, 24.0, video_channels=8, audio=False))
    (requested,) = LTX2KeyframeSlots().request(latent, count=2, frames="")
    assert to_av_latents(requested).keyframe_slots == (11, 21)
    (explicit,) = LTX2KeyframeSlots().request(latent, count=2, frames="4, 12")
    assert to_av_latents(explicit).keyframe_slots == (4, 12)
    av = to_av_latents(explicit)
    sampled = AVLatents(av.video, None, av.fps, keyframes=torch.randn(1, 8, 2, 2, 2), keyframe_frames=(4, 12))
    (clips,) = LTX2GeneratedKeyframes().extract(from_av_latents(sampled))
    assert clips["samples"].shape == (2, 8, 1, 2, 2)
    with pytest.raises(InputError, match="no generated keyframes"):
        LTX2GeneratedKeyframes().extract(latent)
