"""The upscalers as stage options: ``generate`` with the x1.5 spatial upscaler (stage 1 at 2/3 of the size) and
the temporal x2 upscaler (stage 1 at (F + 1) / 2 frames and half the frame rate), the upscale node's temporal
bookkeeping, and ``generate --mode hq / --temporal-upscaler`` on the command line."""

from __future__ import annotations

import json

import pytest

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import DEMO_UPSCALER_TEMPORAL, DEMO_UPSCALER_X1_5, write_upscaler
from ltx2_nodes.errors import InputError
from ltx2_nodes.generate import GenerateRequest, generate, upscale_of
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2, load_upscaler
from ltx2_nodes.media.mux import probe
from ltx2_nodes.model.shapes import Upscale



@pytest.fixture(scope="module")
def upscaler_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upscalers")
    return {"x1.5": write_upscaler(folder / "demo-spatial-upscaler-x1.5.safetensors", config=DEMO_UPSCALER_X1_5),
            "temporal": write_upscaler(folder / "demo-temporal-upscaler-x2.safetensors",
                                       config=DEMO_UPSCALER_TEMPORAL)}


@pytest.fixture
def loaded(headless, demo_models):
    clear_caches()
    return load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu")


def _recording(monkeypatch) -> list:
    from ltx2_nodes import generate as generate_module

    calls, run_sampler = [], generate_module.run_sampler

    def sampler(dit, positive, latents, settings, *args, **kwargs):
        calls.append((tuple(latents.video.shape[2:]), latents.fps))
        return run_sampler(dit, positive, latents, settings, *args, **kwargs)

    monkeypatch.setattr(generate_module, "run_sampler", sampler)
    return calls


def test_x1_5_upscaler_runs_stage_one_at_two_thirds_of_the_size(loaded, upscaler_files, tmp_path, monkeypatch):
    ltx2, gemma = loaded
    calls = _recording(monkeypatch)
    upscaler = load_upscaler(upscaler_files["x1.5"], device="cpu")
    assert upscale_of(upscaler, None) == Upscale((3, 2))
    path = generate(ltx2, gemma, GenerateRequest("a fox", width=192, height=96, frames=9, seed=1), tmp_path / "a.mp4",
                    upscaler=upscaler)
    assert calls == [((2, 2, 4), 24.0), ((2, 3, 6), 24.0)]  # 128x64 -> x1.5 -> 192x96
    media = probe(path)
    assert (media.width, media.height, media.video_frames) == (192, 96, 9)
    assert json.loads(media.metadata["ltx2_generate"])["upscale"] == "x1.5 spatial"
    with pytest.raises(InputError, match="x1.5 spatial upscaler needs width and height divisible by 96"):
        generate(ltx2, gemma, GenerateRequest("a fox", width=128, height=128, frames=9), tmp_path / "b.mp4",
                 upscaler=upscaler)


def test_temporal_upscaler_samples_half_the_frames_at_half_the_rate(loaded, demo_models, upscaler_files, tmp_path,
                                                                   monkeypatch):
    """x2 spatial then x2 temporal: stage 1 9 frames at 12 fps, 64x64; stage 2 17 frames at 24 fps, 128x128."""
    ltx2, gemma = loaded
    calls = _recording(monkeypatch)
    spatial = load_upscaler(demo_models.upscaler, device="cpu")
    temporal = load_upscaler(upscaler_files["temporal"], device="cpu")
    request = GenerateRequest("a fox", width=128, height=128, frames=17, seed=2)
    path = generate(ltx2, gemma, request, tmp_path / "t.mp4", upscaler=spatial, temporal_upscaler=temporal)
    assert calls == [((2, 2, 2), 12.0), ((3, 4, 4), 24.0)]
    media = probe(path)
    assert (media.width, media.height, media.video_frames, media.fps) == (128, 128, 17, 24.0)
    assert abs(media.audio_seconds - 17 / 24) <= 1024 / 24000 + 1e-6
    with pytest.raises(InputError, match=r"1 \+ 16\*k"):
        generate(ltx2, gemma, GenerateRequest("a fox", width=128, height=128, frames=9), tmp_path / "x.mp4",
                 upscaler=spatial, temporal_upscaler=temporal)
    with pytest.raises(InputError, match="is a x2 temporal latent upscaler, not a spatial one"):
        upscale_of(temporal, None)
    with pytest.raises(InputError, match="is a x2 spatial latent upscaler, not a temporal one"):
        upscale_of(None, spatial)


def test_upscale_node_doubles_the_frame_rate_and_moves_image_frames(loaded, demo_models, upscaler_files,
                                                                    monkeypatch):
    from ltx2_nodes import paths
    from ltx2_nodes.nodes.comfy_types import latent_info
    from ltx2_nodes.nodes.latent import LTX2EmptyAVLatent, LTX2ImageToVideo, LTX2LatentUpscaler
    import torch

    ltx2, _ = loaded
    monkeypatch.setattr(paths, "find_model", lambda folder, name: upscaler_files["temporal"])
    latent = LTX2EmptyAVLatent().create(64, 64, 9, 0.0, 12.0, 1)[0]
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    latent = LTX2ImageToVideo().condition(latent, ltx2.video_vae, image, frame_index=8, crf=0)[0]
    out = LTX2LatentUpscaler().upscale(latent, ltx2.video_vae, "demo-temporal-upscaler-x2.safetensors")[0]
    info = latent_info(out)
    assert (info.fps, info.frames) == (24.0, 17)
    assert [r.condition.frame_index for r in info.conditions] == [16]


def _models_tree(demo_models, tmp_path, upscaler_files):
    """The demo tree with the distilled LoRA under its released name and the temporal upscaler added."""
    root = tmp_path / "models"
    root.mkdir()
    for name in ("checkpoints", "text_encoders"):
        (root / name).symlink_to(demo_models.root / name, target_is_directory=True)
    (root / "loras").mkdir(parents=True)
    (root / "loras" / "ltx-2-19b-distilled-lora-384.safetensors").symlink_to(demo_models.lora)
    (root / "latent_upscale_models").mkdir()
    (root / "latent_upscale_models" / demo_models.upscaler.name).symlink_to(demo_models.upscaler)
    (root / "latent_upscale_models" / upscaler_files["temporal"].name).symlink_to(upscaler_files["temporal"])
    return root


def _cli(root, tmp_path, *extra):
    return main(["generate", "--prompt", "a fox", "--models-dir", str(root), "--width", "128", "--height", "128",
                 "--checkpoint", "ltx2-demo-av.safetensors", "--upscaler", "ltx2-demo-spatial-upscaler-x2.safetensors",
                 "--device", "cpu", "--out", str(tmp_path / "clip.mp4"), *extra])


def test_cli_hq_and_temporal_upscaler(demo_models, upscaler_files, tmp_path, isolated, capsys, monkeypatch):
    """``--mode hq`` puts the released distilled LoRA in both stages at 0.25 / 0.5; refusals name the fix."""
    from ltx2_nodes import stages

    used, original = [], stages.applied_loras

    def recording(model, loras, *args, **kwargs):
        used.append([strength for _, strength in loras])
        return original(model, loras, *args, **kwargs)

    monkeypatch.setattr(stages, "applied_loras", recording)
    root = _models_tree(demo_models, tmp_path, upscaler_files)
    assert _cli(root, tmp_path, "--mode", "hq", "--steps", "2", "--frames", "17", "--temporal-upscaler",
                upscaler_files["temporal"].name) == 0
    assert used == [[0.25], [0.5]]
    media = probe(tmp_path / "clip.mp4")
    request = json.loads(media.metadata["ltx2_generate"])
    assert (request["mode"], request["sampler"], request["upscale"]) == ("hq", "res_2s", "x2 spatial + x2 temporal")
    assert media.video_frames == 17
    assert _cli(root, tmp_path, "--mode", "hq", "--single-stage", "--frames", "9") == 2
    assert "--mode hq belongs to a two-stage run" in capsys.readouterr().err
    assert _cli(root, tmp_path, "--frames", "9", "--temporal-upscaler", upscaler_files["temporal"].name) == 2
    assert "1 + 16*k" in capsys.readouterr().err
    (root / "loras" / "ltx-2-19b-distilled-lora-384.safetensors").unlink()
    assert _cli(root, tmp_path, "--mode", "hq", "--frames", "9") == 2
    assert "--mode hq puts the distilled LoRA in both stages" in capsys.readouterr().err
