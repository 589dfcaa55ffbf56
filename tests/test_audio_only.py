"""Text to audio on the DiT's audio stream alone (the reference ``t2a_one_stage``: an audio-only model, video
blocks skipped, not masked): the video tensors are never read from the file, never built and never streamed, the
audio-only model computes exactly what the full model computes on audio alone, a video latent is refused with the
fix, and the shipped workflow runs headless without ever building the full transformer (LTX-2 and LTX-2.3)."""

from __future__ import annotations

import pytest
import torch

from demo_support import DEMO_INPUTS, DEMO_WORKFLOWS, demo_models, headless  # noqa: F401
from memory_support import dit_inputs
from ltx2_nodes.cli import main
from ltx2_nodes.errors import InputError
from ltx2_nodes.handles import clear_caches
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.media.audio_io import load_audio_file
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.model.transformer import Perturbations, SampleSkips
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import to_av_latents

FAMILIES = ["2.0", "2.3"]


def _checkpoint(demo_models, family: str):
    return demo_models.checkpoint if family == "2.0" else demo_models.checkpoint_23


def _call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_only_dit_never_reads_a_video_tensor_from_the_file(family, demo_models):
    ckpt = LTX2Checkpoint(_checkpoint(demo_models, family))
    read = []
    tensor = ckpt.file.tensor
    ckpt.file.tensor = lambda key: read.append(key) or tensor(key)
    model = load_transformer(ckpt, torch.float32, audio_only=True)
    ckpt.file.tensor = tensor
    spec = ckpt._specs["transformer"]
    read_names = {spec.module_key(k) for k in read}
    assert read_names == set(model.state_dict())  # exactly the audio model's tensors were opened
    every = set(ckpt.state_dict("transformer"))
    video = every - read_names
    for name in ("patchify_proj.weight", "proj_out.weight", "transformer_blocks.0.attn1.to_q.weight",
                 "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.audio_to_video_attn.to_q.weight",
                 "transformer_blocks.0.video_to_audio_attn.to_k.weight", "av_ca_a2v_gate_adaln_single.linear.weight"):
        assert name in video
    assert not any(t.is_meta for t in model.state_dict().values())
    assert not model.config.has_video and not hasattr(model.transformer_blocks[0], "video_to_audio_attn")


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_only_dit_equals_the_full_model_run_on_audio_alone(family, demo_models):
    """The reference audio-only model (``LTXModelType.AudioOnly``) runs each block's audio self-attention, text
    cross-attention and feed-forward with no audio<->video exchange: what the full model computes for
    ``video=None``, bit for bit, with and without STG."""
    ckpt = LTX2Checkpoint(_checkpoint(demo_models, family))
    full = load_transformer(ckpt, torch.float32)
    audio_only = load_transformer(ckpt, torch.float32, audio_only=True)
    _video, audio = dit_inputs(full.config, batch=2)
    stg = Perturbations([SampleSkips(), SampleSkips.stg([0], video=False)])
    with torch.no_grad():
        for skips in (None, stg):
            none_v, expected = full(None, audio, perturbations=skips)
            no_v, got = audio_only(None, audio, perturbations=skips)
            assert none_v is None and no_v is None and torch.equal(got, expected)
    with pytest.raises(ValueError, match="no video stream"):
        audio_only(_video, audio)


def test_streamed_audio_only_stage_moves_only_the_audio_weights(demo_models):
    ckpt = LTX2Checkpoint(demo_models.checkpoint)
    full = load_transformer(ckpt, torch.float32)
    model = load_transformer(ckpt, torch.float32, audio_only=True)
    _video, audio = dit_inputs(model.config)
    with torch.no_grad():
        expected = model(None, audio)[1]
    block_bytes = tensor_bytes(module_tensors(model.transformer_blocks[0]))
    full_block_bytes = tensor_bytes(module_tensors(full.transformer_blocks[0]))
    total = tensor_bytes(module_tensors(model))
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * total, minimal=True)
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed"
        got = model(None, audio)[1]
    assert torch.equal(got, expected)
    assert stage.stats.copies >= len(model.transformer_blocks)
    per_block = stage.stats.copied_bytes / stage.stats.copies  # the packed layout aligns each tensor
    assert block_bytes <= per_block < block_bytes * 1.25 < full_block_bytes / 2  # nothing of the video stream moved


def test_audio_only_model_refuses_a_video_latent_with_the_fix(headless, demo_models):
    dit, _video_vae, _audio_vae, connector = _call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name)
    (audio_model,) = _call("LTX2AudioOnlyModel", model=dit)
    assert audio_model.audio_only and not dit.audio_only and "(audio only)" in audio_model.describe()
    (gemma,) = _call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = _call("LTX2GemmaEncode", gemma=gemma, prompt="rain on a tin roof")
    (positive,) = _call("LTX2TextConnector", text_connector=connector, features=features)
    widgets = dict(seed=1, steps=2, schedule="ltx2", sigmas="", sampler="euler", video_cfg=1.0, audio_cfg=1.0,
                   modality_scale=1.0, stg_scale=0.0, stg_blocks="", rescale=0.0, start_sigma=1.0)
    video_latent = _call("LTX2EmptyAVLatent", width=64, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1)[0]
    with pytest.raises(InputError, match="audio-only model.*Use LTX-2 Empty Audio Latent"):
        _call("LTX2Sampler", model=audio_model, positive=positive, latent=video_latent, **widgets)
    (empty,) = _call("LTX2EmptyAudioLatent", seconds=1.0, fps=24.0, batch_size=1)
    (out,) = _call("LTX2Sampler", model=audio_model, positive=positive, latent=empty, **widgets)
    result = to_av_latents(out)
    assert result.video is None and result.audio.shape[2] == 26 and result.audio.abs().sum() > 0


@pytest.mark.parametrize("name", ["t2a_dev_one_stage", "ltx23_t2a_dev_one_stage"])
def test_shipped_text_to_audio_workflow_runs_headless_without_building_the_video_stream(name, demo_models, tmp_path,
                                                                                         capsys, monkeypatch):
    from ltx2_nodes.loading import components

    clear_caches()
    built = []
    loader = components.load_transformer
    monkeypatch.setattr(components, "load_transformer",
                        lambda *a, **kw: built.append(kw.get("audio_only", False)) or loader(*a, **kw))
    assert main(["run", str(DEMO_WORKFLOWS / f"{name}.api.json"), "--models-dir", str(demo_models.root),
                 "--input-dir", str(DEMO_INPUTS), "--out", str(tmp_path), "--set=6.steps=2"]) == 0
    files = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".flac")]
    assert built == [True]  # only the audio-only transformer was ever built
    sound = load_audio_file(files[0])
    seconds = sound["waveform"].shape[-1] / sound["sample_rate"]
    assert abs(seconds - 49 / 24.0) < 1e-3 and sound["sample_rate"] == (48000 if name.startswith("ltx23_") else 24000)
    clear_caches()


def test_generate_audio_only_writes_the_sound_and_refuses_contradictions(demo_models, tmp_path, capsys):
    from ltx2_nodes.memory import selection

    previous = selection._HEADLESS_ENGINE
    base = ["generate", "--prompt", "rain on a tin roof", "--models-dir", str(demo_models.root), "--checkpoint",
            demo_models.checkpoint_23.name, "--device", "cpu", "--audio-only"]
    try:
        out = tmp_path / "rain.wav"
        assert main([*base, "--seconds", "1", "--mode", "dev", "--steps", "2", "--out", str(out)]) == 0
        sound = load_audio_file(out)
        assert sound["sample_rate"] == 48000 and abs(sound["waveform"].shape[-1] / 48000 - 25 / 24.0) < 1e-3
        capsys.readouterr()
        assert main([*base, "--image", "x.png", "--out", str(tmp_path / "a.flac")]) == 2
        assert main([*base, "--out", str(tmp_path / "a.mp4")]) == 2
        err = capsys.readouterr().err
        assert "--image conditions a generated video. Drop one of them" in err and "name a .flac/.wav" in err
    finally:
        selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
        clear_caches()


def test_a_lora_of_video_layers_only_is_refused_on_the_audio_only_model_with_the_fix(demo_models):
    from ltx2_nodes.errors import CheckpointError
    from ltx2_nodes.handles import load_lora_file
    from ltx2_nodes.loading.lora import applied_loras

    model = load_transformer(LTX2Checkpoint(demo_models.checkpoint), torch.float32, audio_only=True)
    lora = load_lora_file(demo_models.lora)  # the demo LoRA adapts video layers only
    with pytest.raises(CheckpointError, match="adapts none of the audio stream's layers.*drop it"):
        with applied_loras(model, [(lora, 1.0)]):
            pass


def test_generate_audio_only_is_prechecked_as_the_audio_only_run_and_a_shorter_length_it_names_fits(demo_models,
                                                                                                   tmp_path):
    """``generate --audio-only``: the whole text-to-audio run (the audio-only DiT's weights, audio tokens alone, no
    video stage) is checked before anything is built; a refusal names the seconds and a shorter length that fits."""
    import dataclasses
    import re

    from ltx2_nodes.errors import OutOfMemoryError
    from ltx2_nodes.generate import GenerateRequest, generate_sound, precheck
    from ltx2_nodes.handles import load_gemma, load_ltx2

    clear_caches()
    ltx2, gemma = load_ltx2(demo_models.checkpoint_23, device="cpu"), load_gemma(demo_models.gemma, device="cpu")
    request = GenerateRequest("rain on a tin roof", width=512, height=512, frames=1025, two_stage=False)

    def least(frames: int) -> int:
        estimate = precheck(ltx2, gemma, dataclasses.replace(request, frames=frames),
                            MemoryEngine("cpu", virtual=True, vram_budget=1 << 50), audio_only=True)
        assert {s.name for s in estimate.stages} == {"gemma", "connectors", "dit", "audio_vae"}
        assert estimate.stages[2].weights == ltx2.audio_stage_weights["dit"]
        return max(s.min_vram for s in estimate.stages)

    engine = MemoryEngine("cpu", virtual=True, vram_budget=(least(49) + least(1025)) // 2)
    with pytest.raises(OutOfMemoryError, match=r"^42.71 s of audio would not fit: the \w+ stage .* What would fit: "
                                               r"\d+\.\d\d s of audio \((\d+) frames at 24 fps\)\.$") as info:
        generate_sound(ltx2, gemma, request, tmp_path / "rain.wav", engine=engine)
    assert not {"transformer", "audio_transformer"} & set(ltx2._lazy._built)
    frames = int(re.search(r"\((\d+) frames at 24 fps\)", str(info.value)).group(1))
    assert 49 <= frames < 1025
    precheck(ltx2, gemma, dataclasses.replace(request, frames=frames), engine, audio_only=True)
    clear_caches()
