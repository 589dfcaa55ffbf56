"""The HQ preset (``sampling.recipe.HQ``): the reference's two-stage HQ recipe, one owner read by the sampler
node's widgets and by ``generate --mode hq``; a tiny two-stage HQ run applies the distilled LoRA at each stage's
own strength."""

from __future__ import annotations

import math

import pytest
import torch

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.demo.models import DEMO_TRANSFORMER_25, write_lora
from ltx2_nodes.errors import InputError
from ltx2_nodes.generate import GenerateRequest, generate
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2, load_lora_file, load_upscaler
from ltx2_nodes.media.mux import probe
from ltx2_nodes.model.shapes import video_latent_size
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.sampling.recipe import RECIPES, SCHEDULES, TOKEN_SHIFTED, recipe_for
from ltx2_nodes.sampling.schedules import ltx2_sigmas


@pytest.mark.parametrize("family", list(RECIPES))
def test_hq_preset_is_the_reference_hq_pipeline(family):
    """The values of Lightricks/LTX-2 (400fd31) ``ltx_pipelines``: ``utils/constants.py`` lines 95-115
    (``LTX_2_3_HQ_PARAMS``: 15 steps; video cfg 3, stg 0, rescale 0.45, modality 3; audio cfg 7, stg 0, rescale
    1.0, modality 3; no STG blocks), ``ti2vid_two_stages_hq.py`` line 258 (``Res2sDiffusionStep`` for both
    stages), 267 (stage 1's ``LTX2Scheduler.execute(latent=<the stage-1 latent>)``: the shift of its token
    count), 193 and 316 (stage 2: ``STAGE_2_DISTILLED_SIGMAS``, no guidance), ``utils/args.py`` lines 1176 and
    1182 (the distilled LoRA at 0.25 in stage 1, 0.5 in stage 2). The reference applies that one constant to
    every checkpoint version, so every family has it."""
    recipe = recipe_for(family)
    first, second = recipe.preset("hq"), recipe.refine_preset("hq")
    assert (first.schedule, first.steps, first.sampler, first.start_sigma) == (TOKEN_SHIFTED, 15, "res_2s", 1.0)
    video, audio = first.video_guidance, first.audio_guidance
    assert (video.cfg, video.stg, video.rescale, video.modality, video.stg_blocks) == (3.0, 0.0, 0.45, 3.0, ())
    assert (audio.cfg, audio.stg, audio.rescale, audio.modality, audio.stg_blocks) == (7.0, 0.0, 1.0, 3.0, ())
    assert not video.needs_perturbed and video.needs_negative
    assert second.sampler == "res_2s" and second.fixed_sigmas == (0.909375, 0.725, 0.421875, 0.0)
    assert second.video_guidance == second.audio_guidance and not second.video_guidance.needs_negative
    assert recipe.stage_lora_strengths("hq") == (0.25, 0.5)
    assert recipe.stage_lora_strengths("dev") == (None, recipe.stage2_lora_strength)
    assert TOKEN_SHIFTED in SCHEDULES


def test_hq_schedule_is_shifted_by_the_stage_one_latents_tokens():
    """The reference's default HQ size (1920x1088 -> stage 1 960x544, 121 frames): 16 x 17 x 30 tokens."""
    tokens = math.prod(video_latent_size(121, 544, 960))
    assert tokens == 8160
    preset = recipe_for().preset("hq")
    assert torch.equal(preset.sigmas(tokens=tokens), ltx2_sigmas(15, tokens=8160))
    assert not torch.equal(preset.sigmas(tokens=tokens), ltx2_sigmas(15))
    with pytest.raises(InputError, match="shifts by the video latent's token count"):
        preset.sigmas()
    request = GenerateRequest("p", width=1920, height=1088, frames=121, mode="hq")
    assert torch.equal(request.stage1_settings().sigmas, ltx2_sigmas(15, tokens=8160))
    assert request.stage1_settings().sampler == "res_2s" and request.refine_preset().sampler == "res_2s"


def test_hq_sampler_widgets_carry_the_two_rescale_values():
    """One rescale widget per modality where the preset differs (HQ: 0.45 / 1.0); -1 = audio follows video."""
    hq = preset_widgets(recipe_for().preset("hq"), recipe_for().stg_blocks)
    assert (hq["schedule"], hq["steps"], hq["sampler"], hq["rescale"], hq["audio_rescale"]) == (
        TOKEN_SHIFTED, 15, "res_2s", 0.45, 1.0)
    assert hq["stg_scale"] == 0.0 and (hq["video_cfg"], hq["audio_cfg"], hq["modality_scale"]) == (3.0, 7.0, 3.0)
    assert preset_widgets(recipe_for().dev, recipe_for().stg_blocks)["audio_rescale"] == -1.0


@pytest.fixture(params=["2.0", "2.3", "2.5"])
def loaded(request, headless, demo_models, tmp_path):
    """The demo files of one family: its DiT, Gemma, x2 upscaler and a distilled-LoRA stand-in (2.5's demo set has
    no LoRA file: one is written for its transformer)."""
    clear_caches()
    if request.param == "2.5":
        lora = write_lora(tmp_path / "ltx25-demo-lora.safetensors", transformer=DEMO_TRANSFORMER_25)
        files = (demo_models.ltx25.transformer, demo_models.ltx25.text_encoder, demo_models.ltx25.upscaler, lora)
    elif request.param == "2.3":
        files = (demo_models.checkpoint_23, demo_models.gemma, demo_models.upscaler_23, demo_models.lora_23)
    else:
        files = (demo_models.checkpoint, demo_models.gemma, demo_models.upscaler, demo_models.lora)
    checkpoint, gemma, upscaler, lora = files
    return (load_ltx2(checkpoint, device="cpu"), load_gemma(gemma, device="cpu"), load_upscaler(upscaler, device="cpu"),
            load_lora_file(lora))


def test_tiny_two_stage_hq_run_applies_the_distilled_lora_at_each_stages_strength(loaded, tmp_path, monkeypatch):
    """``generate`` in mode "hq": res_2s with guidance in stage 1 at half size with the LoRA at 0.25, stage 2 at
    the final size with it at 0.5 (what ``applied_loras`` receives in each DiT stage), then an MP4."""
    ltx2, gemma, upscaler, lora = loaded
    recipe = recipe_for(ltx2.ckpt.family.version)
    first, second = recipe.stage_lora_strengths("hq")
    used, original = [], stages.applied_loras

    def recording(model, loras, *args, **kwargs):
        used.append([strength for _, strength in loras])
        return original(model, loras, *args, **kwargs)

    calls = []
    run_sampler = stages.run_sampler

    def sampler(dit, positive, latents, settings, *args, **kwargs):
        calls.append((tuple(latents.video.shape[-2:]), settings.sampler, settings.video_guidance.rescale,
                      settings.audio_guidance.rescale, settings.steps))
        return run_sampler(dit, positive, latents, settings, *args, **kwargs)

    monkeypatch.setattr(stages, "applied_loras", recording)
    monkeypatch.setattr("ltx2_nodes.generate.run_sampler", sampler)
    request = GenerateRequest("a fox in the snow", width=128, height=128, frames=9, seed=3, mode="hq", steps=2)
    path = generate(ltx2, gemma, request, tmp_path / "hq.mp4", upscaler=upscaler, stage1_loras=[(lora, first)],
                    stage2_loras=[(lora, second)])
    assert used == [[first], [second]]
    assert calls == [((2, 2), "res_2s", 0.45, 1.0, 2), ((4, 4), "res_2s", 0.0, 0.0, 3)]
    media = probe(path)
    assert (media.video_frames, media.width, media.height) == (9, 128, 128)


def test_hq_refuses_a_single_stage_run(loaded, tmp_path):
    ltx2, gemma, upscaler, _ = loaded
    request = GenerateRequest("a fox", width=128, height=128, frames=9, mode="hq", two_stage=False)
    with pytest.raises(InputError, match="HQ recipe is a two-stage recipe"):
        generate(ltx2, gemma, request, tmp_path / "x.mp4")
