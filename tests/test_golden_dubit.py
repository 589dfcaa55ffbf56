"""Dub-It parity against the official ``DubItPipeline`` semantics (fixtures: ``tests/fixtures/dubit``, made by
``scripts/fixtures/make_dubit.py`` from Lightricks/LTX-2 HEAD on CPU; ``$LTX2_GOLDEN_DUBIT_DIR`` overrides).

Each ``io_dubit_*.safetensors`` file is one model family (its DiT and a tiny IC-LoRA lie beside it) and holds two
one-step stages as the official pipeline composes them: stage 1 generates video and audio with the reference audio
appended, stage 2 refines the video with the stage-1 audio frozen and referenced. Checked: the reference tokens'
positions (negative times), the denoise mask and timesteps the DiT is told, the noised inputs, one DiT forward with
the reference tokens appended (LoRA applied), and the stage outputs, which hold no reference tokens.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import assert_close, golden_dir, load_golden
from ltx2_nodes.latents import AVLatents, GenerationSettings, empty_latents, sample
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.lora import applied_loras, load_lora
from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.model.patchify import patchify_audio
from ltx2_nodes.model.transformer import ModalityInput, to_denoised
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.reference_audio import ReferenceAudio, reference_audio_positions

TOL = 1e-5
STAGES = ("stage1", "stage2")


def _files() -> list:
    root = golden_dir("dubit")
    files = sorted(root.glob("io_dubit_*.safetensors")) if root.is_dir() else []
    return files or [pytest.param(None, marks=pytest.mark.skip(reason=f"no Dub-It fixtures in {root} (set "
                                                                      "LTX2_GOLDEN_DUBIT_DIR)"))]


@pytest.fixture(scope="module", params=_files(), ids=lambda p: f"golden-dubit-{p.stem[len('io_dubit_'):]}" if p
                else "golden-dubit")
def golden(request):
    return load_golden(request.param)


@pytest.fixture(scope="module")
def model(golden):
    return load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)


@pytest.fixture(scope="module")
def lora(golden):
    return [(load_lora(golden.path.parent / golden.meta["lora_file"]), float(golden.call["lora_strength"]))]


class Recorder:
    """The DiT as ``latents.sample`` calls it, recording each call's inputs and its x0 outputs."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, video, audio, perturbations=None):
        v, a = self.model(video, audio, perturbations)
        self.calls.append((video, audio, to_denoised(video.latent, v, video.timesteps),
                           to_denoised(audio.latent, a, audio.timesteps)))
        return v, a


def _text_and_latents(golden, model):
    """The fixture's text conditioning and the empty latents of its call (sizes read from the file)."""
    call, ref = golden.call, golden["reference_latent"]
    text = TextConditioning(golden["video_context"], golden["audio_context"],
                            torch.ones(golden["video_context"].shape[:2], dtype=torch.int64))
    latents = empty_latents(1, call["frames"], call["height"], call["width"], call["fps"],
                            video_channels=model.config.in_channels, audio_channels=ref.shape[1],
                            audio_mel_bins=ref.shape[3])
    return text, latents


@pytest.fixture(scope="module")
def run(golden, model, lora):
    """The two stages through ``latents.sample``: stage 1 with the fixture's reference, stage 2 keeping the
    stage-1 audio and referencing it (what the Dub-It node sets up for the second sampler)."""
    call, ref = golden.call, golden["reference_latent"]
    text, latents = _text_and_latents(golden, model)
    noise, recorder = SeededNoise(call["seed"], 1), Recorder(model)
    with torch.no_grad(), applied_loras(model, lora):
        first = sample(recorder, text, latents, GenerationSettings(golden["stage1.sigmas"], seed=call["seed"]),
                       audio_conditioning=[ReferenceAudio(ref)], noise=noise)
        kept = AVLatents(first.video, first.audio, first.fps).keep_audio()
        second = sample(recorder, text, kept, GenerationSettings(golden["stage2.sigmas"], seed=call["seed"]),
                        audio_conditioning=[ReferenceAudio(first.audio)], noise=noise)
    assert len(recorder.calls) == 2, "each fixture stage is one denoising step: one DiT forward"
    return dict(zip(STAGES, recorder.calls)), {"stage1": first, "stage2": second}


def test_golden_reference_audio_tokens_and_negative_positions_match_the_official_patchify(golden):
    for stage in STAGES:
        tokens = golden[f"{stage}.reference_tokens"]
        latent = golden["reference_latent"] if stage == "stage1" else golden["stage1.audio_out"]
        assert_close(patchify_audio(latent), tokens, f"{stage} reference tokens", tol=0)
        positions = reference_audio_positions(tokens.shape[0], tokens.shape[1])
        assert_close(positions, golden[f"{stage}.reference_positions"], f"{stage} reference positions", tol=1e-6)
        assert positions.max() < 0, "reference audio tokens sit before the clip"


@pytest.mark.parametrize("stage", STAGES)
def test_golden_conditioned_inputs_mask_and_timesteps_match_the_official_stage(golden, run, stage):
    video, audio, _, _ = run[0][stage]
    for name, given in (("video", video), ("audio", audio)):
        for field in ("latent", "positions"):
            assert_close(getattr(given, field), golden[f"{stage}.{name}_{field}"], f"{stage} {name} {field}", tol=TOL)
        assert_close(given.sigma.reshape(-1), golden[f"{stage}.{name}_sigma"], f"{stage} {name} sigma", tol=0)
        expected = golden[f"{stage}.{name}_timesteps"]
        assert_close(given.timesteps.reshape(expected.shape), expected, f"{stage} {name} timesteps", tol=0)
    # the audio denoise mask: 1 on generated audio (stage 1 only), 0 on the reference tokens
    expected_mask = golden[f"{stage}.audio_denoise_mask"]
    assert_close(audio.timesteps.reshape(expected_mask.shape) / max(float(golden[f"{stage}.sigmas"][0]), 1e-12),
                 expected_mask, f"{stage} audio denoise mask", tol=1e-6)


@pytest.mark.parametrize("stage", STAGES)
def test_golden_one_dit_forward_with_reference_tokens_appended_matches_the_official(golden, model, lora, stage):
    """The official forward's own inputs (noised video, audio with the reference tokens) through our DiT + LoRA."""
    def given(name):
        return ModalityInput(latent=golden[f"{stage}.{name}_latent"], sigma=golden[f"{stage}.{name}_sigma"],
                             timesteps=golden[f"{stage}.{name}_timesteps"],
                             positions=golden[f"{stage}.{name}_positions"], context=golden[f"{name}_context"],
                             keyframes_mask=golden.tensors.get(f"{stage}.{name}_keyframes_mask"))

    video, audio = given("video"), given("audio")
    with torch.no_grad(), applied_loras(model, lora):
        v, a = model(video, audio)
    assert_close(to_denoised(video.latent, v, video.timesteps), golden[f"{stage}.video_denoised"],
                 f"{stage} video x0", tol=TOL)
    assert_close(to_denoised(audio.latent, a, audio.timesteps), golden[f"{stage}.audio_denoised"],
                 f"{stage} audio x0 (reference tokens included)", tol=TOL)


@pytest.mark.parametrize("stage", STAGES)
def test_golden_stage_outputs_match_and_hold_no_reference_tokens(golden, run, stage):
    out = run[1][stage]
    expected_audio = golden[f"{stage}.audio_out"]
    assert out.audio.shape == expected_audio.shape, "the reference tokens were dropped from the audio latent"
    assert_close(out.video, golden[f"{stage}.video_out"], f"{stage} video", tol=TOL)
    assert_close(out.audio, expected_audio, f"{stage} audio", tol=TOL)
    if stage == "stage2":  # frozen: the stage-1 audio comes back unchanged
        assert torch.equal(out.audio, run[1]["stage1"].audio)


def test_golden_generated_audio_depends_on_the_reference(golden, model, lora):
    """A different reference changes the generated audio (the tokens are attended to), and leaves its shape."""
    call, ref = golden.call, golden["reference_latent"]
    text, latents = _text_and_latents(golden, model)
    settings = GenerationSettings(golden["stage1.sigmas"], seed=call["seed"])
    with torch.no_grad(), applied_loras(model, lora):
        outs = [sample(model, text, latents, dataclasses.replace(settings), audio_conditioning=[ReferenceAudio(r)])
                for r in (ref, -ref)]
    assert outs[0].audio.shape == outs[1].audio.shape == golden["stage1.audio_out"].shape
    assert (outs[0].audio - outs[1].audio).abs().max() > 1e-4


def test_golden_streamed_stage_with_reference_audio_and_lora_equals_the_resident_one(golden, model, lora, run):
    """Block streaming (the memory engine moving one block at a time, LoRA factors travelling as buffers) gives the
    resident stage-1 result bit for bit with the reference tokens appended."""
    from ltx2_nodes.memory import MemoryEngine
    from ltx2_nodes.memory.placement import module_tensors, tensor_bytes

    call, ref = golden.call, golden["reference_latent"]
    text, latents = _text_and_latents(golden, model)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * tensor_bytes(module_tensors(model)), minimal=True)
    with torch.no_grad(), applied_loras(model, lora), \
            engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed"
        out = sample(model, text, latents, GenerationSettings(golden["stage1.sigmas"], seed=call["seed"]),
                     audio_conditioning=[ReferenceAudio(ref)], device=stage.device)
    resident = run[1]["stage1"]
    assert torch.equal(out.video, resident.video) and torch.equal(out.audio, resident.audio)
