"""The recipe's one home: presets per family, the two-stage size rule, the noise stream's record/resume, and the
sampler node reading its widget defaults from the recipe."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError, UnsupportedModelError
from ltx2_nodes.nodes.sampler import LTX2Sampler, preset_widgets
from ltx2_nodes.latents import GenerationSettings
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.recipe import RECIPES, SCHEDULES, recipe_for, start_at
from ltx2_nodes.sampling.schedules import ltx2_sigmas


@pytest.mark.parametrize("family", list(RECIPES))
def test_every_preset_starts_where_its_widget_says_and_settings_follow_it(family):
    recipe = recipe_for(family)
    for preset in (recipe.dev, recipe.distilled, recipe.refine):
        sigmas = preset.sigmas()
        assert float(sigmas[0]) == pytest.approx(preset.start_sigma, abs=1e-6) and float(sigmas[-1]) == 0.0
        assert len(sigmas) - 1 == preset.steps and preset.schedule in SCHEDULES
        assert torch.equal(recipe.schedule(preset.schedule, preset.steps), sigmas)
        settings = GenerationSettings.from_preset(preset, seed=3)
        assert torch.equal(settings.sigmas, sigmas) and settings.video_guidance == preset.video_guidance
    assert recipe.stage2_start_sigma == recipe.refine.start_sigma < 1.0
    assert recipe.dev.video_guidance.needs_negative and not recipe.distilled.video_guidance.needs_negative
    assert GenerationSettings.from_preset(recipe.dev, steps=7).steps == 7


# the official pipelines' per-generation parameters (ltx_pipelines.utils.constants) as recorded in the fixtures
OFFICIAL_PRESETS = {"2.0": "LTX_2_PARAMS", "2.3": "LTX_2_3_PARAMS"}


@pytest.mark.parametrize("flavour", ["2.0-head", "2.3"], ids=lambda f: f"golden-{f}")
@pytest.mark.parametrize("family", list(OFFICIAL_PRESETS))
def test_each_family_dev_schedule_and_distilled_lists_equal_the_official_presets(family, flavour):
    golden = find_golden("schedulers", flavour)
    key = f"preset.{OFFICIAL_PRESETS[family]}.sigmas"
    if key not in golden.tensors:
        pytest.skip(f"{golden.path.name} records no {OFFICIAL_PRESETS[family]} schedule")
    recipe = recipe_for(family)
    assert_close(recipe.dev.sigmas(), golden[key], key, tol=1e-6)
    assert_close(recipe.distilled.sigmas(), golden["distilled.stage1_sigmas"], "distilled.stage1_sigmas", tol=1e-6)
    assert_close(recipe.refine.sigmas(), golden["distilled.stage2_sigmas"], "distilled.stage2_sigmas", tol=1e-6)


def test_ltx23_dev_preset_runs_30_steps_with_stg_on_block_28():
    dev = recipe_for("2.3").dev
    assert dev.steps == 30 and dev.video_guidance.stg_blocks == (28,) == dev.audio_guidance.stg_blocks
    assert (dev.video_guidance.cfg, dev.audio_guidance.cfg) == (3.0, 7.0)


def test_ltx25_distilled_stage1_is_euler_ancestral_on_the_reference_lists_and_stage2_stays_euler():
    """Reference HEAD (distilled.py): stage 1 EulerAncestralDiffusionStep(eta 1, s_noise 1) when model_version >=
    2.5, stage 2 Euler; the sigma lists are the io_sampler fixture's (DISTILLED_SIGMAS, STAGE_2_DISTILLED_SIGMAS)."""
    golden = find_golden("sampler", "2.5")
    recipe = recipe_for("2.5")
    assert_close(recipe.distilled.sigmas(), golden["distilled_sigmas"], "distilled_sigmas", tol=0)
    assert_close(recipe.refine.sigmas(), golden["stage2_sigmas"], "stage2_sigmas", tol=0)
    samplers = (recipe.distilled.sampler, recipe.refine.sampler, recipe.dev.sampler)
    assert samplers == ("euler_ancestral", "euler", "euler")
    settings = GenerationSettings.from_preset(recipe.distilled, seed=4)
    assert settings.sampler == "euler_ancestral" and settings.eta is None and settings.s_noise == 1.0
    assert preset_widgets(recipe.distilled, recipe.stg_blocks)["sampler"] == "euler_ancestral"
    assert all(recipe_for(f).distilled.sampler == "euler" for f in ("2.0", "2.3"))


def test_a_generate_request_for_ltx25_follows_its_recipe_sampler_and_negative_prompt():
    from ltx2_nodes.generate import GenerateRequest

    request = GenerateRequest(prompt="a cat", family="2.5")
    assert request.stage1_settings().sampler == "euler_ancestral"
    assert request.negative() == recipe_for("2.5").negative_prompt
    assert GenerateRequest(prompt="a cat", negative_prompt="ugly", family="2.5").negative() == "ugly"
    assert GenerateRequest(prompt="a cat", mode="dev", family="2.5").stage1_settings().sampler == "euler"
    assert GenerateRequest(prompt="a cat").negative() == recipe_for().negative_prompt


def test_ltx25_dev_preset_negative_prompt_and_image_crf_are_the_reference_heads():
    """LTX_2_4_PARAMS (every version from 2.4): 30 steps, STG block 28, image CRF 18; HEAD's negative prompt
    starts with five caption tags before the released list."""
    recipe = recipe_for("2.5")
    dev = recipe.dev
    assert dev.steps == 30 and dev.video_guidance.stg_blocks == (28,) == dev.audio_guidance.stg_blocks
    assert (dev.video_guidance.cfg, dev.audio_guidance.cfg) == (3.0, 7.0)
    assert recipe.image_crf == 18 and recipe_for("2.3").image_crf == recipe_for("2.0").image_crf == 33
    assert recipe.negative_prompt.startswith("has_subtitles, has_blurbox, transition from black, transition to "
                                             "black, speech_ending_short, blurry, out of focus")
    assert recipe.negative_prompt.endswith(recipe_for("2.0").negative_prompt)


def test_unknown_family_and_mode_are_refused_with_the_known_ones():
    with pytest.raises(UnsupportedModelError, match=r"no sampling presets for the LTX-9.9 family; presets exist "
                                                    r"for LTX-2.0, LTX-2.3, LTX-2.5"):
        recipe_for("9.9")
    with pytest.raises(InputError, match=r"mode 'turbo' is not one of \['distilled', 'dev', 'hq'\]"):
        recipe_for().preset("turbo")
    with pytest.raises(InputError, match="schedule 'karras' is not one of"):
        recipe_for().schedule("karras", 8)


def test_sampler_widget_defaults_are_the_dev_preset():
    recipe = recipe_for()
    dev = preset_widgets(recipe.dev, recipe.stg_blocks)
    spec = LTX2Sampler.INPUT_TYPES()
    widgets = {**spec["required"], **spec["optional"]}
    for widget, value in dev.items():
        assert widgets[widget][1]["default"] == value, widget
    assert preset_widgets(recipe.distilled, recipe.stg_blocks)["stg_blocks"] == dev["stg_blocks"]


def test_a_recorded_noise_stream_resumes_exactly_where_it_stood():
    noise = SeededNoise(10, 2)
    noise.draw((5, 3), (7,))  # stage 1 (small draws too: torch caches a spare normal sample)
    record = noise.record()
    expected = noise.draw((4, 6), (3, 2))
    noise.draw((1,))  # drawing on does not move the record
    resumed = SeededNoise.resume(record, 10, 2).draw((4, 6), (3, 2))
    assert all(torch.equal(a, b) for a, b in zip(resumed, expected))
    for seed, batch in ((11, 2), (10, 1)):  # another stream starts fresh
        fresh = SeededNoise.resume(record, seed, batch).draw((4, 6))[0]
        assert torch.equal(fresh, SeededNoise(seed, batch).draw((4, 6))[0])
    assert torch.equal(SeededNoise.resume(None, 10, 2).draw((4,))[0], SeededNoise(10, 2).draw((4,))[0])


@pytest.mark.parametrize("steps", [8, 30, 40])
def test_starting_at_one_runs_the_shifted_schedule_as_is_without_an_extra_step(steps):
    sigmas = ltx2_sigmas(steps)  # starts at 0.99999994 in float32
    assert torch.equal(start_at(sigmas, 1.0), sigmas)
    refine = recipe_for().refine.sigmas()
    assert torch.equal(start_at(recipe_for().distilled.sigmas(), float(refine[0])), refine)
    assert start_at(sigmas, 0.5)[0].item() == 0.5 and len(start_at(sigmas, 0.5)) < len(sigmas)
