"""The size and length rules (model/shapes.py): the reference's rules, and every layer agreeing with them."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from ltx2_nodes.errors import InputError
from ltx2_nodes.media.lengths import audio_latent_count
from ltx2_nodes.memory.estimates import audio_tokens, dit_activation_bytes, video_tokens
from ltx2_nodes.memory.precheck import RunRequest, StageWeights, estimate_run
from ltx2_nodes.model.audio_vae import AudioVAEConfig
from ltx2_nodes.model.shapes import (AudioTiming, Upscale, VideoScale, audio_latent_frames, check_video_size,
                                     checked_latent_size, frame_step, frames_for_seconds, pixel_frames,
                                     size_multiple, snap_video_size, stage1_frames, stage1_size,
                                     temporal_upscaled_frames, video_latent_size)
from ltx2_nodes.model.transformer import TransformerConfig
from ltx2_nodes.model.video_vae import VideoVAEConfig
from ltx2_nodes.latents import empty_latents
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid
from ltx2_nodes.generate import GenerateRequest

SIZES = [(32, 32), (32, 96), (64, 64), (320, 512), (512, 768), (704, 1280), (1088, 1920)]  # (height, width)
FRAMES = [1, 9, 25, 97, 121, 257]
RATES = [23.976, 24.0, 25.0, 30.0, 50.0]


def test_the_reference_worked_example():
    # ltx2-architecture.md §1.2: 768x512x121 at 24 fps -> latent [16, 16, 24], 126 audio latents
    assert video_latent_size(121, 512, 768) == checked_latent_size(121, 512, 768) == (16, 16, 24)
    assert checked_latent_size(1, 512, 768) == (1, 16, 24)
    assert pixel_frames(16) == 121
    assert audio_latent_frames(121, 24.0) == 126 and audio_latent_frames(121, 25.0) == 121


def test_a_32_pixel_high_video_is_a_valid_size_as_in_the_reference():
    """The reference encodes any multiple of 32 and its one-stage pipelines require only that
    (``assert_resolution``); the old rule here refused sides under 64 px."""
    check_video_size(9, 32, 64)
    check_video_size(1, 32, 32)
    assert checked_latent_size(9, 32, 96) == (2, 1, 3)
    with pytest.raises(InputError, match=r"height 0 \(must be a positive multiple of 32\)"):
        check_video_size(9, 0, 64)


def test_size_errors_name_the_nearest_valid_size():
    check_video_size(121, 512, 768)
    expected = r"120 frames \(must be 1 \+ 8\*k.*width 770 .*Nearest valid size: 768x512, 121 frames"
    with pytest.raises(InputError, match=expected):
        check_video_size(120, 512, 770)
    assert snap_video_size(120, 500, 770) == (121, 512, 768)
    assert snap_video_size(5, 48, 16) == (9, 64, 32)  # ties round up, at least one latent cell
    assert snap_video_size(0, 100, 1000) == (1, 96, 992)


def test_two_stage_runs_need_multiples_of_64():
    """Stage 1 samples at half size, which must itself be a valid (32-multiple) size."""
    assert size_multiple() == 32 and size_multiple(two_stage=True) == 64
    check_video_size(121, 512, 768, two_stage=True)
    with pytest.raises(InputError, match=r"height 544 \(must be a positive multiple of 64: a two-stage run"):
        check_video_size(121, 544, 768, two_stage=True)
    assert snap_video_size(121, 544, 770, two_stage=True) == (121, 576, 768)
    assert stage1_size(512, 768) == (256, 384)
    with pytest.raises(InputError, match="with the x2 spatial upscaler needs width and height divisible by 64"):
        stage1_size(544, 768)
    request = GenerateRequest(prompt="", width=768, height=544, frames=9)
    with pytest.raises(InputError, match="divisible by 64"):
        request.stage_size()
    assert dataclasses.replace(request, two_stage=False).stage_size() == (544, 768)


def test_seconds_pick_the_nearest_8k_plus_1_frames():
    assert frames_for_seconds(5.0, 24.0) == 121
    assert frames_for_seconds(0.01, 24.0) == 1
    assert frames_for_seconds(42.7, 24.0) == 1025
    with pytest.raises(InputError, match=r"60 s at 120 fps is 7201 frames, more than the 1025 .* the longest clip "
                                         r"at 120 fps is 8.54 s"):
        frames_for_seconds(60.0, 120.0)  # refused with the longest duration that fits, never quietly capped
    with pytest.raises(InputError, match="must be positive"):
        frames_for_seconds(0, 24.0)


@pytest.mark.parametrize("frames, fps", list(itertools.product(FRAMES, RATES)))
def test_grids_tokens_and_lengths_agree_in_every_layer(frames, fps):
    """The sampler's grids, the empty latents, the token counts of the estimates and the audio length
    helpers are the same numbers for every size."""
    cfg = TransformerConfig()
    for height, width in SIZES:
        grid = VideoGrid.from_pixels(128, frames, height, width, fps)
        assert (grid.frames, grid.height, grid.width) == video_latent_size(frames, height, width)
        assert grid.pixel_frames == frames
        assert grid.tokens == video_tokens(width, height, frames)
    audio = AudioGrid.for_video(8, 16, frames, fps)
    assert audio.frames == audio_tokens(frames, fps) == audio_latent_count(frames, fps)
    latents = empty_latents(1, frames, 64, 96, fps)
    assert latents.video.shape[2:] == video_latent_size(frames, 64, 96)
    released = AudioVAEConfig()
    assert latents.audio.shape[1:] == (released.z_channels, audio.frames, released.latent_mel_bins)
    # the pre-check's DiT stage counts the same tokens (one stage at full size, two-stage at half size)
    dit = {"dit": StageWeights("dit", 0, (1,))}
    for two_stage, (height, width) in ((False, (512, 768)), (True, (512, 768))):
        request = RunRequest(width, height, frames, fps, two_stage=two_stage)
        stage = estimate_run(dit, request, vram_budget=2 ** 50, ram_budget=2 ** 50).stages[0]
        h1, w1 = stage1_size(height, width) if two_stage else (height, width)
        assert stage.activation_bytes == dit_activation_bytes(cfg, video_tokens(w1, h1, frames),
                                                              audio_tokens(frames, fps))


def test_factors_are_read_from_the_model_configs():
    """Released defaults: 8x32x32 from the VAE's block list, 25 audio latents/s and 8 x 16 latent channels
    from the audio VAE config; other configs give other grids."""
    assert VideoVAEConfig().encoder_scale == VideoVAEConfig().decoder_scale == VideoScale() == VideoScale(8, 32, 32)
    audio_vae = AudioVAEConfig()
    assert audio_vae.timing == AudioTiming() and audio_vae.timing.latents_per_second == 25
    assert (audio_vae.z_channels, audio_vae.latent_mel_bins) == (8, 16)
    half = VideoVAEConfig.from_metadata({"encoder_blocks": [["compress_all_res", {"multiplier": 2}]] * 2})
    assert half.encoder_scale == VideoScale(4, 16, 16)
    assert VideoGrid.from_pixels(4, 9, 32, 48, 24.0, half.encoder_scale).shape == (4, 3, 2, 3)
    with pytest.raises(InputError, match="multiple of 16"):
        check_video_size(9, 24, 48, half.encoder_scale)
    slow = dataclasses.replace(audio_vae, hop_length=320)
    assert slow.timing.latents_per_second == 12.5
    assert AudioGrid.for_video(8, 16, 121, 24.0, slow.timing).frames == 63
    assert audio_latent_frames(121, 24.0, slow.timing) == 63
    assert audio_tokens(121, 24.0, slow.timing) == 63


def test_video_tokens_of_a_latent_equal_the_pixel_rule():
    latent = torch.zeros(1, 128, *video_latent_size(97, 320, 512))
    assert VideoGrid.of(latent, 24.0).tokens == video_tokens(512, 320, 97)


def test_x1_5_upscaler_runs_stage_one_at_two_thirds_with_sides_multiples_of_96():
    """The rational x1.5 upscaler needs stage 1's latent sides even (``UpsamplerConfig.check_input_size``): the
    final sides are multiples of 96 and stage 1 samples 2/3 of them."""
    x15 = Upscale((3, 2))
    assert size_multiple(two_stage=True, upscale=x15) == 96
    assert stage1_size(768, 1152, upscale=x15) == (512, 768)
    check_video_size(121, 768, 1152, two_stage=True, upscale=x15)
    with pytest.raises(InputError, match=r"height 1024 \(must be a positive multiple of 96: a two-stage run samples "
                                         r"stage 1 at 2/3 of the size\).*Nearest valid size: 1536x1056"):
        check_video_size(121, 1024, 1536, two_stage=True, upscale=x15)
    with pytest.raises(InputError, match="with the x1.5 spatial upscaler needs width and height divisible by 96"):
        stage1_size(1024, 1536, upscale=x15)


def test_temporal_upscaler_doubles_frames_minus_one_so_stage_one_samples_half_at_half_the_rate():
    """F -> 2F - 1 latent frames, hence pixel frames; stage 1 samples (F + 1) / 2 frames at half the fps, so a
    final F is 1 + 16k."""
    assert temporal_upscaled_frames(5) == 9 and temporal_upscaled_frames(1) == 1
    both = Upscale(temporal=True)
    assert stage1_frames(241, 24.0, both) == (121, 12.0) and stage1_frames(121, 24.0) == (121, 24.0)
    assert temporal_upscaled_frames(stage1_frames(241, 24.0, both)[0]) == 241
    assert frame_step(two_stage=True, upscale=both) == 16 and frame_step(upscale=both) == 8
    with pytest.raises(InputError, match=r"121 frames \(must be 1 \+ 16\*k.*temporal x2 upscaler.*129 frames"):
        check_video_size(121, 512, 768, two_stage=True, upscale=both)
    with pytest.raises(InputError, match="must be 1 \\+ 16\\*k"):
        stage1_frames(121, 24.0, both)
    assert Upscale().describe() == "x2 spatial" and Upscale((3, 2), True).describe() == "x1.5 spatial + x2 temporal"
    with pytest.raises(InputError, match="lowest terms"):
        Upscale((4, 2))
