"""The LTX-2.5 workflows (issue 19, ``scripts/build_workflows.py``): the basic T2AV (distilled and dev) and I2AV
graphs with its recipe and split files, and one with keyframe slots and auto length."""

from __future__ import annotations

from workflow_graph import (DEFAULT_PROMPT, LTX_2_5, Link, Node, Release, Shared, Size, Workflow, _back, _col,
                            _connector, _front, _prompt, _seed_and_fps, _two_stages, models_note, stage_note)
from workflows_basic import i2av_distilled, t2av_dev, t2av_distilled

from ltx2_nodes.nodes.loaders import FROM_MODEL


def keyframes_auto_length(r: Release = LTX_2_5) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        Node(20, "LTX2DurationHeadLoader", {"head_name": FROM_MODEL, "model": Link(1)}, pos=_col(1, 620)),
        Node(5, "LTX2EmptyAVLatent", {"width": Size("width"), "height": Size("height"), "frames": Size("frames"),
                                      "seconds": 0.0, "fps": Shared("fps"), "batch_size": 1, "audio": True,
                                      "auto_length": True, "duration_head": Link(20), "conditioning": Link(4)},
             title="Empty Latent (auto length)", pos=_col(2, 520)),
        Node(21, "LTX2KeyframeSlots", {"latent": Link(5), "count": 2, "frames": ""}, pos=_col(2, 820)),
        *_two_stages(r, Link(21), "Stage 1 sampler (distilled, ancestral)"),
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
                    _seed_and_fps(), notes, r)


RELEASE_WORKFLOWS = [(LTX_2_5, make) for make in (t2av_distilled, t2av_dev, i2av_distilled, keyframes_auto_length)]
