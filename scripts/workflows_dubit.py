"""The Dub-It workflow (issue 16, ``scripts/build_workflows.py``): a video file + a speech file -> the clip re-voiced
and lip-synced, as the official ``ltx_pipelines.dubit`` composes it (distilled model, the Dub-It IC-LoRA in both
stages, the clip as IC-LoRA reference video in both stages, the speech as reference audio; stage 2 keeps the
stage-1 audio). LTX-2.3 only: the Dub-It LoRA is published for it (docs/DUBIT.md)."""

from __future__ import annotations

import dataclasses

from ltx2_nodes.cli.dub_cmd import DUBIT_LORA  # Lightricks/LTX-2.3-22b-IC-LoRA-DubIt
from ltx2_nodes.demo import models as demo
from workflow_graph import (LTX_2_3, Link, Model, Node, Release, Workflow, _back, _col, _connector, _empty_latent,
                            _front, _prompt, _sampler, _seed_and_fps, _upscaler, models_note)

DUBIT_23 = dataclasses.replace(LTX_2_3, released={**LTX_2_3.released, "dubit_lora": DUBIT_LORA},
                               demo={**LTX_2_3.demo, "dubit_lora": demo.DUBIT_LORA_23})

DUBIT_PROMPT = ("A woman looks into the camera and speaks in a calm, warm voice: \"Thank you all for coming today, "
                "see you again next week.\" Her lips move with every word; quiet room tone.")
DUBIT_NOTE = ("Dub-It: 'Load Video' is the clip to re-voice (its frames guide the video through the IC-LoRA guide at "
              "both stages), 'Load Audio' the speech whose voice the new words are spoken in (connect Get Video "
              "Components' audio instead to keep the clip's own voice), the prompt says what is said. Stage 1 "
              "generates video and sound with the speech appended as frozen reference tokens (placed before the "
              "clip, never in the output); the stage-2 'Dub-It Reference Audio' has no audio connected: it keeps "
              "the stage-1 sound unchanged and references it, as the official pipeline. Set the Empty Latent's "
              "frames to the clip's (8k+1: 121 = 5 s at 24 fps) and the fps box to its frame rate; the size is "
              "stage 1's (half the output).")


def dubit_distilled(r: Release = DUBIT_23) -> Workflow:
    guide = {"video_vae": Link(1, 1), "control_video": Link(32, 0), "strength": 1.0, "attention_strength": 1.0}
    nodes = _front("distilled") + [
        _prompt(3, DUBIT_PROMPT, "Prompt (the new words)", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        Node(30, "LTX2LoraLoader", {"model": Link(1), "lora_name": Model("dubit_lora"), "strength": 1.0},
             "Dub-It IC-LoRA (both stages)", _col(1, 520)),
        Node(31, "LoadVideo", {"file": Model("video")}, "Clip to re-voice", _col(0, 620)),
        Node(32, "GetVideoComponents", {"video": Link(31)}, pos=_col(0, 900)),
        Node(33, "LoadAudio", {"audio": Model("audio")}, "Speech (the voice)", _col(1, 820)),
        Node(34, "LTX2ICLoRAGuide", {"latent": Link(5), "model": Link(30), **guide}, "Stage 1 video guide",
             _col(2, 820)),
        Node(35, "LTX2DubItReferenceAudio", {"latent": Link(34), "audio_vae": Link(1, 2), "reference_audio": Link(33),
                                             "start_seconds": 0.0, "seconds": 0.0}, "Stage 1 reference audio",
             _col(2, 1120)),
        _sampler(6, Link(30), Link(35), r.preset("distilled"), "Stage 1 sampler (distilled)", _col(3, 0)),
        _upscaler(),
        Node(36, "LTX2ICLoRAGuide", {"latent": Link(7), "model": Link(30), **guide}, "Stage 2 video guide",
             _col(3, 900)),
        Node(37, "LTX2DubItReferenceAudio", {"latent": Link(36), "start_seconds": 0.0, "seconds": 0.0},
             "Stage 2: keep + reference the stage-1 audio", _col(3, 1180)),
        _sampler(8, Link(30), Link(37), r.preset("refine"), "Stage 2 sampler (refine)", _col(4, 0)),
    ] + _back(8, 8, f"LTX2/{r.prefix}dubit")
    lora_note = f" The Dub-It LoRA: {DUBIT_LORA} (Lightricks/LTX-2.3-22b-IC-LoRA-DubIt) in models/loras."
    notes = [(models_note(r, "distilled") + lora_note, _col(0, 1100), (340, 240)),
             (DUBIT_NOTE, _col(1, 1060), (340, 380))]
    return Workflow(f"{r.prefix}dubit_distilled_two_stage",
                    f"Dub-It: re-voice and lip-sync a video to new words in a given voice, {r.label} distilled, two "
                    "stages", nodes, _seed_and_fps(), notes, r)


RELEASE_WORKFLOWS = [(DUBIT_23, dubit_distilled)]
