"""The stage runner on the demo models: end-to-end ``generate`` to an MP4, streamed stages equal resident ones,
the pre-check refusing before any load, the sampling preview (cancelling any stage: ``test_cancellation.py``)."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.errors import OutOfMemoryError, RunInterrupted
from ltx2_nodes.generate import GenerateRequest, generate, sample_stages
from ltx2_nodes.media.mux import probe
from ltx2_nodes.memory import MemoryEngine, StageWeights, selection
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2, load_lora_file, load_upscaler
from ltx2_nodes.nodes.preview import LatentPreviewer, cell_means, fit_projection, previewer_for
from ltx2_nodes.latents import GenerationSettings, empty_latents
from ltx2_nodes.sampling.conditioning import ImageCondition
from ltx2_nodes.sampling.recipe import recipe_for

REQUEST = dict(prompt="a fox in the snow", width=128, height=128, frames=9, fps=24.0, seed=3)


@pytest.fixture
def loaded(headless, demo_models):
    clear_caches()
    return (load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu"),
            load_upscaler(demo_models.upscaler, device="cpu"))


def test_generate_writes_an_mp4_with_video_and_exactly_long_audio(loaded, tmp_path):
    ltx2, gemma, upscaler = loaded
    path = generate(ltx2, gemma, GenerateRequest(**REQUEST), tmp_path / "clip.mp4", upscaler=upscaler)
    media = probe(path)
    assert (media.video_frames, media.width, media.height, media.video_codec) == (9, 128, 128, "h264")
    assert (media.audio_codec, media.audio_sample_rate) == ("aac", 24000)
    assert 9 / 24 <= media.audio_seconds <= 9 / 24 + 1024 / 24000
    recorded = json.loads(media.metadata["ltx2_generate"])
    assert recorded["prompt"] == REQUEST["prompt"] and (recorded["seed"], recorded["steps"]) == (3, 8)


def test_two_stage_recipe_refines_at_twice_the_size_with_the_stage_two_lora(loaded, demo_models):
    """``sample_stages``: the refine stage re-noises audio too, re-encodes the image at its size, and applies the
    stage-2 LoRA for that stage only -- also when it is interrupted."""
    ltx2, gemma, upscaler = loaded
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    latents = empty_latents(1, 9, 64, 64, 24.0, video_channels=ltx2.video_vae.latent_channels,
                            audio_channels=ltx2.audio_vae.latent_channels,
                            audio_mel_bins=ltx2.audio_vae.latent_mel_bins)
    recipe = recipe_for()
    settings = GenerationSettings.from_preset(recipe.distilled, seed=4)
    image = ImageCondition(torch.rand(1, 40, 50, 3, generator=torch.Generator().manual_seed(3)), 0, 1.0, crf=0)
    lora = [(load_lora_file(demo_models.lora), recipe.stage2_lora_strength)]
    steps = []
    out = sample_stages(ltx2.dit, ltx2.video_vae, text, latents, settings, recipe, images=[image],
                        upscaler=upscaler, stage2_loras=lora, callback=lambda step, total, _: steps.append(total))
    first = sample_stages(ltx2.dit, ltx2.video_vae, text, latents, settings, recipe, images=[image])
    assert steps == [settings.steps] * settings.steps + [recipe.refine.steps] * recipe.refine.steps
    assert out.video.shape[-2:] == (4, 4) and first.video.shape[-2:] == (2, 2)
    assert (out.audio - first.audio).abs().max() > 1e-3  # audio re-noised at the refine start and refined
    again = stages.encode_conditioning_images(ltx2.video_vae, [image], out.video_grid())[0].latent
    assert torch.equal(out.video[:, :, :1], again)  # the image, encoded at the stage-2 size, pinned
    model = ltx2.dit.model
    assert not any("lora" in name for name, _ in model.named_buffers())

    def stop_in_stage_2(step, total, preview):
        if total == recipe.refine.steps:
            raise RunInterrupted("cancelled in stage 2")

    with pytest.raises(RunInterrupted):
        sample_stages(ltx2.dit, ltx2.video_vae, text, latents, settings, recipe, upscaler=upscaler,
                      stage2_loras=lora, callback=stop_in_stage_2)
    assert not any("lora" in name for name, _ in model.named_buffers())


def _virtual_engine(budget: int = 256 << 20, minimal: bool = False) -> MemoryEngine:
    """Host memory plays a separate device: every copy, slot and rotation really happens (``minimal``: block
    models stream through two slots, like ComfyUI's --novram)."""
    return MemoryEngine("cpu", virtual=True, vram_budget=budget, ram_budget="1GiB", minimal=minimal)


def test_streamed_stages_equal_the_plain_cpu_run(loaded):
    ltx2, gemma, _ = loaded
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"], selection.default_engine()))
    latents = empty_latents(1, 9, 64, 64, 24.0, video_channels=8)
    settings = GenerationSettings(torch.tensor([1.0, 0.6, 0.0]), seed=5)
    expected = stages.run_sampler(ltx2.dit, text, latents, settings)
    engine = _virtual_engine(minimal=True)
    modes = []
    real_stage = engine.stage

    def stage(*args, **kwargs):
        context = real_stage(*args, **kwargs)
        handle = context.__enter__()
        modes.append(handle.mode)
        return _Entered(context, handle)

    engine.stage = stage
    got = stages.run_sampler(ltx2.dit, text, latents, settings, engine)
    assert modes == ["streamed"] and engine.device_bytes == 0
    assert torch.equal(got.video, expected.video) and torch.equal(got.audio, expected.audio)
    features = stages.encode_prompts(gemma, ["a brand new prompt"], selection.default_engine())
    streamed = stages.encode_prompts(gemma, ["a brand new prompt"], engine)
    assert torch.equal(streamed.hidden_states, features.hidden_states)


class _Entered:
    def __init__(self, context, handle):
        self.context, self.handle = context, handle

    def __enter__(self):
        return self.handle

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def test_precheck_refuses_before_anything_is_built(loaded, tmp_path):
    ltx2, gemma, upscaler = loaded
    engine = MemoryEngine("cpu", virtual=True, vram_budget=64 << 10)
    with pytest.raises(OutOfMemoryError, match="128x128x9 would not fit"):
        generate(ltx2, gemma, GenerateRequest(**REQUEST), tmp_path / "x.mp4", upscaler=upscaler,
                        engine=engine)
    assert ltx2._lazy._built == {} and not (tmp_path / "x.mp4").exists()


class LinearDecoder(torch.nn.Module):
    """A 'VAE decoder' whose pixels are a known linear function of each latent cell (plus bias), spread over the
    cell's 8 frames x 32 x 32 pixels (the first latent frame is one frame)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)

    def check_latent(self, latent):
        pass

    def forward(self, latent):
        rgb = torch.einsum("bcfhw,cr->brfhw", latent, self.weight) + self.bias[None, :, None, None, None]
        rgb = rgb.repeat_interleave(32, dim=3).repeat_interleave(32, dim=4)
        return torch.cat([rgb[:, :, :1], rgb[:, :, 1:].repeat_interleave(8, dim=2)], dim=2)


class _Models:
    name = "linear test VAE"
    dtype = torch.float32
    stage_weights = {"video_vae": StageWeights("video_vae", 0)}  # read by the decode stage's pre-check


def test_preview_projection_recovers_a_linear_decoder_and_draws_the_middle_frame(headless):
    from ltx2_nodes.model.shapes import VideoScale
    from ltx2_nodes.model.video_vae import VideoVAEConfig

    g = torch.Generator().manual_seed(4)
    weight, bias = torch.randn(8, 3, generator=g) * 0.3, torch.tensor([0.1, -0.2, 0.05])
    vae = types.SimpleNamespace(decoder=LinearDecoder(weight, bias), latent_channels=8, scale=VideoScale(),
                                config=VideoVAEConfig(latent_channels=8), diffusion_config=None, models=_Models(),
                                release_pages=None)
    projection = fit_projection(vae)
    assert fit_projection(vae) is projection  # fitted once per VAE
    assert torch.allclose(projection[:-1], weight, atol=0.02) and torch.allclose(projection[-1], bias, atol=0.02)
    previewer = LatentPreviewer.__new__(LatentPreviewer)
    previewer.projection = projection
    latent = torch.zeros(1, 8, 3, 2, 2)
    latent[0, :, 1] = 1.0  # only the middle frame is shown
    expected = ((weight.sum(0) + bias + 1) / 2).clamp(0, 1) * 255
    assert (previewer.pixels(latent).float() - expected).abs().max() <= 5
    assert previewer.pixels(latent).shape == (2, 2, 3)
    frames = cell_means(vae.decoder(latent), 8, 32, 32)
    assert frames.shape == (1, 3, 3, 2, 2)


def test_preview_is_sent_through_comfys_progress_bar_when_previews_are_on(loaded, monkeypatch):
    """Inside ComfyUI (fake modules here): ``update_absolute(step, total, ("JPEG", image, size))``."""
    sent = []

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            sent.append((value, total, preview))

    class Image:
        BILINEAR = 2
        size = (2, 2)

        @classmethod
        def fromarray(cls, array):
            image = cls()
            image.array = array
            return image

        def resize(self, size, _filter):
            self.size = size
            return self

    monkeypatch.setitem(sys.modules, "comfy.utils", types.SimpleNamespace(ProgressBar=Bar))
    monkeypatch.setitem(sys.modules, "comfy.cli_args", types.SimpleNamespace(
        args=types.SimpleNamespace(preview_method=types.SimpleNamespace(value="auto"), preview_size=256)))
    monkeypatch.setitem(sys.modules, "PIL", types.SimpleNamespace(Image=Image))
    monkeypatch.setitem(sys.modules, "PIL.Image", Image)
    monkeypatch.setitem(sys.modules, "comfy.model_management",
                        types.SimpleNamespace(throw_exception_if_processing_interrupted=lambda: None))
    monkeypatch.setattr(selection, "default_engine", lambda: _virtual_engine(256 << 20))
    previewer = previewer_for(loaded[0].video_vae)
    assert isinstance(previewer, LatentPreviewer)
    previewer(3, 8, torch.randn(1, 8, 2, 2, 2))
    (value, total, (kind, image, size)), = [s for s in sent if s[2] is not None]
    assert (value, total, kind, size) == (3, 8, "JPEG", 256) and image.array.shape == (2, 2, 3)
    monkeypatch.setattr(sys.modules["comfy.cli_args"].args.preview_method, "value", "none")
    assert previewer_for(loaded[0].video_vae) is None
