#!/usr/bin/env python3
"""Generate the shipped workflows from one source: ``python scripts/build_workflows.py``.

Writes, for every workflow below:

* ``example_workflows/<name>.json`` -- UI format (what users drag onto the canvas; ComfyUI's template
  browser lists a pack's top-level ``example_workflows``), with Note nodes, a shared ``seed`` and ``fps``
  PrimitiveNode, and the released model file names;
* ``workflows/<name>.api.json`` -- the API-format twin (headless ``run`` / ``queue``, ``/prompt``), same
  released names;
* ``workflows/demo/<name>.api.json`` -- the same graph on the tiny demo models
  (``python -m ltx2_nodes demo-models``) at a CPU-friendly size, and the demo input files it reads in
  ``workflows/demo/input/``. Demo weights never carry released names: the twin names the demo files.

Widget order, socket types and output types are read from the node classes themselves, so a file
can never disagree with the nodes; ``tests/test_workflows.py`` checks the checked-in files equal what
this script writes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ltx2_nodes.cli.core_nodes import CORE_NODE_CLASSES  # noqa: E402
from ltx2_nodes.cli.generate_cmd import RELEASED_23 as GENERATE_23  # noqa: E402
from ltx2_nodes.cli.generate_cmd import RELEASED_25 as GENERATE_25  # noqa: E402
from ltx2_nodes.demo import models as demo  # noqa: E402
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
from ltx2_nodes.nodes.loaders import FROM_MODEL  # noqa: E402
from ltx2_nodes.nodes.sampler import preset_widgets  # noqa: E402
from ltx2_nodes.sampling.recipe import DEFAULT_SEED, recipe_for  # noqa: E402

RELEASED = {"distilled": "ltx-2-19b-distilled-fp8.safetensors", "dev": "ltx-2-19b-dev-fp8.safetensors",
            "upscaler": "ltx-2-spatial-upscaler-x2-1.0.safetensors", "gemma": "gemma_3_12B_it.safetensors",
            "lora": "ltx-2-19b-distilled-lora-384.safetensors", "image": "example.png", "audio": "example.wav",
            "last_image": "example_last.png", "clip": "example_clip.gif", "video": "example.mp4"}
DEMO = {"distilled": demo.CHECKPOINT, "dev": demo.CHECKPOINT, "upscaler": demo.UPSCALER, "gemma": demo.GEMMA,
        "lora": demo.LORA, "image": "ltx2-demo-image.png", "audio": "ltx2-demo-audio.flac",
        "last_image": "ltx2-demo-image-last.png", "clip": "ltx2-demo-clip.gif", "video": "ltx2-demo-video.mp4"}
# LTX-2.3: the released names the generate CLI looks for (Lightricks/LTX-2.3, bf16), the same Gemma and inputs
RELEASED_23 = {**RELEASED, "distilled": GENERATE_23["checkpoints"][0], "dev": GENERATE_23["checkpoints"][1],
               "upscaler": GENERATE_23["latent_upscale_models"][0], "lora": GENERATE_23["loras"][0]}
DEMO_23 = {**DEMO, "distilled": demo.CHECKPOINT_23, "dev": demo.CHECKPOINT_23, "upscaler": demo.UPSCALER_23,
           "lora": demo.LORA_23}
# Reference sizes (ltx_pipelines constants): stage 1 at 768x512 -> 1536x1024 after the x2 upscaler, 121 frames
# at 24 fps. The demo twins run at 256x160 -> 512x320, 49 frames: seconds on a CPU.
RELEASED_SIZE = {"width": 768, "height": 512, "frames": 121, "seconds": 5.0, "extend_seconds": 5.0}
DEMO_SIZE = {"width": 256, "height": 160, "frames": 49, "seconds": 2.0, "extend_seconds": 1.0}
# The refine tiles of the tiled workflow: "auto" at the reference size (2 tiles at 1536x1024); the demo twin's small
# latent would be one tile, so it asks for 2x2 to run the tiled path for real.
RELEASED_SIZE["refine_tiles"], DEMO_SIZE["refine_tiles"] = "auto", "2x2"
FPS = 24.0
SEED = DEFAULT_SEED
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CLASSES = {**CORE_NODE_CLASSES, **NODE_CLASS_MAPPINGS}

DEFAULT_PROMPT = ("A red fox trots through fresh snow in a pine forest at dawn, its breath steaming in the cold air. "
                  "The camera follows it at ground level as it stops, lifts its head and listens; snow crunches "
                  "under its paws, wind hisses through the branches and a raven calls in the distance.")
I2V_PROMPT = ("The scene in the image comes to life: the camera slowly pushes in while the subject moves "
              "naturally, with soft ambient sound matching the place.")
A2V_PROMPT = ("A singer performs on a small stage under warm spotlights, moving to the rhythm of the music, "
              "the camera slowly circling her.")


@dataclass(frozen=True)
class Release:
    """One model family's shipped workflows: its recipe (``sampling/recipe.py``), the released and demo file
    names, the Hugging Face repository, and the prefix of its file names."""

    version: str
    label: str
    repository: str
    prefix: str
    released: dict
    demo: dict
    fp8_note: str = ""
    demo_size: dict | None = None  # None: DEMO_SIZE

    @property
    def recipe(self):
        return recipe_for(self.version)

    def preset(self, name: str) -> dict:
        """The samplers' widget values of the recipe's ``name`` preset (dev / distilled / refine)."""
        return preset_widgets(getattr(self.recipe, name), self.recipe.stg_blocks)


LTX_2 = Release("2.0", "LTX-2", "Lightricks/LTX-2", "", RELEASED, DEMO, " The bf16 files work as well.")
LTX_2_3 = Release("2.3", "LTX-2.3", "Lightricks/LTX-2.3", "ltx23_", RELEASED_23, DEMO_23)
RELEASES = (LTX_2, LTX_2_3)


@dataclass(frozen=True)
class Link:
    node: int
    slot: int = 0


@dataclass(frozen=True)
class Shared:
    """A widget value shared by several nodes: one PrimitiveNode in the UI file, constants in the API file."""

    name: str


@dataclass(frozen=True)
class Size:
    """A size widget: the reference size in the released files, a small one in the demo twin."""

    key: str


@dataclass(frozen=True)
class Model:
    """A file-name widget: the released name, or the demo one in the demo twin."""

    key: str


@dataclass
class Node:
    id: int
    type: str
    inputs: dict
    title: str | None = None
    pos: tuple[int, int] = (0, 0)


@dataclass
class Workflow:
    name: str
    description: str
    nodes: list[Node]
    shared: dict[str, tuple[str, object]]  # name -> (widget type, value)
    notes: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    release: Release = LTX_2


# ------------------------------------------------------------------------------------------------
# The graphs


def _col(i: int, row: int = 0) -> tuple[int, int]:
    return (40 + 380 * i, 60 + row)


def _front(checkpoint: str) -> list[Node]:
    return [
        Node(1, "LTX2CheckpointLoader", {"ckpt_name": Model(checkpoint), "weight_dtype": "auto", "fp8": "as stored"},
             pos=_col(0, 0)),
        Node(2, "LTX2GemmaLoader", {"gemma_name": Model("gemma"), "weight_dtype": "auto", "fp8": "as stored"},
             pos=_col(0, 260)),
    ]


def _prompt(node_id: int, text: str, title: str, row: int) -> Node:
    return Node(node_id, "LTX2GemmaEncode", {"gemma": Link(2), "prompt": text, "disk_cache": False}, title,
                _col(1, row))


def _empty_latent(node_id: int = 5) -> Node:
    return Node(node_id, "LTX2EmptyAVLatent", {"width": Size("width"), "height": Size("height"),
                                               "frames": Size("frames"), "seconds": 0.0, "fps": Shared("fps"),
                                               "batch_size": 1, "audio": True, "auto_length": False}, pos=_col(2, 520))


def _sampler(node_id: int, model: Link, latent: Link, preset: dict, title: str, pos, negative: Link | None = None
             ) -> Node:
    inputs = {"model": model, "positive": Link(4), "latent": latent, "seed": Shared("seed"), **preset}
    if negative is not None:
        inputs["negative"] = negative
    return Node(node_id, "LTX2Sampler", inputs, title, pos)


def _back(final: int, audio_decode_latent: int, prefix: str) -> list[Node]:
    return [
        Node(9, "LTX2VideoDecodeTiled", {"latent": Link(final), "video_vae": Link(1, 1), "tile_size": 0,
                                         "tile_overlap": 64, "temporal_tile": 0, "temporal_overlap": 24},
             pos=_col(5, 0)),
        Node(10, "LTX2AudioDecode", {"latent": Link(audio_decode_latent), "audio_vae": Link(1, 2)}, pos=_col(5, 260)),
        Node(11, "LTX2AVCombine", {"images": Link(9), "fps": Shared("fps"), "filename_prefix": prefix,
                                   "audio": Link(10)}, pos=_col(6, 0)),
    ]


def _original_sound(back: list[Node], audio: Link) -> list[Node]:
    """The output nodes muxing ``audio`` (the input sound itself) instead of the decoded audio latent."""
    kept = [node for node in back if node.type != "LTX2AudioDecode"]
    for node in kept:
        if node.type == "LTX2AVCombine":
            node.inputs["audio"] = audio
    return kept


def stage_note(r: Release) -> str:
    recipe = r.recipe
    return ("Two stages, as the reference pipeline: stage 1 samples at the Empty Latent's size (768x512 here), the "
              "x2 latent upscaler doubles it, stage 2 refines at 1536x1024 from sigma "
              f"{recipe.stage2_start_sigma:g} with the distilled {recipe.refine.steps}-step list. Width/height must "
              "be multiples of 64 here (32 after halving), frames 8k+1 (121 = 5 s at "
              "24 fps). The 'seed' and 'fps' boxes feed every node that needs them; a stage-2 sampler with stage 1's "
              "seed continues its noise stream exactly like the reference. Lower the size or frames if memory is "
              "short; the decode tiles itself to the free memory (0 = auto).")


def models_note(r: Release, checkpoint: str, lora: bool = False) -> str:
    if r.version == "2.5":
        return models_note_25(r, checkpoint)
    extra = f", {r.released['lora']} in models/loras" if lora else ""
    return (f"Models ({r.repository} on Hugging Face, google/gemma-3-12b-it): {r.released[checkpoint]} in "
            f"models/checkpoints, {r.released['upscaler']} in models/latent_upscale_models, gemma_3_12B_it.safetensors "
            f"(or the whole gemma-3-12b-it folder) in models/text_encoders{extra}.{r.fp8_note}")


def t2av_distilled(r: Release = LTX_2) -> Workflow:
    recipe = r.recipe
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        _sampler(6, Link(1), Link(5), r.preset("distilled"), "Stage 1 sampler (distilled)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Distilled model: guidance off (CFG 1, STG 0, modality 1) and the fixed "
              f"{recipe.distilled.steps}-step schedule; 'steps' is "
              "ignored. " + stage_note(r), _col(1, 420), (340, 300))]
    return Workflow(f"{r.prefix}t2av_distilled_two_stage",
                    f"Text to video with sound, {r.label} distilled, two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def t2av_dev(r: Release = LTX_2) -> Workflow:
    recipe, dev = r.recipe, r.preset("dev")
    nodes = _front("dev") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        _sampler(6, Link(1), Link(5), dev, "Stage 1 sampler (dev, guided)", _col(3, 0), negative=Link(14)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        Node(12, "LTX2LoraLoader", {"model": Link(1), "lora_name": Model("lora"),
                                    "strength": recipe.stage2_lora_strength}, pos=_col(3, 820)),
        _sampler(8, Link(12), Link(7), r.preset("refine"), "Stage 2 sampler (refine, distilled LoRA)", _col(4, 0)),
        _prompt(13, recipe.negative_prompt, "Negative prompt", 260),
        Node(14, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(13)}, "Negative connector",
             pos=_col(2, 260)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_dev")
    notes = [(models_note(r, "dev", lora=True),
              _col(0, 520), (340, 220)),
             (f"Dev model with the reference guidance: {dev['steps']} steps of the LTX-2 schedule, video CFG "
              f"{dev['video_cfg']:g} / audio CFG {dev['audio_cfg']:g} against the negative prompt, STG "
              f"{dev['stg_scale']:g} on block {dev['stg_blocks']}, modality guidance {dev['modality_scale']:g}, "
              f"rescale {dev['rescale']:g} (up to 4 model passes per step). Stage 2 refines with the distilled LoRA "
              f"at {recipe.stage2_lora_strength:g} and no guidance, as the reference two-stage "
              "dev pipeline. " + stage_note(r), _col(1, 620), (340, 360))]
    return Workflow(f"{r.prefix}t2av_dev_two_stage",
                    f"Text to video with sound, {r.label} dev with guidance, two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def i2av_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, I2V_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        Node(15, "LoadImage", {"image": Model("image")}, pos=_col(1, 620)),
        Node(16, "LTX2ImageToVideo", {"latent": Link(5), "video_vae": Link(1, 1), "image": Link(15),
                                      "frame_index": 0, "strength": 1.0, "crf": r.recipe.image_crf},
             pos=_col(2, 820)),
        _sampler(6, Link(1), Link(16), r.preset("distilled"), "Stage 1 sampler (distilled)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}i2av_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Image to video with sound: the image becomes frame 0 (strength 1 keeps it exactly; lower it to let the "
              "model change it). It is resized to cover the latent's size and centre-cropped, passed through one "
              "H.264 frame at CRF 33 like the reference, and encoded again at the stage-2 size by the second sampler. "
              "Other frame_index values place it as a keyframe guide. Describe the motion and the sound in the "
              "prompt (LTX-2 Prompt Enhance in i2v mode can write it). " + stage_note(r), _col(0, 760), (340, 420))]
    return Workflow(f"{r.prefix}i2av_distilled_two_stage",
                    f"Image to video with sound, {r.label} distilled, two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def a2v_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, A2V_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        Node(17, "LoadAudio", {"audio": Model("audio")}, pos=_col(1, 620)),
        Node(18, "LTX2AudioToLatent", {"latent": Link(5), "audio_vae": Link(1, 2), "audio": Link(17),
                                       "start_seconds": 0.0}, pos=_col(2, 820)),
        _sampler(6, Link(1), Link(18), r.preset("distilled"), "Stage 1 sampler (distilled)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _original_sound(_back(8, 8, f"LTX2/{r.prefix}a2v_distilled"), Link(18, 1))
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Audio to video: the audio (from start_seconds, as long as the video) is encoded into the audio latent "
              "and kept unchanged by both samplers while the video is generated to match it. The Save node muxes "
              "the ORIGINAL input audio (Audio to Latent's 'audio' output: that piece of the file, exactly the "
              "video's duration), as the reference a2vid pipeline, not the audio VAE's re-synthesis. "
              + stage_note(r), _col(0, 760), (340, 380))]
    return Workflow(f"{r.prefix}a2v_distilled_two_stage",
                    f"Audio to video, {r.label} distilled, two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def t2av_distilled_tiled_refine(r: Release = LTX_2) -> Workflow:
    """The distilled two-stage graph with stage 2 refined in tiles (``LTX2RefineTiles`` after the upscaler)."""
    workflow = t2av_distilled(r)
    for node in workflow.nodes:
        if node.id == 8:
            node.inputs["latent"], node.title = Link(19), "Stage 2 sampler (refine, in tiles)"
    workflow.nodes.append(Node(19, "LTX2RefineTiles", {"latent": Link(7), "tiles": Size("refine_tiles"), "overlap": 4,
                                                         "positions": "full grid"},
                               pos=_col(3, 820)))
    for node in workflow.nodes:
        if node.type == "LTX2AVCombine":
            node.inputs["filename_prefix"] = f"LTX2/{r.prefix}t2av_distilled_tiled_refine"
    workflow.notes.append((
        "High resolution: 'Refine in Tiles' makes the stage-2 sampler refine the upscaled latent in overlapping "
        "tiles blended with linear ramps (the paper's multi-tile strategy), so its memory is one tile's. 'auto' "
        "keeps each tile within a 1280x704 area (2 tiles at 1536x1024); for 1920x1088 set the Empty Latent to "
        "960x544, for 2560x1472 to 1280x736. Every tile keeps its true positions and the conditioning it overlaps; "
        "the audio is kept from stage 1 (refined once). Tiles see only their neighbourhood, so the result is an "
        "approximation of the untiled refine (1 tile = exactly it).", _col(4, 620), (340, 300)))
    return dataclasses.replace(workflow, name=f"{r.prefix}t2av_distilled_tiled_refine",
                               description=f"Text to video with sound, {r.label} distilled, two stages, stage 2 "
                                           "refined in tiles (high resolution)")



# ------------------------------------------------------------------------------------------------
# Editing workflows (issue 15): a soundtrack for a given video, text to audio, first -> last frame

V2A_PROMPT = ("Footsteps crunch on gravel as a person walks past, birds sing in the trees and a light breeze rustles "
              "the leaves; a car passes in the distance.")
T2A_PROMPT = ("A thunderstorm over a quiet village: heavy rain drums on a tin roof, thunder rolls in the distance "
              "and a dog barks twice.")
KEYFRAMES_PROMPT = ("The camera glides smoothly from the first shot to the last one, the scene changing continuously "
                    "in between, with ambient sound that follows the motion.")


def _connector(node_id: int, features: int, title: str | None, row: int) -> Node:
    return Node(node_id, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(features)}, title,
                _col(2, row))


def v2a_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, V2A_PROMPT, "Prompt (describe the sound)", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        Node(20, "LoadImage", {"image": Model("clip")}, "Load the video's frames", pos=_col(1, 620)),
        Node(21, "LTX2VideoToAudioLatent", {"latent": Link(5), "video_vae": Link(1, 1), "images": Link(20),
                                            "start_frame": 0}, pos=_col(2, 820)),
        _sampler(6, Link(1), Link(21), r.preset("distilled"), "Sampler (sound only: the video is kept)", _col(3, 0)),
        Node(10, "LTX2AudioDecode", {"latent": Link(6), "audio_vae": Link(1, 2)}, pos=_col(4, 260)),
        Node(11, "LTX2AVCombine", {"images": Link(21, 1), "fps": Shared("fps"),
                                   "filename_prefix": f"LTX2/{r.prefix}v2a_distilled", "audio": Link(10)},
             pos=_col(5, 0)),
    ]
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Video to audio: the frames are encoded into the video latent, which the sampler keeps exactly while it "
              "generates the sound (one stage: the picture is not regenerated, so no upscale). Set the Empty Latent's "
              "frames (8k+1) and fps to the clip's; its width/height are the size the model sees the video at "
              "(multiples of 32). The Save node muxes the ORIGINAL frames with the new sound. Load the frames with "
              "Load Image (an animated GIF/WebP) or core Load Video + Get Video Components (IMAGE and fps).",
              _col(0, 760), (340, 300))]
    return Workflow(f"{r.prefix}v2a_distilled_one_stage", f"Video to audio (a soundtrack for a video), {r.label} "
                    "distilled", nodes, {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def t2a_dev(r: Release = LTX_2) -> Workflow:
    dev = r.preset("dev")
    nodes = _front("dev") + [
        _prompt(3, T2A_PROMPT, "Prompt (describe the sound)", 0),
        _connector(4, 3, None, 0),
        _prompt(13, r.recipe.negative_prompt, "Negative prompt", 260),
        _connector(14, 13, "Negative connector", 260),
        Node(19, "LTX2AudioOnlyModel", {"model": Link(1)}, pos=_col(2, 520)),
        Node(22, "LTX2EmptyAudioLatent", {"seconds": Size("seconds"), "fps": Shared("fps"), "batch_size": 1},
             pos=_col(2, 660)),
        _sampler(6, Link(19), Link(22), dev, "Sampler (audio only, dev, guided)", _col(3, 0), negative=Link(14)),
        Node(10, "LTX2AudioDecode", {"latent": Link(6), "audio_vae": Link(1, 2)}, pos=_col(4, 0)),
        Node(23, "SaveAudio", {"audio": Link(10), "filename_prefix": f"LTX2/{r.prefix}t2a_dev"}, pos=_col(5, 0)),
    ]
    notes = [(models_note(r, "dev"), _col(0, 520), (340, 200)),
             ("Text to audio, as the reference t2a_one_stage pipeline: the Audio-Only Model runs the DiT's audio "
              "stream alone -- the video blocks and the audio<->video cross-attention are never loaded, read or "
              f"moved. One stage of the dev model: {dev['steps']} steps, audio CFG {dev['audio_cfg']:g} against the "
              f"negative prompt, STG {dev['stg_scale']:g}. The length is 'seconds' (counted in frames at 'fps', as "
              "the reference); the FLAC lands in the output folder.", _col(0, 760), (340, 300))]
    return Workflow(f"{r.prefix}t2a_dev_one_stage", f"Text to audio (no video weights loaded), {r.label} dev",
                    nodes, {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def keyframes_distilled(r: Release = LTX_2) -> Workflow:
    crf = r.recipe.image_crf
    nodes = _front("distilled") + [
        _prompt(3, KEYFRAMES_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        Node(15, "LoadImage", {"image": Model("image")}, "First frame", pos=_col(1, 620)),
        Node(24, "LoadImage", {"image": Model("last_image")}, "Last frame", pos=_col(1, 980)),
        Node(16, "LTX2ImageToVideo", {"latent": Link(5), "video_vae": Link(1, 1), "image": Link(15),
                                      "frame_index": 0, "strength": 1.0, "crf": crf}, "First frame (frame 0)",
             pos=_col(2, 820)),
        Node(25, "LTX2ImageToVideo", {"latent": Link(16), "video_vae": Link(1, 1), "image": Link(24),
                                      "frame_index": -1, "strength": 1.0, "crf": crf}, "Last frame (frame -1)",
             pos=_col(2, 1100)),
        _sampler(6, Link(1), Link(25), r.preset("distilled"), "Stage 1 sampler (distilled)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}keyframes_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("First -> last frame: the first image replaces frame 0, the second guides the last frame (frame_index -1 "
              "counts from the end, so the clip length can change freely); the model fills the motion in between. "
              "Chain more Image to Video nodes for middle keyframes (any frame_index). Keyframe guides append tokens "
              "as the reference keyframe_interpolation pipeline (which also guides frame 0 rather than replacing "
              "it). " + stage_note(r), _col(0, 760), (340, 420))]
    return Workflow(f"{r.prefix}keyframes_distilled_two_stage",
                    f"First and last frame to video with sound, {r.label} distilled, two stages", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


# ------------------------------------------------------------------------------------------------
# Editing workflows (issue 15): extend a clip with its sound, retake a time window of a video file

EXTEND_NOTE = ("Extend: stage 1 makes a clip at the Empty Latent's size (one stage, 768x512 here); each 'Extend "
               "Window' keeps the clip's last 'overlap' latent frames and their audio exactly and adds 'seconds' more, "
               "placed at their positions in the whole clip; its sampler generates the new part (connect another "
               "prompt's Text Connector to a segment's sampler to change what happens next) and 'Extend Join' appends "
               "it. Every segment samples a window of the same size, so memory stays flat as the clip grows; copy the "
               "window -> sampler -> join group for more (12 five-second segments reach 60 s). Past about 20 s the "
               "positions leave the range the model was trained on: see the README.")
RETAKE_NOTE = ("Retake: Load Video -> Get Video Components -> Video Encode turns the file's frames and sound into "
               "latents (tiled; 'fit' cuts to 8k+1 frames and sides multiples of 32), 'Retake' marks start..end "
               "seconds for regeneration (video, audio or both) and the sampler regenerates only that window from "
               "the prompt: everything outside it is kept exactly. Set the fps box to the video's frame rate.")


def extend_distilled(r: Release = LTX_2) -> Workflow:
    distilled = r.preset("distilled")
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        _sampler(6, Link(1), Link(5), distilled, "Segment 1 sampler (distilled)", _col(3, 0)),
    ]
    clip = 6
    for segment, (window, sampler, join) in enumerate(((19, 20, 21), (22, 23, 24)), start=2):
        nodes += [
            Node(window, "LTX2ExtendWindow", {"latent": Link(clip), "seconds": Size("extend_seconds"), "overlap": 2},
                 pos=_col(segment + 1, 620)),
            _sampler(sampler, Link(1), Link(window), distilled, f"Segment {segment} sampler (distilled)",
                     _col(segment + 2, 0)),
            Node(join, "LTX2ExtendJoin", {"clip": Link(clip), "window": Link(sampler)}, pos=_col(segment + 2, 820)),
        ]
        clip = join
    back = _back(clip, clip, f"LTX2/{r.prefix}extend")
    nodes += [dataclasses.replace(n, pos=(n.pos[0] + 760, n.pos[1])) for n in back]
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)), (EXTEND_NOTE, _col(1, 420), (340, 320))]
    return Workflow(f"{r.prefix}extend_distilled", f"Extend a clip with its sound, {r.label} distilled, three segments",
                    nodes, {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


def retake_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        Node(25, "LoadVideo", {"file": Model("video")}, pos=_col(1, 620)),
        Node(26, "GetVideoComponents", {"video": Link(25)}, pos=_col(1, 820)),
        Node(27, "LTX2VideoEncode", {"video_vae": Link(1, 1), "images": Link(26, 0), "fps": Shared("fps"), "fit": True,
                                     "audio_vae": Link(1, 2), "audio": Link(26, 1)}, pos=_col(2, 620)),
        Node(28, "LTX2Retake", {"latent": Link(27), "start_seconds": 0.5, "end_seconds": 1.5, "video": True,
                                "audio": True}, pos=_col(2, 900)),
        _sampler(6, Link(1), Link(28), r.preset("distilled"), "Retake sampler (distilled)", _col(3, 0)),
    ] + _back(6, 6, f"LTX2/{r.prefix}retake")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)), (RETAKE_NOTE, _col(0, 760), (340, 260))]
    return Workflow(f"{r.prefix}retake_distilled", f"Retake a time window of a video with sound, {r.label} distilled",
                    nodes, {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


EDITING_WORKFLOWS = (extend_distilled, retake_distilled)


def demo_video(path: Path, frames: int = 49, width: int = 256, height: int = 160, fps: float = FPS) -> Path:
    """A deterministic moving-gradient MP4 with the demo chirp as its sound (the retake demo's input)."""
    import torch

    from ltx2_nodes.media.audio_io import load_audio_file
    from ltx2_nodes.media.mux import MP4Writer

    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1)
    y = torch.arange(height, dtype=torch.float32).view(1, -1, 1) / height
    x = torch.arange(width, dtype=torch.float32).view(1, 1, -1) / width
    images = torch.stack([(x + t / frames) % 1.0 * torch.ones_like(y), y * torch.ones_like(x) + 0 * t,
                          0.5 + 0.5 * torch.sin(6.28 * (x - t / frames)) * torch.ones_like(y)], dim=-1)
    audio = load_audio_file(path.parent / DEMO["audio"], downmix=False)
    with MP4Writer(path, fps, audio_sample_rate=int(audio["sample_rate"]),
                   audio_channels=audio["waveform"].shape[1]) as writer:
        writer.add_frames(images)
        writer.set_audio(audio["waveform"][0])
    return path


WORKFLOWS = (t2av_distilled, t2av_dev, i2av_distilled, a2v_distilled, t2av_distilled_tiled_refine, v2a_distilled,
             t2a_dev, keyframes_distilled, *EDITING_WORKFLOWS)


# ------------------------------------------------------------------------------------------------
# LTX-2.5 (issue 19): split files -- the transformer in diffusion_models brings the rest of its release from the
# model folders; the T2AV and I2AV graphs above with its recipe, and one with keyframe slots and auto length

RELEASED_25 = {**RELEASED, "distilled": GENERATE_25["diffusion_models"][0], "dev": GENERATE_25["diffusion_models"][1],
               "upscaler": GENERATE_25["latent_upscale_models"][0], "gemma": GENERATE_25["text_encoders"][0],
               "lora": GENERATE_25["loras"][0]}
DEMO_25 = {**DEMO, "distilled": demo.TRANSFORMER_25, "dev": demo.TRANSFORMER_25, "upscaler": demo.UPSCALER_25,
           "gemma": demo.TEXT_ENCODER_25, "lora": demo.LORA_23}
FILES_25 = {"video VAE": "ltx-2.5-video-vae-bf16.safetensors", "audio VAE": "ltx-2.5-audio-vae-bf16.safetensors",
            "duration head": "ltx-2.5-duration-head-bf16.safetensors"}
# the diffusion decoder denoises every pixel: the 2.5 demo twins run smaller (192x128 -> 384x256, 25 frames)
LTX_2_5 = Release("2.5", "LTX-2.5", "Lightricks/LTX-2.5", "ltx25_", RELEASED_25, DEMO_25,
                  demo_size={"width": 192, "height": 128, "frames": 25})


def models_note_25(r: Release, checkpoint: str) -> str:
    return (f"Models ({r.repository} on Hugging Face), one file per component: {r.released[checkpoint]} in "
            f"models/diffusion_models (pick it in the loader: it finds the others), {r.released['gemma']} (Gemma 4 + "
            f"text projection; its Gemma version must be the transformer's) in models/text_encoders, "
            f"{FILES_25['video VAE']} (diffusion decoder) and {FILES_25['audio VAE']} (48 kHz) in models/vae, "
            f"{FILES_25['duration head']} in models/model_patches, {r.released['upscaler']} in "
            "models/latent_upscale_models. Stage 1 samples with Euler ancestral (the reference's 2.5 distilled "
            "pipeline); the video VAE denoises pixels in a few seeded steps while decoding.")


def keyframes_auto_length(r: Release = LTX_2_5) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        Node(20, "LTX2DurationHeadLoader", {"head_name": FROM_MODEL, "model": Link(1)}, pos=_col(1, 620)),
        Node(5, "LTX2EmptyAVLatent", {"width": Size("width"), "height": Size("height"), "frames": Size("frames"),
                                      "seconds": 0.0, "fps": Shared("fps"), "batch_size": 1, "audio": True,
                                      "auto_length": True, "duration_head": Link(20), "conditioning": Link(4)},
             title="Empty Latent (auto length)", pos=_col(2, 520)),
        Node(21, "LTX2KeyframeSlots", {"latent": Link(5), "count": 2, "frames": ""}, pos=_col(2, 820)),
        _sampler(6, Link(1), Link(21), r.preset("distilled"), "Stage 1 sampler (distilled, ancestral)", _col(3, 0)),
        Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1), "upscale_model": Model("upscaler")},
             pos=_col(3, 620)),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
        Node(22, "LTX2GeneratedKeyframes", {"latent": Link(8)}, pos=_col(5, 520)),
        Node(23, "LTX2VideoDecodeTiled", {"latent": Link(22), "video_vae": Link(1, 1), "tile_size": 0,
                                          "tile_overlap": 64, "temporal_tile": 0, "temporal_overlap": 24},
             "Decode keyframes", pos=_col(5, 720)),
        Node(24, "LTX2AVCombine", {"images": Link(23), "fps": 1.0, "filename_prefix": f"LTX2/{r.prefix}keyframes"},
             "Save keyframes (one per second)", pos=_col(6, 520)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_keyframes_auto_length")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 300)),
             ("LTX-2.5 extras. Auto length: the duration head (from the model's pack) predicts the clip's duration "
              "from the prompt (clamped to 1..20 s, 8k+1 frames); the frames widget is ignored while auto_length is "
              "on. Keyframe slots: the stage-1 sampler also generates 2 standalone keyframes at evenly spaced frames "
              "(or the frames you list); they never appear in the video: Generated Keyframes takes them after "
              "sampling and the second Save writes them as a one-frame-per-second clip. " + stage_note(r),
              _col(0, 860), (340, 420))]
    return Workflow(f"{r.prefix}t2av_keyframes_auto_length",
                    f"Text to video with sound, {r.label} distilled, auto length and generated keyframes", nodes,
                    {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}, notes, r)


ALL_RELEASES = RELEASES + (LTX_2_5,)
RELEASE_WORKFLOWS = [(release, make) for release in RELEASES for make in WORKFLOWS] + [
    (LTX_2_5, make) for make in (t2av_distilled, i2av_distilled, keyframes_auto_length)]


# ------------------------------------------------------------------------------------------------
# Resolving values


def _value(value, names: dict, size: dict, shared: dict):
    if isinstance(value, Model):
        return names[value.key]
    if isinstance(value, Shared):
        return shared[value.name][1]
    if isinstance(value, Size):
        return size[value.key]
    return value


def _declared(node_type: str) -> list[tuple[str, object, dict, str]]:
    """(name, type, options, section) of a class's inputs in serialisation order (required, optional)."""
    declared = CLASSES[node_type].INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, info in (declared.get(section) or {}).items():
            info = info if isinstance(info, (tuple, list)) else (info,)
            out.append((name, info[0], info[1] if len(info) > 1 and isinstance(info[1], dict) else {}, section))
    return out


def is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def output_types(node_type: str) -> tuple:
    return tuple(CLASSES[node_type].RETURN_TYPES)


def output_names(node_type: str) -> tuple:
    cls = CLASSES[node_type]
    return tuple(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)


def title_of(node: Node) -> str:
    return node.title or NODE_DISPLAY_NAME_MAPPINGS.get(node.type, node.type)


def api_format(workflow: Workflow, names: dict, size: dict) -> dict:
    prompt = {}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        inputs = {}
        for name, value in node.inputs.items():
            inputs[name] = [str(value.node), value.slot] if isinstance(value, Link) else \
                _value(value, names, size, workflow.shared)
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": title_of(node)}}
    return prompt


def _order(workflow: Workflow) -> dict[int, int]:
    """Execution order index per node (the UI's ``order``)."""
    deps = {n.id: {v.node for v in n.inputs.values() if isinstance(v, Link)} for n in workflow.nodes}
    order, done = {}, set()
    while len(done) < len(deps):
        ready = sorted(n for n in deps if n not in done and deps[n] <= done)
        for n in ready:
            order[n] = len(order)
            done.add(n)
    return order


def _size(widgets: int, sockets: int, wide: bool = False) -> list[int]:
    return [400 if wide else 320, 46 + 24 * max(widgets, 0) + 22 * max(sockets, 0)]


def ui_format(workflow: Workflow, names: dict, size: dict) -> dict:
    links, nodes = [], []
    primitives = {name: 100 + i for i, name in enumerate(workflow.shared)}
    primitive_links: dict[str, list[int]] = {name: [] for name in workflow.shared}
    outgoing: dict[tuple[int, int], list[int]] = {}
    order = _order(workflow)
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        declared = _declared(node.type)
        inputs, widgets = [], []
        for name, kind, options, section in declared:
            value = node.inputs.get(name)
            if is_widget(kind, options):
                widgets.append(_value(value, names, size, workflow.shared) if value is not None
                               else options.get("default", kind[0] if isinstance(kind, list) and kind else None))
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if isinstance(value, Shared):
                    link_id = len(links) + 1
                    inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link_id})
                    links.append([link_id, primitives[value.name], 0, node.id, len(inputs) - 1, kind])
                    primitive_links[value.name].append(link_id)
                continue
            entry = {"name": name, "type": kind, "link": None}
            if section == "optional":
                entry["shape"] = 7  # the frontend draws optional sockets hollow
            if isinstance(value, Link):
                link_id = len(links) + 1
                entry["link"] = link_id
                source = next(n for n in workflow.nodes if n.id == value.node)
                links.append([link_id, value.node, value.slot, node.id, len(inputs),
                              output_types(source.type)[value.slot]])
                outgoing.setdefault((value.node, value.slot), []).append(link_id)
            inputs.append(entry)
        if node.type == "LoadImage":
            widgets.append("image")  # the upload button's value, as the frontend saves it
        nodes.append({"id": node.id, "type": node.type, "pos": list(node.pos),
                      "size": _size(len(widgets), len(inputs), node.type in ("LTX2GemmaEncode", "LTX2Sampler")),
                      "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": [],
                      "properties": {"Node name for S&R": node.type}, "widgets_values": widgets,
                      **({"title": node.title} if node.title else {})})
    for entry, node in zip(nodes, sorted(workflow.nodes, key=lambda n: n.id)):
        entry["outputs"] = [{"name": name, "type": kind, "links": outgoing.get((node.id, slot), []), "slot_index": slot}
                            for slot, (name, kind) in enumerate(zip(output_names(node.type), output_types(node.type)))]
    for i, (name, (kind, value)) in enumerate(workflow.shared.items()):
        widgets = [value, "fixed"] if name == "seed" else [value]
        nodes.append({"id": primitives[name], "type": "PrimitiveNode", "pos": [40, 1400 + 120 * i], "size": [260, 82],
                      "flags": {}, "order": len(order) + i, "mode": 0, "inputs": [],
                      "outputs": [{"name": kind, "type": kind, "links": primitive_links[name], "slot_index": 0,
                                   "widget": {"name": name}}],
                      "title": name, "properties": {"Run widget replace on values": False}, "widgets_values": widgets})
    for i, (text, pos, box) in enumerate(workflow.notes):
        nodes.append({"id": 200 + i, "type": "Note", "pos": list(pos), "size": list(box), "flags": {},
                      "order": len(order) + len(workflow.shared) + i, "mode": 0, "inputs": [], "outputs": [],
                      "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"})
    nodes.sort(key=lambda n: n["id"])
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]},
                                                 "ltx2_nodes": {"workflow": workflow.name,
                                                                "description": workflow.description}},
            "version": 0.4}


# ------------------------------------------------------------------------------------------------
# Demo inputs


def _demo_pixels(width: int, height: int, disc_x: float = 0.6):
    """A colour gradient with a yellow disc centred at ``disc_x`` of the width, ``[H, W, 3]`` uint8."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 23.0) * np.cos(y / 17.0)], axis=-1)
    disc = (x - width * disc_x) ** 2 + (y - height * 0.45) ** 2 < (height * 0.2) ** 2
    rgb[disc] = (0.95, 0.85, 0.2)
    return (rgb * 255).round().astype(np.uint8)


def demo_image(path: Path, width: int = 384, height: int = 256, disc_x: float = 0.6) -> Path:
    """A deterministic colour-gradient PNG with a disc (written with PyAV, no Pillow needed)."""
    import av

    pixels = _demo_pixels(width, height, disc_x)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def demo_clip(path: Path, frames: int = DEMO_SIZE["frames"], width: int = DEMO_SIZE["width"],
              height: int = DEMO_SIZE["height"]) -> Path:
    """A deterministic animated GIF (the disc crossing the picture), the video-to-audio demo input: Load Image
    reads every frame of it."""
    import av

    with av.open(str(path), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb8"
        for i in range(frames):
            pixels = _demo_pixels(width, height, 0.2 + 0.6 * i / max(frames - 1, 1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def demo_audio(path: Path, seconds: float = 4.0, rate: int = 16000) -> Path:
    """A deterministic stereo chirp with a beat, as 16-bit WAV."""
    import torch

    from ltx2_nodes.media.audio_io import write_audio_file

    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * (220 * t + 110 * t * t / seconds))
    beat = (torch.sin(2 * math.pi * 2 * t) > 0.9).double() * torch.sin(2 * math.pi * 60 * t)
    wave = torch.stack([0.3 * tone + 0.3 * beat, 0.3 * tone - 0.2 * beat]).float()
    return write_audio_file(path, {"waveform": wave.unsqueeze(0), "sample_rate": rate})


# ------------------------------------------------------------------------------------------------


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[Path, str]:
    """Every generated text file, relative to the repository root -> its content."""
    import workflows_iclora  # issue 16: IC-LoRA control (its own module; it imports this one)

    files = {}
    for release, make in RELEASE_WORKFLOWS + workflows_iclora.ICLORA_WORKFLOWS:
        workflow = make(release)
        files[Path("example_workflows") / f"{workflow.name}.json"] = _dump(
            ui_format(workflow, release.released, RELEASED_SIZE))
        files[Path("workflows") / f"{workflow.name}.api.json"] = _dump(
            api_format(workflow, release.released, RELEASED_SIZE))
        files[Path("workflows") / "demo" / f"{workflow.name}.api.json"] = _dump(
            api_format(copy.deepcopy(workflow), release.demo, release.demo_size or DEMO_SIZE))
    return files


def main() -> int:
    import workflows_iclora

    for relative, text in build().items():
        path = REPO / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(relative)
    inputs = REPO / "workflows" / "demo" / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    print(demo_image(inputs / DEMO["image"]).relative_to(REPO))
    print(demo_audio(inputs / DEMO["audio"]).relative_to(REPO))
    print(demo_image(inputs / DEMO["last_image"], disc_x=0.25).relative_to(REPO))
    print(demo_clip(inputs / DEMO["clip"]).relative_to(REPO))
    if not (inputs / DEMO["video"]).is_file():  # an MP4 is not byte-stable across encoder builds: written once
        print(demo_video(inputs / DEMO["video"]).relative_to(REPO))
    print(*(p.relative_to(REPO) for p in workflows_iclora.write_demo_inputs(inputs)), sep="\n")
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("build_workflows", sys.modules[__name__])  # one module for the family modules importing it
    sys.exit(main())
