"""Audio VAE / vocoder configs: released sizes, metadata parsing and refusals of other architectures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import CheckpointError, InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint, build_module
from ltx2_nodes.loading.components import load_audio_decoder
from ltx2_nodes.media.audio_codec import decode_audio, decode_mel
from ltx2_nodes.model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
from ltx2_nodes.model.vocoder import Vocoder, VocoderConfig

RELEASED_AUDIO_VAE = {
    "model": {"params": {"sampling_rate": 16000, "embed_dim": 8, "ddconfig": {
        "double_z": True, "mel_bins": 64, "z_channels": 8, "resolution": 256, "downsample_time": False,
        "in_channels": 2, "out_ch": 2, "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [],
        "dropout": 0.0, "mid_block_add_attention": False, "norm_type": "pixel", "causality_axis": "height"}}},
    "preprocessing": {"audio": {"sampling_rate": 16000, "stereo": True},
                      "stft": {"filter_length": 1024, "hop_length": 160, "win_length": 1024, "causal": True},
                      "mel": {"n_mel_channels": 64, "mel_fmin": 0, "mel_fmax": 8000}},
}
RELEASED_VOCODER = {"resblock": "1", "upsample_rates": [6, 5, 2, 2, 2], "upsample_kernel_sizes": [16, 15, 8, 4, 4],
                    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
                    "upsample_initial_channel": 1024, "stereo": True}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_released_sizes_from_released_metadata():
    vae = AudioVAEConfig.from_metadata(RELEASED_AUDIO_VAE)
    assert vae == AudioVAEConfig()
    voc = VocoderConfig.from_metadata(RELEASED_VOCODER)
    assert voc == VocoderConfig() and voc.upsample_factor == 240
    with torch.device("meta"):
        encoder, decoder, vocoder = AudioEncoder(vae), AudioDecoder(vae), Vocoder(voc)
    # architecture notes section 5.5 / 6: 21.3M, 31.9M, 55.6M parameters; 194 vocoder tensors
    assert round(_params(encoder) / 1e5) == 213 and round(_params(decoder) / 1e5) == 319
    assert round(_params(vocoder) / 1e5) == 556 and len(vocoder.state_dict()) == 194
    assert tuple(decoder.state_dict()["up.1.block.0.nin_shortcut.conv.weight"].shape) == (256, 512, 1, 1)
    assert tuple(encoder.state_dict()["conv_out.conv.weight"].shape) == (16, 512, 3, 3)
    assert tuple(vocoder.state_dict()["ups.0.weight"].shape) == (1024, 512, 16)


def test_released_decoder_shapes_for_the_worked_example():
    """121 frames at 24 fps: latent [1, 8, 126, 16] -> mel [1, 2, 501, 64] -> 120240 samples."""
    with torch.device("meta"):
        decoder, vocoder = AudioDecoder(AudioVAEConfig()), Vocoder(VocoderConfig())
        mel = decoder(torch.empty(1, 8, 126, 16))
        wave = vocoder(mel)
    assert tuple(mel.shape) == (1, 2, 501, 64) and tuple(wave.shape) == (1, 2, 120240)


def test_ltx23_vocoder_is_refused():
    with pytest.raises(UnsupportedModelError, match="LTX-2.3 BigVGAN"):
        VocoderConfig.from_metadata({"vocoder": {"resblock": "AMP1"}, "bwe": {}})


@pytest.mark.parametrize("meta, message", [
    ({"resblock": "2"}, "ResBlock1"),
    ({"upsample_rates": [6, 5, 2, 2, 2], "upsample_kernel_sizes": [15, 15, 8, 4, 4]}, "kernel 15 and rate 6"),
])
def test_other_vocoders_are_refused(meta, message):
    with pytest.raises(UnsupportedModelError, match=message):
        VocoderConfig.from_metadata(meta)


@pytest.mark.parametrize("change, message", [
    ({"norm_type": "group"}, "norm_type='group'"),
    ({"causality_axis": "width"}, "causality_axis='width'"),
    ({"mid_block_add_attention": True}, "mid_block_add_attention"),
    ({"attn_resolutions": [64]}, "attn_resolutions"),
])
def test_other_audio_vaes_are_refused(change, message):
    meta = {"model": {"params": {"ddconfig": dict(RELEASED_AUDIO_VAE["model"]["params"]["ddconfig"], **change)}}}
    with pytest.raises(UnsupportedModelError, match=message):
        AudioVAEConfig.from_metadata(meta)


def test_weights_that_do_not_fit_the_config_are_refused():
    golden = find_golden("audio_vae")
    ckpt = LTX2Checkpoint(golden.weights_path)
    cfg = AudioVAEConfig.from_metadata(ckpt.component_config("audio_decoder"))
    wider = dataclasses.replace(cfg, ch=cfg.ch * 2)
    with pytest.raises(CheckpointError, match="audio decoder weights do not match"):
        build_module(lambda: AudioDecoder(wider), ckpt.state_dict("audio_decoder"), what="audio decoder",
                     source=ckpt.path.name)


@pytest.mark.parametrize("shape, message", [
    ((1, 3, 5), r"expected \[batch, "),
    ("channels+1", r"expected \[batch, "),
    ("bins/2", "features per step but this audio VAE works on"),
])
def test_foreign_latents_are_refused(shape, message):
    # decode_mel is the decoder half of decode_audio; the vocoder is left out so that a fixture whose
    # decoder and vocoder do not pair (allowed by the reference for module-level tests) still runs.
    golden = find_golden("audio_vae")
    decoder = load_audio_decoder(LTX2Checkpoint(golden.weights_path), torch.float32)
    b, c, t, f = golden["decode.latent"].shape
    shape = {"channels+1": (b, c + 1, t, f), "bins/2": (b, c, t, f // 2)}.get(shape, shape)
    with pytest.raises(InputError, match=message):
        decode_mel(torch.zeros(shape), decoder)


def test_mismatched_decoder_and_vocoder_are_refused():
    with torch.device("meta"):
        decoder = AudioDecoder(dataclasses.replace(AudioVAEConfig(), mel_bins=80))
        vocoder = Vocoder(VocoderConfig())
    with pytest.raises(UnsupportedModelError, match="writes 2 x 80 mel bins but the vocoder reads 128"):
        decode_audio(torch.zeros(1, 8, 4, 20), decoder, vocoder)
