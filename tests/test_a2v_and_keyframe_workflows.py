"""Audio to video keeps the ORIGINAL input sound in the MP4 (as the reference a2vid pipeline returns the input
waveform, not the audio VAE's re-synthesis), and the first -> last frame workflow: the last frame addressed as
frame_index -1, frame 0 kept bit-identical, the shipped graphs running headless (LTX-2 and LTX-2.3)."""

from __future__ import annotations

import sys

import pytest
import torch

from demo_support import DEMO_INPUTS, DEMO_WORKFLOWS, REPO, demo_models, headless  # noqa: F401
from ltx2_nodes.cli import main
from ltx2_nodes.cli.core_nodes import LoadImage
from ltx2_nodes.errors import InputError
from ltx2_nodes.media.audio_clip import audio_segment
from ltx2_nodes.media.audio_io import load_audio_file
from ltx2_nodes.media.mux import probe
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import latent_info, to_av_latents
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.recipe import recipe_for

sys.path.insert(0, str(REPO / "scripts"))
import workflow_graph as graph

SMALL = [f"--set={k}" for k in ("5.width=64", "5.height=64", "5.frames=17")]


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def run_demo(name: str, demo_models, tmp_path, capsys, extra=()) -> str:
    assert main(["run", str(DEMO_WORKFLOWS / f"{name}.api.json"), "--models-dir", str(demo_models.root),
                 "--input-dir", str(DEMO_INPUTS), "--out", str(tmp_path), *SMALL, *extra]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.endswith(".mp4")][0]


def relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", ["a2v_distilled_two_stage", "ltx23_a2v_distilled_two_stage"])
def test_audio_to_video_muxes_the_original_input_audio_not_the_decoded_latent(name, demo_models, tmp_path, capsys,
                                                                              headless):
    path = run_demo(name, demo_models, tmp_path, capsys)
    media = probe(path)
    given = load_audio_file(DEMO_INPUTS / graph.DEMO["audio"], downmix=False)
    assert media.audio_sample_rate == given["sample_rate"] == 16000  # the input's rate, not the vocoder's
    muxed = load_audio_file(path, downmix=False)
    expected = audio_segment(given, 0.0, 17 / 24.0)["waveform"][0]
    got = muxed["waveform"][0][:, :expected.shape[-1]]
    assert got.shape == expected.shape
    # AAC round trip of the input: within its codec error
    assert relative_rms(got, expected) < 0.15  # 0.09 with this FFmpeg AAC encoder at 16 kHz
    # the decoded latent (what the workflow muxed before) comes out of the vocoder at its own rate
    decoded = call("LTX2AudioDecode", latent=_a2v_latent(demo_models, name), audio_vae=_audio_vae(demo_models, name))
    assert decoded[0]["sample_rate"] == (48000 if name.startswith("ltx23_") else 24000)


def _audio_vae(demo_models, name):
    checkpoint = demo_models.checkpoint_23 if name.startswith("ltx23_") else demo_models.checkpoint
    return call("LTX2CheckpointLoader", ckpt_name=checkpoint.name)[2]


def _a2v_latent(demo_models, name):
    empty = call("LTX2EmptyAVLatent", width=64, height=64, frames=17, seconds=0.0, fps=24.0, batch_size=1)[0]
    audio = load_audio_file(DEMO_INPUTS / graph.DEMO["audio"], downmix=False)
    return call("LTX2AudioToLatent", latent=empty, audio_vae=_audio_vae(demo_models, name), audio=audio)[0]


def test_audio_to_latent_returns_the_input_piece_as_long_as_the_video(headless, demo_models):
    audio = {"waveform": torch.randn(1, 2, 16000 * 3), "sample_rate": 16000}
    empty = call("LTX2EmptyAVLatent", width=64, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1)[0]
    latent, piece = call("LTX2AudioToLatent", latent=empty, audio_vae=_audio_vae(demo_models, ""), audio=audio,
                         start_seconds=0.5)
    assert piece["sample_rate"] == 16000 and torch.equal(piece["waveform"], audio["waveform"][..., 8000:8000 + 6000])
    assert not to_av_latents(latent).audio_mask.any()


@pytest.mark.parametrize("family", ["2.0", "2.3"])
def test_first_and_last_frame_guides_keep_frame_zero_and_address_the_last_frame(family, headless, demo_models):
    checkpoint = demo_models.checkpoint if family == "2.0" else demo_models.checkpoint_23
    dit, video_vae, _audio_vae, connector = call("LTX2CheckpointLoader", ckpt_name=checkpoint.name)
    (gemma,) = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt="a disc rolls across the picture")
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    first = LoadImage().load_image(graph.DEMO["image"])[0]
    last = LoadImage().load_image(graph.DEMO["last_image"])[0]
    empty = call("LTX2EmptyAVLatent", width=64, height=64, frames=17, seconds=0.0, fps=24.0, batch_size=1)[0]
    (with_first,) = call("LTX2ImageToVideo", latent=empty, video_vae=video_vae, image=first, frame_index=0,
                         strength=1.0, crf=0)
    (with_both,) = call("LTX2ImageToVideo", latent=with_first, video_vae=video_vae, image=last, frame_index=-1,
                        strength=1.0, crf=0)
    records = latent_info(with_both).conditions
    assert [r.condition.frame_index for r in records] == [0, 16]
    with pytest.raises(InputError, match="or -1..-17 counted from the end"):
        call("LTX2ImageToVideo", latent=empty, video_vae=video_vae, image=last, frame_index=-18, strength=1.0, crf=0)
    recipe = recipe_for(family)
    (out,) = call("LTX2Sampler", model=dit, positive=positive, latent=with_both, seed=5,
                  **preset_widgets(recipe.distilled, recipe.stg_blocks))
    video = to_av_latents(out).video
    assert video.shape[2] == 3  # the guide tokens of the last frame are not part of the result
    assert torch.equal(video[:, :, :1], records[0].encoded[(64, 64)].to(video.dtype))


@pytest.mark.parametrize("name", ["keyframes_distilled_two_stage", "ltx23_keyframes_distilled_two_stage"])
def test_shipped_first_to_last_frame_workflow_runs_headless(name, demo_models, tmp_path, capsys):
    media = probe(run_demo(name, demo_models, tmp_path, capsys))
    assert (media.video_frames, media.width, media.height) == (17, 128, 128)
    assert media.audio_codec == "aac" and media.audio_sample_rate == (48000 if name.startswith("ltx23_") else 24000)
