"""Bad input that used to run to the end or grow without bound (issue 20, classes 2 and 3), on the demo models.

NaN and Inf: a model file whose weights hold NaN/Inf (written here by overwriting one tensor's bytes, as a damaged
download would) is refused at the stage it breaks -- text encoder, connectors, sampler, upscaler, video decoder,
audio decoder, vocoder -- naming the stage and the file, exit code 1 on the command line, and no file written
(nor a ``.partial`` one). Memory: every sampler, upscale and decode stage runs the pre-check before its model is
built, also on the workflow path (``run``), and its advice is true at the extremes.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import types
from pathlib import Path

import pytest
import torch

from demo_support import DEMO_WORKFLOWS, demo_models, headless  # noqa: F401 (fixtures)
from ltx2_nodes import paths, stages
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import CHECKPOINT, GEMMA, UPSCALER
from ltx2_nodes.errors import NonFiniteError, OutOfMemoryError
from ltx2_nodes.finite import all_finite, check_finite
from ltx2_nodes.handles import clear_caches, load_ltx2, load_upscaler
from ltx2_nodes.latents import GenerationSettings, empty_latents
from ltx2_nodes.media.mux import MP4Writer
from ltx2_nodes.memory import selection
from ltx2_nodes.memory.precheck import RunRequest, StageWeights, estimate_run, precheck
from ltx2_nodes.nodes.comfy_types import to_av_latents, to_conditioning
from ltx2_nodes.nodes.decode import LTX2VideoDecodeTiled
from ltx2_nodes.nodes.latent import LTX2LatentUpscaler
from ltx2_nodes.nodes.sampler import LTX2Sampler

GiB = 2 ** 30

# ------------------------------------------------------------------------------------------------ damaged files


def _poison(source: Path, target: Path, prefix: str, value: float) -> str:
    """Copy ``source`` to ``target`` with the first matrix/kernel whose key starts with ``prefix`` overwritten by
    ``value`` in its stored dtype (the header stays valid: a damaged download). Returns the key."""
    shutil.copyfile(source, target)
    with open(target, "r+b") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
        key = next(k for k, v in header.items() if k.startswith(prefix) and len(v.get("shape", ())) >= 2)
        entry = header[key]
        dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[entry["dtype"]]
        start, end = entry["data_offsets"]
        values = torch.full(((end - start) // dtype.itemsize,), value, dtype=dtype)
        f.seek(8 + length + start)
        f.write(values.view(torch.uint8).numpy().tobytes())
    return key


CASES = {  # name: (file, key prefix, value, the stage named in the message)
    "dit-nan": ("checkpoint", "model.diffusion_model.transformer_blocks.0.attn1.to_v", float("nan"),
                "sampler (DiT)"),
    "dit-inf": ("checkpoint", "model.diffusion_model.transformer_blocks.3.ff.", float("inf"), "sampler (DiT)"),
    "connector-inf": ("checkpoint", "model.diffusion_model.video_embeddings_connector.transformer_1d_blocks.0.attn1",
                      float("inf"), "text connectors"),
    "video-decoder-nan": ("checkpoint", "vae.decoder.conv_in", float("nan"), "video VAE decoder"),
    "audio-decoder-inf": ("checkpoint", "audio_vae.decoder.conv_in", float("inf"), "audio VAE decoder"),
    "vocoder-nan": ("checkpoint", "vocoder.conv_pre", float("nan"), "vocoder"),
    "gemma-nan": ("gemma", "model.layers.0.mlp.down_proj", float("nan"), "text encoder (Gemma)"),
    "upscaler-nan": ("upscaler", "initial_conv", float("nan"), "latent upscaler"),
}


@pytest.fixture(scope="module")
def damaged(demo_models, tmp_path_factory):
    """A models tree with one damaged copy per case next to the good demo files: ``{case: file or folder name}``."""
    root = tmp_path_factory.mktemp("damaged_models")
    for folder in ("checkpoints", "latent_upscale_models", "text_encoders", "loras"):
        shutil.copytree(demo_models.root / folder, root / folder)
    names = {}
    for case, (kind, prefix, value, _) in CASES.items():
        if kind == "gemma":
            folder = root / "text_encoders" / f"{GEMMA}-{case}"
            shutil.copytree(demo_models.gemma, folder)
            shard = folder / json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"][
                prefix + ".weight"]
            _poison(shard, shard.with_suffix(".tmp"), prefix, value)
            shard.with_suffix(".tmp").replace(shard)
            names[case] = folder.name
        else:
            source, sub = ((demo_models.checkpoint, "checkpoints") if kind == "checkpoint" else
                           (demo_models.upscaler, "latent_upscale_models"))
            target = root / sub / source.name.replace(".safetensors", f"-{case}.safetensors")
            _poison(source, target, prefix, value)
            names[case] = target.name
    return types.SimpleNamespace(root=root, names=names)


@pytest.fixture
def isolated():
    paths.reset()
    clear_caches()
    previous = selection._HEADLESS_ENGINE
    yield
    selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
    clear_caches()
    paths.reset()


def _written(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_weights_are_refused_by_generate_naming_the_stage_and_the_file(case, damaged, tmp_path, isolated,
                                                                              capsys):
    kind, _, _, stage = CASES[case]
    files = {"checkpoint": CHECKPOINT, "gemma": GEMMA, "upscaler": UPSCALER}
    files[kind] = damaged.names[case]
    size = ["--width", "128", "--height", "128"] if kind == "upscaler" else ["--width", "64", "--height", "64",
                                                                              "--single-stage"]
    out = tmp_path / "out"
    code = main(["generate", "--prompt", "a fox", "--models-dir", str(damaged.root), "--checkpoint",
                 files["checkpoint"], "--gemma", files["gemma"], "--upscaler", files["upscaler"], "--frames", "9",
                 "--device", "cpu", "--out", str(out / "clip.mp4"), *size])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"error: the {stage} stage produced NaN/Inf values" in err
    assert damaged.names[case] in err and "download it again" in err and "bfloat16 or float32" in err
    assert _written(out) == []  # neither the MP4 nor a .partial file


def test_a_damaged_dit_fails_the_workflow_at_its_sampler_and_writes_nothing(damaged, tmp_path, isolated, capsys):
    workflow = DEMO_WORKFLOWS / "t2av_distilled_two_stage.api.json"
    sets = [f"--set=1.ckpt_name={damaged.names['dit-nan']}", "--set=5.width=64", "--set=5.height=64",
            "--set=5.frames=9"]
    code = main(["run", str(workflow), "--models-dir", str(damaged.root), "--out", str(tmp_path / "out"), *sets])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"error: node 6 \(LTX2Sampler\): the sampler \(DiT\) stage produced NaN/Inf values", err)
    assert damaged.names["dit-nan"] in err
    assert _written(tmp_path / "out") == []


def test_a_damaged_vae_fails_the_decode_node_and_nan_never_reaches_the_writer(damaged, headless, isolated):
    ltx2 = load_ltx2(damaged.root / "checkpoints" / damaged.names["video-decoder-nan"])
    latent = {"samples": torch.randn(1, 8, 2, 2, 2)}
    with pytest.raises(NonFiniteError, match=r"the video VAE decoder stage produced NaN/Inf values .* with "
                                             r"ltx2-demo-av-video-decoder-nan\.safetensors"):
        LTX2VideoDecodeTiled().decode(latent, ltx2.video_vae)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_input_latent_is_blamed_on_the_step_before_not_on_the_model(value, headless, demo_models):
    ltx2 = load_ltx2(demo_models.checkpoint)
    latents = empty_latents(1, 9, 64, 64, 24.0, video_channels=8)
    latents.video[0, 0, 0, 0, 0] = value
    text = stages.connect_text(ltx2.text_connector, _features(demo_models))
    settings = GenerationSettings(torch.tensor([1.0, 0.0]))
    with pytest.raises(NonFiniteError, match=r"the sampler \(DiT\) stage \(ltx2-demo-av\.safetensors\) was given "
                                             r"NaN/Inf values \(\d+ NaN and \d+ Inf of \d+ values\): an earlier step"):
        stages.run_sampler(ltx2.dit, stages.split_text(text, 0), latents, settings)


def _features(demo_models):
    from ltx2_nodes.handles import load_gemma

    return stages.encode_prompts(load_gemma(demo_models.gemma), ["a fox"])


@pytest.mark.parametrize("what", ["frames", "audio"])
def test_the_mp4_writer_refuses_nan_and_leaves_no_file(what, tmp_path):
    frames = torch.rand(2, 32, 32, 3)
    audio = torch.zeros(2, 2000)
    (frames[0, 0, 0] if what == "frames" else audio[0])[0] = float("nan")
    path = tmp_path / "clip.mp4"
    with pytest.raises(NonFiniteError, match="hold NaN/Inf values.*No file was written"):
        with MP4Writer(path, 24.0, audio_sample_rate=24000) as writer:
            writer.add_frames(frames)
            writer.set_audio(audio)
    assert _written(tmp_path) == []


def test_check_finite_passes_finite_values_and_counts_the_bad_ones():
    good = torch.randn(3, 4)
    check_finite([good, None, torch.arange(3)], stage="test", model="m.safetensors")  # ints and None are skipped
    assert all_finite() and all_finite(good) and not all_finite(good, torch.tensor([float("inf")]))
    bad = good.clone()
    bad[0, 0], bad[1, 1] = float("nan"), float("-inf")
    with pytest.raises(NonFiniteError, match=r"the test stage produced NaN/Inf values \(1 NaN and 1 Inf of 12 "
                                             r"values\) with m\.safetensors; nothing was written"):
        check_finite([bad], stage="test", model="m.safetensors", inputs=[good])


# ------------------------------------------------------------------------------------------------ memory


RELEASED_LIKE = {  # the released 19B's stage sizes, roughly (bf16): enough for the advice search
    "dit": StageWeights("dit", 2 * GiB, (int(0.72 * GiB),) * 48),
    "connectors": StageWeights("connectors", 3 * GiB),
    "video_vae": StageWeights("video_vae", GiB),
    "audio_vae": StageWeights("audio_vae", GiB // 5),
}


def _suggestions(message: str) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m)) for m in re.findall(r"(\d+)x(\d+) with (\d+) frames", message.split("What would")[-1])]


@pytest.mark.parametrize("size", [(100000, 100000, 121), (8192, 8192, 1025), (100000, 64, 1025), (64, 100000, 1025),
                                  (4096, 4096, 1025)])
def test_every_size_the_advice_names_fits_and_one_more_step_would_not(size):
    budgets = dict(vram_budget=24 * GiB, ram_budget=32 * GiB)
    with pytest.raises(OutOfMemoryError) as info:
        precheck(RELEASED_LIKE, RunRequest(*size), **budgets)
    message = str(info.value)
    found = _suggestions(message)
    assert found and "Nothing smaller" not in message
    for width, height, frames in found:
        assert estimate_run(RELEASED_LIKE, RunRequest(width, height, frames), **budgets).fits
        if (width, height) == size[:2]:  # fewer frames: the largest count that fits
            assert not estimate_run(RELEASED_LIKE, RunRequest(width, height, frames + 8), **budgets).fits
    assert estimate_run(RELEASED_LIKE, RunRequest(64, 64, 121), **budgets).fits


def test_nothing_smaller_is_said_only_when_the_smallest_request_does_not_fit_either():
    budgets = dict(vram_budget=GiB, ram_budget=32 * GiB)  # less than the DiT's non-block weights
    with pytest.raises(OutOfMemoryError, match="Nothing smaller in resolution, frames or weight size fits"):
        precheck(RELEASED_LIKE, RunRequest(100000, 100000, 121), **budgets)
    assert not estimate_run(RELEASED_LIKE, RunRequest(32, 32, 9), **budgets).fits


def _virtual_engine(budget: str):
    return selection.configure_engine(device="cpu", virtual=True, vram_budget=budget)


def test_run_at_the_widget_maxima_is_refused_before_sampling_with_true_advice(demo_models, tmp_path, isolated,
                                                                           capsys, monkeypatch):
    """The plain CPU engine (the DiT's activations live in RAM), 5 GiB of RAM to give after the reserve."""
    from ltx2_nodes.memory import engine as engine_module

    monkeypatch.setattr(engine_module, "host_ram_available", lambda: engine_module.DEFAULT_RAM_RESERVE + 5 * GiB)
    engine = selection.configure_engine(device="cpu")
    workflow = DEMO_WORKFLOWS / "t2av_distilled_two_stage.api.json"
    sets = ["--set=5.width=4096", "--set=5.height=4096", "--set=5.frames=1025"]  # the Empty Latent's maxima
    code = main(["run", str(workflow), "--models-dir", str(demo_models.root), "--out", str(tmp_path / "out"), *sets])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: node 6 (LTX2Sampler): sampling the latent of 4096x4096x1025 would not fit" in err
    assert "What would fit: " in err
    ltx2 = load_ltx2(demo_models.checkpoint)
    assert "transformer" not in ltx2._lazy._built  # refused before the DiT was built, let alone sampled
    assert _written(tmp_path / "out") == []
    suggestions = _suggestions(err)
    assert suggestions
    for width, height, frames in suggestions:
        request = RunRequest(width, height, frames, prompts=1, dtype=ltx2.dtype)
        engine.precheck({"dit": ltx2.stage_weights["dit"]}, request, dit_config=ltx2.dit.config)


def test_the_sampler_node_refuses_before_building_the_dit_and_its_advice_runs(demo_models, isolated):
    _virtual_engine("12MiB")
    ltx2 = load_ltx2(demo_models.checkpoint)
    text = stages.connect_text(ltx2.text_connector, _features(demo_models))
    conditioning = to_conditioning(stages.split_text(text, 0))
    widgets = dict(seed=1, steps=1, schedule="ltx2", sigmas="", sampler="euler", video_cfg=1.0, audio_cfg=1.0,
                   modality_scale=1.0, stg_scale=0.0, stg_blocks="29", rescale=0.0, start_sigma=1.0)
    with pytest.raises(OutOfMemoryError, match=r"sampling the latent of 2048x2048x121 would not fit: .* What would "
                                               r"fit: ") as info:
        LTX2Sampler().sample(ltx2.dit, conditioning, _latent(2048, 2048, 121), **widgets)
    assert "transformer" not in ltx2._lazy._built
    width, height, frames = min(_suggestions(str(info.value)), key=lambda s: s[0] * s[1] * s[2])
    out = to_av_latents(LTX2Sampler().sample(ltx2.dit, conditioning, _latent(width, height, frames), **widgets)[0])
    assert out.video.shape[-2:] == (height // 32, width // 32) and torch.isfinite(out.video).all()


def _latent(width: int, height: int, frames: int) -> dict:
    from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent

    return LTX2EmptyAVLatent().create(width, height, frames, 0.0, 24.0, 1)[0]


def test_the_upscaler_and_decode_nodes_refuse_before_building_their_models(demo_models, isolated):
    _virtual_engine("64MiB")
    paths.configure(models_dir=demo_models.root)
    ltx2 = load_ltx2(demo_models.checkpoint)
    latent = {"samples": torch.zeros(1, 8, 129, 64, 64)}  # 2048x2048x1025
    with pytest.raises(OutOfMemoryError, match=r"decoding the video of 2048x2048x1025 would not fit: .* What would "
                                               r"fit: "):
        LTX2VideoDecodeTiled().decode(latent, ltx2.video_vae)
    assert "video_decoder" not in ltx2._lazy._built
    with pytest.raises(OutOfMemoryError, match=r"upscaling the latent of 2048x2048x1025 would not fit"):
        LTX2LatentUpscaler().upscale(latent, ltx2.video_vae, UPSCALER)
    assert "upsampler" not in load_upscaler(demo_models.upscaler)._lazy._built


def test_run_on_a_separate_device_places_models_first_built_under_inference_mode(demo_models, tmp_path, isolated,
                                                                                capsys):
    """``run`` executes under ``inference_mode`` and handles build their modules on first use: built there they
    held inference tensors, which placement on a separate device (virtual here, CUDA for real) could not
    re-point ("Inference tensors do not track version counter" at the first stage)."""
    _virtual_engine("1GiB")
    workflow = DEMO_WORKFLOWS / "t2av_distilled_two_stage.api.json"
    sets = ["--set=5.width=64", "--set=5.height=64", "--set=5.frames=9"]
    code = main(["run", str(workflow), "--models-dir", str(demo_models.root), "--out", str(tmp_path / "out"), *sets])
    assert code == 0, capsys.readouterr().err
    assert [p.suffix for p in _written(tmp_path / "out")] == [".mp4"]


def _audio_need(ltx2, dit, seconds: float) -> int:
    """The least VRAM the pre-check says the audio-only sampler of ``seconds`` needs (one pass)."""
    from ltx2_nodes.model.shapes import frames_for_seconds

    request = RunRequest(0, 0, frames_for_seconds(seconds, 24.0), 24.0, prompts=1, dtype=ltx2.dtype, audio_only=True)
    [stage] = estimate_run({"dit": dit.stage_weights}, request, vram_budget=1 << 50, ram_budget=1 << 50,
                           dit_config=dit.config).stages
    return stage.min_vram


def test_the_audio_only_sampler_refuses_a_too_long_latent_before_building_the_dit_and_its_advice_runs(demo_models,
                                                                                                     isolated):
    """Text-to-audio (LTX-2 Audio-Only Model + Empty Audio Latent): the audio-only DiT's weights and audio tokens are
    checked before it is built; the refusal names the seconds and a shorter length that then samples."""
    from ltx2_nodes.nodes.latent import MAX_SECONDS
    from ltx2_nodes.nodes.soundtrack import LTX2AudioOnlyModel, LTX2EmptyAudioLatent

    ltx2 = load_ltx2(demo_models.checkpoint)
    (dit,) = LTX2AudioOnlyModel().audio_only(ltx2.dit)
    assert dit.stage_weights.total < ltx2.stage_weights["dit"].total  # the audio stream's weights alone
    text = stages.connect_text(ltx2.text_connector, _features(demo_models))
    conditioning = to_conditioning(stages.split_text(text, 0))
    selection.configure_engine(device="cpu", virtual=True,
                               vram_budget=(_audio_need(ltx2, dit, 2.0) + _audio_need(ltx2, dit, MAX_SECONDS)) // 2)
    widgets = dict(seed=1, steps=1, schedule="ltx2", sigmas="", sampler="euler", video_cfg=1.0, audio_cfg=1.0,
                   modality_scale=1.0, stg_scale=0.0, stg_blocks="29", rescale=0.0, start_sigma=1.0)
    (latent,) = LTX2EmptyAudioLatent().create(MAX_SECONDS, 24.0, 1)
    with pytest.raises(OutOfMemoryError, match=r"sampling the audio latent of \d+\.\d\d s of audio would not fit: "
                                               r"the dit stage .* What would fit: ") as info:
        LTX2Sampler().sample(dit, conditioning, latent, **widgets)
    assert "audio_transformer" not in ltx2._lazy._built and "transformer" not in ltx2._lazy._built
    seconds = [float(s) for s in re.findall(r"(\d+\.\d\d) s of audio \(", str(info.value).split("What would")[-1])]
    assert len(seconds) == 1 and 2.0 <= seconds[0] < MAX_SECONDS
    (shorter,) = LTX2EmptyAudioLatent().create(seconds[0], 24.0, 1)
    out = to_av_latents(LTX2Sampler().sample(dit, conditioning, shorter, **widgets)[0])
    assert out.video is None and torch.isfinite(out.audio).all()


def test_a_video_encode_that_cannot_fit_is_refused_before_the_encoder_is_built_and_its_advice_runs(demo_models,
                                                                                                  isolated):
    _virtual_engine("100MiB")  # the smallest encode tile (192 px, 32 frames) needs more; a short small clip does not
    ltx2 = load_ltx2(demo_models.checkpoint)
    clip = torch.zeros(1, 1, 1, 3).expand(1025, 2048, 2048, 3)  # frames of a loaded video (a view: no memory)
    with pytest.raises(OutOfMemoryError, match=r"encoding the video of 2048x2048x1025 would not fit: the "
                                               r"video_encoder stage .* What would fit: ") as info:
        stages.encode_video(ltx2.video_vae, clip)
    assert "video_encoder" not in ltx2._lazy._built
    width, height, frames = min(_suggestions(str(info.value)), key=lambda s: s[0] * s[1] * s[2])
    latent = stages.encode_video(ltx2.video_vae, torch.rand(frames, height, width, 3))
    assert latent.shape[2:] == ((frames - 1) // 8 + 1, height // 32, width // 32) and torch.isfinite(latent).all()
