"""The tiny demo models: released key layout and metadata format, the shapes ComfyUI core's audio VAE loader
hard-codes, determinism, clear demo labelling, and the ``demo-models`` command."""

from __future__ import annotations

import json

import torch

from conftest import find_golden
from demo_support import demo_models  # noqa: F401
from ltx2_nodes.cli import main
from ltx2_nodes.demo.models import (CHECKPOINT, CHECKPOINT_23, DEMO_NOTICE, GEMMA, LORA, LORA_23, UPSCALER,
                                    UPSCALER_23, UPSCALER_TEMPORAL_23, UPSCALER_X1_5_23, checkpoint_state, demo_config)
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.lora import load_lora, resolve_targets
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.handles import load_gemma, load_ltx2


def test_the_released_key_layout_for_any_config():
    """Written with the golden checkpoint's config, the demo writer produces exactly its keys and shapes: the
    single-file layout the reference and ComfyUI read."""
    golden = LTX2Checkpoint(find_golden("transformer").weights_path)
    width = golden.file.info("text_embedding_projection.aggregate_embed.weight").shape[1]
    state = checkpoint_state(golden.config, width)
    assert set(state) == set(golden.file.keys())
    assert all(tuple(state[k].shape) == golden.file.info(k).shape for k in state)


def test_demo_checkpoint_loads_and_fits_comfyui_cores_audio_vae(demo_models):
    ckpt = LTX2Checkpoint(demo_models.checkpoint)
    assert ckpt.variant.describe() == "LTX-2 single-file checkpoint"
    assert json.loads(ckpt.file.metadata["config"]) == demo_config()
    assert ckpt.file.metadata["ltx2_nodes_demo"] == DEMO_NOTICE
    # core: per-channel statistics of length 128 and a vocoder reading 2 x 64 mel bins; 24 kHz out
    assert ckpt.file.info("audio_vae.per_channel_statistics.mean-of-means").shape == (128,)
    assert ckpt.file.info("vocoder.conv_pre.weight").shape[1] == 128
    assert json.loads(ckpt.file.metadata["config"])["vocoder"]["output_sample_rate"] == 24000
    models = load_ltx2(demo_models.checkpoint, device="cpu")
    assert models.dit.config.num_layers == 48  # block indices of the release (STG block 29 exists)
    assert models.audio_vae.latent_channels * models.audio_vae.latent_mel_bins == models.dit.config.audio_in_channels
    assert {ckpt.file.info(k).dtype for k in ckpt.file.keys()} == {torch.bfloat16}  # like the release
    assert json.loads(SafetensorsFile(demo_models.upscaler).metadata["config"])["_class_name"] == "LatentUpsampler"


def test_the_ltx23_demo_set_loads_every_component_through_the_normal_loaders(demo_models):
    """The 2.3 demo checkpoint: detected as LTX-2.3 (model_version and tensors), every component builds from its
    config and takes its tensors (gated attention, prompt AdaLN, two aggregate embeds, 8-layer gated
    connectors with their own audio width, BigVGAN + BWE at 48 kHz with the stored buffers), its upscaler
    loads and its LoRA targets its transformer."""
    from ltx2_nodes.handles import load_upscaler

    ckpt = LTX2Checkpoint(demo_models.checkpoint_23)
    assert ckpt.family.version == "2.3" and ckpt.file.metadata["model_version"] == "2.3.0"
    assert json.loads(ckpt.file.metadata["config"]) == demo_config("2.3")
    assert {ckpt.file.info(k).dtype for k in ckpt.file.keys()} == {torch.bfloat16}
    models = load_ltx2(demo_models.checkpoint_23, device="cpu")
    dit = models.transformer()
    assert models.dit.config.num_layers == 48
    assert models.dit.config.apply_gated_attention and models.dit.config.cross_attention_adaln
    connectors = models.connectors()
    assert connectors.projection.config.separate_projections
    assert (connectors.video_width, connectors.audio_width) == (models.dit.config.inner_dim,
                                                                models.dit.config.audio_inner_dim)
    assert len(connectors.video.transformer_1d_blocks) == len(connectors.audio.transformer_1d_blocks) == 8
    for part in ("video_encoder", "video_decoder", "audio_encoder", "audio_decoder"):
        assert getattr(models, part)() is not None
    vocoder = models.vocoder()
    assert type(vocoder).__name__ == "BWEVocoder" and vocoder.sample_rate == 48000
    assert float(vocoder.mel_stft.mel_basis.sum()) > 0 and float(vocoder.mel_stft.stft_fn.forward_basis.abs().sum()) > 0
    assert load_upscaler(demo_models.upscaler_23, device="cpu") is not None
    lora = load_lora(demo_models.lora_23)
    assert len(resolve_targets(lora, dit)) == 48 * 3
    assert models.dit.with_lora(lora, 1.0).loras


def test_demo_lora_targets_the_demo_transformer(demo_models):
    lora = load_lora(demo_models.lora)
    model = load_ltx2(demo_models.checkpoint, device="cpu").transformer()
    assert len(resolve_targets(lora, model)) == 48 * 3


def test_demo_gemma_tokenizes_any_text_and_feeds_the_text_projection(demo_models):
    encoder = load_gemma(demo_models.gemma, device="cpu").encoder
    tokens = encoder.tokenize(["Zoë's 🦊 runs!"])
    assert int(tokens.mask.sum()) > 5 and encoder.tokenizer.token_id("<start_of_turn>") is not None
    width = encoder.config.hidden_size * encoder.config.num_hidden_states
    projection = load_ltx2(demo_models.checkpoint, device="cpu").ckpt.file.info(
        "text_embedding_projection.aggregate_embed.weight")
    assert projection.shape[1] == width


def test_weights_are_deterministic():
    a = checkpoint_state(demo_config(), 128, seed=0)
    b = checkpoint_state(demo_config(), 128, seed=0)
    c = checkpoint_state(demo_config(), 128, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["vocoder.conv_pre.weight"],
                                                                        c["vocoder.conv_pre.weight"])


def test_demo_models_command(tmp_path, capsys):
    assert main(["demo-models", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out.splitlines()
    root = tmp_path / "models"
    assert out[:7] == [str(root / "checkpoints" / CHECKPOINT), str(root / "latent_upscale_models" / UPSCALER),
                       str(root / "text_encoders" / GEMMA), str(root / "loras" / LORA),
                       str(root / "checkpoints" / CHECKPOINT_23), str(root / "latent_upscale_models" / UPSCALER_23),
                       str(root / "loras" / LORA_23)]
    assert out[7:13] == [str(path) for path in write_demo_models_25_paths(root)]
    assert out[13:15] == [str(root / "latent_upscale_models" / name) for name in (UPSCALER_X1_5_23,
                                                                                  UPSCALER_TEMPORAL_23)]
    assert "generates noise" in out[15]
    assert (root / "text_encoders" / GEMMA / "README.txt").read_text().startswith("ltx2_nodes demo model")


def write_demo_models_25_paths(root):
    from ltx2_nodes.demo import models as m

    return [root / "diffusion_models" / m.TRANSFORMER_25, root / "text_encoders" / m.TEXT_ENCODER_25,
            root / "vae" / m.VIDEO_VAE_25, root / "vae" / m.AUDIO_VAE_25, root / "model_patches" / m.DURATION_HEAD_25,
            root / "latent_upscale_models" / m.UPSCALER_25]


def test_the_ltx25_demo_split_files_assemble_into_a_pack_and_run_every_part(demo_models):
    """The 2.5 demo transformer finds its other files in the folders (split pack, Gemma version lock held), every
    part builds through the pack's loaders, the duration head predicts its short demo length, audio is 48 kHz."""
    from ltx2_nodes import paths, stages
    from ltx2_nodes.demo.models import DEMO_SECONDS_25, GEMMA_VERSION_25
    from ltx2_nodes.loading.family import LTX_2_5
    from ltx2_nodes.model.shapes import clamped_frames_for_seconds

    paths.reset()
    paths.configure(models_dir=demo_models.root)
    try:
        models = load_ltx2(demo_models.ltx25.transformer, "float32")
        assert models.ckpt.family is LTX_2_5 and set(models.pack.files) == {
            "text_encoder", "video_vae", "audio_vae", "duration_head"}
        assert models.text_encoder_path() == demo_models.ltx25.text_encoder
        gemma = load_gemma(models.text_encoder_path(), "float32")
        features = stages.encode_prompts(gemma, ["a cat sits on the mat"])
        assert features.gemma_version == GEMMA_VERSION_25
        text = stages.connect_text(models.text_connector, features)
        assert stages.predict_frames(models.duration_head, text, 24.0) == clamped_frames_for_seconds(
            DEMO_SECONDS_25, 24.0)
        assert models.audio_vae.sample_rate == 48000
        assert models.video_vae.diffusion_config is not None
        pixels = stages.decode_video(torch.randn(1, models.video_vae.latent_channels, 2, 2, 3), models.video_vae)
        assert pixels.shape == (1, 3, 9, 64, 96) and torch.isfinite(pixels).all()
    finally:
        paths.reset()
