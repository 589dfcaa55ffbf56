"""Video VAE and latent upscaler parity against the reference outputs (generic over fixture sets)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import (load_latent_statistics, load_latent_upsampler, load_video_decoder,
                                           load_video_encoder)
from ltx2_nodes.model.upsampler import upsample_latent
from ltx2_nodes.model.vae_tiling import TilingConfig, chunk_frame_counts, plan_tiles, tiled_decode


@pytest.fixture(scope="module")
def golden():
    return find_golden("video_vae")


@pytest.fixture(scope="module")
def checkpoint(golden):
    return LTX2Checkpoint(golden.weights_path)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return load_video_encoder(checkpoint, dtype=torch.float32)


@pytest.fixture(scope="module")
def decoder(checkpoint):
    return load_video_decoder(checkpoint, dtype=torch.float32)


def _block_outputs(blocks: torch.nn.ModuleList, run) -> tuple[torch.Tensor, list[torch.Tensor]]:
    outputs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for b in blocks]
    try:
        with torch.no_grad():
            result = run()
    finally:
        for h in hooks:
            h.remove()
    return result, outputs


def _check_debug(golden, prefix: str, outputs: list[torch.Tensor]) -> None:
    debug = golden.prefixed(prefix)
    assert debug, f"fixture has no {prefix}* tensors"
    for name, expected in debug.items():
        index = int(name.removeprefix("down_block").removeprefix("up_block"))
        assert index < len(outputs), f"{prefix}{name}: only {len(outputs)} blocks ran"
        assert_close(outputs[index], expected, prefix + name)


def test_encode_matches(golden, encoder):
    latent, blocks = _block_outputs(encoder.down_blocks, lambda: encoder(golden["encode.pixels"]))
    assert_close(latent, golden["encode.latent"], "encode.latent")
    _check_debug(golden, "encode.debug.", blocks)


def test_decode_matches(golden, decoder):
    video, blocks = _block_outputs(decoder.up_blocks, lambda: decoder(golden["decode.latent"]))
    assert_close(video, golden["decode.video"], "decode.video")
    _check_debug(golden, "decode.debug.", blocks)


def test_tiled_decode_plan_matches(golden, decoder):
    latent = golden["tiled_decode.latent"]
    tiling = TilingConfig.from_dict(golden.call["tiling_config"])
    tiles = plan_tiles(latent.shape[2:], tiling, decoder.scale)
    ours = [{"in": [[s.start, s.stop] for s in t.latent], "out": [[s.start, s.stop] for s in t.pixels]} for t in tiles]
    # The reference writes an untiled axis as slice(0, None): the whole extent of its decoded video.
    extent = golden["tiled_decode.video"].shape[2:]
    expected = [{"in": t["in"], "out": [[a, n if b is None else b] for (a, b), n in zip(t["out"], extent)]}
                for t in golden.call["tiles"]]
    assert ours == expected
    assert chunk_frame_counts(latent.shape[2:], tiling, decoder.scale) == golden.call["tiled_decode_chunk_frames"]


def test_tiled_decode_matches(golden, decoder):
    tiling = TilingConfig.from_dict(golden.call["tiling_config"])
    with torch.no_grad():
        chunks = list(tiled_decode(decoder, golden["tiled_decode.latent"], tiling))
    assert [c.shape[2] for c in chunks] == golden.call["tiled_decode_chunk_frames"]
    assert_close(torch.cat(chunks, dim=2), golden["tiled_decode.video"], "tiled_decode.video")


@pytest.fixture(scope="module")
def golden_upsampler():
    return find_golden("spatial_upsampler_x2")


def test_upsampler_matches(golden_upsampler):
    g = golden_upsampler
    upsampler = load_latent_upsampler(g.weights_path, dtype=torch.float32)
    stats_file = g.meta.get("stats_weights_file") or find_golden("video_vae").meta["weights_file"]
    stats = load_latent_statistics(LTX2Checkpoint(g.path.parent / stats_file))
    with torch.no_grad():
        assert_close(upsampler(g["latent"]), g["forward"], "forward")
        assert_close(upsample_latent(g["latent"], upsampler, stats), g["upsample_video"], "upsample_video")
