"""Dub-It reference audio through the item, the node and two samplers (the parity with the official implementation
is tests/test_golden_dubit.py): frozen tokens at negative positions, never in the output latent or audio."""

from __future__ import annotations

import math

import pytest
import torch

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes.errors import InputError
from ltx2_nodes.media.lengths import encoded_latent_count, mel_frames_for_samples
from ltx2_nodes.model.shapes import AudioTiming
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import latent_info, to_av_latents
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.reference_audio import ReferenceAudio, reference_audio_positions
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, initial_state


REFERENCE_LATENTS_2S = encoded_latent_count(mel_frames_for_samples(2 * 16000))  # 2 s at the mel rate


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def speech(seconds: float, pitch: float = 220.0, rate: int = 22050) -> dict:
    t = torch.arange(round(seconds * rate)) / rate
    return {"waveform": (0.3 * torch.sin(2 * math.pi * pitch * t)).expand(1, 2, -1).contiguous(), "sample_rate": rate}


def test_reference_positions_end_one_latent_before_the_clip_starts():
    timing = AudioTiming()
    positions = reference_audio_positions(2, 10, timing)
    step = 1 / timing.latents_per_second
    assert positions.shape == (2, 1, 10, 2)
    assert positions[0, 0, -1, 1].item() == pytest.approx(-step)  # a gap of one latent before time 0
    ends = positions[0, 0, :, 1]
    assert (ends[1:] - ends[:-1]).allclose(torch.full((9,), step)) and positions.max() < 0


def test_reference_tokens_are_appended_frozen_and_dropped_by_to_grid():
    grid = AudioGrid(8, 12, 16)
    state = initial_state(grid, 2)
    ref = torch.randn(1, 8, 5, 16)
    out = ReferenceAudio(ref).apply(state)
    assert out.latent.shape == (2, 17, 128) and out.positions.shape == (2, 1, 17, 2)
    assert torch.equal(out.mask[:, 12:], torch.zeros(2, 5, 1)) and torch.equal(out.mask[:, :12], state.mask)
    assert torch.equal(out.clean[:, 12:], out.latent[:, 12:])
    assert out.positions[:, :, 12:].max() < 0 <= out.positions[:, :, :12].min()
    assert out.to_grid().shape == (2, 8, 12, 16)


def test_reference_audio_refuses_the_video_stream_and_other_models_latents():
    with pytest.raises(InputError, match="conditions the audio stream"):
        ReferenceAudio(torch.zeros(1, 8, 4, 16)).apply(initial_state(VideoGrid(8, 2, 2, 2, 24.0), 1))
    with pytest.raises(InputError, match="encode the reference with the audio VAE of the model that samples"):
        ReferenceAudio(torch.zeros(1, 8, 4, 4)).apply(initial_state(AudioGrid(8, 12, 16), 1))
    with pytest.raises(InputError, match="batch 3"):
        ReferenceAudio(torch.zeros(3, 8, 4, 16)).apply(initial_state(AudioGrid(8, 12, 16), 2))


def _front(demo_models):
    dit, video_vae, audio_vae, connector = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)
    (model,) = call("LTX2LoraLoader", model=dit, lora_name=demo_models.lora_23.name, strength=1.0)
    (gemma,) = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt="she says: see you tomorrow")
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    return model, audio_vae, positive


def _sample(model, positive, latent, preset):
    recipe = recipe_for("2.3")
    return call("LTX2Sampler", model=model, positive=positive, latent=latent, seed=5,
                **preset_widgets(getattr(recipe, preset), recipe.stg_blocks))[0]


def test_dubit_two_stages_keep_reference_tokens_out_of_latents_and_decoded_audio(headless, demo_models):
    model, audio_vae, positive = _front(demo_models)
    (empty,) = call("LTX2EmptyAVLatent", width=64, height=64, frames=17, seconds=0.0, fps=24.0, batch_size=1)
    (referenced,) = call("LTX2DubItReferenceAudio", latent=empty, audio_vae=audio_vae, reference_audio=speech(2.0))
    reference = latent_info(referenced).audio_reference
    assert reference.shape[2] == REFERENCE_LATENTS_2S != to_av_latents(empty).audio.shape[2]
    first = _sample(model, positive, referenced, "distilled")
    plain = _sample(model, positive, empty, "distilled")
    out, base = to_av_latents(first), to_av_latents(plain)
    assert out.audio.shape == base.audio.shape == to_av_latents(empty).audio.shape
    assert (out.audio - base.audio).abs().max() > 1e-3, "the reference tokens condition the generated audio"
    assert latent_info(first).audio_reference is None, "the reference conditions the next sampler only"
    (waveform,) = call("LTX2AudioDecode", latent=first, audio_vae=audio_vae)
    (plain_waveform,) = call("LTX2AudioDecode", latent=plain, audio_vae=audio_vae)
    assert waveform["waveform"].shape == plain_waveform["waveform"].shape  # no reference seconds in the sound

    (stage2,) = call("LTX2DubItReferenceAudio", latent=first)  # no audio: reference and keep the stage-1 audio
    assert torch.equal(latent_info(stage2).audio_reference, out.audio)
    second = to_av_latents(_sample(model, positive, stage2, "refine"))
    assert torch.equal(second.audio, out.audio), "stage 2 keeps the stage-1 audio unchanged"
    assert second.video.shape == out.video.shape and not torch.equal(second.video, out.video)


def test_dubit_node_refusals_say_what_to_connect(headless, demo_models):
    _, audio_vae, _ = _front(demo_models)
    (video_only,) = call("LTX2EmptyAVLatent", width=64, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1,
                         audio=False)
    with pytest.raises(InputError, match="with audio on"):
        call("LTX2DubItReferenceAudio", latent=video_only, audio_vae=audio_vae, reference_audio=speech(1.0))
    (empty,) = call("LTX2EmptyAVLatent", width=64, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1)
    with pytest.raises(InputError, match="needs the audio VAE"):
        call("LTX2DubItReferenceAudio", latent=empty, reference_audio=speech(1.0))
    with pytest.raises(InputError, match="the latent's audio is empty"):
        call("LTX2DubItReferenceAudio", latent=empty)
    with pytest.raises(InputError, match="at least"):
        call("LTX2DubItReferenceAudio", latent=empty, audio_vae=audio_vae, reference_audio=speech(0.01))
    (part,) = call("LTX2DubItReferenceAudio", latent=empty, audio_vae=audio_vae, reference_audio=speech(4.0),
                   start_seconds=1.0, seconds=2.0)
    assert latent_info(part).audio_reference.shape[2] == REFERENCE_LATENTS_2S


def test_the_audio_only_model_samples_with_a_reference_and_returns_only_its_own_audio(headless, demo_models):
    _, audio_vae, positive = _front(demo_models)
    dit = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)[0]
    (audio_model,) = call("LTX2AudioOnlyModel", model=dit)  # the demo LoRA adapts video layers only: none here
    (empty,) = call("LTX2EmptyAudioLatent", seconds=1.0, fps=24.0, batch_size=1)
    (referenced,) = call("LTX2DubItReferenceAudio", latent=empty, audio_vae=audio_vae, reference_audio=speech(2.0))
    out = to_av_latents(_sample(audio_model, positive, referenced, "distilled"))
    assert out.video is None and out.audio.shape == to_av_latents(empty).audio.shape
