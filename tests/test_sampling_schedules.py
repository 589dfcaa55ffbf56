"""Sigma schedules: golden parity of the LTX-2 schedule and the distilled presets (generic over fixture sets),
user-list validation."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.schedules import ltx2_sigmas, parse_sigmas

_NOT_KWARGS = {"steps", "tokens", "latent_shape"}


@pytest.fixture(scope="module")
def golden():
    return find_golden("schedulers")


def test_every_ltx2_scheduler_entry_matches(golden):
    """The reference's other schedulers (linear-quadratic, beta) in the fixture are not offered here."""
    specs = {name: spec for name, spec in golden.call["specs"].items() if name.rsplit(".", 1)[0] == "ltx2"}
    assert specs, "fixture lists no ltx2 scheduler calls"
    for name, spec in specs.items():
        kwargs = {k: v for k, v in spec.items() if k not in _NOT_KWARGS}
        # tokens = prod(latent.shape[2:]), or the reference default (4096) when no latent is given
        shape = spec.get("latent_shape")
        kwargs["tokens"] = math.prod(shape[2:]) if shape else None
        assert_close(ltx2_sigmas(spec["steps"], **kwargs), golden[f"{name}.sigmas"], name, 1e-6)


def test_distilled_presets_are_the_reference_lists(golden):
    recipe = recipe_for("2.0")
    assert_close(recipe.distilled.sigmas(), golden["distilled.stage1_sigmas"], "stage1", 0)
    assert_close(recipe.refine.sigmas(), golden["distilled.stage2_sigmas"], "stage2", 0)
    assert torch.tensor(recipe.stage2_start_sigma) == golden["distilled.stage2_sigmas"][0]


def test_ltx2_schedule_shape_and_terminal():
    sigmas = ltx2_sigmas(40)
    assert sigmas.shape == (41,) and abs(float(sigmas[0]) - 1.0) < 1e-6 and sigmas[-1] == 0.0
    assert abs(float(sigmas[-2]) - 0.1) < 1e-6  # stretched so the last non-zero sigma is the terminal
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_parse_custom_list():
    assert torch.equal(parse_sigmas("1.0, 0.9,0.5 0.0"), torch.tensor([1.0, 0.9, 0.5, 0.0]))
    assert torch.equal(parse_sigmas("0.909375, 0.725, 0.421875, 0"), recipe_for().refine.sigmas())


@pytest.mark.parametrize("text, message", [
    ("", "custom sigmas are empty"),
    ("1.0, abc, 0", "entry 2 ('abc') is not a number"),
    ("1.0, 0.9, 0.95, 0.0", "entry 3 (0.95) is not below entry 2 (0.9)"),
    ("1.0, 0.5, 0.5, 0.0", "entry 3 (0.5) is not below entry 2 (0.5)"),
    ("1.5, 0.5, 0.0", "entry 1 is 1.5; every sigma must lie in [0, 1]"),
    ("1.0, 0.5, -0.1", "entry 3 is -0.1"),
    ("1.0, 0.5, 0.1", "the last sigma is 0.1; the list must end at 0"),
    ("0", "need at least two values"),
    ("1.0, nan, 0", "entry 2 is nan"),
])
def test_parse_rejects_bad_lists(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        parse_sigmas(text)


def test_bad_step_count():
    with pytest.raises(InputError, match="steps must be a positive integer"):
        ltx2_sigmas(0)
