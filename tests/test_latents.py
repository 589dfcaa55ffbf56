"""End-to-end sampling on the tiny golden transformer: determinism, conditioning, A2V/V2A, batch
independence, interruption, and the image -> latent front end (the two-stage recipe runs through the stage
functions: tests/test_stages.py and tests/test_nodes.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import find_golden
from ltx2_nodes.errors import InputError, RunInterrupted
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.latents import AVLatents, GenerationSettings, TextConditioning, empty_latents, sample
from ltx2_nodes.progress import reporting_to, request_interrupt
from ltx2_nodes.sampling.conditioning import KeyframeAtFrame, LatentAtIndex, encode_images
from ltx2_nodes.sampling.guidance import GuidanceParams
from ltx2_nodes.sampling.recipe import recipe_for

FRAMES, HEIGHT, WIDTH = 3, 2, 3  # latent grid of the test video (17 frames, 64 x 96 pixels)
AUDIO_FRAMES = 18


@pytest.fixture(scope="module")
def model():
    return load_transformer(LTX2Checkpoint(find_golden("transformer").weights_path), dtype=torch.float32)


@pytest.fixture(scope="module")
def texts(model):
    g = torch.Generator().manual_seed(0)
    c = model.config.caption_channels

    def encode():
        return TextConditioning(torch.randn(1, 12, c, generator=g), torch.randn(1, 12, c, generator=g),
                                torch.ones(1, 12, dtype=torch.int64))

    return encode(), encode()


def _guidance(model, base: GuidanceParams) -> GuidanceParams:
    return GuidanceParams(base.cfg, base.stg, (model.config.num_layers - 1,), base.rescale, base.modality)


def _settings(model, seed=10, steps=3, **kw) -> GenerationSettings:
    """The dev preset with ``steps``, STG on the tiny model's last block."""
    dev = recipe_for().dev
    kw.setdefault("video_guidance", _guidance(model, dev.video_guidance))
    kw.setdefault("audio_guidance", _guidance(model, dev.audio_guidance))
    return GenerationSettings.from_preset(dev, seed=seed, steps=steps, **kw)


def _latents(model, batch=1) -> AVLatents:
    cfg = model.config
    return AVLatents(torch.zeros(batch, cfg.in_channels, FRAMES, HEIGHT, WIDTH),
                     torch.zeros(batch, 1, AUDIO_FRAMES, cfg.audio_in_channels), fps=24.0)


def _run(model, texts, latents=None, settings=None, **kw) -> AVLatents:
    positive, negative = texts
    return sample(model, positive, latents or _latents(model), settings or _settings(model), negative=negative, **kw)


@pytest.fixture(scope="module")
def reference_run(model, texts):
    return _run(model, texts)


def test_same_seed_is_bit_identical_and_seed_matters(model, texts, reference_run):
    again = _run(model, texts)
    assert torch.equal(again.video, reference_run.video) and torch.equal(again.audio, reference_run.audio)
    other = _run(model, texts, settings=_settings(model, seed=11))
    assert (other.video - reference_run.video).abs().max() > 1e-2
    assert (other.audio - reference_run.audio).abs().max() > 1e-2


def test_res2s_run_is_deterministic(model, texts):
    a = _run(model, texts, settings=_settings(model, steps=2, sampler="res_2s"))
    b = _run(model, texts, settings=_settings(model, steps=2, sampler="res_2s"))
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)


def test_first_frame_conditioning_keeps_the_latent_exactly(model, texts, reference_run):
    cond = torch.randn(1, model.config.in_channels, 1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(5))
    out = _run(model, texts, conditioning=[LatentAtIndex(cond, 0, 1.0)])
    assert torch.equal(out.video[:, :, :1], cond)
    assert (out.video[:, :, 1:] - reference_run.video[:, :, 1:]).abs().max() > 1e-3


def test_keyframe_tokens_guide_and_are_dropped(model, texts, reference_run):
    key = torch.randn(1, model.config.in_channels, 1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(6))
    last_frame = (FRAMES - 1) * 8
    out = _run(model, texts, conditioning=[KeyframeAtFrame(key, last_frame, 1.0)])
    assert out.video.shape == reference_run.video.shape
    assert (out.video - reference_run.video).abs().max() > 1e-3


def test_audio_to_video_and_video_to_audio(model, texts, reference_run):
    g = torch.Generator().manual_seed(7)
    base = _latents(model)
    given_audio = torch.randn(base.audio.shape, generator=g)
    out = _run(model, texts, latents=AVLatents(base.video, given_audio, fps=24.0).keep_audio())
    assert torch.equal(out.audio, given_audio)
    assert (out.video - reference_run.video).abs().max() > 1e-3

    given_video = torch.randn(base.video.shape, generator=g)
    out = _run(model, texts, latents=AVLatents(given_video, base.audio, fps=24.0).keep_video())
    assert torch.equal(out.video, given_video)
    assert (out.audio - reference_run.audio).abs().max() > 1e-3


def test_single_modality_runs(model, texts):
    base = _latents(model)
    video_only = _run(model, texts, latents=AVLatents(base.video, None, fps=24.0))
    audio_only = _run(model, texts, latents=AVLatents(None, base.audio, fps=24.0))
    assert video_only.audio is None and video_only.video.shape == base.video.shape
    assert audio_only.video is None and audio_only.audio.shape == base.audio.shape


def test_batch_items_equal_single_runs_with_seed_plus_index(model, texts, reference_run):
    batch = _run(model, texts, latents=_latents(model, batch=2))
    second = _run(model, texts, settings=_settings(model, seed=11))
    for i, single in enumerate((reference_run, second)):
        assert (batch.video[i] - single.video[0]).abs().max() < 1e-5
        assert (batch.audio[i] - single.audio[0]).abs().max() < 1e-5


def test_batched_and_sequential_guidance_give_the_same_run(model, texts, reference_run):
    batched = _run(model, texts, settings=_settings(model, batched_guidance=True))
    assert (batched.video - reference_run.video).abs().max() < 1e-5
    assert (batched.audio - reference_run.audio).abs().max() < 1e-5


def test_interruption_propagates_and_leaves_the_model_usable(model, texts, reference_run):
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}

    class Stop(Exception):
        pass

    steps = []

    def stop_at_2(step, total, preview):
        steps.append(step)
        assert preview.shape == reference_run.video.shape
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        _run(model, texts, callback=stop_at_2)
    assert steps == [1, 2]
    request_interrupt()
    with pytest.raises(RunInterrupted, match="cancelled during sampling, at step 1 of 3"):
        _run(model, texts)
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    after = _run(model, texts)
    assert torch.equal(after.video, reference_run.video) and torch.equal(after.audio, reference_run.audio)


def test_progress_reaches_the_progress_module(model, texts):
    seen = []
    with reporting_to(lambda node, value, total: seen.append((value, total))):
        _run(model, texts)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_encode_images_resizes_to_cover_and_crops_the_centre():
    seen = []

    def encoder(pixels):
        seen.append(pixels)
        return pixels

    wide = torch.rand(2, 32, 96, 3)
    out = encode_images(encoder, wide, 32, 32, crf=0)
    assert out.shape == (2, 3, 1, 32, 32)
    assert torch.allclose(out[:, :, 0], wide[:, :, 32:64].permute(0, 3, 1, 2) * 2 - 1)
    small = torch.rand(16, 16, 3)  # single image, upscaled x4 to cover 32 x 64, rows 16..48 kept
    out = encode_images(encoder, small, 32, 64, crf=0)
    expected = F.interpolate(small.permute(2, 0, 1)[None], size=(64, 64), mode="bilinear",
                             align_corners=False)[:, :, 16:48] * 2 - 1
    assert out.shape == (1, 3, 1, 32, 64) and torch.allclose(out[:, :, 0], expected)
    with pytest.raises(InputError, match=r"the image batch is empty \(shape \[0, 32, 32, 3\]\)"):
        encode_images(encoder, torch.zeros(0, 32, 32, 3), 32, 32)
    with pytest.raises(InputError, match=r"image must be \[B, H, W, 3\]"):
        encode_images(encoder, torch.zeros(1, 3, 32, 32), 32, 32)


def test_conditioning_images_get_the_reference_h264_look():
    def identity(pixels):
        return pixels

    y, x = torch.meshgrid(torch.linspace(0, 1, 45), torch.linspace(0, 1, 61), indexing="ij")
    smooth = torch.stack([y, x, (x + y) / 2], dim=-1)  # odd sides: cropped to 44 x 60 for the codec
    clean = encode_images(identity, smooth[:44, :60], 32, 32, crf=0)
    compressed = encode_images(identity, smooth, 32, 32)  # default crf 33
    difference = (compressed - clean).abs()
    assert compressed.shape == clean.shape == (1, 3, 1, 32, 32)
    assert 0 < difference.mean() < 0.05  # visibly re-encoded, still the same picture


def test_latent_shapes_and_input_errors(model, texts):
    latents = empty_latents(1, 121, 512, 768, 24.0)  # the reference's worked example
    assert latents.video.shape == (1, 128, 16, 16, 24) and latents.audio.shape == (1, 8, 126, 16)
    assert empty_latents(1, 121, 512, 768, 25.0).audio.shape[2] == 121
    with pytest.raises(InputError, match="120 frames \\(must be 1 \\+ 8\\*k.*Nearest valid size: 768x512, 121 frames"):
        empty_latents(1, 120, 512, 768, 24.0)
    with pytest.raises(InputError, match="width 770 \\(must be a positive multiple of 32\\).*Nearest valid size"):
        empty_latents(1, 121, 512, 770, 24.0)
    with pytest.raises(InputError, match="unknown sampler 'ddim'"):
        GenerationSettings.from_preset(recipe_for().distilled, sampler="ddim")
    with pytest.raises(InputError, match="is not below entry"):
        GenerationSettings(torch.tensor([1.0, 1.0, 0.0]))
    wrong = AVLatents(torch.zeros(1, model.config.in_channels + 1, FRAMES, HEIGHT, WIDTH), None, fps=24.0)
    with pytest.raises(InputError, match=f"the video latent has {model.config.in_channels + 1} channels but the "
                                         f"transformer expects {model.config.in_channels}"):
        _run(model, texts, latents=wrong)
    cond = torch.zeros(1, model.config.in_channels, 1, HEIGHT + 1, WIDTH)
    with pytest.raises(InputError, match="encode the image at the generation size \\(96x64\\)"):
        _run(model, texts, conditioning=[LatentAtIndex(cond, 0)])
    with pytest.raises(InputError, match="conditioning strength must be in \\[0, 1\\]"):
        _run(model, texts, conditioning=[LatentAtIndex(torch.zeros(1, model.config.in_channels, 1, HEIGHT, WIDTH),
                                                       0, 1.5)])
