"""The generation recipe: sampler presets per model family and the two-stage pipeline, one owner.

Everything that says *how* LTX-2 is sampled by default lives here; the CLI (``generate``), the
pre-check (``memory.precheck``), the shipped workflows (``scripts/build_workflows.py``), the
sampler node's widget defaults and the canvas presets (``js/lib/sampler.js``, tested against this)
all read it.

Presets (``ltx_pipelines.utils.constants`` of the reference):

* ``dev``: the dev model -- the LTX-2 shifted schedule (40 steps), video CFG 3 / audio CFG 7 against
  the negative prompt, STG 1 on the family's STG block, modality guidance 3, rescale 0.7;
* ``distilled``: the distilled model -- its fixed 8-step list from pure noise, no guidance; Euler, or from
  LTX-2.5 on Euler ancestral (``DistilledPipeline`` samples stage 1 with ``EulerAncestralDiffusionStep``,
  eta 1, s_noise 1, when ``model_version >= 2.5``; stage 2 stays Euler);
* ``refine``: stage 2 of a two-stage run -- the distilled stage-2 list (3 steps from 0.909375), no
  guidance, on either model (the dev model gets the distilled LoRA at ``stage2_lora_strength``);
* ``hq`` (``HQRecipe``): the reference's two-stage HQ pipeline (``ti2vid_two_stages_hq.py``) on the dev model:
  res_2s in both stages; stage 1 15 steps of the shifted schedule with the shift taken from the stage-1 latent's
  token count (the pipeline hands ``LTX2Scheduler.execute`` its empty latent), video CFG 3 / audio CFG 7,
  modality 3, STG off, rescale 0.45 (video) / 1.0 (audio) (``LTX_2_3_HQ_PARAMS``); stage 2 the distilled
  stage-2 list, no guidance; the distilled LoRA in both stages, 0.25 in stage 1 and 0.5 in stage 2
  (``hq_2_stage_arg_parser``). The reference applies that one constant to every checkpoint it loads ("it
  overrides every knob that varies between generations"), so every family here has it; what it needs is the
  dev model and the family's distilled LoRA (a distilled checkpoint already is what the LoRA adds).

The two-stage recipe: stage 1 samples at half the final width and height (``model.shapes.stage1_size``,
the owner of that size rule), the latent upscaler doubles the video latent, stage 2 re-noises video
and audio at the refine preset's first sigma and refines at the final size. Stage 2 continues stage
1's seeded noise stream (the reference draws both from one generator), keeps what stage 1 kept
(masks: a given soundtrack stays), and image conditions are encoded again at each stage's size.

Families are keyed by version (``"2.0"``, ``"2.3"``: 30 dev steps, STG on block 28; ``"2.5"``: 2.3's dev
preset -- the reference's ``LTX_2_4_PARAMS``, which every version from 2.4 gets -- the ancestral distilled
stage 1, the reference HEAD's negative prompt and image CRF 18); a family whose values differ adds an entry
to ``RECIPES`` -- nothing else changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError, UnsupportedModelError
from .conditioning import DEFAULT_IMAGE_CRF
from .guidance import NO_GUIDANCE, GuidanceParams
from .loop import SAMPLERS
from .schedules import ltx2_sigmas, parse_sigmas

DEFAULT_FAMILY = "2.0"
_SIGMA_ROUNDING = 1e-6  # float32 rounding of the schedules' values (ltx2_sigmas(n)[0] == 0.99999994)
DEFAULT_SEED = 10
# The sampler node's schedule choices: "ltx2" (shifted, any step count; the reference pipelines' fixed shift of
# 4096 tokens), "ltx2 by tokens" (the shift from the sampled latent's token count, as the HQ pipeline), the
# family's fixed lists, a typed list.
MODES = ("distilled", "dev", "hq")  # a run's stage-1 preset (``Recipe.preset``)
SCHEDULES = ("ltx2", "distilled", "distilled stage 2", "custom", "ltx2 by tokens")
TOKEN_SHIFTED = "ltx2 by tokens"

# The reference pipelines' default negative prompt (ltx_pipelines/utils/constants.py): the dev model's
# text CFG pushes away from it; the distilled model runs without a negative pass.
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, grainy "
    "texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, deformed facial "
    "features, asymmetrical face, missing facial features, extra limbs, disfigured hands, wrong hand count, artifacts "
    "around text, inconsistent perspective, camera shake, incorrect depth of field, background too sharp, background "
    "clutter, distracting reflections, harsh shadows, inconsistent lighting direction, color banding, cartoonish "
    "rendering, 3D CGI look, unrealistic materials, uncanny valley effect, incorrect ethnicity, wrong gender, "
    "exaggerated expressions, wrong gaze direction, mismatched lip sync, silent or muted audio, distorted voice, "
    "robotic voice, echo, background noise, off-sync audio, incorrect dialogue, added dialogue, repetitive speech, "
    "jittery movement, awkward pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted camera, "
    "flat lighting, inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)
# The reference HEAD's (the LTX-2.5 release) negative prompt: the same list after five caption tags.
NEGATIVE_PROMPT_25 = ("has_subtitles, has_blurbox, transition from black, transition to black, speech_ending_short, "
                      + DEFAULT_NEGATIVE_PROMPT)
IMAGE_CRF_24 = 18  # the reference's LTX_2_4_IMAGE_CRF: image conditions of LTX-2.4 and later


@dataclass(frozen=True)
class SamplerPreset:
    """One sampler's settings: a named schedule (``fixed_sigmas`` for the fixed lists, else the LTX-2
    shifted schedule with ``steps``; ``TOKEN_SHIFTED``: shifted by the sampled latent's token count), where it
    starts, the guidance per modality and the sampler (``sampling.loop.SAMPLERS``; its eta and s_noise are the
    reference's, ``loop.DEFAULT_ETA``)."""

    schedule: str
    steps: int
    video_guidance: GuidanceParams = NO_GUIDANCE
    audio_guidance: GuidanceParams = NO_GUIDANCE
    fixed_sigmas: tuple[float, ...] | None = None
    sampler: str = "euler"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"preset sampler {self.sampler!r} is not one of {SAMPLERS}")

    @property
    def start_sigma(self) -> float:
        return self.fixed_sigmas[0] if self.fixed_sigmas is not None else 1.0

    def sigmas(self, steps: int | None = None, tokens: int | None = None) -> torch.Tensor:
        """The schedule; ``steps`` replaces the preset's for the shifted schedule (the fixed lists have theirs);
        ``tokens``: the sampled video latent's F' x H' x W', which a ``TOKEN_SHIFTED`` schedule needs."""
        if self.fixed_sigmas is not None:
            return torch.tensor(self.fixed_sigmas, dtype=torch.float32)
        return token_schedule(self.schedule, self.steps if steps is None else steps, tokens)


def token_schedule(name: str, steps: int, tokens: int | None) -> torch.Tensor:
    """The shifted schedule "ltx2" (the reference pipelines' fixed 4096-token shift) or ``TOKEN_SHIFTED`` (the
    shift of ``tokens``, the video latent's F' x H' x W', as ``LTX2Scheduler.execute(latent=...)``)."""
    if name != TOKEN_SHIFTED:
        return ltx2_sigmas(steps)
    if tokens is None:
        raise InputError(f"the {TOKEN_SHIFTED!r} schedule shifts by the video latent's token count; this stage has "
                         "no video latent. Use the 'ltx2' schedule.")
    return ltx2_sigmas(steps, tokens=tokens)


@dataclass(frozen=True)
class HQRecipe:
    """The reference's two-stage HQ recipe (module doc): the stage-1 and stage-2 presets and the distilled LoRA's
    strength in each stage (the dev model carries the LoRA in both)."""

    stage1: SamplerPreset
    stage2: SamplerPreset
    stage1_lora_strength: float = 0.25
    stage2_lora_strength: float = 0.5


# Fixed lists of the LTX-2.0 distilled model (ltx_pipelines.utils.constants).
_LTX20_DISTILLED = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
_LTX20_REFINE = (0.909375, 0.725, 0.421875, 0.0)

# The reference's HQ recipe (ltx_pipelines/utils/constants.py LTX_2_3_HQ_PARAMS: 15 steps, video cfg 3 / stg 0 /
# rescale 0.45 / modality 3, audio cfg 7 / stg 0 / rescale 1.0 / modality 3, no STG blocks; ti2vid_two_stages_hq.py:
# Res2sDiffusionStep in both stages, stage 1 on LTX2Scheduler.execute(latent=<stage-1 latent>, steps), stage 2 on
# STAGE_2_DISTILLED_SIGMAS with SimpleDenoiser; utils/args.py hq_2_stage_arg_parser: distilled LoRA 0.25 / 0.5).
HQ = HQRecipe(
    stage1=SamplerPreset(TOKEN_SHIFTED, 15, GuidanceParams(cfg=3.0, stg=0.0, stg_blocks=(), rescale=0.45, modality=3.0),
                         GuidanceParams(cfg=7.0, stg=0.0, stg_blocks=(), rescale=1.0, modality=3.0), sampler="res_2s"),
    stage2=SamplerPreset("distilled stage 2", len(_LTX20_REFINE) - 1, fixed_sigmas=_LTX20_REFINE, sampler="res_2s"),
)


@dataclass(frozen=True)
class Recipe:
    """A model family's presets, its stage-2 LoRA strength, negative prompt and image CRF (see the module doc)."""

    family: str
    dev: SamplerPreset
    distilled: SamplerPreset
    refine: SamplerPreset
    stage2_lora_strength: float = 0.6  # the distilled LoRA on the dev model in stage 2 (the shipped dev workflow)
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    image_crf: int = DEFAULT_IMAGE_CRF  # the H.264 pre-compression of image conditions
    hq: HQRecipe = HQ  # the reference's one HQ constant, for every version it loads

    @property
    def stg_blocks(self) -> tuple[int, ...]:
        """The blocks the family's STG perturbs (the dev preset's)."""
        return self.dev.video_guidance.stg_blocks

    @property
    def stage2_start_sigma(self) -> float:
        return self.refine.start_sigma

    def preset(self, mode: str) -> SamplerPreset:
        """Stage 1 (or the only stage) of a run in ``mode``: "dev", "distilled" or "hq" (``MODES``)."""
        if mode == "dev":
            return self.dev
        if mode == "distilled":
            return self.distilled
        if mode == "hq":
            return self.hq.stage1
        raise InputError(f"mode {mode!r} is not one of {list(MODES)}.")

    def refine_preset(self, mode: str) -> SamplerPreset:
        """Stage 2 of a two-stage run in ``mode``: the HQ recipe's own, else ``refine``."""
        return self.hq.stage2 if mode == "hq" else self.refine

    def stage_lora_strengths(self, mode: str) -> tuple[float | None, float]:
        """The distilled LoRA's strength in (stage 1, stage 2) of a two-stage dev-model run in ``mode``: HQ's
        pair, else (None: not applied, ``stage2_lora_strength``)."""
        if mode == "hq":
            return self.hq.stage1_lora_strength, self.hq.stage2_lora_strength
        return None, self.stage2_lora_strength

    def schedule(self, name: str, steps: int, custom: str = "", tokens: int | None = None) -> torch.Tensor:
        """A named schedule of the sampler node (``SCHEDULES``); ``custom``: the typed list for "custom";
        ``tokens``: the sampled video latent's token count (``TOKEN_SHIFTED``)."""
        if name in ("ltx2", TOKEN_SHIFTED):
            return token_schedule(name, steps, tokens)
        if name == "distilled":
            return self.distilled.sigmas()
        if name == "distilled stage 2":
            return self.refine.sigmas()
        if name == "custom":
            return parse_sigmas(custom)
        raise InputError(f"schedule {name!r} is not one of {list(SCHEDULES)}.")


def _dev_guidance(cfg: float, stg_block: int) -> GuidanceParams:
    return GuidanceParams(cfg=cfg, stg=1.0, stg_blocks=(stg_block,), rescale=0.7, modality=3.0)


RECIPES = {
    "2.0": Recipe(
        family="2.0",
        dev=SamplerPreset("ltx2", 40, _dev_guidance(3.0, 29), _dev_guidance(7.0, 29)),
        distilled=SamplerPreset("distilled", len(_LTX20_DISTILLED) - 1, fixed_sigmas=_LTX20_DISTILLED),
        refine=SamplerPreset("distilled stage 2", len(_LTX20_REFINE) - 1, fixed_sigmas=_LTX20_REFINE),
    ),
    # LTX-2.3 (ltx_pipelines.utils.constants LTX_2_3_PARAMS): 30 dev steps, STG on block 28; the distilled
    # model keeps the 2.0 fixed lists.
    "2.3": Recipe(
        family="2.3",
        dev=SamplerPreset("ltx2", 30, _dev_guidance(3.0, 28), _dev_guidance(7.0, 28)),
        distilled=SamplerPreset("distilled", len(_LTX20_DISTILLED) - 1, fixed_sigmas=_LTX20_DISTILLED),
        refine=SamplerPreset("distilled stage 2", len(_LTX20_REFINE) - 1, fixed_sigmas=_LTX20_REFINE),
    ),
    # LTX-2.5 (reference HEAD): dev as 2.3 (LTX_2_4_PARAMS: 30 steps, STG block 28, image CRF 18); the distilled
    # fixed lists unchanged, stage 1 sampled Euler ancestral (distilled.py, ANCESTRAL_SAMPLER_SINCE_VERSION).
    "2.5": Recipe(
        family="2.5",
        dev=SamplerPreset("ltx2", 30, _dev_guidance(3.0, 28), _dev_guidance(7.0, 28)),
        distilled=SamplerPreset("distilled", len(_LTX20_DISTILLED) - 1, fixed_sigmas=_LTX20_DISTILLED,
                                sampler="euler_ancestral"),
        refine=SamplerPreset("distilled stage 2", len(_LTX20_REFINE) - 1, fixed_sigmas=_LTX20_REFINE),
        negative_prompt=NEGATIVE_PROMPT_25,
        image_crf=IMAGE_CRF_24,
    ),
}


def recipe_for(family: str | None = None) -> Recipe:
    """The recipe of a model family (None: ``DEFAULT_FAMILY``)."""
    family = DEFAULT_FAMILY if family is None else family
    recipe = RECIPES.get(family)
    if recipe is None:
        raise UnsupportedModelError(f"no sampling presets for the LTX-{family} family; presets exist for "
                                    f"{', '.join('LTX-' + f for f in RECIPES)}. Use a custom schedule and guidance, "
                                    "or add the family's presets to sampling/recipe.py.")
    return recipe


def start_at(sigmas: torch.Tensor, start_sigma: float) -> torch.Tensor:
    """The schedule from the first value <= ``start_sigma``, with ``start_sigma`` itself inserted when absent
    (the input latent is noised to the first value). A schedule value within float32 rounding of
    ``start_sigma`` is that value (the shifted schedule starts at 0.99999994, not 1.0): kept, not doubled."""
    if not 0.0 <= start_sigma <= 1.0:
        raise InputError(f"start_sigma {start_sigma} must lie in [0, 1].")
    values = [float(s) for s in sigmas]
    rest = [s for s in values if s < start_sigma or math.isclose(s, start_sigma, abs_tol=_SIGMA_ROUNDING)]
    if rest and math.isclose(rest[0], start_sigma, abs_tol=_SIGMA_ROUNDING):
        return torch.tensor(rest, dtype=torch.float32)
    return torch.tensor([float(start_sigma)] + rest, dtype=torch.float32)
