"""Video to audio on the demo models (LTX-2 and LTX-2.3): the given video latent stays bit-identical through the
whole run while the sound is generated, the MP4 holds the ORIGINAL frames, a too-short video is refused with the
length that fits, and the shipped workflow runs headless."""

from __future__ import annotations

import sys

import pytest
import torch

from demo_support import DEMO_INPUTS, DEMO_WORKFLOWS, REPO, demo_models, headless  # noqa: F401
from ltx2_nodes.cli import main
from ltx2_nodes.cli.core_nodes import LoadImage
from ltx2_nodes.errors import InputError
from ltx2_nodes.media.mux import probe
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import to_av_latents
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.recipe import recipe_for

sys.path.insert(0, str(REPO / "scripts"))
import workflow_graph as graph


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def _front(checkpoint, demo_models):
    dit, video_vae, audio_vae, connector = call("LTX2CheckpointLoader", ckpt_name=checkpoint.name)
    (gemma,) = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt="footsteps on gravel and birdsong")
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    return dit, video_vae, audio_vae, positive


def _empty(frames: int, width: int = 64, height: int = 64):
    return call("LTX2EmptyAVLatent", width=width, height=height, frames=frames, seconds=0.0, fps=24.0,
                batch_size=1)[0]


@pytest.mark.parametrize("family", ["2.0", "2.3"])
def test_video_to_audio_keeps_the_video_bit_identical_and_muxes_the_original_frames(family, headless, demo_models):
    checkpoint = demo_models.checkpoint if family == "2.0" else demo_models.checkpoint_23
    dit, video_vae, audio_vae, positive = _front(checkpoint, demo_models)
    images, _mask = LoadImage().load_image(graph.DEMO["clip"])
    assert images.shape[0] == graph.DEMO_SIZE["frames"]  # every frame of the animated demo clip
    latent, kept_frames = call("LTX2VideoToAudioLatent", latent=_empty(9), video_vae=video_vae, images=images,
                               start_frame=4)
    given = to_av_latents(latent)
    assert torch.equal(kept_frames, images[4:13])  # the original frames, untouched, for the Save node
    assert given.video.any() and not given.video_mask.any() and not given.audio.any()
    recipe = recipe_for(family)
    (out,) = call("LTX2Sampler", model=dit, positive=positive, latent=latent, seed=3,
                  **preset_widgets(recipe.distilled, recipe.stg_blocks))
    result = to_av_latents(out)
    assert torch.equal(result.video, given.video)  # frozen through every step, bit for bit
    assert result.audio.abs().sum() > 0 and torch.isfinite(result.audio).all()
    (sound,) = call("LTX2AudioDecode", latent=out, audio_vae=audio_vae)
    video = call("LTX2AVCombine", images=kept_frames, fps=24.0, filename_prefix="v2a/clip", audio=sound)
    media = probe(video["result"][0].get_stream_source())
    assert (media.video_frames, media.width, media.height) == (9, images.shape[2], images.shape[1])
    assert media.audio_codec == "aac" and abs(media.audio_seconds - 9 / 24.0) < 1024 / media.audio_sample_rate + 1e-6


def test_a_video_shorter_than_the_latent_is_refused_with_the_frames_that_fit(headless, demo_models):
    _dit, video_vae, _audio_vae, _positive = _front(demo_models.checkpoint, demo_models)
    images = torch.rand(20, 64, 64, 3)
    with pytest.raises(InputError, match=r"has 20 from frame 0\. Set the Empty AV Latent's frames to 17"):
        call("LTX2VideoToAudioLatent", latent=_empty(25), video_vae=video_vae, images=images)
    with pytest.raises(InputError, match="start_frame must be below 20"):
        call("LTX2VideoToAudioLatent", latent=_empty(9), video_vae=video_vae, images=images, start_frame=20)
    no_audio = call("LTX2EmptyAVLatent", width=64, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1,
                    audio=False)[0]
    with pytest.raises(InputError, match="needs an audio\\+video latent"):
        call("LTX2VideoToAudioLatent", latent=no_audio, video_vae=video_vae, images=images)


@pytest.mark.parametrize("name", ["v2a_distilled_one_stage", "ltx23_v2a_distilled_one_stage"])
def test_shipped_video_to_audio_workflow_runs_headless_and_keeps_the_clip(name, demo_models, tmp_path, capsys):
    small = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=17")]
    assert main(["run", str(DEMO_WORKFLOWS / f"{name}.api.json"), "--models-dir", str(demo_models.root),
                 "--input-dir", str(DEMO_INPUTS), "--out", str(tmp_path), *small]) == 0
    files = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".mp4")]
    media = probe(files[0])
    # the original frames at their own size (not the 64x64 the model saw), 17 of them, with the new sound
    assert (media.video_frames, media.width, media.height) == (17, graph.DEMO_SIZE["width"], graph.DEMO_SIZE["height"])
    assert media.audio_sample_rate == (48000 if name.startswith("ltx23_") else 24000)


def test_generate_video_to_audio_keeps_the_original_frames_and_refuses_a_longer_request(demo_models, tmp_path,
                                                                                           capsys):
    from ltx2_nodes.media.mux import MP4Writer
    from ltx2_nodes.memory import selection

    frames = torch.rand(20, 96, 70, 3)
    clip = tmp_path / "clip.mp4"
    with MP4Writer(clip, 24.0) as writer:
        writer.add_frames(frames)
    previous = selection._HEADLESS_ENGINE
    base = ["generate", "--prompt", "a door creaks", "--models-dir", str(demo_models.root), "--checkpoint",
            demo_models.checkpoint.name, "--device", "cpu", "--video-to-audio", str(clip)]
    try:
        assert main([*base, "--out", str(tmp_path / "out.mp4")]) == 0
        assert "video to audio, 64x96), 17 frames at 24 fps" in capsys.readouterr().out  # seen at 32-multiples
        media = probe(tmp_path / "out.mp4")
        assert (media.video_frames, media.width, media.height, media.audio_sample_rate) == (17, 70, 96, 24000)
        assert main([*base, "--frames", "25", "--out", str(tmp_path / "x.mp4")]) == 2
        assert "ask for at most 17 (--frames 17)" in capsys.readouterr().err
        assert main([*base, "--audio", "x.wav", "--out", str(tmp_path / "x.mp4")]) == 2
    finally:
        selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)


def test_video_to_audio_is_prechecked_with_the_encode_it_runs_and_without_a_decode_it_never_runs(headless,
                                                                                                 demo_models,
                                                                                                 monkeypatch):
    """The given frames are kept (never decoded): the run's pre-check prices the clip's encode, the DiT and the audio
    decode, and no video decode (which would refuse a long clip on a small card for nothing)."""
    from ltx2_nodes import generate as generate_module
    from ltx2_nodes.generate import GenerateRequest, generate_sound
    from ltx2_nodes.handles import load_gemma, load_ltx2

    seen = []

    def stop_after_precheck(ltx2, gemma, request, engine=None, *args, **kwargs):
        seen.append({s.name for s in real_precheck(ltx2, gemma, request, engine, *args, **kwargs).stages})
        raise InputError("stop here")

    real_precheck = generate_module.precheck
    monkeypatch.setattr(generate_module, "precheck", stop_after_precheck)
    ltx2, gemma = load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu")
    request = GenerateRequest("rain", width=64, height=64, frames=9, fps=24.0)
    with pytest.raises(InputError, match="stop here"):
        generate_sound(ltx2, gemma, request, "unused.mp4", video=torch.rand(9, 64, 64, 3), engine=headless)
    (stages,) = seen
    assert {"video_encoder", "dit", "audio_vae"} <= stages and "video_vae" not in stages
