"""The basic generation workflows of LTX-2 and LTX-2.3 (``scripts/build_workflows.py``): text / image / audio to
video with sound (two stages, distilled or dev with guidance), stage 2 refined in tiles, video to audio, text to audio,
first and last frame to video."""

from __future__ import annotations

import dataclasses

from workflow_graph import (DEFAULT_PROMPT, LTX_2, RELEASES, Link, Model, Node, Release, Shared, Size, Workflow, _back,
                            _col, _connector, _empty_latent, _front, _original_sound, _prompt, _sampler, _seed_and_fps,
                            _two_stages, _upscaler, models_note, stage_note)

I2V_PROMPT = ("The scene in the image comes to life: the camera slowly pushes in while the subject moves "
              "naturally, with soft ambient sound matching the place.")
A2V_PROMPT = ("A singer performs on a small stage under warm spotlights, moving to the rhythm of the music, "
              "the camera slowly circling her.")


def t2av_distilled(r: Release = LTX_2) -> Workflow:
    recipe = r.recipe
    nodes = _front("distilled") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        *_two_stages(r, Link(5)),
    ] + _back(8, 8, f"LTX2/{r.prefix}t2av_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Distilled model: guidance off (CFG 1, STG 0, modality 1) and the fixed "
              f"{recipe.distilled.steps}-step schedule; 'steps' is "
              "ignored. " + stage_note(r), _col(1, 420), (340, 300))]
    return Workflow(f"{r.prefix}t2av_distilled_two_stage",
                    f"Text to video with sound, {r.label} distilled, two stages", nodes,
                    _seed_and_fps(), notes, r)


def t2av_dev(r: Release = LTX_2) -> Workflow:
    recipe, dev = r.recipe, r.preset("dev")
    nodes = _front("dev") + [
        _prompt(3, DEFAULT_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        _sampler(6, Link(1), Link(5), dev, "Stage 1 sampler (dev, guided)", _col(3, 0), negative=Link(14)),
        _upscaler(),
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
                    _seed_and_fps(), notes, r)


def i2av_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, I2V_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        Node(15, "LoadImage", {"image": Model("image")}, pos=_col(1, 620)),
        Node(16, "LTX2ImageToVideo", {"latent": Link(5), "video_vae": Link(1, 1), "image": Link(15),
                                      "frame_index": 0, "strength": 1.0, "crf": r.recipe.image_crf},
             pos=_col(2, 820)),
        *_two_stages(r, Link(16)),
    ] + _back(8, 8, f"LTX2/{r.prefix}i2av_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Image to video with sound: the image becomes frame 0 (strength 1 keeps it exactly; lower it to let the "
              "model change it). It is resized to cover the latent's size and centre-cropped, passed through one "
              "H.264 frame at CRF 33 like the reference, and encoded again at the stage-2 size by the second sampler. "
              "Other frame_index values place it as a keyframe guide. Describe the motion and the sound in the "
              "prompt (LTX-2 Prompt Enhance in i2v mode can write it). " + stage_note(r), _col(0, 760), (340, 420))]
    return Workflow(f"{r.prefix}i2av_distilled_two_stage",
                    f"Image to video with sound, {r.label} distilled, two stages", nodes,
                    _seed_and_fps(), notes, r)


def a2v_distilled(r: Release = LTX_2) -> Workflow:
    nodes = _front("distilled") + [
        _prompt(3, A2V_PROMPT, "Prompt", 0),
        _connector(4, 3, None, 0),
        _empty_latent(),
        Node(17, "LoadAudio", {"audio": Model("audio")}, pos=_col(1, 620)),
        Node(18, "LTX2AudioToLatent", {"latent": Link(5), "audio_vae": Link(1, 2), "audio": Link(17),
                                       "start_seconds": 0.0}, pos=_col(2, 820)),
        *_two_stages(r, Link(18)),
    ] + _original_sound(_back(8, 8, f"LTX2/{r.prefix}a2v_distilled"), Link(18, 1))
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("Audio to video: the audio (from start_seconds, as long as the video) is encoded into the audio latent "
              "and kept unchanged by both samplers while the video is generated to match it. The Save node muxes "
              "the ORIGINAL input audio (Audio to Latent's 'audio' output: that piece of the file, exactly the "
              "video's duration), as the reference a2vid pipeline, not the audio VAE's re-synthesis. "
              + stage_note(r), _col(0, 760), (340, 380))]
    return Workflow(f"{r.prefix}a2v_distilled_two_stage",
                    f"Audio to video, {r.label} distilled, two stages", nodes,
                    _seed_and_fps(), notes, r)


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


V2A_PROMPT = ("Footsteps crunch on gravel as a person walks past, birds sing in the trees and a light breeze rustles "
              "the leaves; a car passes in the distance.")
T2A_PROMPT = ("A thunderstorm over a quiet village: heavy rain drums on a tin roof, thunder rolls in the distance "
              "and a dog barks twice.")
KEYFRAMES_PROMPT = ("The camera glides smoothly from the first shot to the last one, the scene changing continuously "
                    "in between, with ambient sound that follows the motion.")


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
                    "distilled", nodes, _seed_and_fps(), notes, r)


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
                    nodes, _seed_and_fps(), notes, r)


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
        *_two_stages(r, Link(25)),
    ] + _back(8, 8, f"LTX2/{r.prefix}keyframes_distilled")
    notes = [(models_note(r, "distilled"), _col(0, 520), (340, 200)),
             ("First -> last frame: the first image replaces frame 0, the second guides the last frame (frame_index -1 "
              "counts from the end, so the clip length can change freely); the model fills the motion in between. "
              "Chain more Image to Video nodes for middle keyframes (any frame_index). Keyframe guides append tokens "
              "as the reference keyframe_interpolation pipeline (which also guides frame 0 rather than replacing "
              "it). " + stage_note(r), _col(0, 760), (340, 420))]
    return Workflow(f"{r.prefix}keyframes_distilled_two_stage",
                    f"First and last frame to video with sound, {r.label} distilled, two stages", nodes,
                    _seed_and_fps(), notes, r)


WORKFLOWS = (t2av_distilled, t2av_dev, i2av_distilled, a2v_distilled, t2av_distilled_tiled_refine, v2a_distilled,
             t2a_dev, keyframes_distilled)
RELEASE_WORKFLOWS = [(release, make) for release in RELEASES for make in WORKFLOWS]
