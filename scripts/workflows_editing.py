"""The editing workflows of LTX-2 and LTX-2.3 (issue 15, ``scripts/build_workflows.py``): extend a clip with its
sound, retake a time window of a video file."""

from __future__ import annotations

import dataclasses

from workflow_graph import (DEFAULT_PROMPT, LTX_2, RELEASES, Link, Model, Node, Release, Shared, Size, Workflow, _back,
                            _col, _connector, _empty_latent, _front, _prompt, _sampler, _seed_and_fps, models_note)

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
        _connector(4, 3, None, 0),
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
                    nodes, _seed_and_fps(), notes, r)


def retake_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
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
                    nodes, _seed_and_fps(), notes, r)


EDITING_WORKFLOWS = (extend_distilled, retake_distilled)
RELEASE_WORKFLOWS = [(release, make) for release in RELEASES for make in EDITING_WORKFLOWS]
