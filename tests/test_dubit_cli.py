"""``generate --dub CLIP``: Dub-It in one command. The MP4 takes the clip's size, length and frame rate; both stages'
latents equal the node graph's (the nodes called in the order of the generated ``ltx23_dubit_distilled_two_stage``
workflow, same seed: bit-exact); every refusal comes before any model loads and writes nothing; the memory
pre-check counts the reference tokens."""

from __future__ import annotations

import json
import math

import pytest
import torch

from demo_support import DEMO_INPUTS, demo_models, headless  # noqa: F401
from ltx2_nodes import generate as generate_module
from ltx2_nodes import handles
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import (CHECKPOINT, CHECKPOINT_23, DEMO_TRANSFORMER_23, DUBIT_LORA_23, IC_LORA_23, UPSCALER,
                                    UPSCALER_23, write_lora)
from ltx2_nodes.media.mux import MP4Writer, probe
from ltx2_nodes.memory.estimates import GEMMA3_12B, dit_activation_bytes
from ltx2_nodes.memory.precheck import RunRequest, _stage_activations
from ltx2_nodes.model.shapes import (MAX_FRAMES, AudioTiming, Upscale, audio_latent_frames, floor_frames,
                                    reference_frames, video_latent_size)
from ltx2_nodes.model.transformer import TransformerConfig
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import SavedVideo, to_av_latents
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.recipe import recipe_for

PROMPT = "she looks into the camera and says: see you tomorrow"
SEED = 7


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def write_clip(path, frames: int = 27, height: int = 140, width: int = 200, fps: float = 25.0, sound: bool = True):
    """A clip written with the pack's media writer: a moving ramp, and a tone as the voice when ``sound``."""
    ramp = torch.linspace(0, 1, width).view(1, 1, width, 1) * torch.linspace(0.5, 1, frames).view(frames, 1, 1, 1)
    rate = 16000
    with MP4Writer(path, fps, audio_sample_rate=rate if sound else None) as writer:
        writer.add_frames(ramp.expand(frames, height, width, 3).contiguous())
        if sound:
            t = torch.arange(round(frames / fps * rate)) / rate
            writer.set_audio((0.3 * torch.sin(2 * math.pi * 220 * t)).expand(2, -1).contiguous())
    return path


def dub_args(demo_models, clip, out, *extra) -> list[str]:
    return ["generate", "--dub", str(clip), "--ic-lora", DUBIT_LORA_23, "--prompt", PROMPT, "--seed", str(SEED),
            "--models-dir", str(demo_models.root), "--checkpoint", CHECKPOINT_23, "--upscaler", UPSCALER_23,
            "--device", "cpu", "--out", str(out), *extra]


def node_graph(demo_models, clip_path, width: int, height: int, frames: int, fps: float):
    """Stage 1 and stage 2 latents of the Dub-It workflow's nodes (scripts/workflows_dubit.py), in its order."""
    dit, video_vae, audio_vae, connector = call("LTX2CheckpointLoader", ckpt_name=CHECKPOINT_23)
    (model,) = call("LTX2LoraLoader", model=dit, lora_name=DUBIT_LORA_23, strength=1.0)
    (gemma,) = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt=PROMPT, disk_cache=False)
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    (empty,) = call("LTX2EmptyAVLatent", width=width // 2, height=height // 2, frames=frames, seconds=0.0, fps=fps,
                    batch_size=1, audio=True)
    clip = SavedVideo(clip_path).get_components()
    guide = {"model": model, "video_vae": video_vae, "control_video": clip.images, "strength": 1.0,
             "attention_strength": 1.0}
    recipe = recipe_for("2.3")
    (guided,) = call("LTX2ICLoRAGuide", latent=empty, **guide)
    (referenced,) = call("LTX2DubItReferenceAudio", latent=guided, audio_vae=audio_vae, reference_audio=clip.audio,
                         start_seconds=0.0, seconds=0.0)
    (first,) = call("LTX2Sampler", model=model, positive=positive, latent=referenced, seed=SEED,
                    **preset_widgets(recipe.distilled, recipe.stg_blocks))
    (up,) = call("LTX2LatentUpscaler", latent=first, video_vae=video_vae, upscale_model=UPSCALER_23)
    (guided,) = call("LTX2ICLoRAGuide", latent=up, **guide)
    (kept,) = call("LTX2DubItReferenceAudio", latent=guided, start_seconds=0.0, seconds=0.0)
    (second,) = call("LTX2Sampler", model=model, positive=positive, latent=kept, seed=SEED,
                     **preset_widgets(recipe.refine, recipe.stg_blocks))
    return to_av_latents(first), to_av_latents(second)


def test_dub_takes_the_clips_shape_and_equals_the_node_graph_bit_for_bit(headless, demo_models, tmp_path,
                                                                         monkeypatch, caplog):
    clip = write_clip(tmp_path / "talk.mp4")  # 200x140, 27 frames at 25 fps, with sound
    expected = node_graph(demo_models, clip, width=192, height=128, frames=25, fps=25.0)
    seen = []
    real = generate_module.run_sampler
    monkeypatch.setattr(generate_module, "run_sampler", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    with caplog.at_level("INFO", logger="ltx2_nodes"):
        assert main(dub_args(demo_models, clip, tmp_path / "dubbed.mp4")) == 0
    assert "--dub talk.mp4: 192x128, 25 frames at 25 fps (the clip: 27 frames" in caplog.text
    info = probe(tmp_path / "dubbed.mp4")
    # sides floored to multiples of 64, 27 frames to 1 + 8k = 25, the clip's frame rate; sound of the clip's length
    assert (info.width, info.height, info.video_frames, float(info.fps)) == (192, 128, 25, 25.0)
    assert info.audio_seconds == pytest.approx(1.0, abs=0.05)
    assert json.loads(info.metadata["ltx2_generate"])["dub"] is True
    assert len(seen) == 2
    for got, want in zip(seen, expected):
        assert torch.equal(got.video, want.video) and torch.equal(got.audio, want.audio)
    assert torch.equal(seen[1].audio, seen[0].audio), "stage 2 keeps the stage-1 audio"


def test_dub_explicit_size_length_and_rate_win_and_a_reference_voice_is_taken(headless, demo_models, tmp_path):
    clip = write_clip(tmp_path / "talk.mp4")
    voice = tmp_path / "voice.wav"
    from ltx2_nodes.media.audio_io import write_audio_file

    write_audio_file(voice, {"waveform": 0.2 * torch.randn(1, 1, 24000), "sample_rate": 16000})
    out = tmp_path / "dubbed.mp4"
    assert main(dub_args(demo_models, clip, out, "--width", "128", "--height", "64", "--frames", "17", "--fps", "24",
                         "--reference-audio", str(voice))) == 0
    info = probe(out)
    assert (info.width, info.height, info.video_frames, float(info.fps)) == (128, 64, 17, 24.0)


@pytest.fixture
def refused(demo_models, tmp_path, monkeypatch, capsys):
    """Runs ``generate`` expecting exit 2 before any model is built (the loaders and the sampler fail the test if
    reached) and nothing written; returns the error text."""
    from ltx2_nodes import paths
    from ltx2_nodes.memory import selection

    def sentinel(*args, **kwargs):
        raise AssertionError("a model was built after a bad --dub input")

    for module, name in ((handles, "load_ltx2"), (handles, "load_gemma"), (handles, "load_upscaler"),
                         (generate_module, "encode_prompts"), (generate_module, "run_sampler")):
        monkeypatch.setattr(module, name, sentinel)
    previous = selection._HEADLESS_ENGINE
    out = tmp_path / "out"
    out.mkdir()

    def run(clip, *extra, ic_lora: str | None = DUBIT_LORA_23) -> str:
        argv = dub_args(demo_models, clip, out / "dubbed.mp4", *extra)
        if ic_lora is None:
            argv.remove("--ic-lora"), argv.remove(DUBIT_LORA_23)
        else:
            argv[argv.index(DUBIT_LORA_23)] = ic_lora
        capsys.readouterr()
        assert main(argv) == 2
        assert list(out.iterdir()) == [], "nothing is written"
        return capsys.readouterr().err

    yield run
    selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
    paths.reset()


def test_dub_refuses_a_missing_unreadable_or_silent_clip_with_the_fix(refused, tmp_path):
    assert "no such file; name an MP4/MOV/WebM video" in refused(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert "cannot read it as a video" in refused(tmp_path / "bad.mp4")
    silent = write_clip(tmp_path / "silent.mp4", sound=False)
    assert "the clip has no audio track" in refused(silent) and "--reference-audio AUDIO" in refused(silent)
    short = tmp_path / "short.wav"
    from ltx2_nodes.media.audio_io import write_audio_file

    write_audio_file(short, {"waveform": torch.zeros(1, 2, 100), "sample_rate": 16000})
    assert "give at least 0.04 s of speech" in refused(silent, "--reference-audio", str(short))
    assert "--reference-audio" in refused(silent, "--reference-audio", str(tmp_path / "none.wav"))


def test_floor_frames_is_the_longest_valid_count_a_clip_holds():
    assert (floor_frames(27), floor_frames(25), floor_frames(1), floor_frames(5000)) == (25, 25, 1, MAX_FRAMES)
    assert floor_frames(40, two_stage=True, upscale=Upscale(temporal=True)) == 33
    assert (reference_frames(49), reference_frames(49, 2), reference_frames(12)) == (49, 25, 9)


def test_dub_refuses_without_its_ic_lora_a_size_its_reference_scale_does_not_divide_or_a_length_past_the_clip(
        refused, tmp_path):
    clip = write_clip(tmp_path / "talk.mp4")
    assert "--dub needs the Dub-It IC-LoRA" in refused(clip, ic_lora=None)
    # an IC-LoRA with reference downscale 2: stage 1 at 96x64 has a 48x32 reference, not whole latent cells
    err = refused(clip, "--width", "192", "--height", "128", ic_lora=IC_LORA_23)
    assert "--dub at 192x128 (stage 1 at 96x64) with an IC-LoRA of reference downscale factor 2" in err
    assert "Multiples of 128 always work" in err
    err = refused(clip, "--frames", "33")
    assert "33 frames asked, the clip has 27; ask for at most 25 (--frames 25)" in err
    assert "the clip has 27" in refused(clip, "--seconds", "2")  # 2 s at the clip's 25 fps: 49 frames


@pytest.mark.parametrize("extra, option", [
    (("--control-video", str(DEMO_INPUTS / "ltx2-demo-control.mp4")), "--control-video"),
    (("--audio", str(DEMO_INPUTS / "ltx2-demo-audio.flac")), "--audio"),
    (("--audio-only",), "--audio-only"),
    (("--single-stage",), "--single-stage"),
    (("--temporal-upscaler", UPSCALER_23), "--temporal-upscaler"),
    (("--extend-from", str(DEMO_INPUTS / "ltx2-demo-video.mp4"), "--seconds", "1"), "--extend-from"),
    (("--keyframes", "2"), "--keyframes"),
    (("--mode", "dev"), "--mode dev"),
    (("--frames", "auto"), "--frames auto"),
])
def test_dub_refuses_options_it_does_not_combine_with_naming_them(refused, tmp_path, extra, option):
    assert option in refused(write_clip(tmp_path / "talk.mp4"), *extra)


def test_reference_audio_without_dub_is_refused(refused, demo_models, capsys):
    argv = ["generate", "--prompt", PROMPT, "--reference-audio", str(DEMO_INPUTS / "ltx2-demo-audio.flac"),
            "--models-dir", str(demo_models.root)]
    assert main(argv) == 2
    assert "--reference-audio is the voice of a Dub-It run: add --dub CLIP" in capsys.readouterr().err


def test_dub_on_a_2_0_model_is_refused_by_the_lora_family_check(headless, demo_models, tmp_path, capsys):
    models = tmp_path / "models"  # the demo folders, and a Dub-It LoRA that says it is made for LTX-2.3
    for folder in ("checkpoints", "text_encoders", "latent_upscale_models"):
        (models / folder).parent.mkdir(exist_ok=True)
        (models / folder).symlink_to(demo_models.root / folder)
    (models / "loras").mkdir()
    write_lora(models / "loras" / DUBIT_LORA_23, 8, DEMO_TRANSFORMER_23, {"model_version": "2.3"})
    argv = dub_args(demo_models, write_clip(tmp_path / "talk.mp4"), tmp_path / "dubbed.mp4")
    argv[argv.index(CHECKPOINT_23)], argv[argv.index(UPSCALER_23)] = CHECKPOINT, UPSCALER
    argv[argv.index(str(demo_models.root))] = str(models)
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert f"LoRA {DUBIT_LORA_23} was made for LTX-2.3" in err and "Pick a LoRA trained for" in err
    assert not (tmp_path / "dubbed.mp4").exists()


def test_precheck_counts_the_reference_video_and_audio_tokens():
    """Dub-It: the clip's reference tokens in both stages (at the LoRA's reference downscale), the reference audio in
    stage 1 and the stage-1 audio as the reference of stage 2; a control video (IC-LoRA pipeline): stage 1 only."""
    dit = TransformerConfig()
    plain = RunRequest(768, 512, 121, 24.0, two_stage=True)
    dub = RunRequest(768, 512, 121, 24.0, two_stage=True, control=(2, 1), control_stages=2, reference_audio=80)
    control = RunRequest(768, 512, 121, 24.0, two_stage=True, control=(2, 1))
    ta = audio_latent_frames(121, 24.0, AudioTiming())
    first, second = math.prod(video_latent_size(121, 256, 384)), math.prod(video_latent_size(121, 512, 768))
    ref1 = math.prod(video_latent_size(reference_frames(121), 128, 192))
    ref2 = math.prod(video_latent_size(reference_frames(121), 256, 384))
    acts = {name: _stage_activations(r, dit, GEMMA3_12B) for name, r in (("plain", plain), ("dub", dub),
                                                                         ("control", control))}
    assert acts["plain"]["dit"] == dit_activation_bytes(dit, first, ta)
    assert acts["dub"]["dit"] == dit_activation_bytes(dit, first + ref1, ta + 80)
    assert acts["dub"]["dit_stage2"] == dit_activation_bytes(dit, second + ref2, 2 * ta)
    assert acts["control"]["dit"] == dit_activation_bytes(dit, first + ref1, ta)
    assert acts["control"]["dit_stage2"] == acts["plain"]["dit_stage2"]
    assert len(dub.encodes()) == 2 and len(control.encodes()) == 1  # the clip is encoded at each guided stage's size


def test_generate_precheck_passes_the_dub_reference_sizes(headless, demo_models, tmp_path, monkeypatch):
    from ltx2_nodes.generate import GenerateRequest, precheck
    from ltx2_nodes.handles import load_lora_file
    from ltx2_nodes.sampling.guides import ControlVideo

    ltx2 = handles.load_ltx2(demo_models.checkpoint_23, device="cpu")
    gemma = handles.load_gemma(demo_models.gemma, device="cpu")
    seen = []
    monkeypatch.setattr(type(headless), "precheck", lambda self, weights, run, **kw: _record(seen, run))
    ic = load_lora_file(demo_models.root / "loras" / IC_LORA_23)
    voice = {"waveform": torch.zeros(1, 2, 32000), "sample_rate": 16000}
    request = GenerateRequest("x", width=256, height=128, frames=25, fps=25.0,
                              control=ControlVideo(torch.zeros(27, 140, 200, 3), stage2=True), reference_audio=voice)
    precheck(ltx2, gemma, request, headless, upscaler=handles.load_upscaler(demo_models.upscaler_23, device="cpu"),
             loras=[(ic, 1.0)])
    (run,) = seen
    assert (run.control, run.control_stages, run.reference_audio) == ((2, 1), 2, 50)


class _Estimate:
    class request:  # the attribute generate reads
        @staticmethod
        def tiles():
            return None

    @staticmethod
    def table():
        return ""


def _record(seen, run):
    seen.append(run)
    return _Estimate()
