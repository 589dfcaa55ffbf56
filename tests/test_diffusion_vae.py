"""LTX-2.5 video VAE file: neighborhood attention, the chunked pathway's halo rule, config refusals, the tiled
decode, the conv-decoder variant and the decode stage (tiny random models; parity is test_golden_diffusion_vae)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import find_golden
from ltx2_nodes import handles, paths, stages
from ltx2_nodes.errors import InputError, UnsupportedModelError
from ltx2_nodes.memory.vae import auto_tiling, diffusion_decode_bytes
from ltx2_nodes.model.diffusion_vae import DiffusionDecoderConfig, DiffusionVideoDecoder, fold_static_gates
from ltx2_nodes.model.neighborhood_attention import tiled_sdpa_na3d, window_starts
from ltx2_nodes.model.vae_tiling import TilingConfig, diffusion_decode_chunks, plan_feature_tiles
from ltx2_nodes.model.video_vae import VideoDecoder, VideoEncoder, VideoVAEConfig
from ltx2_nodes.sampling.recipe import DEFAULT_SEED

TINY = {"_class_name": "CausalDiffusionVAE", "latent_channels": 4, "model_output_type": "v",
        "encoder": {"dims": 3, "in_channels": 3, "out_channels": 4, "patch_size": 4,
                    "blocks": [["res_x", {"num_layers": 1}], ["compress_space_res", {"multiplier": 2}],
                               ["compress_time_res", {"multiplier": 2}], ["compress_all_res", {"multiplier": 1}],
                               ["compress_all_res", {"multiplier": 1}]]},
        "decoder": {"head_dim": 8, "t_emb_dim": 16, "default_num_inference_steps": 2,
                    "timestep_scale_multiplier": 1000.0, "stage_channels": [64, 32, 16, 16, 8],
                    "stage_depths": [1, 1, 1, 1, 1], "stage_kernels": [[3, 3, 3]] * 4 + [[3, 5, 5]],
                    "stage5_kernel": [3, 5, 5], "stage5_channels": 16, "in_channels": 4, "out_channels": 3,
                    "patch_size": 4}}


def _brute_force_na(q, k, v, kernel):
    """Per-query softmax over its (inward-shifted) window, the definition of NATTEN's na3d."""
    batch, t, h, w, heads, dim = q.shape
    starts = [window_starts(n, kk) for n, kk in zip((t, h, w), kernel)]
    out = torch.empty_like(v)
    for i in range(t):
        for j in range(h):
            for m in range(w):
                a, b, c = starts[0][i], starts[1][j], starts[2][m]
                keys = k[:, a:a + kernel[0], b:b + kernel[1], c:c + kernel[2]].reshape(batch, -1, heads, dim)
                vals = v[:, a:a + kernel[0], b:b + kernel[1], c:c + kernel[2]].reshape(batch, -1, heads, dim)
                weights = torch.einsum("bhd,bnhd->bhn", q[:, i, j, m], keys).softmax(-1)
                out[:, i, j, m] = torch.einsum("bhn,bnhd->bhd", weights, vals)
    return out


@pytest.mark.parametrize("budget", [1 << 24, 600], ids=["one-box", "many-boxes"])
def test_tiled_sdpa_neighborhood_attention_equals_the_window_definition(budget):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 7, 2, 8) for _ in range(3))
    expected = _brute_force_na(q, k, v, (3, 3, 5))
    assert torch.allclose(tiled_sdpa_na3d(q, k, v, (3, 3, 5), score_budget=budget), expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_decoder() -> DiffusionVideoDecoder:
    torch.manual_seed(1)
    decoder = DiffusionVideoDecoder(DiffusionDecoderConfig.from_metadata(TINY))
    with torch.no_grad():
        for name, tensor in decoder.state_dict().items():
            tensor.copy_(torch.rand_like(tensor) + 0.5 if "std-of-means" in name else torch.randn_like(tensor) * 0.3)
    return decoder.eval()


def test_chunked_attention_equals_full_volume_attention_away_from_the_left_and_right_edges(tiny_decoder):
    block = tiny_decoder.diff_blocks[0]
    halo = block.attn.kernel[2] // 2
    y = torch.randn(1, 3, 5, 23, 16)
    with torch.no_grad():
        chunked, full = block._w_chunked_attention(y), block.attn(y)
    assert torch.allclose(chunked[:, :, :, halo:-halo], full[:, :, :, halo:-halo], atol=1e-5)
    assert not torch.allclose(chunked[:, :, :, :halo], full[:, :, :, :halo], atol=1e-3)


def test_static_gates_fold_into_the_linears_they_scale_and_leave_the_state():
    weight, bias, gate = torch.randn(4, 3), torch.randn(4), torch.randn(4)
    state = {"diff_blocks.0.attn.proj.weight": weight, "diff_blocks.0.attn.proj.bias": bias,
             "diff_blocks.0.gate_msa": gate, "diff_blocks.0.mlp.w_down.weight": weight,
             "diff_blocks.0.gate_mlp": gate}
    folded = fold_static_gates(state)
    assert set(folded) == {"diff_blocks.0.attn.proj.weight", "diff_blocks.0.attn.proj.bias",
                           "diff_blocks.0.mlp.w_down.weight"}
    assert torch.allclose(folded["diff_blocks.0.attn.proj.weight"], gate[:, None] * weight)
    assert torch.allclose(folded["diff_blocks.0.attn.proj.bias"], gate * bias)


@pytest.mark.parametrize("change,message", [
    ({"_class_name": "CausalVideoAutoencoder"}, "conv"),
    ({"decoder": {**TINY["decoder"], "coarse_head": True}}, "coarse_head"),
    ({"decoder": {**TINY["decoder"], "stage_depths": [1, 1, 1, 1]}}, "stage_depths"),
    ({"model_output_type": "eps"}, "model_output_type"),
    ({"decoder": {**TINY["decoder"], "stage_channels": [32, 16, 16, 16, 8]}}, "reductions"),
], ids=["conv-class", "unknown-setting", "short-ladder", "output-type", "ladder-widths"])
def test_diffusion_decoder_config_refuses_what_it_does_not_run(change, message):
    with pytest.raises(UnsupportedModelError, match=message):
        DiffusionDecoderConfig.from_metadata({**copy.deepcopy(TINY), **change})


def test_tiled_diffusion_decode_covers_the_video_and_untiled_equals_forward(tiny_decoder):
    latent = torch.randn(1, 4, 4, 3, 4)
    with torch.no_grad():
        whole = tiny_decoder(latent, 5)
        untiled = torch.cat(list(diffusion_decode_chunks(tiny_decoder, latent, None, 5)), dim=2)
        tiled = list(diffusion_decode_chunks(tiny_decoder, latent, TilingConfig(64, 32, 16, 8, keep_aspect=False), 5))
    assert torch.equal(untiled, whole)
    video = torch.cat(tiled, dim=2)
    assert len(tiled) > 1 and video.shape == whole.shape and video.isfinite().all()
    with pytest.raises(InputError, match="overlap"):
        plan_feature_tiles((13, 12, 16), TilingConfig(64, 0, None, 0), tiny_decoder.config)


def test_feature_tiles_blend_to_one_and_grow_short_last_tiles(tiny_decoder):
    cfg = tiny_decoder.config
    tiles = plan_feature_tiles((13, 12, 20), TilingConfig(64, 32, 16, 8, keep_aspect=False), cfg)
    extent = (25, 96, 160)
    for axis, length in enumerate(extent):
        total, seen = torch.zeros(length), set()
        for tile in tiles:
            span = tile.pixels[axis]
            if (span.start, span.stop) not in seen:
                seen.add((span.start, span.stop))
                total[span] += tile.masks[axis]
        assert torch.allclose(total, torch.ones(length), atol=1e-5), axis
    assert all(t.features[a].stop - t.features[a].start >= cfg.feature_tile_min[a] for t in tiles for a in range(3))


def test_auto_tiling_of_the_diffusion_decoder_follows_the_budget(tiny_decoder):
    cfg, shape = tiny_decoder.config, (1, 4, 17, 16, 24)
    assert auto_tiling(cfg, shape, 1 << 40, torch.float32) is None
    small = diffusion_decode_bytes(cfg, shape, None, torch.float32) // 4
    tiling = auto_tiling(cfg, shape, small, torch.float32)
    assert tiling is not None and diffusion_decode_bytes(cfg, shape, tiling, torch.float32) <= small
    assert tiling.tile_size_in_pixels is None or tiling.tile_overlap_in_pixels >= cfg.min_tile_overlaps[1]


def _write_vae_file(path, vae: dict, modules: dict) -> None:
    entries = {f"{prefix}{key}": value.contiguous() for prefix, module in modules.items()
               for key, value in module.state_dict().items()}
    save_file(entries, str(path), {"config": json.dumps({"vae": vae})})


@pytest.fixture
def split_vae(tmp_path):
    """``video_vae_handle(vae_file)``: the video VAE handle of an LTX-2.5 split pack (the golden set's tiny
    transformer) whose video VAE file is ``vae_file``; nothing else of the pack is found or needed."""
    transformer = find_golden("transformer", "2.5").path.parent / "ltx25_tiny_transformer.safetensors"
    (tmp_path / "models").mkdir()
    paths.configure(models_dir=tmp_path / "models")
    handles.clear_caches()
    yield lambda vae_file: handles.load_ltx2(transformer, "float32", split_files={"video_vae": vae_file}).video_vae
    paths.reset()
    handles.clear_caches()


def test_decode_stage_runs_a_split_vae_file_with_the_diffusion_decoder(tmp_path, tiny_decoder, split_vae):
    encoder = VideoEncoder(VideoVAEConfig.from_metadata(TINY))
    _write_vae_file(tmp_path / "vae.safetensors", TINY, {"decoder.": tiny_decoder, "encoder.": encoder})
    handle = split_vae(tmp_path / "vae.safetensors")
    assert handle.diffusion_config == tiny_decoder.config and handle.scale == tiny_decoder.scale
    latent = torch.randn(1, 4, 2, 2, 3)
    video = stages.decode_video(latent, handle, tiling=None)
    with torch.no_grad():
        expected = tiny_decoder(latent, DEFAULT_SEED)
    assert torch.allclose(video, expected, atol=1e-5)
    assert not torch.allclose(stages.decode_video(latent, handle, tiling=None, seed=DEFAULT_SEED + 1), expected)


def test_conv_decoder_variant_of_a_split_vae_file_loads_the_conv_decoder(tmp_path, split_vae):
    from ltx2_nodes.demo.models import DEMO_VAE

    flat = {k: v for k, v in DEMO_VAE.items() if not k.startswith(("encoder_", "in_channels"))}
    vae = {**flat, "encoder": {"blocks": DEMO_VAE["encoder_blocks"], "out_channels": DEMO_VAE["latent_channels"],
                               "spatial_padding_mode": "zeros", "patch_size": 4, "in_channels": 3}}
    cfg = VideoVAEConfig.from_metadata(vae)
    assert cfg == VideoVAEConfig.from_metadata(DEMO_VAE)
    torch.manual_seed(2)
    decoder, encoder = VideoDecoder(cfg).eval(), VideoEncoder(cfg).eval()
    with torch.no_grad():
        for module in (decoder, encoder):
            for name, tensor in module.state_dict().items():
                if "std-of-means" in name:
                    tensor.fill_(1.0)
                elif "mean-of-means" in name:
                    tensor.zero_()
    _write_vae_file(tmp_path / "conv.safetensors", vae, {"decoder.": decoder, "encoder.": encoder})
    handle = split_vae(tmp_path / "conv.safetensors")
    assert handle.diffusion_config is None and isinstance(handle.decoder, VideoDecoder)
    latent = torch.randn(1, cfg.latent_channels, 2, 2, 2)
    with torch.no_grad():
        assert torch.allclose(stages.decode_video(latent, handle, tiling=None), decoder(latent), atol=1e-5)
