"""Multi-tile refinement: the DiT evaluated over overlapping latent tiles, blended with linear ramps.

The paper's multi-scale, multi-tile strategy for high resolutions: stage 2 (the refinement after the x2
latent upscaler) runs on tiles of the video latent instead of the whole frame, so the DiT's activations
are those of one tile. This follows the reference's tiled data parallelism
(``ltx_core.multigpu.transformer.tiled_data_parallel``, docs/multigpu/tiled-data-parallel.md), on one
device and tile after tile:

* Tiling happens inside every model evaluation: the sampler's state stays the whole latent, each step
  runs the DiT once per tile on that tile's tokens and blends the tiles' predictions; the sampler then
  steps the whole latent (same noise, same schedule as an untiled run).
* Tiles overlap by at least ``overlap`` latent cells (equal tiles, evenly spread); each tile's prediction is
  weighted by a separable trapezoid (``vae_tiling.trapezoid``: linear ramps over the overlaps, neighbouring
  ramps sum to 1) and the blend divides by the summed weights.
* Conditioning tokens appended after the grid (keyframe guides, generated keyframe slots) go to every
  tile their position bounds overlap in all three axes, or to every tile when they sit at negative time
  (reference tokens), and are blended with weight ``1 / tiles that kept it`` (as the reference).
* Audio is not tiled: every tile's forward sees the whole audio stream (the video tiles need its
  cross-attention), and the audio prediction is the first tile's. The reference averages the tiles'
  audio and warns it is not a meaningful audio latent; its advice, followed by ``stages.run_sampler``,
  is to keep the stage-1 audio frozen through the tiled stage, so the audio is refined once (stage 1).

Deviation: positions. The reference shifts each tile's positions so its generated tokens start at zero
(``normalize_positions=True``, its default); here every tile keeps its true positions in the full grid by
default, so RoPE sees exactly what the untiled run sees and one tile covering the latent equals the untiled
run bit for bit (tests/test_tiled_refine.py). ``RefineTiles.tile_positions`` selects the reference's shift
(per batch item and axis, by the smallest start of the tile's grid tokens, applied to its appended tokens as
well), which keeps frames wider than the trained position range (2048 px) in range.

How many tiles: :class:`RefineTiles` (counts per axis, the reference's ``TileCountConfig``), parsed from
"auto", "N" (N x N) or "RxC" by :func:`parse_refine_tiles`; "auto" (:func:`auto_refine_tiles`) is the
fewest tiles each at most the area of a 1280x704 stage 2 (``AUTO_TILE_CELLS``), whose memory the
pre-check (``memory.precheck``) then verifies.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import product
from typing import Sequence

import torch

from ..errors import InputError
from .vae_tiling import Span, trapezoid

# latent cells per frame of a 1280x704 stage 2 (x32 VAE): the per-tile area "auto" keeps to
AUTO_TILE_CELLS = (1280 // 32) * (704 // 32)
DEFAULT_OVERLAP = 4  # latent cells (128 px); the reference's multi-GPU runner uses 5


@dataclass(frozen=True)
class RefineTiles:
    """Tile counts per latent axis and their overlap in latent cells (1 x 1 x 1: untiled)."""

    rows: int = 1
    columns: int = 1
    frames: int = 1
    overlap: int = DEFAULT_OVERLAP
    frame_overlap: int = 1
    tile_positions: bool = False  # True: each tile's positions start at 0 (reference ``normalize_positions``)

    def __post_init__(self):
        if min(self.rows, self.columns, self.frames) < 1 or min(self.overlap, self.frame_overlap) < 0:
            raise InputError(f"refine tiles {self.rows}x{self.columns}x{self.frames} with overlap {self.overlap}: "
                             "counts must be at least 1 and overlaps at least 0 (e.g. 2x2, overlap 4).")

    @property
    def count(self) -> int:
        return self.rows * self.columns * self.frames

    def describe(self) -> str:
        frames = f"x{self.frames}" if self.frames > 1 else ""
        where = ", positions per tile" if self.tile_positions else ""
        return f"{self.rows}x{self.columns}{frames} tiles, overlap {self.overlap}{where}"


def _axis(length: int, count: int, overlap: int) -> list[Span]:
    """Exactly ``count`` tiles (at most one per cell) of equal size over ``length`` cells, evenly spread, each
    overlapping its neighbours by at least ``overlap`` (less where the axis is too short for only neighbours to
    overlap); the ramps span the actual overlaps, so neighbouring ramps sum to 1."""
    count = max(1, min(count, length))
    if count == 1:
        return [Span(0, length)]
    def size_for(cells: int) -> int:
        return -(-(length + (count - 1) * cells) // count)

    while overlap > 0 and size_for(overlap) * (count + 1) > 2 * length:  # tile i + 2 must start after tile i ends
        overlap -= 1
    size = size_for(overlap)
    # evenly spread, rounded half up in integers (round-half-even could bring tile i + 2 into tile i)
    starts = [(2 * i * (length - size) + count - 1) // (2 * (count - 1)) for i in range(count)]
    ends = [start + size for start in starts]
    return [Span(start, end, left_ramp=ends[i - 1] - start if i else 0,
                 right_ramp=end - starts[i + 1] if i < count - 1 else 0)
            for i, (start, end) in enumerate(zip(starts, ends))]


@dataclass(frozen=True)
class DiTTile:
    """One tile: latent spans per axis (F, H, W) with their blend ramps."""

    spans: tuple[Span, Span, Span]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(s.end - s.start for s in self.spans)

    @property
    def tokens(self) -> int:
        return math.prod(self.shape)

    def token_index(self, grid_fhw: Sequence[int]) -> torch.Tensor:
        """Indices of this tile's tokens in the grid's token order (frame-major, then row, then column)."""
        _, height, width = grid_fhw
        f, h, w = (torch.arange(s.start, s.end) for s in self.spans)
        return ((f[:, None, None] * height + h[None, :, None]) * width + w[None, None, :]).flatten()

    def weights(self) -> torch.Tensor:
        """The separable trapezoid over this tile's tokens (flattened like :meth:`token_index`)."""
        t, h, w = (trapezoid(s.end - s.start, s.left_ramp, s.right_ramp, left_from_zero=False) for s in self.spans)
        return (t[:, None, None] * h[None, :, None] * w[None, None, :]).flatten()


def plan_refine_tiles(grid_fhw: Sequence[int], tiles: RefineTiles) -> list[DiTTile]:
    """The tiles of a (frames, height, width) latent grid, frame-major then rows then columns: the one owner
    of the refine tile plan (sampling and the memory pre-check both use it)."""
    frames, height, width = grid_fhw
    axes = (_axis(frames, tiles.frames, tiles.frame_overlap), _axis(height, tiles.rows, tiles.overlap),
            _axis(width, tiles.columns, tiles.overlap))
    return [DiTTile(spans) for spans in product(*axes)]


def largest_tile_tokens(grid_fhw: Sequence[int], tiles: RefineTiles | None) -> int:
    """Grid tokens of the plan's largest tile (all of them untiled)."""
    if tiles is None:
        return math.prod(grid_fhw)
    return max(t.tokens for t in plan_refine_tiles(grid_fhw, tiles))


def auto_refine_tiles(grid_fhw: Sequence[int], max_cells: int = AUTO_TILE_CELLS,
                      overlap: int = DEFAULT_OVERLAP) -> RefineTiles:
    """The fewest spatial tiles (ties: the squarest tiles) whose every tile has at most ``max_cells`` latent
    cells per frame; 1 x 1 when the whole frame does."""
    _, height, width = grid_fhw
    best = None
    for rows, columns in product(range(1, min(height, 16) + 1), range(1, min(width, 16) + 1)):
        plan = plan_refine_tiles((1, height, width), RefineTiles(rows, columns, overlap=overlap))
        if max(t.shape[1] * t.shape[2] for t in plan) > max_cells:
            continue
        h, w = plan[0].shape[1:]
        key = (len(plan), abs(math.log(h / w)))
        if best is None or key < best[0]:
            best = (key, RefineTiles(rows, columns, overlap=overlap))
    if best is None:
        raise InputError(f"no grid of up to 16 x 16 refine tiles keeps a tile of this {height}x{width} latent within "
                         f"{max_cells} cells; give the tile counts explicitly.")
    return best[1]


def parse_refine_tiles(spec: "str | int | RefineTiles | None", grid_fhw: Sequence[int],
                       overlap: int = DEFAULT_OVERLAP, tile_positions: bool = False) -> RefineTiles:
    """``"auto"`` (:func:`auto_refine_tiles`), ``"off"``/``"1"``/None (untiled), ``"N"`` (N x N), ``"RxC"``
    (rows x columns) or ``"RxCxF"`` (also F temporal tiles, overlapping by one latent frame) for this grid;
    ``tile_positions``: :attr:`RefineTiles.tile_positions`."""
    if isinstance(spec, RefineTiles):
        return spec
    return dataclasses.replace(_parse(spec, grid_fhw, overlap), tile_positions=tile_positions)


def _parse(spec, grid_fhw: Sequence[int], overlap: int) -> RefineTiles:
    text = "1" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return auto_refine_tiles(grid_fhw, overlap=overlap)
    if text in ("off", "none", ""):
        return RefineTiles()
    parts = text.replace("*", "x").split("x")
    try:
        counts = [int(p) for p in parts]
    except ValueError:
        counts = []
    if len(counts) not in (1, 2, 3) or min(counts) < 1:
        raise InputError(f"refine tiles {spec!r}: write 'auto', a count N (N x N tiles), rows x columns such as "
                         "'2x3', or rows x columns x frames such as '2x3x2'; '1' refines the whole latent at once.")
    counts = counts * 2 if len(counts) == 1 else counts
    return RefineTiles(*counts[:2], frames=counts[2] if len(counts) == 3 else 1, overlap=overlap)


def _appended_membership(positions: torch.Tensor, grid_tokens: int, tiles: Sequence[torch.Tensor]
                         ) -> list[torch.Tensor]:
    """Per tile, the appended tokens (index >= ``grid_tokens``) it keeps: position bounds overlapping the tile's
    bounds on every axis, or negative time (reference tokens, kept by all)."""
    bounds = positions[0]  # [P, T, 2], batch items share positions
    extra = bounds[:, grid_tokens:]
    if extra.shape[1] == 0:
        return [torch.zeros(0, dtype=torch.long) for _ in tiles]
    kept = []
    for index in tiles:
        own = bounds[:, index.to(bounds.device)]
        low, high = own[..., 0].amin(dim=1, keepdim=True), own[..., 1].amax(dim=1, keepdim=True)
        inside = ((extra[..., 0] < high) & (extra[..., 1] > low)).all(dim=0) | (extra[0, :, 0] < 0)
        kept.append(torch.nonzero(inside.cpu()).flatten() + grid_tokens)
    return kept


class TiledDiT:
    """A DiT called tile by tile: ``(video, audio, perturbations) -> (video_velocity, audio_velocity)`` like the
    transformer, with ``config`` and ``compute_dtype`` passed through (what the sampler reads).

    ``grid_fhw``: the video latent grid the video tokens start with; ``tiles``: the plan
    (:func:`plan_refine_tiles`). Velocities are blended (``x0 = x - t v`` is linear per token, so this is the
    blend of the denoised predictions)."""

    def __init__(self, model, grid_fhw: Sequence[int], tiles: Sequence[DiTTile], tile_positions: bool = False):
        self.model = model
        self.tile_positions = tile_positions
        self.config = model.config
        self.compute_dtype = model.compute_dtype
        self.grid_fhw = tuple(grid_fhw)
        self.tiles = list(tiles)
        self.indices = [t.token_index(self.grid_fhw) for t in self.tiles]
        self.weights = [t.weights() for t in self.tiles]
        self._appended: tuple[int, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def parameters(self, *args, **kw):
        return self.model.parameters(*args, **kw)

    def _members(self, video) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per tile: its token indices (grid tokens, then the appended tokens it keeps) and their weights."""
        total = video.latent.shape[1]
        if self._appended is None or self._appended[0] != total:
            grid_tokens = math.prod(self.grid_fhw)
            kept = _appended_membership(video.positions, grid_tokens, self.indices)
            counts = torch.zeros(total)
            for k in kept:
                counts[k] += 1
            self._appended = (total, [(torch.cat([i, k]), torch.cat([w, 1.0 / counts[k].clamp(min=1)]))
                                      for i, w, k in zip(self.indices, self.weights, kept)])
        return self._appended[1]

    def __call__(self, video, audio, perturbations=None):
        if video is None or len(self.tiles) == 1:
            return self.model(video, audio, perturbations)
        out = torch.zeros(video.latent.shape[0], video.latent.shape[1], self.config.out_channels,
                          dtype=torch.float32, device=video.latent.device)
        total = torch.zeros(video.latent.shape[1], device=video.latent.device)
        audio_out = None
        for index, weight in self._members(video):
            index, weight = index.to(video.latent.device), weight.to(video.latent.device)
            tile = _select(video, index)
            if self.tile_positions:
                tile = dataclasses.replace(tile, positions=_from_zero(tile.positions,
                                                                      index < math.prod(self.grid_fhw)))
            velocity, audio_velocity = self.model(tile, audio, perturbations)
            out.index_add_(1, index, velocity.float() * weight[None, :, None])
            total.index_add_(0, index, weight)
            audio_out = audio_velocity if audio_out is None else audio_out
        blended = out / total.clamp(min=1e-12)[None, :, None]
        return blended.to(video.latent.dtype), audio_out


def _from_zero(positions: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``positions`` ``[B, P, T, 2]`` of a tile shifted so the smallest start of its grid tokens (``grid``: ``[T]``
    bool) is 0 on every axis (the reference's ``normalize_positions``)."""
    return positions - positions[:, :, grid, 0].amin(dim=2)[:, :, None, None]


def _select(video, index: torch.Tensor):
    """The ModalityInput of the tokens at ``index`` (per-token fields gathered, per-sample ones kept)."""
    def per_token(t):
        if t is None or t.ndim < 2 or t.shape[1] != video.latent.shape[1]:
            return t
        return t[:, index]

    return dataclasses.replace(video, latent=video.latent[:, index], timesteps=per_token(video.timesteps),
                               positions=video.positions[:, :, index], keyframes_mask=per_token(video.keyframes_mask),
                               attention_mask=None if video.attention_mask is None
                               else video.attention_mask[:, index][:, :, index])
