"""Headless LoadImage / LoadAudio: ComfyUI's tensor layouts and value ranges, through a workflow."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

import cli_fake_nodes as fake
from ltx2_nodes import paths
from ltx2_nodes.cli import core_nodes
from ltx2_nodes.cli.executor import Executor
from ltx2_nodes.cli.workflow import Workflow, WorkflowError


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    paths.reset()
    paths.configure(output_dir=tmp_path / "out", input_dir=tmp_path)
    monkeypatch.setattr(core_nodes, "_has_pillow", lambda: False)  # the fallback every CI machine has
    yield
    paths.reset()


def write_png(path, pixels: np.ndarray, pix_fmt: str) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.height, stream.width = pixels.shape[:2]
        stream.pix_fmt = pix_fmt
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format=pix_fmt)):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    """``samples``: int16 [C, T]."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo" if samples.shape[0] == 2 else "mono")
        frame = av.AudioFrame.from_ndarray(samples.T.reshape(1, -1).copy(), format="s16",
                                           layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_load_image_rgba_gives_image_and_inverted_alpha_mask(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 10, 4), dtype=np.uint8)
    write_png(tmp_path / "in.png", pixels, "rgba")
    image, mask = core_nodes.LoadImage().load_image("in.png")
    assert image.shape == (1, 6, 10, 3) and image.dtype == torch.float32
    assert torch.equal(image[0], torch.from_numpy(pixels[..., :3].astype(np.float32) / 255))
    assert mask.shape == (1, 6, 10)
    assert torch.allclose(mask[0], 1 - torch.from_numpy(pixels[..., 3].astype(np.float32) / 255))


def test_load_image_without_alpha_has_comfyuis_placeholder_mask(tmp_path):
    pixels = np.full((4, 4, 3), 255, dtype=np.uint8)
    write_png(tmp_path / "white.png", pixels, "rgb24")
    image, mask = core_nodes.LoadImage().load_image("white.png")
    assert torch.equal(image, torch.ones(1, 4, 4, 3))
    assert torch.equal(mask, torch.zeros(1, 64, 64))
    assert core_nodes.LoadImage.INPUT_TYPES()["required"]["image"][0] == ["white.png"]


def test_load_audio_gives_batch_channel_time_float_waveform(tmp_path):
    samples = np.stack([np.arange(-800, 800, 2, dtype=np.int16), np.full(800, 16384, dtype=np.int16)])
    write_wav(tmp_path / "a.wav", samples, 16000)
    (audio,) = core_nodes.LoadAudio().load("a.wav")
    assert audio["sample_rate"] == 16000
    waveform = audio["waveform"]
    assert waveform.shape == (1, 2, 800) and waveform.dtype == torch.float32
    assert torch.equal(waveform[0], torch.from_numpy(samples.astype(np.float32) / 32768))


def test_core_nodes_in_a_workflow_validate_their_files(tmp_path):
    write_png(tmp_path / "in.png", np.zeros((2, 2, 3), dtype=np.uint8), "rgb24")

    class ImageShape:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE",), "mask": ("MASK",)}}

        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "show"

        def show(self, image, mask):
            return {"ui": {"shape": [list(image.shape), list(mask.shape)]}}

    registry = {**core_nodes.CORE_NODE_CLASSES, "ImageShape": ImageShape, **fake.NODE_CLASS_MAPPINGS}
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
              "2": {"class_type": "ImageShape", "inputs": {"image": ["1", 0], "mask": ["1", 1]}}}
    result = Executor(registry).run(Workflow.from_json(prompt))
    assert result.outputs["2"] == {"shape": [[1, 2, 2, 3], [1, 64, 64]]}
    prompt["1"]["inputs"]["image"] = "missing.png"
    with pytest.raises(WorkflowError, match=r"^node 1 \(LoadImage\): VALIDATE_INPUTS rejected the inputs: "
                                            r"image 'missing.png': no such file \(.*\); check the name"):
        Executor(registry).plan(Workflow.from_json(prompt))
    prompt["2"]["inputs"]["image"] = ["1", 1]
    prompt["1"]["inputs"]["image"] = "in.png"
    with pytest.raises(WorkflowError, match=r"input 'image': node 1 \(LoadImage\) output 1 is MASK, expected IMAGE"):
        Executor(registry).plan(Workflow.from_json(prompt))
