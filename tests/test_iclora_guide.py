"""IC-LoRA reference-video guides through the nodes and stages (the parity with the official implementation is
tests/test_golden_iclora.py): the LoRA metadata, the guide's size, and that guide frames never reach the output."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes.demo.models import DEMO_TRANSFORMER_23, IC_LORA_23, write_lora
from ltx2_nodes.errors import CheckpointError, InputError
from ltx2_nodes.loading.lora import load_lora
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import latent_info, to_av_latents
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.guides import ReferenceVideoGuide, control_frames, reference_scale_factors
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.state import VideoGrid, initial_state


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def test_lora_reference_factors_come_from_the_file_metadata_default_one(tmp_path, demo_models):
    assert load_lora(demo_models.root / "loras" / IC_LORA_23).reference_downscale_factor == 2
    plain = load_lora(demo_models.lora_23)
    assert (plain.reference_downscale_factor, plain.reference_temporal_scale_factor) == (1, 1)
    bad = write_lora(tmp_path / "bad.safetensors", 0, DEMO_TRANSFORMER_23, {"reference_downscale_factor": "half"})
    with pytest.raises(CheckpointError, match="reference_downscale_factor='half' is not a positive integer"):
        load_lora(bad)


def test_loras_with_different_reference_scales_are_refused_together(demo_models):
    ic = load_lora(demo_models.root / "loras" / IC_LORA_23)
    assert reference_scale_factors([load_lora(demo_models.lora_23), ic]) == (2, 1)
    other = dataclasses.replace(ic, name="other", reference_downscale_factor=4)
    with pytest.raises(InputError, match="disagree on reference_downscale_factor: 2 and 4"):
        reference_scale_factors([ic, other])


def test_control_frames_are_capped_subsampled_and_cut_to_whole_latent_frames():
    video = torch.arange(30, dtype=torch.float32).view(30, 1, 1, 1).expand(30, 4, 4, 3)
    assert control_frames(video, 17)[:, 0, 0, 0].tolist() == list(range(17))
    assert control_frames(video, 17, 2)[:, 0, 0, 0].tolist() == [0, 1, 3, 5, 7, 9, 11, 13, 15]
    assert control_frames(video[:12], 17).shape[0] == 9  # a short control video: its longest 1 + 8k frames


def test_a_guide_for_another_size_is_refused_with_the_fix():
    state = initial_state(VideoGrid(8, 2, 4, 4, 24.0), 1)
    with pytest.raises(InputError, match="needs 2 x 2. Encode the control video for the size this sampler runs at"):
        ReferenceVideoGuide(torch.zeros(1, 8, 2, 4, 4), downscale_factor=2).apply(state)


def _guided_run(demo_models, *, attention: float | None, audio: bool = False):
    dit, video_vae, _, connector = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)
    (model,) = call("LTX2LoraLoader", model=dit, lora_name=IC_LORA_23, strength=1.0)
    (gemma,) = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt="a figure walks along the depth map")
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    (latent,) = call("LTX2EmptyAVLatent", width=128, height=64, frames=17, seconds=0.0, fps=24.0, batch_size=1,
                     audio=audio)
    if attention is not None:
        ramp = torch.linspace(0, 1, 25 * 48 * 80).view(25, 48, 80, 1).expand(25, 48, 80, 3)  # a "depth" video
        (latent,) = call("LTX2ICLoRAGuide", latent=latent, model=model, video_vae=video_vae, control_video=ramp,
                         strength=1.0, attention_strength=attention)
    recipe = recipe_for("2.3")
    (out,) = call("LTX2Sampler", model=model, positive=positive, latent=latent, seed=3,
                  **preset_widgets(recipe.distilled, recipe.stg_blocks))
    return latent, out, video_vae


def test_the_counted_attention_mask_is_the_mask_the_model_builds(headless, demo_models, monkeypatch):
    """The sampler's pre-check counts the additive self-attention mask of a guide at attention strength 0.5 with the
    tokens, batch and dtype of the mask the DiT then builds (``layers.weights_to_additive_mask``)."""
    from ltx2_nodes.memory import MemoryEngine
    from ltx2_nodes.memory.estimates import additive_mask_bytes
    from ltx2_nodes.model import transformer

    built, checked = [], []
    build, check = transformer.weights_to_additive_mask, MemoryEngine.precheck

    def recording_build(weights, dtype):
        mask = build(weights, dtype)
        built.append(mask) if mask is not None else None
        return mask

    def recording_check(self, weights, request, **kwargs):
        checked.append(request) if "dit" in weights else None
        return check(self, weights, request, **kwargs)

    monkeypatch.setattr(transformer, "weights_to_additive_mask", recording_build)
    monkeypatch.setattr(MemoryEngine, "precheck", recording_check)
    _guided_run(demo_models, attention=0.5)
    (request,) = checked
    assert built and request.masked_tokens() == built[0].shape[-1] == 24 + 6  # 3x2x4 grid + 3x1x2 guide tokens
    assert {additive_mask_bytes(request.masked_tokens(), request.batch, request.dtype)} == {
        mask.numel() * mask.element_size() for mask in built}


def test_guide_node_encodes_the_control_video_at_the_loras_reference_size(headless, demo_models):
    guided, out, _ = _guided_run(demo_models, attention=1.0)
    (guide,) = latent_info(guided).guides
    # 128x64 output, reference_downscale_factor 2 -> a 64x32 reference: 2x1 latent cells, 17 of 25 frames -> 3
    assert list(guide.latent.shape[2:]) == [3, 1, 2] and guide.downscale_factor == 2
    assert latent_info(out).guides == ()  # the guide conditions that sampler only


def test_guide_tokens_never_reach_the_sampled_or_decoded_video(headless, demo_models):
    plain = _guided_run(demo_models, attention=None)[1]
    _, unseen, _ = _guided_run(demo_models, attention=0.0)
    _, guided, video_vae = _guided_run(demo_models, attention=1.0)
    for out in (unseen, guided):
        assert to_av_latents(out).video.shape == to_av_latents(plain).video.shape
    # attention 0 cuts the guide off both ways: the video is the unguided one (to float rounding), so nothing of the
    # guide's tokens is mixed into (or appended to) the output; with attention the guide changes the video
    torch.testing.assert_close(to_av_latents(unseen).video, to_av_latents(plain).video, atol=1e-5, rtol=0)
    assert (to_av_latents(guided).video - to_av_latents(plain).video).abs().max() > 1e-3
    (frames,) = call("LTX2VideoDecodeTiled", latent=guided, video_vae=video_vae)
    assert list(frames.shape) == [17, 64, 128, 3]  # the output's frames only, none of the 17 reference frames


def test_guide_node_refuses_a_size_the_reference_scale_does_not_divide(headless, demo_models):
    dit, video_vae, _, _ = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)
    (model,) = call("LTX2LoraLoader", model=dit, lora_name=IC_LORA_23, strength=1.0)
    (latent,) = call("LTX2EmptyAVLatent", width=96, height=64, frames=9, seconds=0.0, fps=24.0, batch_size=1)
    with pytest.raises(InputError, match="multiples of 64"):
        call("LTX2ICLoRAGuide", latent=latent, model=model, video_vae=video_vae,
             control_video=torch.zeros(9, 64, 96, 3), strength=1.0, attention_strength=1.0)


def test_golden_streamed_guided_forward_with_a_lora_equals_the_resident_one():
    """Block streaming carries the guides' attention mask like every per-forward input (a LoRA hooked on)."""
    from conftest import find_golden, golden_dir
    from memory_support import add_lora
    from test_golden_iclora import _states, _text
    from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
    from ltx2_nodes.loading.components import load_transformer
    from ltx2_nodes.memory import MemoryEngine
    from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
    from ltx2_nodes.sampling.guidance import GuidedDenoiser

    golden = find_golden("iclora_reference_video_2.3", "iclora")
    model = load_transformer(LTX2Checkpoint(golden_dir("2.3") / golden.meta["weights_file"]), dtype=torch.float32)
    assert add_lora(model.transformer_blocks, style="hook") > 0
    _, video, audio = _states(golden, "call1")
    assert video.attention is not None
    denoiser = GuidedDenoiser(model, _text(golden, "call1"))
    sigma = torch.tensor(0.8)
    with torch.no_grad():
        expected = denoiser(video, audio, sigma, 0)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=2 * tensor_bytes(module_tensors(model)), minimal=True)
    with torch.inference_mode(), engine.stage("dit", model, blocks=model.transformer_blocks) as stage:
        assert stage.mode == "streamed"
        got = denoiser(video, audio, sigma, 0)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def _control_mp4(path, frames: int = 17):
    from ltx2_nodes.media.mux import MP4Writer

    ramp = torch.linspace(0, 1, 96).view(1, 1, 96, 1).expand(frames, 64, 96, 3).contiguous()
    with MP4Writer(path, 24.0) as writer:
        writer.add_frames(ramp)
    return path


def test_generate_guides_stage_one_with_a_control_video_and_its_ic_lora(demo_models, tmp_path, isolated, capsys):
    import json

    from ltx2_nodes.cli import main
    from ltx2_nodes.demo.models import CHECKPOINT_23
    from ltx2_nodes.media.mux import probe

    control = _control_mp4(tmp_path / "depth.mp4")
    base = ["generate", "--prompt", "a figure walks", "--models-dir", str(demo_models.root), "--checkpoint",
            CHECKPOINT_23, "--width", "128", "--height", "128", "--frames", "17", "--single-stage", "--device", "cpu",
            "--out", str(tmp_path / "clip.mp4")]
    assert main([*base, "--control-video", str(control)]) == 2
    assert "--control-video needs the IC-LoRA" in capsys.readouterr().err
    assert main([*base, "--control-video", str(control), "--ic-lora", IC_LORA_23, "--control-attention", "0.5"]) == 0
    info = probe(tmp_path / "clip.mp4")
    assert (info.width, info.height, info.video_frames) == (128, 128, 17)  # the guide's frames are not in the clip
    assert json.loads(info.metadata["ltx2_generate"])["control_video"] is True


def test_attention_mask_weighs_each_reference_token_times_the_attention_strength(headless, demo_models):
    dit, video_vae, _, _ = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)
    (model,) = call("LTX2LoraLoader", model=dit, lora_name=IC_LORA_23, strength=1.0)
    (latent,) = call("LTX2EmptyAVLatent", width=128, height=64, frames=17, seconds=0.0, fps=24.0, batch_size=1)
    mask = torch.ones(17, 64, 128)
    mask[:, :, :64] = 0.0  # the left half of the picture: no control
    (guided,) = call("LTX2ICLoRAGuide", latent=latent, model=model, video_vae=video_vae,
                     control_video=torch.rand(17, 64, 128, 3), strength=1.0, attention_strength=0.5,
                     attention_mask=mask)
    (guide,) = latent_info(guided).guides
    # a 3 x 1 x 2 reference: per latent frame the left token is off, the right one at the attention strength
    assert guide.attention.tolist() == [[0.0, 0.5] * 3]


def test_the_run_precheck_counts_the_control_video_encode_its_guide_tokens_and_its_mask(demo_models):
    """``generate.precheck`` with a control video: the video encoder stage at the IC-LoRA's reference size, stage 1's
    DiT with the guide tokens, and the self-attention mask only when the attention strength is below 1."""
    from ltx2_nodes.generate import GenerateRequest, precheck
    from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2
    from ltx2_nodes.memory import MemoryEngine
    from ltx2_nodes.sampling.guides import ControlVideo

    clear_caches()
    ltx2, gemma = load_ltx2(demo_models.checkpoint_23, device="cpu"), load_gemma(demo_models.gemma, device="cpu")
    lora = load_lora(demo_models.root / "loras" / IC_LORA_23)
    engine = MemoryEngine("cpu", virtual=True, vram_budget=1 << 50)

    def checked(attention: float):
        control = ControlVideo(torch.zeros(17, 128, 128, 3), attention=attention)
        request = GenerateRequest("a figure walks", width=128, height=128, frames=17, two_stage=False, control=control)
        return precheck(ltx2, gemma, request, engine, loras=[(lora, 1.0)])

    full, weighted = checked(1.0), checked(0.5)
    assert full.request.control == (2, 1) and full.request.control_size() == (17, 64, 64)
    assert "video_encoder" in {s.name for s in full.stages}
    assert full.request.stage1_tokens() == 3 * 4 * 4 + 3 * 2 * 2 and full.request.masked_tokens() == 0
    assert weighted.request.masked_tokens() == 60
    dit = [{s.name: s.activation_bytes for s in e.stages}["dit"] for e in (full, weighted)]
    assert dit[1] > dit[0]
    clear_caches()
