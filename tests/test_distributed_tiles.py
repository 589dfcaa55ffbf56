"""Tiled data parallel stage 2 and the distributed VAE decode over 2 gloo CPU processes (``tests/gloo_ranks.py``).

The single-process references are computed by rank 0 itself with a world of one (``world=None``: the
single-process code path) or, for the whole two-stage run, by the same launcher with one process
(``run_ranks(fn, 1)``), so thread counts cannot make the comparison unfair.

Tolerances (measured on this machine, float32 CPU):

* tiled DiT over 2 ranks vs 1: the blend's float32 sums are added in another order (each rank sums its tiles, the
  all_reduce adds the ranks); max |diff| ~1e-7 on O(1) velocities, asserted <= 1e-5. The audio prediction (the
  first tile's) and the per-rank results are bit-identical: every rank holds the same state.
* decode over 2 ranks vs 1: the tiles are the same computations, blended by rank 0 in the same order: equal
  bit for bit (asserted with ``torch.equal``), conv and LTX-2.5 diffusion decoder.
* full two-stage run (stage 1 replicated on both ranks, stage 2 tiled data parallel, decode distributed): the
  stage-2 reduction order difference goes through the refine steps and the decoder; asserted <= 1e-4 on latents
  and pixels.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from gloo_ranks import run_ranks
from memory_support import dit_inputs, random_dit

from demo_support import demo_models  # noqa: F401
from ltx2_nodes.media.mux import probe
from ltx2_nodes.model.dit_tiling import RefineTiles, TiledDiT, plan_refine_tiles
from ltx2_nodes.model.patchify import video_positions
from ltx2_nodes.model.shapes import VideoScale
from ltx2_nodes.model.vae_tiling import TilingConfig, decode_chunks

GRID = (2, 6, 7)


def _tiled_forward(world, tiles: RefineTiles, appended: bool):
    """Rank's ``TiledDiT`` output for a tiny random DiT; ``appended``: a guide token and a reference token (negative
    time) after the grid."""
    model = random_dit(layers=2, heads=2)
    video, audio = dit_inputs(model.config, grid=GRID, audio=6)
    if appended:
        extra = video_positions(1, 1, 1, 1, 24.0, VideoScale(8, 32, 32))
        reference = extra.clone()
        reference[:, 0] -= 1.0
        tokens = video.latent.shape[1] + 2
        guides = torch.randn(1, 2, video.latent.shape[2], generator=torch.Generator().manual_seed(7))
        video = dataclasses.replace(video, latent=torch.cat([video.latent, guides], dim=1),
                                    timesteps=torch.full((1, tokens), 0.7),
                                    positions=torch.cat([video.positions, extra, reference], dim=2))
    plan = plan_refine_tiles(GRID, tiles)
    with torch.no_grad():
        spread = TiledDiT(model, GRID, plan, world=world)(video, audio)
        return spread, TiledDiT(model, GRID, plan)(video, audio) if world.is_main else None


@pytest.mark.parametrize("tiles, appended", [(RefineTiles(2, 2, overlap=2), False),
                                             (RefineTiles(1, 3, overlap=2), True)], ids=["2x2", "1x3_guides"])
def test_tiled_data_parallel_refine_over_two_ranks_equals_the_one_process_tiled_refine(tiles, appended):
    ((video0, audio0), (single_video, single_audio)), ((video1, audio1), _) = run_ranks(_tiled_forward, 2, tiles,
                                                                                          appended)
    assert torch.equal(video0, video1) and torch.equal(audio0, audio1)  # every rank holds the same blend
    assert (video0 - single_video).abs().max() <= 1e-5
    assert torch.equal(audio0, single_audio.float())  # the first tile's audio prediction, exactly


def _conv_decode(world, checkpoint, latent, tiling):
    """(spread over the ranks through the stage, untiled through the stage, rank 0's single-process decode)."""
    from ltx2_nodes import stages
    from ltx2_nodes.handles import load_ltx2

    vae = load_ltx2(checkpoint, device="cpu").video_vae
    spread, untiled = stages.decode_video(latent, vae, tiling=tiling), stages.decode_video(latent, vae, tiling=None)
    with torch.no_grad():
        single = torch.cat(list(decode_chunks(vae.decoder, latent, tiling)), dim=2) if world.is_main else None
    return spread, untiled, single


def test_distributed_conv_decode_over_two_ranks_equals_the_one_process_tiled_decode(demo_models):
    latent = torch.randn(1, 8, 5, 6, 5, generator=torch.Generator().manual_seed(0))
    tiling = TilingConfig(64, 32, 16, 8)  # 3 temporal groups x 2 x 2 spatial tiles: 12 tiles round robin
    (main, untiled, single), worker = run_ranks(_conv_decode, 2, demo_models.checkpoint, latent, tiling)
    assert worker[:2] == (None, None)  # only rank 0 assembles frames
    assert main.shape == single.shape == (1, 3, 33, 192, 160) and torch.equal(main, single)
    assert untiled.shape == single.shape


def _diffusion_decode(world, latent, tiling):
    from test_diffusion_vae import TINY

    from ltx2_nodes.model.diffusion_vae import DiffusionDecoderConfig, DiffusionVideoDecoder

    torch.manual_seed(1)
    decoder = DiffusionVideoDecoder(DiffusionDecoderConfig.from_metadata(TINY)).eval()
    with torch.no_grad():
        for tensor in decoder.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.3)
        spread = list(decode_chunks(decoder, latent, tiling, seed=5, world=world))
        return spread, list(decode_chunks(decoder, latent, tiling, seed=5)) if world.is_main else None


def test_distributed_diffusion_decode_over_two_ranks_equals_the_one_process_tiled_decode():
    latent = torch.randn(1, 4, 4, 3, 4, generator=torch.Generator().manual_seed(2))
    tiling = TilingConfig(64, 32, 16, 8, keep_aspect=False)
    (main, single), (worker, _) = run_ranks(_diffusion_decode, 2, latent, tiling)
    assert worker == [] and len(main) == len(single) > 1
    assert all(torch.equal(a, b) for a, b in zip(main, single))


def _two_stage(world, checkpoint, upscaler, text, seed):
    from ltx2_nodes import stages
    from ltx2_nodes.generate import sample_stages
    from ltx2_nodes.handles import load_ltx2, load_upscaler
    from ltx2_nodes.latents import GenerationSettings, empty_latents
    from ltx2_nodes.memory import selection
    from ltx2_nodes.sampling.recipe import recipe_for

    selection.configure_engine(device="cpu")
    ltx2 = load_ltx2(checkpoint, device="cpu")
    vae, audio = ltx2.video_vae, ltx2.audio_vae
    latents = empty_latents(1, 9, 128, 192, 24.0, video_channels=vae.latent_channels,
                            audio_channels=audio.latent_channels, audio_mel_bins=audio.latent_mel_bins)
    settings = GenerationSettings.from_preset(recipe_for().distilled, seed=seed)
    out = sample_stages(ltx2.dit, vae, text, latents, settings, recipe_for(),
                        upscaler=load_upscaler(upscaler, device="cpu"), refine_tiles=RefineTiles(2, 2, overlap=2))
    return out.video, out.audio, stages.decode_video(out.video, vae, tiling=TilingConfig(64, 32, None, 0))


def test_a_tiny_two_stage_run_over_two_ranks_equals_one_rank(demo_models):
    """Stage 1 replicated on both ranks (the sequence-parallel stage 1 is another branch's), stage 2 in 2x2 tiles
    round robin with one all_reduce per model call, the decode's tiles spread and assembled on rank 0."""
    from ltx2_nodes import stages
    from ltx2_nodes.handles import load_gemma, load_ltx2

    ltx2 = load_ltx2(demo_models.checkpoint, device="cpu")
    text = stages.connect_text(ltx2.text_connector,
                               stages.encode_prompts(load_gemma(demo_models.gemma, device="cpu"), ["a fox"]))
    args = (demo_models.checkpoint, demo_models.upscaler, text, 3)
    ((video, audio, pixels),) = run_ranks(_two_stage, 1, *args, timeout=300)
    (video0, audio0, pixels0), (video1, audio1, pixels1) = run_ranks(_two_stage, 2, *args, timeout=300)
    assert torch.equal(video0, video1) and torch.equal(audio0, audio1) and pixels1 is None
    assert torch.equal(audio0, audio)  # stage 2 keeps the stage-1 audio
    assert (video0 - video).abs().max() <= 1e-4
    assert pixels0.shape == pixels.shape and (pixels0 - pixels).abs().max() <= 1e-4


def _auto_decode(world, checkpoint, latent, host_ram):
    """(the stage's "auto" decode over the ranks, rank 0's single-process decode with its own "auto" tiles)."""
    from ltx2_nodes import stages
    from ltx2_nodes.handles import load_ltx2
    from ltx2_nodes.memory import selection, vae

    vae.host_ram_available = lambda: host_ram[world.rank]  # this rank's view of its memory
    engine = selection.configure_engine(device="cpu")
    video_vae = load_ltx2(checkpoint, device="cpu").video_vae
    spread = stages.decode_video(latent, video_vae, tiling="auto")
    if not world.is_main:
        return spread, None
    tiling = stages.resolve_tiling(video_vae, latent.shape, engine, "auto")
    with torch.no_grad():
        return spread, (tiling, torch.cat(list(decode_chunks(video_vae.decoder, latent, tiling)), dim=2))


def test_ranks_that_see_different_memory_decode_with_rank_zeros_auto_tiles(demo_models):
    """"auto" decode tiles follow each rank's own budget; the ranks take rank 0's choice (here: tiles, where rank 1
    alone would decode untiled), so their tile plans match and the result is rank 0's single-process decode."""
    latent = torch.randn(1, 8, 5, 6, 5, generator=torch.Generator().manual_seed(0))
    (main, (tiling, single)), (worker, _) = run_ranks(_auto_decode, 2, demo_models.checkpoint, latent,
                                                       [20 << 20, 1 << 40])
    assert tiling is not None and worker is None and torch.equal(main, single)


@pytest.mark.slow
def test_torchrun_generate_refines_in_tiles_over_two_ranks_and_rank_zero_writes_the_clip(demo_models, tmp_path):
    """``torchrun -m ltx2_nodes generate --refine-tiles 2x2`` on 2 gloo processes: stage 1 sequence parallel, stage 2
    tiled data parallel, the decode assembled on rank 0, which alone writes the MP4."""
    from test_torchrun import cli_runs, generate_argv

    from ltx2_nodes.demo.models import UPSCALER

    argv = generate_argv(str(demo_models.root), str(tmp_path / "clip.mp4"))
    argv = [a for a in argv if a != "--single-stage"] + ["--refine-tiles", "2x2", "--width", "256", "--height", "192",
                                                        "--upscaler", UPSCALER]
    [(code, out, err)], [(code1, out1, _)] = run_ranks(cli_runs, 2, [(argv, None)], timeout=300)
    assert code == code1 == 0 and str(tmp_path / "clip.mp4") in out and out1 == "", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    media = probe(tmp_path / "clip.mp4")
    assert (media.video_frames, media.width, media.height) == (9, 256, 192)
