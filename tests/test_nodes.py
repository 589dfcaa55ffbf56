"""Node behaviour on the demo models: registration and imports, no input mutation, loader caches, the LATENT
layout shared with ComfyUI core, sampler semantics (start sigma, noise continuation), image- and
audio-to-video keeping what they pin, and the MP4 node."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from demo_support import REPO, demo_models, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.cli.core_nodes import LoadAudio, LoadImage
from ltx2_nodes.errors import InputError
from ltx2_nodes.media.mux import probe
from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.handles import clear_caches
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from ltx2_nodes.nodes.common import text_encoder_names
from ltx2_nodes.generate import sample_stages
from ltx2_nodes.handles import load_upscaler
from ltx2_nodes.nodes.sampler import preset_widgets
from ltx2_nodes.nodes.comfy_types import (NestedTensor, from_av_latents, from_conditioning, latent_info, to_av_latents,
                                    to_conditioning)
from ltx2_nodes.latents import AVLatents, GenerationSettings
from ltx2_nodes.sampling.recipe import recipe_for, start_at

SCHEMA_IDS = {"LTX2CheckpointLoader", "LTX2GemmaLoader", "LTX2GemmaEncode", "LTX2TextConnector", "LTX2EmptyAVLatent",
              "LTX2ImageToVideo", "LTX2AudioToLatent", "LTX2LoraLoader", "LTX2Sampler", "LTX2LatentUpscaler",
              "LTX2KeyframeSlots", "LTX2GeneratedKeyframes", "LTX2DurationHeadLoader", "LTX2RefineTiles",
              "LTX2VideoDecodeTiled", "LTX2AudioDecode", "LTX2AVCombine", "LTX2PromptEnhance",
              "LTX2CompileDiT", "LTX2VideoToAudioLatent", "LTX2EmptyAudioLatent", "LTX2AudioOnlyModel",
              "LTX2VideoEncode", "LTX2ExtendWindow", "LTX2ExtendJoin", "LTX2Retake", "LTX2ICLoRAGuide",
              "LTX2DubItReferenceAudio"}
RECIPE = recipe_for()
# the samplers of the shipped two-stage workflows (scripts/build_workflows.py)
DISTILLED = dict(seed=10, **preset_widgets(RECIPE.distilled, RECIPE.stg_blocks))
REFINE = dict(seed=10, **preset_widgets(RECIPE.refine, RECIPE.stg_blocks))


def node(node_id: str):
    return NODE_CLASS_MAPPINGS[node_id]()


def call(node_id: str, **kwargs):
    cls = NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


# ------------------------------------------------------------------------------------------------ registration


def test_every_schema_id_is_registered_under_ltx2_with_a_display_name():
    assert set(NODE_CLASS_MAPPINGS) == SCHEMA_IDS == set(NODE_DISPLAY_NAME_MAPPINGS)
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY.startswith("LTX-2/") and NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("LTX-2 ")
        assert not hasattr(cls, "define_schema")  # V1: the headless executor runs the very same class
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    assert NODE_CLASS_MAPPINGS["LTX2AVCombine"].OUTPUT_NODE is True
    model_types = {t for cls in NODE_CLASS_MAPPINGS.values() for t in cls.RETURN_TYPES if t.startswith("LTX2_")}
    assert model_types == {"LTX2_MODEL", "LTX2_VIDEO_VAE", "LTX2_AUDIO_VAE", "LTX2_TEXT_CONNECTOR", "LTX2_GEMMA",
                           "LTX2_TEXT_FEATURES", "LTX2_DURATION_HEAD"}


def test_python_defaults_equal_the_widget_defaults():
    """DEVELOPING.md: a missing optional widget gets its INPUT_TYPES default (ComfyUI omits it, the CLI fills it)."""
    import inspect

    for cls in NODE_CLASS_MAPPINGS.values():
        signature = inspect.signature(getattr(cls, cls.FUNCTION))
        for section in ("required", "optional"):
            for name, info in (cls.INPUT_TYPES().get(section) or {}).items():
                options = info[1] if len(info) > 1 else {}
                param = signature.parameters[name]
                if param.default is not inspect.Parameter.empty and "default" in options:
                    assert param.default == options["default"], f"{cls.__name__}.{name}"


def test_the_pack_imports_without_comfyui_like_comfyui_imports_it(tmp_path):
    """ComfyUI imports the repository folder as a package named after the folder; nothing may need ComfyUI."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('any_name', {str(REPO / '__init__.py')!r},"
            f" submodule_search_locations=[{str(REPO)!r}])\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['any_name'] = m; spec.loader.exec_module(m)\n"
            "assert not [k for k in sys.modules if k == 'comfy' or k.startswith('comfy.')]\n"
            "assert 'transformers' not in sys.modules and 'av' not in sys.modules\n"
            "print(len(m.NODE_CLASS_MAPPINGS), m.WEB_DIRECTORY)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(SCHEMA_IDS)), "./js"]


def test_text_encoders_list_files_and_hugging_face_folders(headless, demo_models):
    (demo_models.root / "text_encoders" / "other.safetensors").write_bytes(b"")
    try:
        assert text_encoder_names() == ["ltx2-demo-gemma3", "ltx25-demo-gemma4.safetensors",
                                        "other.safetensors"]  # the shards are hidden
    finally:
        (demo_models.root / "text_encoders" / "other.safetensors").unlink()


# ------------------------------------------------------------------------------------------------ loaders


def test_loaders_are_cached_and_lazy_and_loras_do_not_touch_the_shared_model(headless, demo_models):
    clear_caches()
    first = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name)
    again = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name)
    assert all(a is b for a, b in zip(first, again))
    assert first[0].models._lazy._built == {}  # nothing built until a stage needs it
    assert first[0].config.num_layers == 48 and first[1].latent_channels == 8 and first[2].sample_rate == 24000
    gemma = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)[0]
    assert gemma is call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)[0]
    (with_lora,) = call("LTX2LoraLoader", model=first[0], lora_name=demo_models.lora.name, strength=0.5)
    assert with_lora is not first[0] and first[0].loras == () and [e.strength for e in with_lora.loras] == [0.5]
    assert with_lora.model is first[0].model  # the same module; the LoRA is applied per sampling stage only
    assert call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name, weight_dtype="bfloat16")[0] \
        is not first[0]


# ------------------------------------------------------------------------------------------------ graph pieces


@pytest.fixture
def models(headless, demo_models):
    dit, video_vae, audio_vae, connector = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name)
    gemma = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)[0]
    (features,) = call("LTX2GemmaEncode", gemma=gemma, prompt="a red fox runs through snow")
    (positive,) = call("LTX2TextConnector", text_connector=connector, features=features)
    return {"dit": dit, "video_vae": video_vae, "audio_vae": audio_vae, "positive": positive, "gemma": gemma}


def empty(width=64, height=64, frames=9, seconds=0.0, **kw):
    return call("LTX2EmptyAVLatent", width=width, height=height, frames=frames, seconds=seconds, fps=24.0,
                batch_size=1, **kw)[0]


def snapshot(value):
    """A deep copy whose tensors are cloned, to detect any in-place change."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    if hasattr(value, "tensors"):
        return [t.clone() for t in value.tensors]
    return value


def same(a, b) -> bool:
    if isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
    if hasattr(a, "tensors"):
        return all(torch.equal(x, y) for x, y in zip(a.tensors, b))
    if isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a is b or a == b


def test_conditioning_is_cores_ltx2_layout(models):
    (tensor, extras), = models["positive"]
    assert tensor.ndim == 3 and tensor.shape[-1] == 2 * 24 and extras["attention_mask"].shape == tensor.shape[:2]


def test_conditioning_round_trips_contexts_of_different_widths():
    """LTX-2.3: the audio context is narrower than the video one; the split point travels with the conditioning."""
    g = torch.Generator().manual_seed(0)
    text = TextConditioning(torch.randn(2, 8, 32, generator=g), torch.randn(2, 8, 16, generator=g),
                            torch.ones(2, 8, dtype=torch.int64))
    back = from_conditioning(to_conditioning(text))[0]
    assert torch.equal(back.video_context, text.video_context) and torch.equal(back.audio_context, text.audio_context)
    # without the split point (core's LTX-2 encoder) the contexts are two halves
    core = from_conditioning([[torch.zeros(1, 8, 48), {}]])[0]
    assert core.video_context.shape[-1] == core.audio_context.shape[-1] == 24
    # ... unless the sampling model says where its video context ends (a core LTX-2.3 encoder)
    core23 = from_conditioning([[torch.zeros(1, 8, 48), {}]], video_width=32)[0]
    assert (core23.video_context.shape[-1], core23.audio_context.shape[-1]) == (32, 16)
    # our own split point wins over the model's
    assert from_conditioning(to_conditioning(text), video_width=16)[0].video_context.shape[-1] == 32
    with pytest.raises(InputError, match="video \\+ audio context width"):
        from_conditioning([[torch.zeros(1, 8, 47), {}]])


def test_nodes_never_mutate_their_inputs(models, demo_models):
    image = LoadImage().load_image(image="ltx2-demo-image.png")[0]
    audio = LoadAudio().load(audio="ltx2-demo-audio.flac")[0]
    latent = empty()
    steps = []

    def run(node_id, **kwargs):
        before = snapshot(kwargs)
        out = call(node_id, **kwargs)
        assert same(kwargs, before), f"{node_id} changed its inputs"
        steps.append(node_id)
        return out

    (conditioned,) = run("LTX2ImageToVideo", latent=latent, video_vae=models["video_vae"], image=image,
                         frame_index=0, strength=1.0, crf=33)
    with_audio, _sound = run("LTX2AudioToLatent", latent=conditioned, audio_vae=models["audio_vae"], audio=audio)
    (first,) = run("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=with_audio, **DISTILLED)
    (up,) = run("LTX2LatentUpscaler", latent=first, video_vae=models["video_vae"],
                upscale_model=demo_models.upscaler.name)
    (second,) = run("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=up, **REFINE)
    (images,) = run("LTX2VideoDecodeTiled", latent=second, video_vae=models["video_vae"], tile_size=0,
                    tile_overlap=64, temporal_tile=0, temporal_overlap=24)
    (sound,) = run("LTX2AudioDecode", latent=second, audio_vae=models["audio_vae"])
    run("LTX2AVCombine", images=images, fps=24.0, filename_prefix="t/x", audio=sound)
    assert images.shape == (9, 128, 128, 3) and 0.0 <= images.min() and images.max() <= 1.0
    assert len(steps) == 8


# ------------------------------------------------------------------------------------------------ LATENT layout


class CoreLTXV:
    """ComfyUI core's LTXVSeparateAVLatent / LTXVConcatAVLatent (comfy_extras/nodes_lt.py), which only touch the
    dict and NestedTensor; here with the headless NestedTensor as core's would be inside ComfyUI."""

    @staticmethod
    def separate(av_latent):
        latents = av_latent["samples"].unbind()
        video_latent, audio_latent = av_latent.copy(), av_latent.copy()
        video_latent["samples"], audio_latent["samples"] = latents[0], latents[1]
        if av_latent.get("noise_mask") is not None:
            masks = av_latent["noise_mask"].unbind()
            video_latent["noise_mask"], audio_latent["noise_mask"] = masks[0], masks[1]
        return video_latent, audio_latent

    @staticmethod
    def concat(video_latent, audio_latent):
        output = {**video_latent, **audio_latent}
        vm, am = video_latent.get("noise_mask"), audio_latent.get("noise_mask")
        if vm is not None or am is not None:
            vm = torch.ones_like(video_latent["samples"]) if vm is None else vm
            am = torch.ones_like(audio_latent["samples"]) if am is None else am
            output["noise_mask"] = NestedTensor((vm, am))
        output["samples"] = NestedTensor((video_latent["samples"], audio_latent["samples"]))
        return output


def test_latent_uses_cores_nested_layout_and_round_trips():
    g = torch.Generator().manual_seed(0)
    av = AVLatents(torch.randn(2, 8, 3, 4, 5, generator=g), torch.randn(2, 8, 13, 16, generator=g), 25.0).keep_audio()
    latent = from_av_latents(av)
    assert isinstance(latent["samples"], NestedTensor) and latent["samples"].is_nested
    video, audio = latent["samples"].unbind()
    assert torch.equal(video, av.video) and torch.equal(audio, av.audio) and latent["sample_rate"] == 16000
    vmask, amask = latent["noise_mask"].unbind()
    assert vmask.shape == (2, 1, 3, 4, 5) and bool(vmask.eq(1).all())
    assert amask.shape == av.audio.shape and not amask.any()  # per element, like core's concat makes them
    back = to_av_latents(latent)
    assert torch.equal(back.video, av.video) and torch.equal(back.audio, av.audio) and back.fps == 25.0
    assert back.video_mask.shape == (2, 1, 3, 4, 5) and torch.equal(back.audio_mask, torch.zeros(2, 1, 13, 1))
    # core's separate / concat keep our keys and give back what they got
    video_part, audio_part = CoreLTXV.separate(latent)
    assert video_part["samples"].ndim == 5 and audio_part["samples"].ndim == 4
    assert to_av_latents(video_part).audio is None and to_av_latents(audio_part).video is None
    rejoined = to_av_latents(CoreLTXV.concat(video_part, audio_part))
    assert torch.equal(rejoined.video, av.video) and torch.equal(rejoined.audio_mask, back.audio_mask)


def test_core_latents_without_our_keys_are_accepted(models):
    """Core's empty video latent (128 channels, no fps) + core's audio latent, joined by core's concat."""
    video = {"samples": torch.zeros(1, 128, 2, 2, 2)}
    audio = {"samples": torch.zeros(1, 8, 9, 16), "sample_rate": 16000, "type": "audio"}
    (out,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=CoreLTXV.concat(video, audio),
                  **dict(DISTILLED, schedule="custom", sigmas="1.0, 0.5, 0.0"))
    sampled = to_av_latents(out)
    assert sampled.video.shape == (1, 8, 2, 2, 2)  # the empty latent took the model's channels
    assert sampled.fps == 25.0 and latent_info(out).frames == 9  # core's LTX-2 default rate
    video_part, audio_part = CoreLTXV.separate(out)
    (sound,) = call("LTX2AudioDecode", latent=audio_part, audio_vae=models["audio_vae"])
    assert sound["sample_rate"] == 24000 and sound["waveform"].shape == (1, 2, 9 * 24000 // 25)


# ------------------------------------------------------------------------------------------------ sampler


def test_start_sigma_cuts_the_schedule_and_inserts_itself():
    sigmas = torch.tensor([1.0, 0.99375, 0.909375, 0.725, 0.421875, 0.0])
    assert start_at(sigmas, 1.0).tolist() == sigmas.tolist()
    assert start_at(sigmas, 0.909375).tolist() == pytest.approx([0.909375, 0.725, 0.421875, 0.0])
    assert start_at(sigmas, 0.8).tolist() == pytest.approx([0.8, 0.725, 0.421875, 0.0])
    with pytest.raises(InputError, match="start_sigma 1.5"):
        start_at(sigmas, 1.5)


def test_sampler_noises_the_input_to_the_first_sigma_and_start_zero_passes_through(models, monkeypatch):
    latent = empty()
    (same_latent,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=latent,
                          **dict(DISTILLED, start_sigma=0.0))
    assert same_latent is latent
    seen = []
    real = stages.run_sampler
    monkeypatch.setattr(stages, "run_sampler", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=latent,
         **dict(DISTILLED, start_sigma=0.8))
    assert seen[0].sigmas.tolist() == pytest.approx([0.8, 0.725, 0.421875, 0.0])


def test_node_graph_is_the_two_stage_recipe_and_stage_two_continues_the_noise_stream(models, demo_models):
    """Node graph (sampler, upscaler, refine sampler with stage 1's seed) == ``generate``'s recipe, one noise
    stream (``sample_stages``); another seed in stage 2 draws its own stream."""
    latent = empty()
    (first,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=latent, **DISTILLED)
    (up,) = call("LTX2LatentUpscaler", latent=first, video_vae=models["video_vae"],
                 upscale_model=demo_models.upscaler.name)
    (second,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=up, **REFINE)
    (other_seed,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=up,
                         **dict(REFINE, seed=11))
    text = from_conditioning(models["positive"])[0]
    av = to_av_latents(latent)
    av = AVLatents(torch.zeros(1, 8, *av.video.shape[2:]), av.audio, 24.0)
    settings = GenerationSettings.from_preset(RECIPE.distilled, seed=10)
    ref1 = sample_stages(models["dit"], models["video_vae"], text, av, settings, RECIPE)
    ref2 = sample_stages(models["dit"], models["video_vae"], text, av, settings, RECIPE,
                         upscaler=load_upscaler(demo_models.upscaler, device="cpu"))
    got = to_av_latents(second)
    assert torch.equal(to_av_latents(first).video, ref1.video) and torch.equal(got.video, ref2.video)
    assert torch.equal(got.audio, ref2.audio)
    assert not torch.equal(to_av_latents(other_seed).video, got.video)


def test_image_to_video_keeps_frame_zero_through_both_stages(models, demo_models):
    image = LoadImage().load_image(image="ltx2-demo-image.png")[0]
    (conditioned,) = call("LTX2ImageToVideo", latent=empty(), video_vae=models["video_vae"], image=image,
                          frame_index=0, strength=1.0, crf=33)
    (record,) = latent_info(conditioned).conditions
    encoded = record.encoded[(64, 64)]
    (first,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=conditioned, **DISTILLED)
    assert torch.equal(to_av_latents(first).video[:, :, :1], encoded)
    (up,) = call("LTX2LatentUpscaler", latent=first, video_vae=models["video_vae"],
                 upscale_model=demo_models.upscaler.name)
    (second,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=up, **REFINE)
    grid = to_av_latents(up).video_grid()
    again = stages.encode_conditioning_images(models["video_vae"], [record.condition], grid)[0].latent
    assert torch.equal(to_av_latents(second).video[:, :, :1], again)  # re-encoded at the stage-2 size
    with pytest.raises(InputError, match="frame_index 9 is outside the video"):
        call("LTX2ImageToVideo", latent=empty(), video_vae=models["video_vae"], image=image, frame_index=9,
             strength=1.0, crf=0)


def test_audio_to_video_keeps_the_audio_latent_through_both_stages(models, demo_models):
    audio = LoadAudio().load(audio="ltx2-demo-audio.flac")[0]
    with_audio, _sound = call("LTX2AudioToLatent", latent=empty(), audio_vae=models["audio_vae"], audio=audio,
                         start_seconds=0.5)
    given = to_av_latents(with_audio)
    assert given.audio.shape == (1, 8, 9, 16) and given.audio.any() and not given.audio_mask.any()
    (first,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=with_audio, **DISTILLED)
    (up,) = call("LTX2LatentUpscaler", latent=first, video_vae=models["video_vae"],
                 upscale_model=demo_models.upscaler.name)
    (second,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=up, **REFINE)
    for out in (first, second):
        assert torch.equal(to_av_latents(out).audio, given.audio)
    assert not torch.equal(to_av_latents(second).video, torch.zeros_like(to_av_latents(second).video))


def test_empty_latent_sizes_seconds_and_errors():
    latent = empty(width=96, height=64, seconds=2.0, frames=121)
    av = to_av_latents(latent)
    assert av.video.shape == (1, 128, 7, 2, 3) and latent_info(latent).frames == 49  # 2 s at 24 fps -> 8k+1 = 49
    assert av.audio.shape == (1, 8, 51, 16)  # round(49 / 24 * 25)
    assert to_av_latents(empty(audio=False)).audio is None
    with pytest.raises(InputError, match="Nearest valid size: 96x64, 9 frames"):
        empty(width=100, height=64, frames=9)


# ------------------------------------------------------------------------------------------------ output


def test_combine_writes_an_mp4_with_prompt_and_workflow_metadata(headless, tmp_path):
    images = torch.rand(17, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    t = torch.arange(24000) / 24000.0
    audio = {"waveform": torch.stack([torch.sin(2 * torch.pi * 440 * t)] * 2)[None] * 0.5, "sample_rate": 24000}
    prompt = {"3": {"class_type": "LTX2GemmaEncode", "inputs": {"prompt": "a fox"}}}
    workflow = {"nodes": [{"id": 3, "type": "LTX2GemmaEncode"}], "links": []}
    result = call("LTX2AVCombine", images=images, fps=24.0, filename_prefix="clips/fox", audio=audio, prompt=prompt,
                  extra_pnginfo={"workflow": workflow})
    entry = {"filename": "fox_00001_.mp4", "subfolder": "clips", "type": "output"}
    warning = result["ui"].pop("ltx2_warning")  # 1 s of sound for 17 frames: cut, and the node says so
    assert result["ui"] == {"images": [entry], "animated": [True], "ltx2_video": [entry], "has_audio": [True]}
    assert warning == ["the audio lasts 1.000 s and the 17 frames at 24 fps last 0.708 s: the audio is cut to the "
                       "video; if both come from one LTX-2 latent, set fps to 17 (the rate at which they match: use "
                       "the fps of the latent both were decoded from)."]
    (video,) = result["result"]
    path = tmp_path / "out" / "clips" / "fox_00001_.mp4"
    assert video.get_stream_source() == str(path) and video.get_dimensions() == (96, 64)
    media = probe(path)
    assert (media.video_frames, media.audio_codec, media.audio_sample_rate) == (17, "aac", 24000)
    assert json.loads(media.metadata["prompt"]) == prompt and json.loads(media.metadata["workflow"]) == workflow
    components = video.get_components()
    assert components.images.shape == (17, 64, 96, 3) and components.audio["sample_rate"] == 24000
    silent = call("LTX2AVCombine", images=images, fps=24.0, filename_prefix="clips/fox")
    assert silent["ui"]["has_audio"] == [False] and probe(tmp_path / "out" / "clips" / "fox_00002_.mp4").audio_codec \
        is None


def test_missing_vae_of_a_dit_only_file_is_a_clear_error(models):
    with pytest.raises(InputError, match="no video VAE: connect the video_vae output"):
        call("LTX2VideoDecodeTiled", latent=empty(), video_vae=None, tile_size=0, tile_overlap=64, temporal_tile=0,
             temporal_overlap=24)


def test_prompt_enhance_is_deterministic_per_seed(models):
    a = call("LTX2PromptEnhance", gemma=models["gemma"], prompt="a fox", mode="t2v", seed=1, max_new_tokens=16)[0]
    b = call("LTX2PromptEnhance", gemma=models["gemma"], prompt="a fox", mode="t2v", seed=1, max_new_tokens=16)[0]
    assert a == b and isinstance(a, str)


def test_decode_tiling_widgets(models, monkeypatch):
    from ltx2_nodes.model.vae_tiling import TilingConfig

    latent = empty(width=128, height=64, frames=17)
    (sampled,) = call("LTX2Sampler", model=models["dit"], positive=models["positive"], latent=latent,
                      **dict(DISTILLED, schedule="custom", sigmas="1.0, 0.0"))
    used = []
    real = stages.decode_video
    monkeypatch.setattr(stages, "decode_video", lambda *a: used.append(a[3]) or real(*a))
    decode = dict(latent=sampled, video_vae=models["video_vae"], tile_overlap=32, temporal_overlap=8)
    whole = call("LTX2VideoDecodeTiled", tile_size=0, temporal_tile=0, **decode)[0]
    tiled = call("LTX2VideoDecodeTiled", tile_size=64, temporal_tile=16, **decode)[0]
    spatial_only = call("LTX2VideoDecodeTiled", tile_size=64, temporal_tile=0, **decode)[0]
    assert used[0] == "auto" and used[1] == TilingConfig(64, 32, 16, 8)
    assert used[2] == TilingConfig(64, 32, None, 0)  # small clip: the automatic choice does not cut it in time
    assert whole.shape == tiled.shape == spatial_only.shape == (17, 64, 128, 3)
    with pytest.raises(InputError, match="spatial tiling 48 pixels"):
        call("LTX2VideoDecodeTiled", tile_size=48, temporal_tile=0, **decode)


def test_fp8_cast_on_load_samples(headless, demo_models):
    from ltx2_nodes.loading.quant import FP8Linear

    dit = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name, fp8="cast bf16 to fp8")[0]
    connector = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint.name)[3]
    gemma = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)[0]
    (positive,) = call("LTX2TextConnector", text_connector=connector,
                       features=call("LTX2GemmaEncode", gemma=gemma, prompt="a fox")[0])
    blocks = dit.model.transformer_blocks
    assert sum(isinstance(m, FP8Linear) for m in blocks.modules()) > 48 * 10
    assert not any(isinstance(m, FP8Linear) for m in dit.model.proj_out.modules())  # only the blocks
    (out,) = call("LTX2Sampler", model=dit, positive=positive, latent=empty(),
                  **dict(DISTILLED, schedule="custom", sigmas="1.0, 0.5, 0.0"))
    assert torch.isfinite(to_av_latents(out).video).all()


def test_sampler_stg_blocks_auto_takes_the_loaded_family_block_and_the_run_names_the_preset(headless, demo_models,
                                                                                            caplog):
    """LTX-2.3 model: 'auto' perturbs block 28 (its dev preset), the log line names the family and preset; a typed
    block other than the family's is run as typed, with a hint."""
    import logging

    from ltx2_nodes.nodes.sampler import parse_blocks

    assert parse_blocks("auto", (28,)) == (28,) and parse_blocks(" Auto ", (29,)) == (29,)
    assert parse_blocks("28, 29", (28,)) == (28, 29)
    dit, _, _, connector = call("LTX2CheckpointLoader", ckpt_name=demo_models.checkpoint_23.name)
    gemma = call("LTX2GemmaLoader", gemma_name=demo_models.gemma.name)[0]
    (positive,) = call("LTX2TextConnector", text_connector=connector,
                       features=call("LTX2GemmaEncode", gemma=gemma, prompt="a fox")[0])
    guided = dict(DISTILLED, schedule="custom", sigmas="1.0, 0.0", stg_scale=1.0)
    with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
        (out,) = call("LTX2Sampler", model=dit, positive=positive, latent=empty(), **dict(guided, stg_blocks="auto"))
    assert "LTX-2.3 model, its dev preset 30 steps with STG on block 28" in caplog.text
    assert "STG 1 on block 28" in caplog.text and "not the family's" not in caplog.text
    assert torch.isfinite(to_av_latents(out).video).all()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
        call("LTX2Sampler", model=dit, positive=positive, latent=empty(), **dict(guided, stg_blocks="29"))
    assert "STG 1 on block 29 (not the family's STG block: stg_blocks 'auto' picks it)" in caplog.text
