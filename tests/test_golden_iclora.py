"""IC-LoRA reference-video guides against the official implementation (fixtures: tests/fixtures/iclora, made by
scripts/fixtures/make_iclora.py from Lightricks/LTX-2 HEAD on CPU in float32, on the tiny 2.0-head, 2.3 and
2.5 DiT files of the shared golden sets).

Per call: the conditioned and noised video state (guide token positions, denoise mask, clean tokens, the
self-attention mask from ``conditioning_attention_strength``, per-token weights or a pixel-space mask, several
guides stacked), the denoised estimate of the first step with the guides appended, and the two-step Euler stage's
output after the guide tokens are dropped. Every dimension and setting comes from the files.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden, golden_dir
from ltx2_nodes.latents import AVLatents, GenerationSettings, sample
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.sampling.conditioning import apply_conditionings
from ltx2_nodes.sampling.guidance import GuidedDenoiser
from ltx2_nodes.sampling.guides import ReferenceVideoGuide, mask_token_weights
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

WEIGHT_FLAVOURS = ["2.0-head", "2.3", "2.5"]


@pytest.fixture(scope="module", params=WEIGHT_FLAVOURS, ids=[f"golden-iclora-{f}" for f in WEIGHT_FLAVOURS])
def golden(request):
    return find_golden(f"iclora_reference_video_{request.param}", "iclora")


@pytest.fixture(scope="module")
def model(golden):
    flavour = str(golden.meta["weights_flavour"])  # "2.3" reads back as a number
    weights = golden_dir(flavour) / golden.meta["weights_file"]
    if not weights.is_file():
        pytest.skip(f"the tiny checkpoint {weights} is missing (the {flavour} golden set)")
    return load_transformer(LTX2Checkpoint(weights), dtype=torch.float32)


def _guides(golden, name: str) -> list[ReferenceVideoGuide]:
    guides = []
    for i, spec in enumerate(golden.call["calls"][name]["guides"]):
        latent, attention = golden[f"{name}.guide{i}.latent"], spec["attention"]
        if isinstance(attention, dict):  # a pixel-space mask, downsampled to the reference's tokens, times a strength
            attention = mask_token_weights(golden[f"{name}.guide{i}.pixel_mask"], *latent.shape[2:]) \
                * attention["pixel_mask"]
        elif attention == "tokens":
            attention = golden[f"{name}.guide{i}.attention"]
        guides.append(ReferenceVideoGuide(latent, spec["downscale_factor"], spec["temporal_scale_factor"],
                                          spec["strength"], attention))
    return guides


def _states(golden, name: str):
    call = golden.call["calls"][name]
    video_shape, audio_shape = call["video_shape"], call["audio_shape"]
    vgrid = VideoGrid(*video_shape[1:], fps=call["fps"])
    video = apply_conditionings(initial_state(vgrid, 1), _guides(golden, name))
    audio = initial_state(AudioGrid(*audio_shape[1:]), 1)
    return call, video, audio


def _text(golden, name: str) -> TextConditioning:
    return TextConditioning(golden[f"{name}.video_context"], golden[f"{name}.audio_context"], None)


def _calls(golden) -> list[str]:
    return sorted(golden.call["calls"])


def test_golden_guide_tokens_positions_masks_and_attention_equal_the_reference(golden):
    for name in _calls(golden):
        _, video, _ = _states(golden, name)
        assert_close(video.positions, golden[f"{name}.state.video_positions"], f"{name} positions", tol=1e-6)
        assert_close(video.mask, golden[f"{name}.state.video_denoise_mask"], f"{name} denoise mask", tol=1e-6)
        assert_close(video.clean, golden[f"{name}.state.video_clean_latent"], f"{name} clean tokens", tol=0)
        expected = golden.tensors.get(f"{name}.state.video_attention_mask")
        if expected is None:
            assert video.attention is None, f"{name}: the reference passes no attention mask"
        else:
            assert_close(video.attention, expected, f"{name} attention mask", tol=0)


def test_golden_noised_state_with_guides_equals_the_reference(golden):
    for name in _calls(golden):
        call, video, audio = _states(golden, name)
        noise = SeededNoise(call["seed"], 1).draw(tuple(video.latent.shape[1:]), tuple(audio.latent.shape[1:]))
        start = call["sigmas"][0]
        assert_close(add_noise(video, noise[0], start).latent, golden[f"{name}.state.video_latent"],
                     f"{name} noised video", tol=1e-6)
        assert_close(add_noise(audio, noise[1], start).latent, golden[f"{name}.state.audio_latent"],
                     f"{name} noised audio", tol=1e-6)


def test_golden_one_denoising_step_with_guides_equals_the_reference(golden, model):
    for name in _calls(golden):
        _, video, audio = _states(golden, name)
        video = video.replace(latent=golden[f"{name}.state.video_latent"])
        audio = audio.replace(latent=golden[f"{name}.state.audio_latent"])
        denoiser = GuidedDenoiser(model, _text(golden, name))
        sigma = torch.tensor(golden.call["calls"][name]["sigmas"][0])
        with torch.no_grad():
            x0_video, x0_audio = denoiser(video, audio, sigma, 0)
        assert_close(x0_video, golden[f"{name}.step0.video_denoised"], f"{name} video denoised")
        assert_close(x0_audio, golden[f"{name}.step0.audio_denoised"], f"{name} audio denoised")


def test_golden_sampled_stage_with_guides_equals_the_reference_and_drops_the_guides(golden, model):
    for name in _calls(golden):
        call = golden.call["calls"][name]
        latents = AVLatents(torch.zeros(call["video_shape"]), torch.zeros(call["audio_shape"]), call["fps"])
        settings = GenerationSettings(torch.tensor(call["sigmas"]), seed=call["seed"])
        out = sample(model, _text(golden, name), latents, settings, conditioning=_guides(golden, name))
        assert list(out.video.shape) == call["video_shape"], f"{name}: guide tokens reached the output"
        assert_close(out.video, golden[f"{name}.out.video"], f"{name} video")
        assert_close(out.audio, golden[f"{name}.out.audio"], f"{name} audio")
