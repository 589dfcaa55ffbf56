"""The HQ two-stage workflow of LTX-2 and LTX-2.3 (``scripts/build_workflows.py``): the reference's
``TI2VidTwoStagesHQPipeline`` on the dev model, its values from ``sampling/recipe.py`` (the HQ preset); and the
LTX-2.3 upscaler options between two distilled stages: x1.5 (stage 1 at 2/3 of the size) and temporal x2 (stage 1
at half the frame rate)."""

from __future__ import annotations

from workflow_graph import (DEFAULT_PROMPT, FPS, LTX_2, LTX_2_3, RELEASES, SEED, Link, Model, Node, Release, Shared,
                            Size, Workflow, _back, _col, _empty_latent, _front, _prompt, _sampler, _upscaler,
                            models_note, stage_note)

from ltx2_nodes.model.shapes import TEMPORAL_FACTOR

from ltx2_nodes.nodes.sampler import preset_widgets


def t2av_hq(r: Release = LTX_2) -> Workflow:
    """Dev model, res_2s in both stages: stage 1 with guidance and the distilled LoRA at its stage-1 strength,
    stage 2 with the LoRA at its stage-2 strength (each stage its own LoRA loader on the base model)."""
    recipe = r.recipe
    first = preset_widgets(recipe.preset("hq"), recipe.stg_blocks)
    second = preset_widgets(recipe.refine_preset("hq"), recipe.stg_blocks)
    lora1, lora2 = recipe.stage_lora_strengths("hq")
    nodes = _front("dev") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        Node(15, "LTX2LoraLoader", {"model": Link(1), "lora_name": Model("lora"), "strength": lora1},
             "Distilled LoRA (stage 1)", pos=_col(2, 820)),
        _sampler(6, Link(15), Link(5), first, "Stage 1 sampler (HQ: res_2s, guided)", _col(3, 0), negative=Link(14)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        Node(12, "LTX2LoraLoader", {"model": Link(1), "lora_name": Model("lora"), "strength": lora2},
             "Distilled LoRA (stage 2)", pos=_col(3, 820)),
        _sampler(8, Link(12), Link(7), second, "Stage 2 sampler (HQ refine, res_2s)", _col(4, 0)),
        _prompt(13, recipe.negative_prompt, "Negative prompt", 260),
        Node(14, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(13)}, "Negative connector",
             pos=_col(2, 260)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_hq")
    notes = [(models_note(r, "dev", lora=True), _col(0, 520), (340, 220)),
             (f"HQ recipe (the reference's two-stage HQ pipeline) on the dev model: the res_2s sampler (two model "
              f"evaluations per step) in both stages; stage 1 {first['steps']} steps of the LTX-2 schedule shifted by "
              f"the latent's token count, video CFG {first['video_cfg']:g} / audio CFG {first['audio_cfg']:g} "
              f"against the negative prompt, modality {first['modality_scale']:g}, STG off, rescale "
              f"{first['rescale']:g} (audio {first['audio_rescale']:g}), the distilled LoRA at {lora1:g}; stage 2 "
              f"the distilled stage-2 list with no guidance and the LoRA at {lora2:g}. " + stage_note(r),
              _col(1, 620), (340, 380))]
    return Workflow(f"{r.prefix}t2av_hq_two_stage",
                    f"Text to video with sound, {r.label} dev, HQ recipe (res_2s), two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def t2av_distilled_x1_5(r: Release = LTX_2_3) -> Workflow:
    """The distilled two-stage graph with the rational x1.5 upscaler: stage 1 at 768x512, stage 2 at 1152x768."""
    recipe = r.recipe
    latent = _empty_latent()
    latent.inputs["height"] = Size("x1_5_height")
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        latent,
        _sampler(6, Link(1), Link(5), r.preset("distilled"), "Stage 1 sampler (distilled, 2/3 size)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1),
                                       "upscale_model": Model("upscaler_x1_5")}, "Latent upscaler x1.5",
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_distilled_x1_5")
    notes = [(models_note(r, "distilled").replace(r.released["upscaler"], r.released["upscaler_x1_5"]),
              _col(0, 520), (340, 200)),
             ("The x1.5 spatial upscaler (rational 3/2) between the stages: stage 1 samples 2/3 of the final size "
              "(768x512 here -> 1152x768), its latent height and width must be even, so the final sides are "
              f"multiples of 96. Distilled model: guidance off, the fixed {recipe.distilled.steps}-step list; stage 2 "
              f"refines from sigma {recipe.stage2_start_sigma:g} with the distilled {recipe.refine.steps}-step list "
              "(fewer stage-2 tokens than after x2: 2.25x stage 1's instead of 4x).", _col(1, 420), (340, 260))]
    return Workflow(f"{r.prefix}t2av_distilled_x1_5_upscale",
                    f"Text to video with sound, {r.label} distilled, two stages with the x1.5 upscaler", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def t2av_distilled_temporal_x2(r: Release = LTX_2_3) -> Workflow:
    """The distilled two-stage graph with the x2 spatial and then the x2 temporal upscaler: stage 1 samples
    (F + 1) / 2 frames at half the frame rate (121 at 12 fps), stage 2 refines 2F - 1 latent frames at the full
    rate (241 at 24 fps, 10 s), as ``generate --temporal-upscaler``."""
    recipe = r.recipe
    latent = _empty_latent()
    latent.inputs.update(frames=Size("temporal_frames"), fps=Shared("stage1_fps"))
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        latent,
        _sampler(6, Link(1), Link(5), r.preset("distilled"), "Stage 1 sampler (distilled, half the frame rate)",
                 _col(3, 0)),
        _upscaler(),
        Node(12, "LTX2LatentUpscaler", {"latent": Link(7), "video_vae": Link(1, 1),
                                        "upscale_model": Model("upscaler_temporal")}, "Temporal upscaler x2",
             pos=_col(3, 820)),
        _sampler(8, Link(1), Link(12), r.preset("refine"), "Stage 2 sampler (refine, full frame rate)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_distilled_temporal_x2")
    notes = [(models_note(r, "distilled") + f" The temporal upscaler: {r.released['upscaler_temporal']} in "
              "models/latent_upscale_models.", _col(0, 520), (340, 220)),
             (f"The temporal x2 upscaler after the spatial one: stage 1 samples at half the frame rate (stage1_fps "
              f"{FPS / TEMPORAL_FACTOR:g}: the Empty Latent's 121 frames are 10 s), the spatial upscaler doubles "
              "the size, the temporal one maps F frames to 2F - 1 at twice the rate (241 frames at 24 fps, the same "
              "10 s), and stage 2 refines at the full rate. Keep fps = 2 x stage1_fps (fps is what the MP4 is "
              "written at) and the Empty Latent's frames 8k + 1 (the output then has 16k + 1). Distilled model: "
              f"guidance off, the fixed {recipe.distilled.steps}-step list; stage 2 refines from sigma "
              f"{recipe.stage2_start_sigma:g} with the distilled {recipe.refine.steps}-step list.",
              _col(1, 420), (340, 300))]
    return Workflow(f"{r.prefix}t2av_distilled_temporal_x2_upscale",
                    f"Text to video with sound, {r.label} distilled, two stages with the temporal x2 upscaler",
                    nodes, {"seed": ("INT", SEED), "fps": ("FLOAT", FPS),
                            "stage1_fps": ("FLOAT", FPS / TEMPORAL_FACTOR)}, notes, r)


RELEASE_WORKFLOWS = [(release, t2av_hq) for release in RELEASES] + [(LTX_2_3, t2av_distilled_x1_5),
                                                                    (LTX_2_3, t2av_distilled_temporal_x2)]
