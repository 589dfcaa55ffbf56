"""The vocabulary of the shipped workflows (``scripts/build_workflows.py``): the model families' released and demo
file names (``Release``), the reference and demo sizes, the graph values (``Link``, ``Shared``, ``Size``, ``Model``),
``Node`` and ``Workflow``, and the node groups and notes every family's graphs share (loaders, prompt, empty latent,
sampler, decode and save)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ltx2_nodes.cli.generate_cmd import RELEASED_23 as GENERATE_23  # noqa: E402
from ltx2_nodes.cli.generate_cmd import RELEASED_25 as GENERATE_25  # noqa: E402
from ltx2_nodes.demo import models as demo  # noqa: E402
from ltx2_nodes.nodes.sampler import LTX2Sampler, preset_widgets  # noqa: E402
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
               "upscaler": GENERATE_23["latent_upscale_models"][0], "lora": GENERATE_23["loras"][0],
               "upscaler_x1_5": "ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors",
               "upscaler_temporal": "ltx-2.3-temporal-upscaler-x2-1.0.safetensors"}
DEMO_23 = {**DEMO, "distilled": demo.CHECKPOINT_23, "dev": demo.CHECKPOINT_23, "upscaler": demo.UPSCALER_23,
           "lora": demo.LORA_23, "upscaler_x1_5": demo.UPSCALER_X1_5_23, "upscaler_temporal": demo.UPSCALER_TEMPORAL_23}
# Reference sizes (ltx_pipelines constants): stage 1 at 768x512 -> 1536x1024 after the x2 upscaler, 121 frames
# at 24 fps. The demo twins run at 256x160 -> 512x320, 49 frames: seconds on a CPU.
RELEASED_SIZE = {"width": 768, "height": 512, "frames": 121, "seconds": 5.0, "extend_seconds": 5.0}
DEMO_SIZE = {"width": 256, "height": 160, "frames": 49, "seconds": 2.0, "extend_seconds": 1.0}
# The refine tiles of the tiled workflow: "auto" at the reference size (2 tiles at 1536x1024); the demo twin's small
# latent would be one tile, so it asks for 2x2 to run the tiled path for real.
RELEASED_SIZE["refine_tiles"], DEMO_SIZE["refine_tiles"] = "auto", "2x2"
# The x1.5 upscaler needs stage 1's latent sides even: its demo twin samples 256x192 (-> 384x288), not 256x160.
RELEASED_SIZE["x1_5_height"], DEMO_SIZE["x1_5_height"] = 512, 192
# The temporal x2 upscaler: stage 1 samples (F + 1) / 2 frames at half the frame rate (model.shapes.stage1_frames),
# so the final frame count is 1 + 16k: 121 at 12 fps -> 241 at 24 fps (10 s); the demo twin 25 -> 49 frames.
RELEASED_SIZE["temporal_frames"], DEMO_SIZE["temporal_frames"] = 121, 25
FPS = 24.0
SEED = DEFAULT_SEED

DEFAULT_PROMPT = ("A red fox trots through fresh snow in a pine forest at dawn, its breath steaming in the cold air. "
                  "The camera follows it at ground level as it stops, lifts its head and listens; snow crunches "
                  "under its paws, wind hisses through the branches and a raven calls in the distance.")


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

# LTX-2.5 (issue 19): split files -- the transformer in diffusion_models brings the rest of its release from the
# model folders (its graphs: workflows_25.py)
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


def models_note_25(r: Release, checkpoint: str, lora: bool = False) -> str:
    sampling = ("Stage 1 samples with Euler ancestral (the reference's 2.5 distilled pipeline); the video VAE"
                if checkpoint == "distilled" else "The video VAE")
    return (f"Models ({r.repository} on Hugging Face), one file per component: {r.released[checkpoint]} in "
            f"models/diffusion_models (pick it in the loader: it finds the others), {r.released['gemma']} (Gemma 4 + "
            f"text projection; its Gemma version must be the transformer's) in models/text_encoders, "
            f"{FILES_25['video VAE']} (diffusion decoder) and {FILES_25['audio VAE']} (48 kHz) in models/vae, "
            f"{FILES_25['duration head']} in models/model_patches, {r.released['upscaler']} in "
            "models/latent_upscale_models" + (f", {r.released['lora']} in models/loras" if lora else "")
            + f". {sampling} denoises pixels in a few seeded steps while decoding.")


ALL_RELEASES = RELEASES + (LTX_2_5,)


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
    inputs = {"model": model, "positive": Link(4), "latent": latent, "seed": Shared("seed"), **preset,
              "gpus": LTX2Sampler.INPUT_TYPES()["optional"]["gpus"][1]["default"]}  # shared graphs: one GPU
    if negative is not None:
        inputs["negative"] = negative
    return Node(node_id, "LTX2Sampler", inputs, title, pos)


def _upscaler() -> Node:
    """The x2 latent upscaler (node 7) on stage 1's output (node 6)."""
    return Node(7, "LTX2LatentUpscaler", {"latent": Link(6), "video_vae": Link(1, 1),
                                          "upscale_model": Model("upscaler")},
                pos=_col(3, 620))


def _two_stages(r: Release, latent: Link, title: str = "Stage 1 sampler (distilled)") -> list[Node]:
    """The distilled two-stage recipe on ``latent``: stage 1 (node 6), the x2 upscaler (7), the stage-2 refine (8)."""
    return [_sampler(6, Link(1), latent, r.preset("distilled"), title, _col(3, 0)), _upscaler(),
            _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0))]


def _seed_and_fps() -> dict[str, tuple[str, object]]:
    """The widgets every graph shares: one seed and one fps box."""
    return {"seed": ("INT", SEED), "fps": ("FLOAT", FPS)}


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
        return models_note_25(r, checkpoint, lora)
    extra = f", {r.released['lora']} in models/loras" if lora else ""
    return (f"Models ({r.repository} on Hugging Face, google/gemma-3-12b-it): {r.released[checkpoint]} in "
            f"models/checkpoints, {r.released['upscaler']} in models/latent_upscale_models, gemma_3_12B_it.safetensors "
            f"(or the whole gemma-3-12b-it folder) in models/text_encoders{extra}.{r.fp8_note}")


def _connector(node_id: int, features: int, title: str | None, row: int) -> Node:
    return Node(node_id, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(features)}, title,
                _col(2, row))
