"""Audio VAE / vocoder configs: released sizes, metadata parsing and refusals of other architectures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import CheckpointError, InputError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint, build_module
from ltx2_nodes.loading.components import load_audio_decoder, load_vocoder, vocoder_config
from ltx2_nodes.media.audio_codec import decode_audio, decode_mel, vocode
from ltx2_nodes.model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
from ltx2_nodes.model.bigvgan import BigVGANConfig, BWEVocoder, BWEVocoderConfig
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


_AMP = {"resblock": "AMP1", "activation": "snakebeta", "stereo": True, "use_tanh_at_final": False,
        "use_bias_at_final": False, "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3}
RELEASED_VOCODER_23 = {  # architecture notes section 12.4
    "vocoder": dict(_AMP, upsample_initial_channel=1536, upsample_rates=[5, 2, 2, 2, 2, 2],
                    upsample_kernel_sizes=[11, 4, 4, 4, 4, 4]),
    "bwe": dict(_AMP, upsample_initial_channel=512, upsample_rates=[6, 5, 2, 2, 2],
                upsample_kernel_sizes=[12, 11, 4, 4, 4], apply_final_activation=False, input_sampling_rate=16000,
                output_sampling_rate=48000, hop_length=80, n_fft=512, win_size=512, num_mels=64),
}


def test_vocoder_family_follows_the_config_layout():
    """Flat ``config.vocoder`` -> LTX-2 HiFi-GAN; nested ``vocoder`` + ``bwe`` -> LTX-2.3 BigVGAN + BWE."""
    assert vocoder_config(RELEASED_VOCODER) == VocoderConfig()
    cfg = vocoder_config(RELEASED_VOCODER_23)
    assert cfg == BWEVocoderConfig() and cfg.bwe.final_activation == "none" and cfg.vocoder.final_activation == "clamp"
    assert (cfg.output_sample_rate, cfg.upsample_factor) == (48000, 480)
    with pytest.raises(UnsupportedModelError, match="LTX-2.3 BigVGAN"):
        VocoderConfig.from_metadata(RELEASED_VOCODER_23)


def test_released_ltx23_vocoder_shapes_for_the_worked_example():
    """121 frames at 24 fps: 501 mel frames -> 80160 samples at 16 kHz -> 240480 samples at 48 kHz."""
    with torch.device("meta"):
        vocoder = BWEVocoder(BWEVocoderConfig())
        wave = vocoder(torch.empty(1, 2, 501, 64))
    assert tuple(wave.shape) == (1, 2, 240480) and vocoder.sample_rate == 48000
    assert round(_params(vocoder) / 1e5) == 1285  # the reference's "128.5M-param model" (VocoderWithBWE.forward)
    state = vocoder.state_dict()
    assert tuple(state["vocoder.ups.0.weight"].shape) == (1536, 768, 11)
    assert tuple(state["bwe_generator.ups.0.weight"].shape) == (512, 256, 12)
    assert tuple(state["mel_stft.stft_fn.forward_basis"].shape) == (514, 1, 512)
    assert "vocoder.conv_post.bias" not in state and "resampler.taps" not in state  # computed, not stored


@pytest.mark.parametrize("section, change, message", [
    ("vocoder", {"resblock": "1"}, "resblock='1'"),
    ("bwe", {"activation": "snake"}, "activation='snake'"),
    ("vocoder", {"stereo": False}, "stereo=False"),
    ("bwe", {"num_mels": 80}, "num_mels=80"),
    ("bwe", {"output_sampling_rate": 44100}, "not a multiple"),
    ("bwe", {"hop_length": 96}, "hop_length"),
    ("vocoder", {"upsample_kernel_sizes": [10, 4, 4, 4, 4, 4]}, "kernel 10 and rate 5"),
    ("bwe", {"resblock_kernel_sizes": [3, 6, 11]}, "include an even size"),
])
def test_other_ltx23_vocoders_are_refused(section, change, message):
    meta = dict(RELEASED_VOCODER_23, **{section: dict(RELEASED_VOCODER_23[section], **change)})
    with pytest.raises(UnsupportedModelError, match=message):
        BWEVocoderConfig.from_metadata(meta)
    with pytest.raises(UnsupportedModelError, match="both a 'vocoder' and a 'bwe'"):
        BWEVocoderConfig.from_metadata({"bwe": RELEASED_VOCODER_23["bwe"]})


def test_ltx23_vocoder_loads_in_float32_whatever_the_requested_dtype():
    golden = find_golden("vocoder", "2.3")
    vocoder = load_vocoder(LTX2Checkpoint(golden.weights_path), torch.bfloat16)
    assert isinstance(vocoder, BWEVocoder) and isinstance(vocoder.cfg.vocoder, BigVGANConfig)
    assert {t.dtype for t in list(vocoder.parameters()) + list(vocoder.buffers())} == {torch.float32}
    assert vocoder.resampler.taps.abs().sum() > 0  # rebuilt after the meta-device build


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


def test_chunked_vocoding_is_exact_where_only_every_other_mel_frame_starts_an_stft_frame():
    """160 samples per mel frame, hop 64: chunks start on even frames only, and the joins stay exact."""
    small = dict(_AMP, upsample_initial_channel=16)
    meta = {"vocoder": dict(small, upsample_rates=[5, 4, 8], upsample_kernel_sizes=[11, 8, 16]),
            "bwe": dict(small, upsample_rates=[4, 4, 4, 3], upsample_kernel_sizes=[8, 8, 8, 3], hop_length=64,
                        n_fft=128, num_mels=64, input_sampling_rate=16000, output_sampling_rate=48000)}
    torch.manual_seed(0)
    vocoder = BWEVocoder(BWEVocoderConfig.from_metadata(meta)).eval()
    with torch.no_grad():
        vocoder.mel_stft.stft_fn.forward_basis.normal_(std=0.1)
        vocoder.mel_stft.mel_basis.uniform_()
    assert vocoder.frame_alignment == 2
    chunk = vocoder.context_frames() + 1  # odd: vocode rounds it up to the alignment
    mel = torch.randn(1, 2, 3 * chunk, 64)
    whole = vocode(mel, vocoder, chunk_frames=None)
    assert whole.shape[-1] == 3 * chunk * 480
    torch.testing.assert_close(vocode(mel, vocoder, chunk_frames=chunk), whole, rtol=0, atol=1e-5)
