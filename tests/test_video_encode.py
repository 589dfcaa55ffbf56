"""The video encode stage and node: frames -> the latent the VAE encoder makes of them, tiled to the memory budget
(``memory.vae.auto_encode_tiling``) with the encoder's overlaps, clips cut to a valid size when asked."""

from __future__ import annotations

import pytest
import torch

from demo_support import demo_models, headless  # noqa: F401
from ltx2_nodes import stages
from ltx2_nodes.errors import InputError
from ltx2_nodes.handles import clear_caches, load_ltx2
from ltx2_nodes.memory.vae import auto_encode_tiling, encode_device_bytes
from ltx2_nodes.model.video_vae import VideoVAEConfig
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
from ltx2_nodes.nodes.comfy_types import to_av_latents


@pytest.fixture
def ltx2(headless, demo_models):
    clear_caches()
    return load_ltx2(demo_models.checkpoint, device="cpu")


def test_untiled_encode_equals_the_encoder_on_the_whole_clip(ltx2):
    images = torch.rand(17, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    latent = stages.encode_video(ltx2.video_vae, images, tiling=None)
    with torch.no_grad():
        direct = ltx2.video_vae.encoder(images.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).float()
    assert latent.shape == (1, ltx2.video_vae.latent_channels, 3, 2, 3) and torch.equal(latent, direct)


def test_auto_tiling_shrinks_tiles_to_the_budget_with_the_encoders_overlaps():
    config = VideoVAEConfig()
    assert auto_encode_tiling(config, 481, 512, 768, 10**13) is None  # everything fits: one piece
    tiling = auto_encode_tiling(config, 481, 512, 768, 3 * 10**9)
    assert tiling is not None and tiling.tile_overlap_in_pixels >= 64 and tiling.tile_overlap_in_frames >= 16
    assert encode_device_bytes(config, 481, 512, 768, tiling=tiling) <= 3 * 10**9 < encode_device_bytes(config, 481,
                                                                                                    512, 768)


def test_the_node_cuts_a_clip_to_a_valid_size_or_refuses_it_with_what_fits(ltx2):
    node = NODE_CLASS_MAPPINGS["LTX2VideoEncode"]()
    images = torch.rand(20, 70, 100, 3, generator=torch.Generator().manual_seed(1))
    (latent,) = node.encode(ltx2.video_vae, images, 24.0, fit=True)
    av = to_av_latents(latent)
    assert av.video.shape[2:] == (3, 2, 3) and av.audio is None and av.fps == 24.0
    with pytest.raises(InputError, match="17 frames of 96x64 fit"):
        node.encode(ltx2.video_vae, images, 24.0, fit=False)
    audio = {"waveform": torch.randn(1, 2, 16000), "sample_rate": 16000}
    (latent,) = node.encode(ltx2.video_vae, images, 24.0, fit=True, audio_vae=ltx2.audio_vae, audio=audio)
    assert to_av_latents(latent).audio.shape[2] == round(17 / 24 * 25)
