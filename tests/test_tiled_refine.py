"""Multi-tile refinement (``model.dit_tiling``): one tile equals the untiled run exactly, tiles see the full grid's
positions, the blend leaves no seam on a smooth latent (metric below), the audio is refined once, and the memory
pre-check bounds the stage-2 DiT by one tile.

Seam metric: with a translation-equivariant denoiser stub (each token's output is a Gaussian-weighted average of the
tokens of its call, by position distance: a local, position-only operator like attention with a distance bias) and
a latent that is a linear ramp along height and width, the untiled output has the same gradient everywhere inside
the frame. A seam is a jump where tiles meet, so the seam ratio is the largest finite difference in the overlap
zones divided by the largest finite difference inside the tiles (both along the axis that crosses the boundary,
away from the frame's own edges): 1 = no seam.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from demo_support import DEMO_WORKFLOWS, demo_models, headless  # noqa: F401
from ltx2_nodes.cli import main
from ltx2_nodes import stages
from ltx2_nodes.errors import InputError, OutOfMemoryError
from ltx2_nodes.generate import GenerateRequest, generate, sample_stages
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2, load_upscaler
from ltx2_nodes.latents import GenerationSettings, empty_latents
from ltx2_nodes.media.mux import probe
from ltx2_nodes.memory.precheck import RunRequest, StageWeights, estimate_run, precheck
from ltx2_nodes.model.dit_tiling import (AUTO_TILE_CELLS, RefineTiles, TiledDiT, auto_refine_tiles,
                                         parse_refine_tiles, plan_refine_tiles)
from ltx2_nodes.model.patchify import video_positions
from ltx2_nodes.model.shapes import VideoScale
from ltx2_nodes.model.transformer import ModalityInput
from ltx2_nodes.model.vae_tiling import trapezoid
from ltx2_nodes.sampling.recipe import recipe_for

SCALE = VideoScale(8, 32, 32)


class LocalAverage:
    """Denoiser stub: per call, every video token's output is the average of the call's tokens weighted by
    ``exp(-d^2 / 2)`` of their spatial distance ``d`` in latent cells (0 beyond 3 cells). Records each call's
    positions."""

    def __init__(self, channels: int = 2):
        self.config = SimpleNamespace(out_channels=channels, num_layers=1)
        self.compute_dtype = torch.float32
        self.calls: list[torch.Tensor] = []

    def __call__(self, video, audio, perturbations=None):
        self.calls.append(video.positions)
        cells = video.positions[0, 1:, :, 0] / torch.tensor([SCALE.height, SCALE.width]).view(2, 1)  # [2, T]
        frame = video.positions[0, 0, :, 0]
        d2 = ((cells[:, :, None] - cells[:, None, :]) ** 2).sum(0)
        kernel = torch.exp(-d2 / 2) * (d2 <= 9) * (frame[:, None] == frame[None, :])
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        return torch.einsum("st,btc->bsc", kernel, video.latent), (audio.latent if audio is not None else None)


def _video(frames: int, height: int, width: int, latent: torch.Tensor | None = None) -> ModalityInput:
    tokens = frames * height * width
    if latent is None:
        f, h, w = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
        ramp = (0.1 * h + 0.07 * w + 0.0 * f).float().flatten()
        latent = torch.stack([ramp, -ramp], dim=-1)[None]
    return ModalityInput(latent, torch.tensor([0.5]), torch.full((1, tokens, 1), 0.5),
                         video_positions(1, frames, height, width, 24.0, SCALE), torch.zeros(1, 4, 8))


def _seam_ratio(out: torch.Tensor, grid, tiles: RefineTiles, axis: int) -> float:
    """Largest |finite difference| along ``axis`` (1 height, 2 width) in the overlap zones / inside the tiles,
    3 cells away from the frame's edges."""
    frames, height, width = grid
    y = out[0, :, 0].reshape(frames, height, width)
    diff = (y.diff(dim=axis)).abs()
    spans = {t.spans[axis] for t in plan_refine_tiles(grid, tiles)}
    length = grid[axis]
    zone = torch.zeros(length - 1, dtype=torch.bool)
    for span in spans:
        if span.start > 0:  # the differences from the cell before the tile to its ramp's end
            zone[span.start - 1: span.start + span.left_ramp] = True
    edge = torch.zeros(length - 1, dtype=torch.bool)
    edge[:3] = edge[-3:] = True
    line = diff.movedim(axis, 0).reshape(length - 1, -1).amax(dim=1)
    return float(line[zone & ~edge].max() / line[~zone & ~edge].max())


def test_blended_tiles_leave_no_seam_where_hard_cut_tiles_do():
    grid = (2, 20, 24)
    video = _video(*grid)
    stub = LocalAverage()
    untiled = stub(video, None)[0]
    blended = RefineTiles(2, 2, overlap=4)
    hard = RefineTiles(2, 2, overlap=0)
    out = TiledDiT(stub, grid, plan_refine_tiles(grid, blended))(video, None)[0]
    cut = TiledDiT(stub, grid, plan_refine_tiles(grid, hard))(video, None)[0]
    for axis in (1, 2):
        assert _seam_ratio(untiled, grid, blended, axis) == pytest.approx(1.0, abs=1e-4)  # the ramp: no seam
        assert _seam_ratio(out, grid, blended, axis) < 1.25
        assert _seam_ratio(cut, grid, hard, axis) > 2.0  # the metric sees a seam when there is one
    # far from any tile boundary the tiled prediction is the untiled one
    inner = torch.zeros(grid, dtype=torch.bool)
    inner[:, 3:6, 3:7] = True
    assert torch.allclose(out[0, inner.flatten()], untiled[0, inner.flatten()], atol=1e-6)


def test_every_tile_sees_its_true_positions_in_the_full_grid_and_the_tiles_cover_it():
    grid = (3, 10, 14)
    video = _video(*grid)
    # two appended guide tokens: one in the top-left corner, one reference token at negative time
    extra = video_positions(1, 1, 1, 1, 24.0, SCALE)
    reference = extra.clone()
    reference[:, 0] -= 1.0
    video = dataclasses.replace(video, latent=torch.cat([video.latent, torch.ones(1, 2, 2)], dim=1),
                                timesteps=torch.full((1, video.latent.shape[1] + 2, 1), 0.5),
                                positions=torch.cat([video.positions, extra, reference], dim=2))
    stub = LocalAverage()
    tiles = RefineTiles(2, 3, frames=2, overlap=2)
    tiled = TiledDiT(stub, grid, plan_refine_tiles(grid, tiles))
    tiled(video, None)
    members = tiled._members(video)
    assert len(stub.calls) == len(members) == 12
    covered = torch.zeros(video.latent.shape[1])
    for (index, weight), positions in zip(members, stub.calls):
        assert torch.equal(positions, video.positions[:, :, index])
        covered.index_add_(0, index, weight)
    grid_tokens = 3 * 10 * 14
    assert torch.allclose(covered[:grid_tokens], torch.ones(grid_tokens))  # ramps are complementary
    assert torch.allclose(covered[grid_tokens:], torch.ones(2))  # appended tokens: 1 / tiles that kept them
    corner = sum(int(grid_tokens in index) for index, _ in members)
    assert corner == 1  # the corner guide at frame 0: only the top-left tile of the first frame span overlaps it
    assert all(grid_tokens + 1 in index for index, _ in members)  # the reference token: every tile


def test_axis_splits_give_exactly_the_count_with_complementary_ramps_and_only_neighbours_overlapping():
    for length in range(1, 70):
        for count in range(1, 9):
            for overlap in (0, 1, 4, 5):
                spans = [t.spans[2] for t in plan_refine_tiles((1, 1, length), RefineTiles(1, count, overlap=overlap))]
                assert len(spans) == min(count, length) and spans[0].start == 0 and spans[-1].end == length
                total = torch.zeros(length)
                for span in spans:
                    total[span.start:span.end] += trapezoid(span.end - span.start, span.left_ramp, span.right_ramp,
                                                            False)
                assert torch.allclose(total, torch.ones(length), atol=1e-6)
                assert all(c.start >= a.end for a, c in zip(spans, spans[2:]))
                if length >= 4 * count * max(overlap, 1):  # room enough: at least the overlap asked for
                    assert all(a.end - b.start >= overlap for a, b in zip(spans, spans[1:]))


def test_per_tile_positions_start_at_zero_like_the_reference_and_leave_no_seam():
    grid = (3, 10, 14)
    video = _video(*grid)
    stub = LocalAverage()
    tiles = RefineTiles(2, 3, frames=2, overlap=2, tile_positions=True)
    out = TiledDiT(stub, grid, plan_refine_tiles(grid, tiles), tile_positions=True)(video, None)[0]
    assert len(stub.calls) == 12
    for positions, (index, _) in zip(stub.calls, TiledDiT(stub, grid, plan_refine_tiles(grid, tiles))._members(video)):
        assert torch.equal(positions[..., 0].amin(dim=2), torch.zeros(1, 3))  # every axis starts at 0
        shift = video.positions[:, :, index] - positions  # a pure shift of the true positions
        assert torch.allclose(shift, shift[:, :, :1].expand_as(shift), atol=1e-6)
    # the stub only sees position differences, so shifting changes nothing
    same = TiledDiT(LocalAverage(), grid, plan_refine_tiles(grid, tiles))(video, None)[0]
    assert torch.allclose(out, same, atol=1e-6)
    assert parse_refine_tiles("auto", (2, 46, 80), tile_positions=True).tile_positions


def test_tile_plans_parse_and_auto_keeps_each_tile_within_the_1280x704_area():
    assert parse_refine_tiles("auto", (4, 22, 40)).count == 1  # 1280x704 itself: untiled
    for height, width in ((34, 60), (45, 80)):  # 1920x1088, 2560x1440
        tiles = parse_refine_tiles("auto", (4, height, width))
        assert tiles.count > 1
        assert all(t.shape[1] * t.shape[2] <= AUTO_TILE_CELLS for t in plan_refine_tiles((4, height, width), tiles))
    assert parse_refine_tiles("2x3", (1, 8, 8)) == RefineTiles(2, 3)
    assert parse_refine_tiles("2", (1, 8, 8)) == RefineTiles(2, 2)
    assert parse_refine_tiles("1x2x3", (7, 8, 8)) == RefineTiles(1, 2, frames=3)
    assert parse_refine_tiles(None, (1, 8, 8)).count == 1
    with pytest.raises(InputError, match="rows x columns"):
        parse_refine_tiles("two", (1, 8, 8))
    assert auto_refine_tiles((1, 45, 80), max_cells=200).count > auto_refine_tiles((1, 45, 80)).count


def _dit_weights() -> dict:
    return {"dit": StageWeights("dit", 2 << 30, (1 << 30,) * 48)}


def test_precheck_bounds_the_stage_two_dit_by_one_tile():
    """Estimate-based: auto tiles keep 1920x1088 and 2560x1472 (1440 is no two-stage size) stage 2 within the
    activations of an untiled 1280x704 stage 2; with a budget that only fits that, auto picks tiles and untiled
    is refused with the advice; a tighter budget makes auto take more tiles."""
    kwargs = dict(vram_budget=1 << 50, ram_budget=1 << 50)

    def stage2(width, height, tiles, name="dit_stage2"):
        request = RunRequest(width, height, 121, two_stage=True, refine_tiles=tiles)
        estimate = estimate_run(_dit_weights(), request, **kwargs)
        return next(s for s in estimate.stages if s.name == name)

    base = stage2(1280, 704, None)
    for width, height in ((1920, 1088), (2560, 1472)):
        assert stage2(width, height, None).activation_bytes > 2 * base.activation_bytes
        assert stage2(width, height, "auto").activation_bytes <= base.activation_bytes
    # the budget of stage 2 at 1280x704, or of stage 1 (1280x736, untiled) if that needs more
    budget = max(base.min_vram, stage2(2560, 1472, None, name="dit").min_vram)
    request = RunRequest(2560, 1472, 121, two_stage=True, refine_tiles="auto")
    chosen = precheck(_dit_weights(), request, vram_budget=budget, ram_budget=1 << 50).request.refine_tiles
    assert isinstance(chosen, RefineTiles) and chosen.count > 1
    with pytest.raises(OutOfMemoryError, match="refine-tiles"):
        precheck(_dit_weights(), dataclasses.replace(request, refine_tiles=None), vram_budget=budget,
                 ram_budget=1 << 50)
    # 1920x1088 under a budget between its stage 1 and its area-rule tiles: auto takes more, smaller tiles
    request = RunRequest(1920, 1088, 121, two_stage=True, refine_tiles="auto")
    area_rule = request.tiles()
    budget = (stage2(1920, 1088, None, name="dit").min_vram + stage2(1920, 1088, area_rule).min_vram) // 2
    estimate = precheck(_dit_weights(), request, vram_budget=budget, ram_budget=1 << 50)
    assert estimate.request.refine_tiles.count > area_rule.count and estimate.peak_vram <= budget


@pytest.fixture
def loaded(headless, demo_models):
    clear_caches()
    return (load_ltx2(demo_models.checkpoint, device="cpu"), load_gemma(demo_models.gemma, device="cpu"),
            load_upscaler(demo_models.upscaler, device="cpu"))


def _empty(ltx2, height: int, width: int):
    vae, audio = ltx2.video_vae, ltx2.audio_vae
    return empty_latents(1, 9, height, width, 24.0, video_channels=vae.latent_channels,
                         audio_channels=audio.latent_channels, audio_mel_bins=audio.latent_mel_bins)


def test_one_tile_equals_the_untiled_refine_and_tiles_keep_the_audio(loaded):
    ltx2, gemma, _ = loaded
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    latents = _empty(ltx2, 320, 288)
    g = torch.Generator().manual_seed(1)
    latents = dataclasses.replace(latents, video=torch.randn(latents.video.shape, generator=g),
                                  audio=torch.randn(latents.audio.shape, generator=g))
    settings = GenerationSettings.from_preset(recipe_for().refine, seed=2)
    untiled = stages.run_sampler(ltx2.dit, text, latents, settings)
    one = stages.run_sampler(ltx2.dit, text, latents, settings, tiles=parse_refine_tiles("1", (2, 10, 9)))
    assert torch.equal(one.video, untiled.video) and torch.equal(one.audio, untiled.audio)
    tiled = stages.run_sampler(ltx2.dit, text, latents, settings, tiles=RefineTiles(2, 2, overlap=2))
    assert torch.equal(tiled.audio, latents.audio)  # refined once: the stage-1 audio, kept
    assert tiled.video.shape == untiled.video.shape and torch.isfinite(tiled.video).all()
    assert 0 < (tiled.video - untiled.video).abs().max() < 1.0


def test_tiled_refine_keeps_the_image_conditions_of_every_tile(loaded):
    """Image-to-video in tiles: the first-frame image (grid tokens at timestep 0) stays pinned exactly, a keyframe
    guide at frame 8 (appended tokens) goes to the tiles it overlaps, and the result is finite."""
    from ltx2_nodes.sampling.conditioning import ImageCondition

    ltx2, gemma, upscaler = loaded
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    g = torch.Generator().manual_seed(3)
    images = [ImageCondition(torch.rand(1, 40, 50, 3, generator=g), 0, 1.0, crf=0),
              ImageCondition(torch.rand(1, 40, 50, 3, generator=g), 8, 1.0, crf=0)]
    settings = GenerationSettings.from_preset(recipe_for().distilled, seed=4)
    out = sample_stages(ltx2.dit, ltx2.video_vae, text, _empty(ltx2, 160, 128), settings, recipe_for(),
                        images=images, upscaler=upscaler, refine_tiles=RefineTiles(2, 2, overlap=2))
    first = stages.encode_conditioning_images(ltx2.video_vae, images[:1], out.video_grid())[0].latent
    assert torch.equal(out.video[:, :, :1], first) and torch.isfinite(out.video).all()


def test_generate_refines_in_tiles_end_to_end(loaded, tmp_path):
    ltx2, gemma, upscaler = loaded
    request = GenerateRequest(prompt="a fox", width=256, height=192, frames=9, seed=3, refine_tiles="2x2")
    media = probe(generate(ltx2, gemma, request, tmp_path / "tiled.mp4", upscaler=upscaler))
    assert (media.video_frames, media.width, media.height) == (9, 256, 192)
    text = stages.connect_text(ltx2.text_connector, stages.encode_prompts(gemma, ["a fox"]))
    latents = _empty(ltx2, 128, 128)
    settings = GenerationSettings.from_preset(recipe_for().distilled, seed=4)
    whole = sample_stages(ltx2.dit, ltx2.video_vae, text, latents, settings, recipe_for(), upscaler=upscaler)
    one = sample_stages(ltx2.dit, ltx2.video_vae, text, latents, settings, recipe_for(), upscaler=upscaler,
                        refine_tiles=RefineTiles())
    assert torch.equal(whole.video, one.video) and torch.equal(whole.audio, one.audio)


def test_the_demo_tiled_refine_workflow_runs_headless_in_four_tiles(demo_models, tmp_path, capsys):
    """The shipped demo twin (2x2 refine tiles at 512x320) through ``python -m ltx2_nodes run``."""
    workflow = DEMO_WORKFLOWS / "t2av_distilled_tiled_refine.api.json"
    assert main(["run", str(workflow), "--models-dir", str(demo_models.root), "--out", str(tmp_path)]) == 0
    files = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".mp4")]
    media = probe(files[0])
    assert (media.video_frames, media.width, media.height, media.audio_codec) == (49, 512, 320, "aac")


def test_generate_cli_refines_ltx23_in_tiles(demo_models, tmp_path, caplog):
    """``generate --refine-tiles 2x2`` on the LTX-2.3 demo set (the same code path serves every family)."""
    import logging

    from ltx2_nodes import paths
    from ltx2_nodes.demo.models import CHECKPOINT_23, UPSCALER_23
    from ltx2_nodes.memory import selection

    previous = selection._HEADLESS_ENGINE
    out = tmp_path / "tiled.mp4"
    try:
        with caplog.at_level(logging.INFO, logger="ltx2_nodes"):
            code = main(["generate", "--prompt", "a fox", "--models-dir", str(demo_models.root), "--width", "256",
                         "--height", "192", "--seconds", "1", "--checkpoint", CHECKPOINT_23, "--upscaler", UPSCALER_23,
                         "--device", "cpu", "--refine-tiles", "2x2", "--refine-tile-positions", "tile", "--out",
                         str(out)])
    finally:
        selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
        paths.reset()
    assert code == 0 and "in 2x2 tiles, overlap 4, positions per tile" in caplog.text
    media = probe(out)
    assert (media.video_frames, media.width, media.height, media.audio_sample_rate) == (25, 256, 192, 48000)


def test_refine_tiles_node_records_the_plan_for_the_next_sampler_and_refuses_audio_only():
    from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS
    from ltx2_nodes.nodes.comfy_types import from_av_latents, latent_info

    node = NODE_CLASS_MAPPINGS["LTX2RefineTiles"]()
    latent = from_av_latents(empty_latents(1, 9, 1088, 1920, 24.0, video_channels=8))
    (requested,) = node.request(latent, tiles="auto", overlap=3, positions="per tile")
    tiles = latent_info(requested).refine_tiles
    assert tiles == dataclasses.replace(auto_refine_tiles((2, 34, 60), overlap=3), tile_positions=True)
    assert all(torch.equal(a, b) for a, b in zip(requested["samples"].unbind(), latent["samples"].unbind()))
    with pytest.raises(InputError, match="audio only"):
        node.request(from_av_latents(empty_latents(1, 9, 64, 64, 24.0, video=False)), tiles="2")
