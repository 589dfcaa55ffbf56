"""Bad files and unbounded input (issue 20, classes 5 and 6): each is refused at its first check with the
input's name, what was expected and the fix (exit 2 through the CLI), before anything past that check runs.

Class 5, unbounded work from small input: seed ranges and prompts files (``queue``), config metadata claiming
millions of layers, images far larger than the video. Class 6, raw library errors: damaged or empty images,
lone surrogates in prompts, configs with text or negative sizes, a LoRA in the checkpoint slot.
"""

from __future__ import annotations

import json
import struct
import textwrap
import zlib

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import cli_fake_nodes as fake
from demo_support import demo_models, headless  # noqa: F401 (fixtures)
from ltx2_nodes import handles, paths, stages
from ltx2_nodes.cli import main
from ltx2_nodes.cli import core_nodes
from ltx2_nodes.cli.core_nodes import LoadImage
from ltx2_nodes.cli.jobs import MAX_JOBS, parse_seeds
from ltx2_nodes.cli.workflow import UsageError
from ltx2_nodes.errors import CheckpointError, InputError, UnsupportedModelError
from ltx2_nodes.latents import empty_latents
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.model.config_values import MAX_MODULES
from ltx2_nodes.model.gemma3 import GemmaConfig
from ltx2_nodes.model.transformer import TransformerConfig
from ltx2_nodes.model.upsampler import UpsamplerConfig
from ltx2_nodes.model.video_vae import VideoVAEConfig
from ltx2_nodes.sampling import conditioning
from ltx2_nodes.sampling.conditioning import CRF_MAX_SIDE, ImageCondition, encode_images
from ltx2_nodes.text.tokenizer import SentencePiecePromptTokenizer, check_text

FAKE_NODES = fake.__file__


@pytest.fixture
def no_models(monkeypatch):
    """Any model load fails the test: the bad input must be refused before one starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the input was bad")

    for name in ("load_ltx2", "load_gemma", "load_upscaler"):
        monkeypatch.setattr(handles, name, refuse)


def _generate(demo_models, tmp_path, *extra, checkpoint=None) -> int:
    return main(["generate", "--prompt", "a fox in snow", "--models-dir", str(demo_models.root), "--width", "64",
                 "--height", "64", "--frames", "9", "--single-stage", "--device", "cpu",
                 "--checkpoint", checkpoint or demo_models.checkpoint.name, "--out", str(tmp_path / "clip.mp4"),
                 *extra])


def _png(path, width: int, height: int):
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bad_images(folder) -> dict[str, str]:
    """Damaged image files -> what the message must say about them."""
    good = _png(folder / "good.png", 64, 48).read_bytes()
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "noise.jpg").write_bytes(np.random.default_rng(1).integers(0, 255, 700, dtype=np.uint8).tobytes())
    (folder / "notes.png").write_text("this is a text file with an image name\n")
    header_only = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0))
    (folder / "no_data.png").write_bytes(header_only + _chunk(b"IEND", b""))
    return {"empty.png": "empty file (0 bytes)", "truncated.png": "could not be decoded as an image",
            "noise.jpg": "could not be decoded as an image", "notes.png": "could not be decoded as an image",
            "no_data.png": "could not be decoded as an image", "missing.png": "no such file"}


# ------------------------------------------------------------------------------------------------
# Class 5: unbounded work from small input


def test_seed_ranges_beyond_the_job_limit_are_refused_before_any_job_is_built(tmp_path, capsys):
    assert len(parse_seeds(f"0-{MAX_JOBS - 1}")) == MAX_JOBS
    for text in ("0-50000000", f"1,2,5-{MAX_JOBS + 3}", "0-99999999999999999999"):
        with pytest.raises(UsageError, match=rf"--seeds '{text}' names [\d,]+ seeds; a queue runs at most "
                                             rf"{MAX_JOBS:,} jobs\. Give a shorter range"):
            parse_seeds(text)
    fake.CALLS.clear()
    wf, prompts = tmp_path / "wf.json", tmp_path / "prompts.txt"
    wf.write_text(json.dumps({"4": {"class_type": "FakeText", "inputs": {"text": "x", "seed": 5}},
                              "6": {"class_type": "FakeSaveText", "inputs": {"text": ["4", 0]}}}))
    prompts.write_text("".join(f"prompt {i}\n" for i in range(20)))
    cases = [("--seeds", "0-50000000", "names 50,000,001 seeds"),
             ("--seeds", "1-600", "20 prompt line(s) x 600 seed(s) make 12,000 jobs; a queue runs at most "
                                  f"{MAX_JOBS:,}")]
    for option, value, message in cases:
        code = main(["queue", str(wf), "--prompts", str(prompts), "--local", "--nodes", FAKE_NODES,
                     "--out", str(tmp_path / "out"), option, value])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "error:" in err
    many = tmp_path / "many.txt"
    many.write_text("a prompt\n" * (MAX_JOBS + 5))
    code = main(["queue", str(wf), "--prompts", str(many), "--local", "--nodes", FAKE_NODES])
    err = capsys.readouterr().err
    assert code == 2 and f"holds more than {MAX_JOBS:,} jobs (line {MAX_JOBS + 1})" in err and "Split the file" in err
    assert fake.CALLS == [] and not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize("edit,message", [
    ({"num_layers": 2_000_000}, f"num_layers=2,000,000 (expected 1 to {MAX_MODULES})"),
    ({"connector_num_layers": 10**9}, f"num_layers=1,000,000,000 (expected 1 to {MAX_MODULES})"),
    ({"attention_head_dim": 10**12}, "attention_head_dim=1,000,000,000,000 (expected 1 to 65,536)"),
], ids=["two-million-layers", "connector-layers", "huge-width"])
def test_configs_claiming_huge_counts_are_refused_when_the_file_opens(demo_models, tmp_path, edit, message):
    path = _edited_checkpoint(demo_models.checkpoint, tmp_path, "transformer", edit)
    with pytest.raises(UnsupportedModelError) as refused:
        handles.LTX2Models(path, torch.float32, "as stored")
    assert str(refused.value).startswith(f"{path.name}: config.transformer")
    assert message in str(refused.value) and "use the original release file" in str(refused.value).lower()


def test_config_bounds_cover_nested_blocks_and_lists():
    with pytest.raises(UnsupportedModelError, match=r"config\.vae has encoder_blocks\.num_layers=2,000,000"):
        VideoVAEConfig.from_metadata({"encoder_blocks": [["res_x", {"num_layers": 2_000_000}]]})
    with pytest.raises(UnsupportedModelError, match=r"positional_embedding_max_pos with 100,000 entries"):
        TransformerConfig.from_metadata({"positional_embedding_max_pos": [1.0] * 100_000})
    assert TransformerConfig.from_metadata({"num_layers": MAX_MODULES}).num_layers == MAX_MODULES


def test_gemma_and_upscaler_configs_follow_the_same_rule_and_name_their_file():
    with pytest.raises(UnsupportedModelError, match=r"^gemma/config\.json has num_hidden_layers=2,000,000 "
                                                    r"\(expected 1 to 256\)"):
        GemmaConfig.from_hf({"num_hidden_layers": 2_000_000}, source="gemma/config.json")
    with pytest.raises(UnsupportedModelError, match=r"^gemma/config\.json: .*hidden_size='big'"):
        GemmaConfig.from_hf({"hidden_size": "big"}, source="gemma/config.json")
    with pytest.raises(UnsupportedModelError, match=r"^up\.safetensors: .*mid_channels=-5 \(expected 1 to 65,536\)"):
        UpsamplerConfig.from_metadata({"mid_channels": -5}, source="up.safetensors")


def test_a_huge_conditioning_image_is_scaled_down_before_the_codec_and_compressed_once(monkeypatch):
    seen = []

    def codec(image, crf):
        seen.append(tuple(image.shape))
        return image

    monkeypatch.setattr(conditioning, "h264_roundtrip", codec)
    tall = torch.rand(1, 3 * CRF_MAX_SIDE, 24, 3)  # a long side 3x the bound, cheap to hold
    condition = ImageCondition(tall, crf=33)
    first = encode_images(lambda p: p, condition.compressed(), 32, 32, crf=0)
    second = encode_images(lambda p: p, condition.compressed(), 64, 64, crf=0)  # stage 2 at twice the size
    assert seen == [(CRF_MAX_SIDE, 8, 3)]  # one codec call, on the scaled-down image
    assert first.shape == (1, 3, 1, 32, 32) and second.shape == (1, 3, 1, 64, 64)
    seen.clear()
    small = torch.rand(1, 40, 50, 3)  # within the bound: the reference's order, at the image's own size
    encode_images(lambda p: p, small, 32, 32, crf=33)
    assert seen == [(40, 50, 3)]


def test_both_stages_encode_the_image_from_one_compression(demo_models, headless, monkeypatch):
    """The stage functions (what ``generate`` and the sampler node call for each stage) reuse the condition's
    compressed image: the codec runs once for a two-stage run, on at most CRF_MAX_SIDE pixels a side."""
    seen = []
    real = conditioning.h264_roundtrip

    def codec(image, crf):
        seen.append(tuple(image.shape))
        return real(image, crf)

    monkeypatch.setattr(conditioning, "h264_roundtrip", codec)
    video_vae = handles.load_ltx2(demo_models.checkpoint, device="cpu").video_vae
    condition = ImageCondition(torch.rand(1, CRF_MAX_SIDE + 904, 40, 3))  # 5000 x 40, the default CRF
    for size in (32, 64):
        grid = empty_latents(1, 9, size, size, 24.0, video_channels=video_vae.latent_channels).video_grid()
        item = stages.encode_conditioning_images(video_vae, [condition], grid)[0]
        assert item.latent.shape[-2:] == (size // 32, size // 32)
    assert seen == [(CRF_MAX_SIDE, 33, 3)]  # 40 * 4096 / 5000 = 32.8 -> 33 columns (cropped to 32 for the codec)


def test_image_files_beyond_the_pixel_limit_are_refused_naming_the_limit(tmp_path, monkeypatch, isolated):
    _png(tmp_path / "big.png", 64, 48)
    paths.configure(input_dir=tmp_path)
    monkeypatch.setattr(core_nodes, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match=r"image 'big\.png' is 64x48 = 3,072 pixels; at most 1,000 are loaded.*"
                                         r"Downscale it"):
        LoadImage().load_image("big.png")
    assert "at most 1,000" in LoadImage.VALIDATE_INPUTS("big.png")


# ------------------------------------------------------------------------------------------------
# Class 6: raw library errors


def test_damaged_images_are_named_with_the_fix(tmp_path, isolated):
    expected = _bad_images(tmp_path)
    paths.configure(input_dir=tmp_path)
    for name, what in expected.items():
        with pytest.raises(InputError) as refused:
            LoadImage().load_image(name)
        message = str(refused.value)
        assert f"image '{name}'" in message and what in message, message
        assert "use a PNG, JPEG, WebP or GIF image" in message or "input folder" in message
        assert "Errno" not in message and "avcodec" not in message
        assert LoadImage.VALIDATE_INPUTS(name) == message
    assert LoadImage().load_image("good.png")[0].shape == (1, 48, 64, 3)
    assert LoadImage.VALIDATE_INPUTS("good.png") is True


def test_generate_refuses_a_damaged_image_before_loading_models(demo_models, tmp_path, isolated, no_models, capsys):
    expected = _bad_images(tmp_path)
    for name in ("empty.png", "truncated.png", "notes.png", "missing.png"):
        assert _generate(demo_models, tmp_path, "--image", str(tmp_path / name)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: image '{name}'") and expected[name] in err
    assert not (tmp_path / "clip.mp4").exists()


def test_a_workflow_with_a_damaged_image_fails_validation_before_any_node_runs(tmp_path, isolated, capsys):
    _bad_images(tmp_path)
    sink = tmp_path / "sink_nodes.py"
    sink.write_text(textwrap.dedent("""
        from pathlib import Path

        class ImageSink:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"image": ("IMAGE",)}}

            RETURN_TYPES = ()
            OUTPUT_NODE = True
            FUNCTION = "take"

            def take(self, image):
                Path(__file__).with_name("ran").write_text(str(list(image.shape)))
                return {}

        NODE_CLASS_MAPPINGS = {"ImageSink": ImageSink}
    """))
    for name in ("truncated.png", "empty.png"):
        wf = tmp_path / "wf.json"
        wf.write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                                  "2": {"class_type": "ImageSink", "inputs": {"image": ["1", 0]}}}))
        code = main(["run", str(wf), "--nodes", str(sink), "--input-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and f"image '{name}'" in err and "use a PNG, JPEG, WebP or GIF image" in err
        assert not (tmp_path / "ran").exists()
    wf.write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "good.png"}},
                              "2": {"class_type": "ImageSink", "inputs": {"image": ["1", 0]}}}))
    assert main(["run", str(wf), "--nodes", str(sink), "--input-dir", str(tmp_path)]) == 0
    assert (tmp_path / "ran").read_text() == "[1, 48, 64, 3]"


def test_lone_surrogates_in_prompts_are_named(demo_models, tmp_path, isolated, no_models, capsys):
    with pytest.raises(InputError, match=r"the prompt holds a lone surrogate U\+D83D at character 4 "
                                         r"\(near 'cat \\\\ud83d smiles'\).*Remove it or re-type that part"):
        check_text("cat \ud83d smiles")
    assert check_text("cat \U0001F600 smiles") == "cat \U0001F600 smiles"  # a whole pair is fine
    tokenizer = SentencePiecePromptTokenizer((demo_models.gemma / "tokenizer.model").read_bytes(), "demo")
    with pytest.raises(InputError, match=r"prompt 1 holds a lone surrogate U\+DC80"):
        tokenizer.batch(["fine", "bad \udc80 byte"], max_length=16)
    with pytest.raises(InputError, match="lone surrogate U\\+D800"):
        tokenizer.pieces("\ud800")
    for extra in ((), ("--negative", "blurry \udfff")):
        prompt = "a fox \ud800" if not extra else "a fox"
        code = main(["generate", "--prompt", prompt, "--models-dir", str(demo_models.root), "--device", "cpu",
                     "--out", str(tmp_path / "clip.mp4"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and ("--negative holds" if extra else "--prompt holds") in err and "lone surrogate" in err
    assert not (tmp_path / "clip.mp4").exists()


@pytest.mark.parametrize("section,edit,message", [
    ("transformer", {"num_attention_heads": "two", "audio_num_attention_heads": "two"},
     "num_attention_heads='two' (expected an integer from 1 to 65,536)"),
    ("transformer", {"attention_head_dim": -128}, "attention_head_dim=-128 (expected 1 to 65,536)"),
    ("transformer", {"norm_eps": "tiny"}, "norm_eps='tiny' (expected a finite number)"),
    ("transformer", {"positional_embedding_max_pos": 20}, "positional_embedding_max_pos=20 (expected a list)"),
    ("vae", {"latent_channels": 0}, "config.vae has latent_channels=0 (expected 1 to 65,536)"),
    ("audio_vae", {"model": {"params": {"ddconfig": {"ch": "wide"}}}}, "config.audio_vae has ch='wide'"),
    ("vocoder", {"upsample_rates": [6, 5, 2], "upsample_kernel_sizes": [16, 15]}, "3 upsample rates but 2"),
    ("vocoder", {"upsample_initial_channel": -1024}, "upsample_initial_channel=-1,024"),
], ids=["heads-two", "negative-head-dim", "text-eps", "scalar-list", "zero-channels", "audio-vae-text",
        "unpaired-rates", "negative-channels"])
def test_configs_with_wrong_types_or_signs_are_refused_naming_file_and_value(demo_models, tmp_path, isolated,
                                                                             monkeypatch, capsys, section, edit,
                                                                             message):
    path = _edited_checkpoint(demo_models.checkpoint, tmp_path, section, edit)
    with pytest.raises(UnsupportedModelError) as refused:
        handles.LTX2Models(path, torch.float32, "as stored")
    assert str(refused.value).startswith(f"{path.name}: ") and message in str(refused.value)
    assert "original release file" in str(refused.value)
    monkeypatch.setattr(handles, "load_gemma", lambda *a, **k: pytest.fail("Gemma loaded after a bad checkpoint"))
    code = main(["generate", "--prompt", "x", "--models-dir", str(path.parent.parent), "--checkpoint", path.name,
                 "--device", "cpu", "--out", str(tmp_path / "clip.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {path.name}: ") and message in err


def test_a_lora_in_the_checkpoint_slot_is_named_as_one(demo_models, tmp_path, isolated, capsys):
    video_only = demo_models.lora  # attn1 / ff factors only: once taken for a video-only LTX-Video file
    tensors = load_file(str(video_only))
    with_audio = dict(tensors, **{k.replace(".attn1.", ".audio_attn1."): v.clone() for k, v in tensors.items()
                                  if ".attn1." in k})
    kohya = {k.replace("diffusion_model.", "lora_unet_").replace(".lora_A.", ".lora_down.")
             .replace(".lora_B.", ".lora_up."): v for k, v in tensors.items()}
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True)
    files = [video_only]
    for name, state in (("audio_lora.safetensors", with_audio), ("kohya_lora.safetensors", kohya)):
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / name))
        files.append(folder / name)
    for path in files:
        with pytest.raises(CheckpointError) as refused:
            LTX2Checkpoint(path)
        message = str(refused.value)
        assert not isinstance(refused.value, UnsupportedModelError) and "video-only" not in message
        assert message.startswith(f"{path.name} is a LoRA") and "a LoRA in the wrong slot" in message
        assert "models/loras" in message and "ltx-2-19b-*" in message
    code = main(["generate", "--prompt", "x", "--models-dir", str(tmp_path / "models"), "--checkpoint",
                 "audio_lora.safetensors", "--device", "cpu", "--out", str(tmp_path / "clip.mp4")])
    assert code == 2 and "a LoRA in the wrong slot" in capsys.readouterr().err
    assert not (tmp_path / "clip.mp4").exists()


def _edited_checkpoint(source, tmp_path, section: str, edit: dict):
    """A copy of ``source`` under ``tmp_path/models/checkpoints`` whose ``config.<section>`` has ``edit`` merged."""
    file = SafetensorsFile(source)
    config = json.loads(file.metadata["config"])
    config[section] = _merged(config[section], edit)
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"edited-{section}.safetensors"
    save_file({k: file.tensor(k).contiguous() for k in file.keys()}, str(path),
              metadata={**file.metadata, "config": json.dumps(config)})
    return path


def _merged(base: dict, edit: dict) -> dict:
    out = dict(base)
    for key, value in edit.items():
        out[key] = _merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out
