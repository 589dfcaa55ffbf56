"""Video VAE and latent upscaler parity against the reference outputs, for every fixture flavour
(2.0 January release, 2.0 weights at HEAD semantics, LTX-2.3), generic over fixture sets."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_close, find_golden
from ltx2_nodes import stages
from ltx2_nodes.errors import InputError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import (load_latent_statistics, load_latent_upsampler, load_video_decoder,
                                           load_video_encoder)
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.model.upsampler import upsample_latent
from ltx2_nodes.model.vae_tiling import (TilingConfig, chunk_frame_counts, plan_encode_tiles, plan_tiles,
                                         tiled_decode, tiled_encode)
from ltx2_nodes.model.video_vae import check_video_size
from ltx2_nodes.handles import load_upscaler
from ltx2_nodes.latents import AVLatents

FLAVOURS = ("2.0", "2.0-head", "2.3")


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"golden-{f}" for f in FLAVOURS])
def flavour(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def golden(flavour):
    return find_golden("video_vae", flavour)


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
    assert len(debug) == len(outputs), f"{prefix}: the fixture has {len(debug)} blocks, we ran {len(outputs)}"
    for name, expected in debug.items():
        index = int(name.removeprefix("down_block").removeprefix("up_block"))
        assert_close(outputs[index], expected, prefix + name)


def _fixture_tiling(golden) -> TilingConfig:
    """The fixture's tiling. Sets made with HEAD's ``TileSizeConfig`` (they describe it in
    ``tiling_config_reference``) tile height and width with the same size; the January
    ``TilingConfig`` keeps the aspect ratio."""
    return TilingConfig.from_dict(golden.call["tiling_config"],
                                  keep_aspect="tiling_config_reference" not in golden.call)


def test_encode_matches(golden, encoder):
    latent, blocks = _block_outputs(encoder.down_blocks, lambda: encoder(golden["encode.pixels"]))
    assert_close(latent, golden["encode.latent"], "encode.latent")
    _check_debug(golden, "encode.debug.", blocks)


def test_decode_matches(golden, decoder):
    video, blocks = _block_outputs(decoder.up_blocks, lambda: decoder(golden["decode.latent"]))
    assert_close(video, golden["decode.video"], "decode.video")
    _check_debug(golden, "decode.debug.", blocks)


def test_config_follows_the_fixture_widths_and_padding(golden, encoder, decoder):
    """Decoder bottleneck = decoder_base_channels x product of the compress_* multipliers (the HEAD
    sets say so in ``call.widths``); padding as the fixture's file says."""
    config = golden.config["vae"]
    widths = golden.call.get("widths")
    if widths is not None:
        assert decoder.config.decoder_widths()[-1] == widths["decoder_base_channels"]
        assert encoder.conv_in.conv.out_channels == widths["encoder_start"]
    shared = config.get("spatial_padding_mode")
    encoder_padding = shared or config.get("encoder_spatial_padding_mode", "zeros")
    assert encoder.config.encoder_spatial_padding_mode == encoder_padding
    assert decoder.conv_in.conv.padding_mode == (shared or "reflect")


def test_tiled_decode_plan_matches(golden, decoder):
    latent = golden["tiled_decode.latent"]
    tiling = _fixture_tiling(golden)
    tiles = plan_tiles(latent.shape[2:], tiling, decoder.scale)
    ours = [{"in": [[s.start, s.stop] for s in t.latent], "out": [[s.start, s.stop] for s in t.pixels]} for t in tiles]
    # The reference writes an untiled axis as slice(0, None): the whole extent of its decoded video.
    extent = golden["tiled_decode.video"].shape[2:]
    expected = [{"in": t["in"], "out": [[a, n if b is None else b] for (a, b), n in zip(t["out"], extent)]}
                for t in golden.call["tiles"]]
    assert ours == expected
    assert chunk_frame_counts(latent.shape[2:], tiling, decoder.scale) == golden.call["tiled_decode_chunk_frames"]


def test_tiled_decode_matches(golden, decoder):
    with torch.no_grad():
        chunks = list(tiled_decode(decoder, golden["tiled_decode.latent"], _fixture_tiling(golden)))
    assert [c.shape[2] for c in chunks] == golden.call["tiled_decode_chunk_frames"]
    assert_close(torch.cat(chunks, dim=2), golden["tiled_decode.video"], "tiled_decode.video")


def test_tiled_encode_matches(golden, encoder):
    """HEAD sets: the latent tiles of ``VideoEncoder.tiled_encode`` and their blend."""
    if "tiled_encode.pixels" not in golden.tensors:
        pytest.skip("this fixture set has no tiled encode (the January release had none)")
    pixels = golden["tiled_encode.pixels"]
    tiling = TilingConfig.from_dict(golden.call["tiled_encode_tiling_config"], keep_aspect=False)
    tiles = plan_encode_tiles(pixels.shape[2:], tiling, encoder.scale)
    ours = [{"in_pixels": [[s.start, s.stop] for s in t.pixels], "out_latent": [[s.start, s.stop] for s in t.latent]}
            for t in tiles]
    assert ours == golden.call["tiled_encode_tiles"]
    try:
        check_video_size(*pixels.shape[2:], encoder.scale)
    except InputError as refusal:  # the 32-pixel rule arrives with model/shapes.py (another branch)
        pytest.skip(f"this branch's size rule refuses the fixture's video: {refusal}")
    with torch.no_grad():
        assert_close(tiled_encode(encoder, pixels, tiling), golden["tiled_encode.latent"], "tiled_encode.latent")


# ------------------------------------------------------------------------------------------------
# Latent upscalers (x2 in every set, the rational x1.5 in LTX-2.3 sets)

UPSCALERS = ("spatial_upsampler_x2", "spatial_upsampler_x1_5")


@pytest.fixture(scope="module", params=UPSCALERS)
def golden_upsampler(flavour, request):
    return find_golden(request.param, flavour)


def _statistics(golden_upsampler, flavour):
    stats_file = (golden_upsampler.meta.get("stats_weights_file")
                  or find_golden("video_vae", flavour).meta["weights_file"])
    return load_latent_statistics(LTX2Checkpoint(golden_upsampler.path.parent / stats_file))


def test_upsampler_matches(golden_upsampler, flavour):
    g = golden_upsampler
    upsampler = load_latent_upsampler(g.weights_path, dtype=torch.float32)
    assert upsampler.config.spatial_scale == g.config.get("spatial_scale", 2.0)
    assert upsampler.config.output_size(*g["latent"].shape[2:]) == tuple(g["forward"].shape[2:])
    with torch.no_grad():
        assert_close(upsampler(g["latent"]), g["forward"], "forward")
        assert_close(upsample_latent(g["latent"], upsampler, _statistics(g, flavour)), g["upsample_video"],
                     "upsample_video")


def test_upsampler_without_metadata_loads_the_same_model(golden_upsampler, tmp_path):
    """A re-saved file without its ``config`` metadata: the config is inferred from the shapes."""
    g = golden_upsampler
    file = SafetensorsFile(g.weights_path)
    stripped = tmp_path / "upscaler_no_metadata.safetensors"
    save_file({k: file.tensor(k).clone() for k in file.keys()}, str(stripped))
    original = load_latent_upsampler(g.weights_path, torch.float32)
    inferred = load_latent_upsampler(stripped, torch.float32)
    assert inferred.config == original.config
    with torch.no_grad():
        assert torch.equal(inferred(g["latent"]), original(g["latent"]))


def test_upscale_stage_takes_the_x1_5_upscaler_and_refuses_odd_latents(flavour):
    """The stage (and node) grow the latent by the file's factor; x1.5 needs even latent sizes."""
    g = find_golden("spatial_upsampler_x1_5", flavour)
    handle = load_upscaler(g.weights_path, "float32", device="cpu")
    stats = _statistics(g, flavour)
    latents = AVLatents(video=g["latent"], audio=None, fps=24.0, video_mask=torch.ones(1, 1, *g["latent"].shape[2:]))
    out = stages.upscale(latents, handle, stats)
    assert_close(out.video, g["upsample_video"], "stage upsample_video")
    assert out.video_mask.shape[2:] == g["upsample_video"].shape[2:]
    odd = AVLatents(video=g["latent"][..., :-1], audio=None, fps=24.0)
    with pytest.raises(InputError, match="x1.5 latent upscaler needs latent sizes it scales exactly"):
        stages.upscale(odd, handle, stats)
