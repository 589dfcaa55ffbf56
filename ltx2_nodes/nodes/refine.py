"""The multi-tile refine request node (``model.dit_tiling``): the next sampler refines the video tile by tile."""

from __future__ import annotations

from ..errors import InputError
from ..model.dit_tiling import DEFAULT_OVERLAP, parse_refine_tiles
from .common import SAMPLING
from .comfy_types import from_av_latents, latent_info, to_av_latents

POSITIONS = ("full grid", "per tile")


class LTX2RefineTiles:
    DESCRIPTION = (
        "Asks the next LTX-2 Sampler to refine the video in overlapping tiles (the paper's multi-tile strategy for "
        "high resolutions): each step runs the model once per tile, with the tile's true positions and the "
        "conditioning tokens it overlaps, and blends the tiles with linear ramps over the overlap; memory is that "
        "of one tile. Put it between the x2 latent upscaler and the stage-2 sampler (a stage-1 sampler from noise "
        "would make each tile its own picture). With more than one tile the audio is kept from stage 1 (refined "
        "once, as the reference advises for its tiled stage 2). tiles: 'auto' (the whole frame up to a 1280x704 "
        "area, else the fewest tiles of at most that area), N (N x N) or rows x columns such as '2x3'; "
        "overlap in latent cells (32 px each); positions: 'full grid' (each tile's true positions) or 'per tile' "
        "(each tile's start at 0, the reference's choice, for frames wider than the model's trained 2048 px).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "tiles": ("STRING", {"default": "auto", "tooltip": "auto, N (N x N) or rows x columns, e.g. 2x3; 1 = off"}),
            "overlap": ("INT", {"default": DEFAULT_OVERLAP, "min": 0, "max": 32,
                                "tooltip": "overlap of neighbouring tiles in latent cells (32 px each)"}),
            "positions": (list(POSITIONS), {"default": POSITIONS[0], "tooltip": "full grid: every tile keeps its "
                          "true positions (1 tile = the untiled refine); per tile: each tile's positions start at "
                          "0, as the reference (keeps frames wider than the trained 2048 px in range)"}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "request"
    CATEGORY = SAMPLING

    def request(self, latent, tiles="auto", overlap=DEFAULT_OVERLAP, positions=POSITIONS[0]):
        av = to_av_latents(latent)
        if av.video is None:
            raise InputError("refine tiles split a video latent; this latent holds audio only.")
        plan = parse_refine_tiles(tiles, av.video.shape[2:], overlap=overlap, tile_positions=positions == POSITIONS[1])
        return (from_av_latents(av, latent_info(latent).replace(refine_tiles=plan), base=latent),)
