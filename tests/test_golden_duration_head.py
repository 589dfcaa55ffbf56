"""LTX-2.5 duration head against the reference (golden-2.5 ``io_duration_head``): every call -- both streams,
video only, audio only, a batch with other token counts -- and the seconds -> 8k+1 frames snapping."""

from __future__ import annotations

import pytest
import torch

from ltx2_nodes.errors import CheckpointError, InputError, UnsupportedModelError
from ltx2_nodes.loading.components import load_duration_head
from ltx2_nodes.model.duration_head import DurationHeadConfig
from ltx2_nodes.model.shapes import clamped_frames_for_seconds

from conftest import assert_close, find_golden

# fixture output name -> which streams the head reads
_VARIANTS = {"seconds": ("video", "audio"), "seconds_video_only": ("video",), "seconds_audio_only": ("audio",)}


def _golden():
    return find_golden("duration_head", "2.5")


def _calls(golden) -> list[str]:
    return sorted({name.split(".")[0] for name in golden.tensors if name.endswith(".video_tokens")})


def test_golden_duration_head_predicts_the_reference_seconds_for_every_call():
    golden = _golden()
    head = load_duration_head(golden.weights_path, dtype=torch.float32)
    checked = 0
    for call in _calls(golden):
        tokens = {"video": golden[f"{call}.video_tokens"], "audio": golden[f"{call}.audio_tokens"]}
        for output, streams in _VARIANTS.items():
            if f"{call}.{output}" not in golden.tensors:
                continue
            with torch.no_grad():
                seconds = head(**{k: tokens[k] for k in streams})
            assert_close(seconds, golden[f"{call}.{output}"], f"{call}.{output}", tol=1e-5)
            checked += 1
    assert checked >= 3


def test_golden_duration_head_config_comes_from_the_file_metadata():
    golden = _golden()
    head = load_duration_head(golden.weights_path)
    cfg = golden.config["duration_head"]
    assert head.config.pooler_hidden_dim == cfg["pooler_hidden_dim"]
    assert head.config.num_queries == cfg["num_queries"]
    assert head.config.video_width == golden.config["transformer"]["cross_attention_dim"]
    assert head.config.audio_width == golden.config["transformer"]["audio_cross_attention_dim"]


def test_golden_duration_snapping_matches_the_reference_frame_counts():
    golden = _golden()
    rates, seconds, expected = golden["snap.frame_rates"], golden["snap.seconds"], golden["snap.num_frames"]
    got = [[clamped_frames_for_seconds(float(s), float(r)) for r in rates] for s in seconds]
    assert got == expected.tolist()


def test_duration_head_without_any_stream_is_refused_with_the_fix():
    head = load_duration_head(_golden().weights_path)
    with pytest.raises(InputError, match="video or the audio text conditioning"):
        head()


def test_duration_head_refuses_conditioning_of_another_width():
    golden = _golden()
    head = load_duration_head(golden.weights_path)
    width = head.config.video_width + 1
    with pytest.raises(InputError, match=f"got \\[1, 4, {width}\\]"):
        head(video=torch.zeros(1, 4, width))


def test_duration_head_config_refuses_settings_it_does_not_implement():
    with pytest.raises(UnsupportedModelError, match="segment_ids"):
        DurationHeadConfig.from_metadata({"duration_head": {"segment_ids": True}})
    with pytest.raises(UnsupportedModelError, match="divisible"):
        DurationHeadConfig.from_metadata({"duration_head": {"pooler_hidden_dim": 10, "num_pooler_heads": 4}})


def test_loading_a_duration_head_from_a_file_without_one_says_which_file_has_it():
    golden = _golden()
    with pytest.raises(CheckpointError, match="no duration head"):
        load_duration_head(golden.path)


# -- "auto" length in the empty-latent node ---------------------------------------------------------------------


def _conditioning(golden, call: str):
    from ltx2_nodes.model.connector import TextConditioning
    from ltx2_nodes.nodes.comfy_types import to_conditioning

    video, audio = golden[f"{call}.video_tokens"], golden[f"{call}.audio_tokens"]
    return to_conditioning(TextConditioning(video, audio, torch.ones(video.shape[:2], dtype=torch.int64)))


@pytest.mark.parametrize("fps", [24.0, 30.0])
def test_golden_empty_latent_auto_length_is_the_duration_heads_snapped_prediction(fps):
    from ltx2_nodes.handles import load_duration_head as load_handle
    from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent
    from ltx2_nodes.nodes.comfy_types import latent_info

    golden = _golden()
    head = load_handle(golden.weights_path)
    for call in _calls(golden):
        if call == "batch":
            continue
        expected = clamped_frames_for_seconds(float(golden[f"{call}.seconds"]), fps)
        (latent,) = LTX2EmptyAVLatent().create(64, 64, 121, 0.0, fps, 1, audio=True, auto_length=True,
                                               duration_head=head, conditioning=_conditioning(golden, call))
        assert latent_info(latent).frames == expected


def test_empty_latent_auto_length_without_a_duration_head_is_refused_with_the_fix():
    from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent

    golden = _golden()
    with pytest.raises(InputError, match="auto_length needs duration_head connected.*turn auto_length off"):
        LTX2EmptyAVLatent().create(64, 64, 121, 0.0, 24.0, 1, auto_length=True,
                                   conditioning=_conditioning(golden, "call0"))


def test_auto_length_refuses_a_batch_of_prompts():
    from ltx2_nodes import stages
    from ltx2_nodes.handles import load_duration_head as load_handle
    from ltx2_nodes.model.connector import TextConditioning

    golden = _golden()
    text = TextConditioning(golden["batch.video_tokens"], golden["batch.audio_tokens"][:, :1].expand(-1, 20, -1),
                            torch.ones(3, 20, dtype=torch.int64))
    with pytest.raises(InputError, match="one prompt"):
        stages.predict_frames(load_handle(golden.weights_path), text, 24.0)
