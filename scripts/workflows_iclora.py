"""The IC-LoRA control workflows (issue 16, ``scripts/build_workflows.py``): union control from a control video.

The control video (depth, pose or edge maps made by a preprocessor pack, or any reference clip) is loaded with
ComfyUI core's Load Video + Get Video Components; the IC-LoRA is applied with the LoRA loader to stage 1 only, whose
sampler the IC-LoRA Guide conditions; stage 2 refines with the plain model, as the official ``ICLoraPipeline``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from workflow_graph import (DEMO_SIZE, FPS, LTX_2_3, Link, Model, Node, Release, Workflow, _back, _col, _empty_latent,
                            _front, _prompt, _sampler, _seed_and_fps, _upscaler, models_note, stage_note)
from ltx2_nodes.demo import models as demo

UNION_CONTROL = "ltx-2.3-22b-ic-lora-union-control-ref0.5.safetensors"  # Lightricks/LTX-2.3-22b-IC-LoRA-Union-Control
CONTROL_VIDEO = {"released": "example_control.mp4", "demo": "ltx2-demo-control.mp4"}
# the demo twin at 256x128 (stage 1): the union-control reference is half that, 128x64, whole latent cells
ICLORA_23 = dataclasses.replace(
    LTX_2_3, released={**LTX_2_3.released, "ic_lora": UNION_CONTROL, "control_video": CONTROL_VIDEO["released"]},
    demo={**LTX_2_3.demo, "ic_lora": demo.IC_LORA_23, "control_video": CONTROL_VIDEO["demo"]},
    demo_size={**DEMO_SIZE, "height": 128})

CONTROL_PROMPT = ("A dancer in a flowing red dress spins across a sunlit wooden studio floor, the camera following "
                  "her at waist height; her shoes tap and the dress rustles over soft piano music.")
CONTROL_NOTE = ("IC-LoRA union control (the official ICLoraPipeline): Load Video + Get Video Components read the "
                "control video -- depth, pose (DWPose / OpenPose) or edge (Canny) maps made beforehand with a "
                "preprocessor pack such as comfyui_controlnet_aux or ComfyUI-Video-Depth-Anything (see docs: "
                "IC-LoRA control), or any reference clip. The LoRA loader applies the IC-LoRA to stage 1 only; the "
                "IC-LoRA Guide encodes the control video at the size its file asks for (reference_downscale_factor: "
                "half the stage-1 size for the ref0.5 union LoRA, so width and height must be multiples of 128 here) "
                "and appends it as clean guide tokens that the stage-1 sampler attends to and that never reach the "
                "output. attention_strength (0..1) weakens the control; stage 2 refines with the plain model, as the "
                "reference. The control video should have at least the latent's frame count (extra frames are cut).")


def ic_lora_union_control(r: Release = ICLORA_23) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, CONTROL_PROMPT, "Prompt", 0),
        Node(4, "LTX2TextConnector", {"text_connector": Link(1, 3), "features": Link(3)}, pos=_col(2, 0)),
        _empty_latent(),
        Node(25, "LoadVideo", {"file": Model("control_video")}, "Control video (depth / pose / canny)",
             pos=_col(1, 620)),
        Node(26, "GetVideoComponents", {"video": Link(25)}, pos=_col(1, 820)),
        Node(30, "LTX2LoraLoader", {"model": Link(1), "lora_name": Model("ic_lora"), "strength": 1.0},
             "IC-LoRA (stage 1 only)", pos=_col(2, 260)),
        Node(31, "LTX2ICLoRAGuide", {"latent": Link(5), "model": Link(30), "video_vae": Link(1, 1),
                                     "control_video": Link(26, 0), "strength": 1.0, "attention_strength": 1.0},
             pos=_col(2, 820)),
        _sampler(6, Link(30), Link(31), r.preset("distilled"), "Stage 1 sampler (distilled + IC-LoRA)",
                       _col(3, 0)),
        _upscaler(),
        _sampler(8, Link(1), Link(7), r.preset("refine"), "Stage 2 sampler (refine, no IC-LoRA)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}ic_lora_union_control")
    models = (models_note(r, "distilled") + f" The IC-LoRA: {r.released['ic_lora']} "
              "(Lightricks/LTX-2.3-22b-IC-LoRA-Union-Control) in models/loras.")
    notes = [(models, _col(0, 520), (340, 240)),
             (CONTROL_NOTE + " " + stage_note(r), _col(0, 800), (340, 520))]
    return Workflow(f"{r.prefix}ic_lora_union_control_two_stage",
                    f"Control video (depth / pose / canny) to video with sound, {r.label} IC-LoRA union control, "
                    "two stages", nodes, _seed_and_fps(), notes, r)


RELEASE_WORKFLOWS = [(ICLORA_23, ic_lora_union_control)]


def demo_control_video(path: Path, frames: int = 49, width: int = 256, height: int = 128, fps: float = FPS) -> Path:
    """A deterministic "depth map" MP4: a grey disc (near = bright) moving across a far-to-near floor ramp, silent."""
    import torch

    from ltx2_nodes.media.mux import MP4Writer

    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1) / frames
    y = torch.arange(height, dtype=torch.float32).view(1, -1, 1) / height
    x = torch.arange(width, dtype=torch.float32).view(1, 1, -1) / width
    disc = ((x - 0.2 - 0.6 * t) ** 2 * (width / height) ** 2 + (y - 0.55) ** 2) < 0.05
    depth = torch.where(disc, torch.full_like(disc, 0.9, dtype=torch.float32), 0.15 + 0.5 * y * torch.ones_like(x))
    with MP4Writer(path, fps) as writer:
        writer.add_frames(depth.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous())
    return path


def write_demo_inputs(folder: Path) -> list[Path]:
    """The demo inputs of these workflows not there yet (an MP4 is not byte-stable across encoder builds)."""
    target = folder / CONTROL_VIDEO["demo"]
    return [] if target.is_file() else [demo_control_video(target)]
