"""The one video VAE memory model (memory/vae.py): estimates, tile choice, and the budget the stages pass in."""

from __future__ import annotations

import contextlib
import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import find_golden
from ltx2_nodes import stages
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_video_encoder
from ltx2_nodes.memory.measure import LiveBytes
from ltx2_nodes.memory import MemoryEngine
from ltx2_nodes.memory.devices import host_ram_available
from ltx2_nodes.memory.placement import module_tensors, tensor_bytes
from ltx2_nodes.memory.precheck import RunRequest, StageWeights, estimate_run
from ltx2_nodes.memory.vae import (HOST_DECODE_SHARE, SMALLEST_ENCODE_TILE, activation_bytes_per_voxel,
                                   auto_tiling, decode_budget, encode_device_bytes, encode_tiling,
                                   estimate_decode_bytes, tile_device_bytes, tiling_with_overlaps)
from ltx2_nodes.model.shapes import video_latent_size
from ltx2_nodes.model.vae_tiling import TilingConfig, largest_tile, tiled_encode
from ltx2_nodes.model.video_vae import VideoVAEConfig

GiB = 2 ** 30


def test_memory_estimate_and_auto_tiling():
    cfg = VideoVAEConfig()  # released 19B decoder
    assert activation_bytes_per_voxel(cfg, 2) == 144.0  # 9 live tensors x 2 bytes x 128 ch / (4x4 px)
    tiling = TilingConfig(512, 64, 64, 24)
    short, long = (1, 128, 16, 24, 40), (1, 128, 61, 24, 40)  # 121 vs 481 frames at 1280x768
    assert estimate_decode_bytes(cfg, short, tiling) == estimate_decode_bytes(cfg, long, tiling)  # flat in length
    assert estimate_decode_bytes(cfg, long, None) > 4 * estimate_decode_bytes(cfg, long, tiling)
    assert auto_tiling(cfg, long, 1 << 50) is None
    for budget_gb in (24, 8, 4):
        chosen = auto_tiling(cfg, long, budget_gb << 30)
        assert chosen is not None and estimate_decode_bytes(cfg, long, chosen) <= budget_gb << 30
    bigger, smaller = auto_tiling(cfg, long, 24 << 30), auto_tiling(cfg, long, 4 << 30)
    assert math.prod(largest_tile(long[2:], bigger)) > math.prod(largest_tile(long[2:], smaller))
    # nothing fits: the smallest tiling is returned (with a warning) rather than failing up front
    assert auto_tiling(cfg, long, 1) == TilingConfig(128, 32, 16, 8)


def test_tile_device_bytes_are_the_tile_activations_and_its_output():
    cfg = VideoVAEConfig()
    latent = (1, 128, *video_latent_size(121, 512, 768))
    tiling = TilingConfig(512, 64, 64, 24)
    frames, height, width = largest_tile(latent[2:], tiling)
    voxels = frames * height * width
    assert tile_device_bytes(cfg, latent, tiling) == int(144 * voxels + 3 * 4 * voxels)
    assert tile_device_bytes(cfg, latent, None) == int((144 + 12) * 121 * 512 * 768)
    assert tile_device_bytes(cfg, (2, *latent[1:]), tiling) == 2 * tile_device_bytes(cfg, latent, tiling)
    # an image encode: the pixels' three copies with the 1-frame time padding (3x), the 128-channel stage at 4x4 px
    assert encode_device_bytes(cfg, 1, 512, 768) == 2 * (3 * (2 + 3) + (8 + 3) * 8) * 512 * 768
    assert tiling_with_overlaps(512, 64) == tiling and tiling_with_overlaps(None, None) is None
    assert tiling_with_overlaps(128, 16) == TilingConfig(128, 32, 16, 8)


def test_the_precheck_models_the_decode_with_the_same_numbers():
    """One model: the pre-check's video_vae stage is the decode stage's tile reserve for the same tile."""
    weights = {"video_vae": StageWeights("video_vae", 2 * 528_400_000)}
    for width, height, frames, tile in [(768, 512, 121, (512, 64)), (1920, 1088, 241, (256, 32)),
                                        (512, 320, 9, None), (1280, 704, 121, (4096, 4096))]:
        request = RunRequest(width, height, frames, vae_tile=tile)
        [stage] = estimate_run(weights, request, vram_budget=80 * GiB, ram_budget=80 * GiB).stages
        latent = (1, 128, *video_latent_size(frames, height, width))
        tiling = tiling_with_overlaps(*tile) if tile else None
        assert stage.activation_bytes == tile_device_bytes(VideoVAEConfig(), latent, tiling)


@pytest.mark.parametrize("flavour", ["2.0", "2.3"], ids=["golden-2.0", "golden-2.3"])
@pytest.mark.parametrize("clip, tile", [((1, 128, 192), None), ((17, 128, 192), None), ((9, 256, 256), None),
                                        ((49, 256, 256), (192, 32))])
def test_the_encode_estimate_bounds_the_measured_peak_of_the_encoder(flavour, clip, tile):
    """The encoder's memory model (``encode_device_bytes``) against the live bytes of a real encode on the golden VAE
    (the pixels made inside, as the copy on the device is), within the bounds the activation estimates are held to:
    [1.0, 1.35] x the measured peak, for images, clips and a tiled clip."""
    ckpt = LTX2Checkpoint(find_golden("video_vae", flavour).weights_path)
    encoder = load_video_encoder(ckpt, torch.float32)
    tiling = encode_tiling(*tile) if tile else None
    frames, height, width = clip
    images = torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), LiveBytes() as live:
        if tiling is None:
            encoder(images * 2 - 1)
        else:
            tiled_encode(encoder, images, tiling, prepare=lambda pixels: pixels * 2 - 1)
    estimate = encode_device_bytes(encoder.config, frames, height, width, torch.float32, tiling)
    assert live.peak <= estimate <= 1.35 * live.peak, (live.peak, estimate)


def test_the_precheck_models_the_encodes_with_the_same_numbers():
    """One model: the pre-check's video_encoder stage is the largest encode the request makes (images whole at the
    final size, a clip or a control video one smallest tile at a time), and its weights count only then."""
    weights = {"video_encoder": StageWeights("video_encoder", 2 * 300_000_000, host_bytes=GiB)}
    budgets = dict(vram_budget=80 * GiB, ram_budget=80 * GiB)
    cfg, smallest = VideoVAEConfig(), encode_tiling(*SMALLEST_ENCODE_TILE)
    assert estimate_run(weights, RunRequest(768, 512, 121), **budgets).stages == []
    [stage] = estimate_run(weights, RunRequest(768, 512, 121, images=2), **budgets).stages
    assert stage.activation_bytes == encode_device_bytes(cfg, 1, 512, 768)
    [stage] = estimate_run(weights, RunRequest(1920, 1088, 241, encode_video=True), **budgets).stages
    assert stage.activation_bytes == encode_device_bytes(cfg, 241, 1088, 1920, tiling=smallest)
    control = RunRequest(1536, 1024, 121, two_stage=True, control=(2, 1))
    assert control.control_size() == (121, 256, 384)  # 1/2 of stage 1's 768x512
    [stage] = estimate_run(weights, control, **budgets).stages
    assert stage.activation_bytes == encode_device_bytes(cfg, 121, 256, 384, tiling=smallest)
    unused = estimate_run(weights, RunRequest(768, 512, 121), **budgets).ram_required
    assert estimate_run(weights, RunRequest(768, 512, 121, images=1), **budgets).ram_required == unused + GiB


def test_the_decode_budget_is_the_engines_budget_less_the_weights():
    assert decode_budget(8 * GiB, GiB) == 7 * GiB
    assert decode_budget(GiB, 2 * GiB) == 0
    free = host_ram_available() // HOST_DECODE_SHARE  # a host device has no budget: half the available RAM
    assert abs(decode_budget(None, GiB) - free) < free // 10


class _Decoder(nn.Module):
    """Nearest-neighbour stand-in with the VideoDecoder interface (8 frames, 32x32 pixels per cell)."""

    def __init__(self):
        super().__init__()
        self.config = VideoVAEConfig()
        self.scale = self.config.decoder_scale
        self.weight = nn.Parameter(torch.ones(1 << 16))

    def check_latent(self, latent):
        pass

    def forward(self, latent):
        x = torch.cat([latent[:, :3, :1], latent[:, :3, 1:].repeat_interleave(8, dim=2)], dim=2)
        return F.interpolate(x, scale_factor=(1, 32, 32), mode="nearest")


def test_the_decode_stage_passes_the_engine_budget_into_the_tile_choice(monkeypatch):
    """``stages`` asks memory/ for the budget and the tiles; the stage reserves the same model's tile bytes."""
    decoder = _Decoder()
    weight_bytes = tensor_bytes(module_tensors(decoder))
    bundle = types.SimpleNamespace(name="fake VAE", dtype=torch.float32,  # what the decode stage's pre-check reads
                                   stage_weights={"video_vae": StageWeights("video_vae", weight_bytes)})
    vae = types.SimpleNamespace(decoder=decoder, config=decoder.config, diffusion_config=None, scale=decoder.scale,
                                release_pages=None, models=bundle)
    shape = (1, 128, 16, 16, 24)
    for budget in (64 * GiB, 2 * GiB, GiB // 2):
        engine = MemoryEngine("cpu", virtual=True, vram_budget=budget)
        chosen = stages.resolve_tiling(vae, shape, engine, "auto")
        assert chosen == auto_tiling(vae.config, shape, budget - weight_bytes, torch.float32)
    assert stages.resolve_tiling(vae, shape, engine, None) is None  # explicit choices pass through

    engine = MemoryEngine("cpu", virtual=True, vram_budget=GiB)
    profiles = []

    @contextlib.contextmanager
    def stage(name, model, profile=None, **kwargs):
        profiles.append(profile)
        yield None

    monkeypatch.setattr(engine, "stage", stage)
    latent = torch.randn(1, 128, 3, 2, 3)
    tiling = TilingConfig(64, 32, 16, 8)
    video = stages.decode_video(latent, vae, engine, tiling)
    assert video.shape == (1, 3, 17, 64, 96)
    assert profiles[0].activation_bytes == tile_device_bytes(vae.config, latent.shape, tiling, torch.float32)
