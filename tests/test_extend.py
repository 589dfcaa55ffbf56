"""Extend: the window's positions are those of one long run (token for token, chained), the kept overlap stays
bit-identical through a whole sampling run, the decoded audio has no step at the seam, impossible requests are
refused with what fits. On the LTX-2 and LTX-2.3 demo models (the same code path serves every family)."""

from __future__ import annotations

import pytest
import torch

from demo_support import demo_models, family, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.editing import extend_window, join_extension, plan_extend
from ltx2_nodes.errors import InputError
from ltx2_nodes.latents import AVLatents, GenerationSettings, empty_latents
from ltx2_nodes.model.shapes import pixel_frames
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import LatentInfo, from_av_latents, latent_info, to_av_latents
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.state import initial_state

FPS = 24.0


def _clip(frames=17, height=64, width=96, seed=0) -> AVLatents:
    clip = empty_latents(1, frames, height, width, FPS, video_channels=8, audio_channels=4, audio_mel_bins=4)
    g = torch.Generator().manual_seed(seed)
    return AVLatents(torch.randn(clip.video.shape, generator=g), torch.randn(clip.audio.shape, generator=g), FPS)


def _sampled(window: AVLatents, seed: int) -> AVLatents:
    """A stand-in for a sampler: the kept tokens as given, new tokens random."""
    g = torch.Generator().manual_seed(seed)
    video = torch.where(window.video_mask > 0, torch.randn(window.video.shape, generator=g), window.video)
    audio = torch.where(window.audio_mask > 0, torch.randn(window.audio.shape, generator=g), window.audio)
    return AVLatents(video, audio, window.fps, video_start=window.video_start, audio_start=window.audio_start)


def _positions(latents: AVLatents) -> tuple[torch.Tensor, torch.Tensor]:
    video = initial_state(latents.video_grid(), 1, latents.video).positions
    audio = initial_state(latents.audio_grid(), 1, latents.audio).positions
    return video, audio


def test_a_three_segment_extend_uses_the_positions_of_one_long_run_token_for_token():
    clip = _clip()
    windows = []
    for segment, seconds in enumerate((1.0, 0.7, 1.4)):
        window = _sampled(extend_window(clip, plan_extend(clip, seconds, overlap=2)), segment)
        windows.append(window)
        clip = join_extension(clip, window)
    frames = pixel_frames(clip.video.shape[2])
    long_run = empty_latents(1, frames, 64, 96, FPS, video_channels=8, audio_channels=4, audio_mel_bins=4)
    assert clip.audio.shape == long_run.audio.shape  # the joined audio is exactly as long as one run's
    long_video, long_audio = _positions(long_run)
    tokens_per_frame = 2 * 3
    for window in windows:
        video, audio = _positions(window)
        first = window.video_start * tokens_per_frame
        assert torch.equal(video, long_video[:, :, first:first + video.shape[2]])
        assert torch.equal(audio, long_audio[:, :, window.audio_start:window.audio_start + audio.shape[2]])
        # the window starts where the kept part of the clip starts: positions continue without a gap
        assert window.video_start > 0 and window.audio_start > 0


def test_the_window_keeps_the_last_frames_and_their_audio_and_the_join_is_the_clip_then_the_new_part():
    clip = _clip(frames=25)
    plan = plan_extend(clip, 1.0, overlap=2)
    window = extend_window(clip, plan)
    assert (plan.overlap, plan.new, plan.video_start) == (2, 3, 2)
    assert torch.equal(window.video[:, :, :2], clip.video[:, :, 2:])
    assert window.video_mask[:, :, :2].eq(0).all() and window.video_mask[:, :, 2:].eq(1).all()
    assert torch.equal(window.audio[:, :, :plan.audio_kept], clip.audio[:, :, plan.audio_start:])
    assert window.audio_mask[:, :, :plan.audio_kept].eq(0).all()
    assert window.audio_mask[:, :, plan.audio_kept:].eq(1).all()
    # the kept audio starts no later than the kept video (the seam's sound is kept with its frames)
    assert plan.audio_start / 25.0 <= pixel_frames(plan.video_start) / FPS
    joined = join_extension(clip, _sampled(window, 0))
    assert torch.equal(joined.video[:, :, :4], clip.video) and joined.video.shape[2] == 4 + 3
    assert torch.equal(joined.audio[:, :, :clip.audio.shape[2]], clip.audio)
    assert joined.video_mask is None and joined.video_start == 0


@pytest.mark.parametrize("overlap, seconds, fragment", [
    (0, 1.0, "keep 1 to 2"), (3, 1.0, "keep 1 to 2"), (1, -1.0, "positive number of seconds"),
    (1, 60.0, "chain segments")])
def test_impossible_extends_are_refused_with_what_fits(overlap, seconds, fragment):
    with pytest.raises(InputError, match=fragment):
        plan_extend(_clip(), seconds, overlap=overlap)


def test_joining_a_window_of_another_clip_is_refused():
    clip = _clip()
    window = extend_window(clip, plan_extend(clip, 1.0, overlap=1))
    with pytest.raises(InputError, match="does not extend this clip"):
        join_extension(_clip(height=32), window)


@pytest.mark.parametrize("family", ["2.0", "2.3"], indirect=True)
def test_a_sampled_extend_keeps_the_overlap_bit_identical_and_its_audio_has_no_step_at_the_seam(family):
    ltx2, gemma = family
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    settings = GenerationSettings.from_preset(recipe_for(ltx2.dit.family.version).distilled, seed=5)
    empty = empty_latents(1, 17, 64, 64, FPS, video_channels=ltx2.video_vae.latent_channels,
                          audio_channels=ltx2.audio_vae.latent_channels, audio_mel_bins=ltx2.audio_vae.latent_mel_bins)
    clip = stages.run_sampler(ltx2.dit, text, empty, settings)
    plan = plan_extend(clip, 0.7, overlap=2)
    window = extend_window(clip, plan)
    sampled = stages.run_sampler(ltx2.dit, text, window, settings)
    assert torch.equal(sampled.video[:, :, :plan.overlap], window.video[:, :, :plan.overlap])
    assert torch.equal(sampled.audio[:, :, :plan.audio_kept], window.audio[:, :, :plan.audio_kept])
    assert not torch.equal(sampled.video[:, :, plan.overlap:], window.video[:, :, plan.overlap:])
    joined = join_extension(clip, sampled)
    audio = stages.decode_audio(joined.audio, ltx2.audio_vae)
    wave = audio["waveform"][0]
    per_latent = audio["sample_rate"] / ltx2.audio_vae.timing.latents_per_second
    seam = round(clip.audio.shape[2] * per_latent)
    steps = wave.diff(dim=-1).abs()
    near = steps[:, seam - 4:seam + 4].max()
    elsewhere = torch.cat([steps[:, :seam - 64], steps[:, seam + 64:]], dim=-1).max()
    assert near <= elsewhere, f"step at the seam {near:.4g} > the largest step elsewhere {elsewhere:.4g}"



def test_chained_extend_nodes_continue_one_noise_stream_so_each_segment_draws_new_noise(headless):
    """The window carries the clip's noise record (a sampler with the same seed continues that stream instead of
    repeating it), and the join carries the window sampler's record on to the next segment."""
    noise = SeededNoise(7, 1)
    noise.draw((4,))
    first = noise.record()
    clip = from_av_latents(_clip(), LatentInfo(fps=FPS, noise=first))
    (window,) = NODE_CLASS_MAPPINGS["LTX2ExtendWindow"]().window(clip, 1.0, 2)
    assert latent_info(window).noise is first
    noise.draw((4,))
    sampled = from_av_latents(_sampled(to_av_latents(window), 0), latent_info(window).replace(noise=noise.record()))
    (joined,) = NODE_CLASS_MAPPINGS["LTX2ExtendJoin"]().join(clip, sampled)
    assert latent_info(joined).noise is latent_info(sampled).noise and latent_info(joined).video_start == 0


def test_a_keyframe_guide_in_a_window_sits_where_it_would_in_the_whole_clip():
    from ltx2_nodes.sampling.conditioning import KeyframeAtFrame

    clip = _clip(frames=25)
    window = extend_window(clip, plan_extend(clip, 1.0, overlap=2))
    guide = torch.randn(1, 8, 1, 2, 3)
    in_window = KeyframeAtFrame(guide, 20).apply(initial_state(window.video_grid(), 1, window.video))
    whole = empty_latents(1, pixel_frames(7), 64, 96, FPS, video_channels=8, audio_channels=4, audio_mel_bins=4)
    in_clip = KeyframeAtFrame(guide, window.video_grid().first_pixel_frame + 20).apply(
        initial_state(whole.video_grid(), 1, whole.video))
    assert torch.equal(in_window.positions[:, :, -6:], in_clip.positions[:, :, -6:])
    assert window.video_grid().first_pixel_frame == 9  # latent frame 2 starts at pixel frame 2 * 8 - 7
