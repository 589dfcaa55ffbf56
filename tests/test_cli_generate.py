"""``python -m ltx2_nodes generate`` on the demo models: one line from prompt (+ image / audio) to MP4."""

from __future__ import annotations

import json


from demo_support import DEMO_INPUTS, demo_models  # noqa: F401 (fixture)
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import CHECKPOINT, CHECKPOINT_23, UPSCALER, UPSCALER_23
from ltx2_nodes.media.mux import probe


def _generate(demo_models, tmp_path, *extra, checkpoint=CHECKPOINT, upscaler=UPSCALER):
    """The demo tree holds the LTX-2 and LTX-2.3 demo sets: the files are named."""
    out = tmp_path / "clip.mp4"
    code = main(["generate", "--prompt", "a fox trots through snow, wind hisses", "--models-dir",
                 str(demo_models.root), "--width", "256", "--height", "192", "--seconds", "1", "--checkpoint",
                 checkpoint, "--upscaler", upscaler, "--device", "cpu", "--out", str(out), *extra])
    assert code == 0
    return probe(out)


def test_text_to_video_with_sound(demo_models, tmp_path, isolated, capsys):
    info = _generate(demo_models, tmp_path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.video_frames) == (256, 192, 25)  # 1 s at 24 fps -> 8k+1 = 25
    assert info.audio_sample_rate == 24000 and abs(info.audio_seconds - 25 / 24) <= 1024 / 24000 + 1e-6
    request = json.loads(info.metadata["ltx2_generate"])
    assert request["prompt"].startswith("a fox") and request["mode"] == "distilled" and request["two_stage"]
    assert "ltx2-demo-av.safetensors (LTX-2 distilled, two-stage)" in capsys.readouterr().out


def test_image_and_audio_conditioning_single_stage(demo_models, tmp_path, isolated):
    info = _generate(demo_models, tmp_path, "--image", str(DEMO_INPUTS / "ltx2-demo-image.png"),
                     "--audio", str(DEMO_INPUTS / "ltx2-demo-audio.flac"), "--single-stage", "--mode", "dev",
                     "--steps", "2")
    request = json.loads(info.metadata["ltx2_generate"])
    assert request["images"] == 1 and request["audio_to_video"] and request["mode"] == "dev"
    assert not request["two_stage"] and info.video_frames == 25
    assert info.audio_sample_rate == 16000  # the input sound itself, not the vocoder's 24 kHz re-synthesis


def test_ltx23_checkpoint_brings_its_presets_and_48khz_audio(demo_models, tmp_path, isolated, capsys, caplog):
    """No family given: the request takes the loaded checkpoint's (LTX-2.3: its recipe), the BWE vocoder
    writes 48 kHz as long as the video."""
    import logging

    with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
        info = _generate(demo_models, tmp_path, "--single-stage", checkpoint=CHECKPOINT_23, upscaler=UPSCALER_23)
    assert "LTX-2.3 distilled, single stage" in capsys.readouterr().out
    assert "LTX-2.3 presets" in caplog.text
    assert info.audio_sample_rate == 48000 and abs(info.audio_seconds - 25 / 24) <= 1024 / 48000 + 1e-6


def test_missing_models_are_named(tmp_path, isolated, capsys):
    (tmp_path / "checkpoints").mkdir()
    code = main(["generate", "--prompt", "x", "--models-dir", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no checkpoints file chosen and none of the released names" in err and "--checkpoint NAME" in err


def test_ltx25_transformer_file_brings_its_pack_auto_length_and_keyframes(demo_models, tmp_path, isolated, capsys):
    """A 2.5 transformer in diffusion_models: its text encoder, VAEs and duration head come from the folders;
    --frames auto takes the duration head's length (the demo head: about 1.5 s), --keyframes 2 writes two
    generated keyframes beside the video; audio at 48 kHz as long as the video."""
    from ltx2_nodes.demo.models import DEMO_SECONDS_25, TRANSFORMER_25, UPSCALER_25
    from ltx2_nodes.model.shapes import clamped_frames_for_seconds

    out = tmp_path / "clip.mp4"
    code = main(["generate", "--prompt", "a cat sits on the mat", "--models-dir", str(demo_models.root),
                 "--width", "128", "--height", "128", "--frames", "auto", "--keyframes", "2", "--checkpoint",
                 TRANSFORMER_25, "--upscaler", UPSCALER_25, "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "LTX-2.5 distilled, two-stage" in printed and "auto frames" in printed
    info = probe(out)
    frames = clamped_frames_for_seconds(DEMO_SECONDS_25, 24.0)
    assert (info.width, info.height, info.video_frames, info.audio_sample_rate) == (128, 128, frames, 48000)
    assert abs(info.audio_seconds - frames / 24) <= 1024 / 48000 + 1e-6
    request = json.loads(info.metadata["ltx2_generate"])
    assert request["frames"] == frames and request["keyframes"] == 2 and request["sampler"] == "euler_ancestral"
    keyframes = probe(tmp_path / "clip_keyframes.mp4")
    assert keyframes.video_frames == 2 and (keyframes.width, keyframes.height) == (64, 64)
    assert str(tmp_path / "clip_keyframes.mp4") in printed


def test_auto_length_needs_an_ltx25_model(demo_models, tmp_path, isolated, capsys):
    code = main(["generate", "--prompt", "x", "--models-dir", str(demo_models.root), "--frames", "auto",
                 "--checkpoint", CHECKPOINT, "--single-stage", "--device", "cpu", "--out", str(tmp_path / "a.mp4")])
    assert code == 2 and "--frames auto needs an LTX-2.5 model" in capsys.readouterr().err
