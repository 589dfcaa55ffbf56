"""Retake: the window selects the tokens the reference's ``TemporalRegionMask`` selects, everything outside it stays
bit-identical through a whole sampling run (video, audio or both retaken), impossible windows are refused."""

from __future__ import annotations

import pytest
import torch

from demo_support import demo_models, family, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.editing import retake_window
from ltx2_nodes.errors import InputError
from ltx2_nodes.latents import AVLatents, GenerationSettings, empty_latents
from ltx2_nodes.sampling.recipe import recipe_for

FPS = 24.0


def _clip(frames=49) -> AVLatents:
    clip = empty_latents(1, frames, 64, 64, FPS, video_channels=8, audio_channels=4, audio_mel_bins=4)
    g = torch.Generator().manual_seed(0)
    return AVLatents(torch.randn(clip.video.shape, generator=g), torch.randn(clip.audio.shape, generator=g), FPS)


def test_the_window_marks_the_tokens_whose_time_span_meets_it():
    clip = _clip()  # 7 latent frames: frame 0 = pixel frame 0, frame i = pixel frames 8i-7 .. 8i
    out = retake_window(clip, 0.5, 1.0)
    frames = out.video_mask[0, 0, :, 0, 0]
    # latent frame i spans [(8i-7)/24, (8i+1)/24) s: it meets [0.5, 1.0) for i = 2 (0.375..0.708) .. 3 (0.708..1.04)
    assert frames.tolist() == [0, 0, 1, 1, 0, 0, 0]
    assert out.video_mask.shape == (1, 1, 7, 2, 2) and out.video_mask[0, 0, 2].eq(1).all()
    audio = out.audio_mask[0, 0, :, 0]
    # audio latent i spans [max(0, 4i-3), 4i+1) * 10 ms: 0.5 s .. 1.0 s is latents 13 .. 25
    assert audio.nonzero().flatten().tolist() == list(range(13, 26))


def test_retaking_one_modality_keeps_the_other_whole():
    video_only = retake_window(_clip(), 0.5, 1.0, audio=False)
    assert video_only.audio_mask.eq(0).all() and video_only.video_mask.any()
    audio_only = retake_window(_clip(), 0.5, 1.0, video=False)
    assert audio_only.video_mask.eq(0).all() and audio_only.audio_mask.any()


@pytest.mark.parametrize("start, end, fragment", [
    (1.0, 0.5, "start < end"), (-1.0, 0.5, "start < end"), (5.0, 6.0, "after the clip's end")])
def test_impossible_windows_are_refused_with_what_fits(start, end, fragment):
    with pytest.raises(InputError, match=fragment):
        retake_window(_clip(), start, end)


def test_a_retake_that_regenerates_nothing_is_refused():
    clip = _clip()
    with pytest.raises(InputError, match="regenerates nothing"):
        retake_window(AVLatents(clip.video, None, FPS), 0.1, 0.5, video=False)


@pytest.mark.parametrize("family", ["2.0", "2.3"], indirect=True)
@pytest.mark.parametrize("video, audio", [(True, True), (True, False), (False, True)])
def test_a_retake_run_keeps_everything_outside_the_window_bit_identical(family, video, audio):
    ltx2, gemma = family
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    settings = GenerationSettings.from_preset(recipe_for(ltx2.dit.family.version).distilled, seed=2)
    g = torch.Generator().manual_seed(1)
    shape = empty_latents(1, 33, 64, 64, FPS, video_channels=ltx2.video_vae.latent_channels,
                          audio_channels=ltx2.audio_vae.latent_channels, audio_mel_bins=ltx2.audio_vae.latent_mel_bins)
    clip = AVLatents(torch.randn(shape.video.shape, generator=g), torch.randn(shape.audio.shape, generator=g), FPS)
    request = retake_window(clip, 0.4, 0.9, video=video, audio=audio)
    out = stages.run_sampler(ltx2.dit, text, request, settings)
    for kept, given, mask in ((out.video, clip.video, request.video_mask), (out.audio, clip.audio, request.audio_mask)):
        keep = (mask == 0).expand_as(given)
        assert torch.equal(kept[keep], given[keep])
        assert mask.any() == (not torch.equal(kept, given))  # the window itself was regenerated
