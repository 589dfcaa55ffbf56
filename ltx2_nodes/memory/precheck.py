"""Before a run: will it fit? Peak VRAM and RAM per stage, and a refusal that says what would fit.

Weights come from tensor headers (checkpoint metadata, no data read) or from a (meta-built)
module; activations from the formulas in ``estimates``. Only one stage occupies the device at a
time, so the VRAM peak is the largest stage need:
* resident stage: weights + activations;
* streamable stage (blocks) under a budget: at least non-block weights + activations + two block
  slots, at most the whole model; the engine uses what the budget allows in between.
RAM (anonymous memory, not the memory-mapped files): the process itself (2 GiB), weights converted on
load (dtype change, fp8 cast), two staging buffers for blocks read from the file, the decoded video
as float32 frames.
If streamed blocks also fit in RAM the engine packs (pins) them for faster copies; the estimate
reports that as ``ram_packed`` but only refuses on ``ram_required``.

What a run encodes before sampling (``RunRequest.encodes``: image conditions, a source clip, an IC-LoRA control
video) is the ``video_encoder`` stage, priced by the one VAE memory model (``memory.vae.encode_device_bytes``);
stage 1's DiT holds the guide tokens too, and, when the guides attend with strength below 1 or through a mask,
the T x T self-attention mask (``estimates.attention_mask_bytes``). An audio-only request (text-to-audio) is the
audio-only DiT (``checkpoint_weights(audio_only=True)``) on audio tokens alone, then the audio decode; its advice
is a shorter length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..errors import InputError, OutOfMemoryError
from ..loading.components import UNREAD, in_audio_only_model, vocoder_dtype
from ..loading.quant import GGML_TYPE_SUFFIX, QUANT_SUFFIXES, QuantLinear, packed_logical_numel
from ..model.shapes import (AudioTiming, Upscale, VideoScale, audio_latent_frames, frame_step, reference_frames,
                            size_multiple, stage1_frames, stage1_size, video_latent_size)
from ..model.vae_tiling import TilingConfig
from ..model.dit_tiling import RefineTiles, auto_refine_tiles, largest_tile_tokens, parse_refine_tiles
from ..model.transformer import TransformerConfig
from ..model.diffusion_vae import DiffusionDecoderConfig
from ..model.video_vae import VideoVAEConfig
from .estimates import (DEQUANT_FLOAT32_BYTES, GEMMA3_12B, IO_BYTES_PER_TOKEN, TEXT_TOKENS, DecoderShape,
                        attention_mask_bytes, audio_decode_activation_bytes,
                        connector_activation_bytes, decoder_activation_bytes, dit_activation_bytes, itemsize,
                        upscaler_activation_bytes)
from .host import ALIGN, BlockLayout
from .ledger import gib
from .placement import module_tensors, tensor_bytes
from .vae import SMALLEST_ENCODE_TILE, encode_device_bytes, encode_tiling, tile_device_bytes, tiling_with_overlaps

PROCESS_RAM = 2 * 2 ** 30  # Python, torch and (on CUDA) the driver's host-side context, before any weights
BLOCK_KEY = re.compile(r"(?:^|\.)(?:transformer_blocks|layers)\.(\d+)\.")
FP8_LINEAR_BYTES = 1


@dataclass(frozen=True)
class StageWeights:
    """A stage's weight bytes as loaded: outside blocks, per block, and what occupies RAM of its own."""

    name: str
    fixed_bytes: int
    block_bytes: tuple[int, ...] = ()
    host_bytes: int = 0  # anonymous RAM (converted tensors); memory-mapped ones cost none
    block_host_bytes: int = 0  # the part of host_bytes inside blocks
    fp8_block_bytes: tuple[int, ...] | None = None  # the blocks if their Linear weights were cast to fp8
    fp8: bool = False  # block Linears are quantized (fp8, GGUF, NVFP4: dequantised per forward, a device transient)
    largest_linear: int = 0  # elements (values, not bytes) of the largest Linear weight in a block
    packed: bool = False  # GGUF / NVFP4 blocks: dequantised in float32 before the cast

    @property
    def total(self) -> int:
        return self.fixed_bytes + sum(self.block_bytes)

    def as_fp8(self) -> "StageWeights":
        """The same stage with its block Linears cast to fp8 on load (cast tensors live in RAM)."""
        if self.fp8_block_bytes is None:
            return self
        blocks = self.fp8_block_bytes
        return replace(self, block_bytes=blocks, fp8_block_bytes=None, block_host_bytes=sum(blocks), fp8=True,
                       host_bytes=self.host_bytes - self.block_host_bytes + sum(blocks))

    def upcast_bytes(self, compute: torch.dtype) -> int:
        """Device transient of dequantising the largest quantized Linear (see ``estimates.fp8_upcast_bytes``)."""
        if not self.fp8:
            return 0
        per_value = DEQUANT_FLOAT32_BYTES + itemsize(compute) if self.packed else 2 * itemsize(compute)
        return self.largest_linear * per_value


def _aligned(nbytes: int) -> int:
    return math.ceil(nbytes / ALIGN) * ALIGN


def _stays_packed(key: str, shape) -> bool:
    """Whether a GGUF block-quantized tensor stays packed once loaded: Linear weights do
    (``quant.prepare_packed_state``), embeddings and tables are dequantized on load."""
    return key.endswith(".weight") and len(shape) == 2 and not key.endswith("embed_tokens.weight")


def stage_weights(name: str, tensors: Mapping[str, object], *, dtype: torch.dtype | None = None,
                  fp8_blocks: bool = False, streamable: bool = True) -> StageWeights:
    """Sizes of ``tensors`` (anything with ``.shape`` and ``.dtype``: tensors, safetensors header entries).

    ``dtype``: the dtype floating tensors are loaded in (None: as stored; fp8 weights stay fp8);
    ``fp8_blocks``: Linear weights inside blocks are cast to fp8 on load; ``streamable``: blocks are
    recognised by ``transformer_blocks.N.`` / ``layers.N.`` in the key.
    """
    fixed = host = block_host = largest = 0
    fp8_stored = packed = False
    blocks: dict[int, int] = {}
    fp8: dict[int, int] = {}
    for key, t in tensors.items():
        if key.endswith(GGML_TYPE_SUFFIX):  # the format tag of a GGUF tensor: no bytes of its own
            continue
        stored = t.dtype
        numel = math.prod(t.shape)
        target = stored
        if dtype is not None and stored.is_floating_point and itemsize(stored) > 1 and not key.endswith(QUANT_SUFFIXES):
            target = dtype
        if key + GGML_TYPE_SUFFIX in tensors and not _stays_packed(key, t.shape):
            numel, target = packed_logical_numel(key, tensors), dtype or torch.bfloat16  # dequantized on load
        castable = key.endswith(".weight") and len(t.shape) == 2 and itemsize(target) > 1
        match = BLOCK_KEY.search(key) if streamable else None
        # an fp8-cast Linear stores 1 byte per weight plus a float32 scale
        as_fp8 = _aligned(numel * FP8_LINEAR_BYTES) + _aligned(4)
        nbytes = numel * itemsize(target)
        if match:
            index = int(match.group(1))
            if key.endswith(".weight") and len(t.shape) == 2:
                largest = max(largest, packed_logical_numel(key, tensors))
                fp8_stored = fp8_stored or itemsize(stored) == 1
                packed = packed or not stored.is_floating_point
            size = as_fp8 if fp8_blocks and castable else _aligned(nbytes)
            blocks[index] = blocks.get(index, 0) + size
            fp8[index] = fp8.get(index, 0) + (as_fp8 if castable else _aligned(nbytes))
            if target != stored or (fp8_blocks and castable):
                block_host += size
        else:
            fixed += nbytes
            if target != stored:
                host += nbytes
    order = sorted(blocks)
    block_bytes = tuple(blocks[i] for i in order)
    fp8_bytes = tuple(fp8[i] for i in order)
    return StageWeights(name, fixed, block_bytes, host + block_host, block_host,
                        fp8_bytes if fp8_bytes != block_bytes else None, fp8_stored or fp8_blocks, largest, packed)


def module_weights(name: str, module: nn.Module, blocks: nn.ModuleList | None = None,
                   host_bytes: int = 0) -> StageWeights:
    """Sizes of a built (possibly meta-device) module, blocks measured as the engine lays them out."""
    fixed = tensor_bytes(module_tensors(module, skip=[blocks] if blocks is not None else []))
    block_bytes = tuple(BlockLayout(b).nbytes for b in blocks) if blocks is not None else ()
    inside = blocks.modules() if blocks is not None else ()
    linears = [m for m in inside if isinstance(m, (nn.Linear, QuantLinear))]
    quantized = [m for m in linears if isinstance(m, QuantLinear)]
    return StageWeights(name, fixed, block_bytes, host_bytes, fp8=bool(quantized),
                        largest_linear=max((m.in_features * m.out_features for m in linears), default=0),
                        packed=any(not m.weight.is_floating_point() for m in quantized))


def checkpoint_weights(ckpt, *, dtype: torch.dtype | None = None, fp8: bool = False,
                       audio_only: bool = False) -> dict[str, StageWeights]:
    """Stage weights of an opened ``LTX2Checkpoint`` (or LTX-2.5 ``SplitPack``) from its headers (DiT,
    connectors, video VAE encoder and decoder, audio VAE and vocoder), each component in the dtype its loader
    uses (the LTX-2.3 vocoder: float32 whatever ``dtype``), without the tensors the loaders never read
    (``loading.components.UNREAD``). ``audio_only``: the stages of text-to-audio, the DiT priced as the audio-only
    transformer ``components.load_transformer(audio_only=True)`` builds (only the tensors it reads,
    ``components.in_audio_only_model``), no video VAE."""
    groups = {"dit": ("transformer",), "connectors": ("text_projection", "video_connector", "audio_connector"),
              "video_encoder": ("video_encoder",), "video_vae": ("video_decoder",),
              "audio_vae": ("audio_decoder", "vocoder")}
    select = {}
    if audio_only:
        del groups["video_encoder"], groups["video_vae"]
        audio_cfg = replace(TransformerConfig.from_metadata(ckpt.component_config("transformer")), has_video=False)
        select["transformer"] = in_audio_only_model(audio_cfg)
    out = {}
    for stage, components in groups.items():
        parts = []
        for component in components:
            if not ckpt.has(component):
                continue
            unread = UNREAD.get(component, ())
            wanted = select.get(component)
            tensors = {f"{component}.{k}": v for k, v in ckpt.state_dict(component).items()
                       if k not in unread and (wanted is None or wanted(k))}
            parts.append(stage_weights(stage, tensors, dtype=vocoder_dtype(ckpt, dtype) if component == "vocoder"
                                       else dtype, fp8_blocks=fp8 and stage == "dit", streamable=stage == "dit"))
        if parts:
            out[stage] = parts[0] if len(parts) == 1 else StageWeights(
                stage, sum(p.fixed_bytes for p in parts), host_bytes=sum(p.host_bytes for p in parts))
    return out


# ------------------------------------------------------------------------------------------------
# Requests and estimates


@dataclass(frozen=True)
class RunRequest:
    width: int
    height: int
    frames: int
    fps: float = 24.0
    batch: int = 1  # samples per DiT call (guidance passes run together)
    prompts: int = 2  # prompts encoded together (positive + negative)
    two_stage: bool = False  # the recipe's two stages (sampling.recipe): stage 1 at 1/2 size, x2 upscaler, stage 2
    vae_tile: tuple[int | None, int | None] | None = (512, 64)  # decode tile (pixels, frames; None: that axis
    # untiled); None: the whole video at once
    dtype: torch.dtype = torch.bfloat16
    # stage 2 tile by tile (``model.dit_tiling``): None untiled; "auto": resolved by ``precheck``
    refine_tiles: RefineTiles | str | None = None
    tile_positions: bool = False  # ``RefineTiles.tile_positions`` of tiles parsed from a spec
    upscale: Upscale = Upscale()  # what the upscalers between two stages do (x2 / x1.5, temporal x2)
    # processes the DiT's video tokens are split over (sequence parallel: torchrun, the sampler's gpus): each one's
    # activations are its share of the tokens (heads exchanged, so attention too); a tiled stage 2 is not split
    ranks: int = 1
    audio_only: bool = False  # text-to-audio on the audio-only DiT: ``frames`` at ``fps`` is the length, no video
    # what the run encodes with the video VAE encoder before sampling (``stages``): image conditions (whole, one
    # frame at each stage's size), a clip of the request's size and frames (extend / retake source, video-to-audio),
    # tiled with ``encode_tile`` (pixels, frames: "auto" picks the largest that fits, at worst the smallest)
    images: int = 0
    encode_video: bool = False
    encode_tile: tuple[int | None, int | None] | None = SMALLEST_ENCODE_TILE
    # an IC-LoRA control video (a control clip, Dub-It's clip), (downscale, temporal) factors of its LoRA
    # (``sampling.guides.reference_scale_factors``), encoded tiled at that fraction of each guided stage's size and
    # frames; it guides stage 1, and stage 2 too with ``control_stages`` 2 (Dub-It)
    control: tuple[int, int] | None = None
    control_stages: int = 1
    guide_tokens: int = 0  # more tokens appended after stage 1's grid (keyframes and guides given as latents)
    # the guides attend with strength < 1 or through a mask: the DiT builds a T x T self-attention mask
    attention_mask: bool = False
    # Dub-It: the audio latents of stage 1's reference audio (0: none); stage 2 then references the stage-1 audio
    reference_audio: int = 0

    def describe(self) -> str:
        if self.audio_only:
            return f"{self.frames / self.fps:.2f} s of audio"
        return f"{self.width}x{self.height}x{self.frames}"

    def stage1_shape(self) -> tuple[int, int, int]:
        """(frames, height, width) stage 1 samples (the request's own size for a single stage)."""
        if not self.two_stage:
            return self.frames, self.height, self.width
        height, width = stage1_size(self.height, self.width, upscale=self.upscale)
        return stage1_frames(self.frames, self.fps, self.upscale)[0], height, width

    def control_size(self, stage: int = 1) -> tuple[int, int, int] | None:
        """(frames, height, width) the control video is encoded at for ``stage`` (``stages.encode_reference_guide``):
        at most the stage's frames as ``shapes.reference_frames`` takes them, ``1/downscale`` of its size; None when
        the stage has no control video."""
        if self.control is None or stage > self.control_stages:
            return None
        downscale, temporal = self.control
        frames, height, width = self.stage1_shape() if stage == 1 else (self.frames, self.height, self.width)
        scale = VideoScale()
        return (reference_frames(frames, temporal, scale), max(height // downscale // scale.height, 1) * scale.height,
                max(width // downscale // scale.width, 1) * scale.width)

    def control_tokens(self, stage: int = 1) -> int:
        """Video tokens the control video appends to ``stage``'s grid (0: none)."""
        size = self.control_size(stage)
        return math.prod(video_latent_size(*size, VideoScale())) if size else 0

    def stage1_tokens(self) -> int:
        """Video tokens of stage 1's DiT calls: its grid, the control video's guide tokens and ``guide_tokens``."""
        return math.prod(video_latent_size(*self.stage1_shape(), VideoScale())) + self.guide_tokens \
            + self.control_tokens(1)

    def masked_tokens(self) -> int:
        """The tokens under the guides' self-attention mask (0: none): all of stage 1's video tokens."""
        return self.stage1_tokens() if self.attention_mask else 0

    def encodes(self) -> list[tuple[int, int, int, TilingConfig | None]]:
        """(frames, height, width, tiling) of each kind of clip the video VAE encoder takes in this run."""
        tiling = None if self.encode_tile is None else encode_tiling(*self.encode_tile)
        clips = [(1, self.height, self.width, None)] if self.images else []
        clips += [(self.frames, self.height, self.width, tiling)] if self.encode_video else []
        controls = [self.control_size(stage) for stage in (1, 2)]
        return clips + [(*control, tiling) for control in controls if control]

    def stage2_grid(self) -> tuple[int, int, int]:
        """The (frames, height, width) latent grid the refinement stage samples."""
        return video_latent_size(self.frames, self.height, self.width, VideoVAEConfig().encoder_scale)

    def tiles(self) -> RefineTiles | None:
        """The refine tiles, "auto" resolved to its area rule (``dit_tiling.auto_refine_tiles``)."""
        if self.refine_tiles is None or not self.two_stage:
            return None
        return parse_refine_tiles(self.refine_tiles, self.stage2_grid(), tile_positions=self.tile_positions)


@dataclass(frozen=True)
class StageNeed:
    name: str
    weights: StageWeights
    activation_bytes: int
    min_vram: int  # the least this stage can run in (streamed with two slots, if it has blocks)
    full_vram: int  # everything resident
    vram: int  # what it will occupy under the budget

    @property
    def streamed(self) -> bool:
        return self.vram < self.full_vram


@dataclass
class RunEstimate:
    request: RunRequest
    vram_budget: int
    ram_budget: int
    stages: list[StageNeed]
    ram_required: int  # anonymous RAM the run needs
    ram_packed: int  # ... plus streamed blocks packed in (pinned) RAM, when that fits
    problems: list[str] = field(default_factory=list)

    @property
    def peak_vram(self) -> int:
        return max(s.vram for s in self.stages)

    @property
    def fits(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [f"{'stage':<12}{'weights':>12}{'activations':>13}{'min VRAM':>11}{'uses':>11}  mode"]
        for s in self.stages:
            rows.append(f"{s.name:<12}{gib(s.weights.total):>12}{gib(s.activation_bytes):>13}{gib(s.min_vram):>11}"
                        f"{gib(s.vram):>11}  {'streamed' if s.streamed else 'resident'}")
        rows.append(f"peak VRAM {gib(self.peak_vram)} of {gib(self.vram_budget)}; RAM {gib(self.ram_required)} "
                    f"required, {gib(self.ram_packed)} with blocks packed, budget {gib(self.ram_budget)}")
        return "\n".join(rows)


def _stage_activations(request: RunRequest, dit: TransformerConfig, text: DecoderShape,
                       decoder: DiffusionDecoderConfig | None = None) -> dict[str, int]:
    """Activation bytes per stage; sizes from ``model.shapes`` and the released VAEs' factors, the video
    VAE decode from the one VAE memory model (``memory.vae``) with the request's tile, for ``decoder`` (the loaded
    video decoder's config, e.g. LTX-2.5's diffusion decoder; None: the released conv VAE)."""
    dtype = request.dtype
    vae = VideoVAEConfig()
    ta = audio_latent_frames(request.frames, request.fps, AudioTiming())
    acts = {
        "gemma": decoder_activation_bytes(text, TEXT_TOKENS, batch=request.prompts, dtype=dtype),
        "connectors": connector_activation_bytes(text.hidden, text.layers,
                                                 (dit.context_width("video"), dit.context_width("audio")),
                                                 batch=request.prompts, dtype=dtype),
    }
    if request.audio_only:  # the audio-only DiT: audio tokens alone, then the audio decode
        acts["dit"] = dit_activation_bytes(dit, 0, ta, batch=request.batch, dtype=dtype)
        acts["audio_vae"] = audio_decode_activation_bytes(ta)
        return acts
    if request.encodes():  # the largest of the encodes (images whole, clips one tile at a time)
        acts["video_encoder"] = max(encode_device_bytes(vae, f, h, w, dtype, tiling)
                                      for f, h, w, tiling in request.encodes())
    grid = video_latent_size(request.frames, request.height, request.width, vae.encoder_scale)
    first = video_latent_size(*request.stage1_shape(), vae.encoder_scale)
    # the diffusion decoder's attention reaches across tile edges: its overlaps have a floor
    minimum = decoder.min_tile_overlaps if isinstance(decoder, DiffusionDecoderConfig) else (0, 0)
    tiling = None if request.vae_tile is None else tiling_with_overlaps(*request.vae_tile, minimum)
    acts["dit"] = dit_activation_bytes(dit, -(-request.stage1_tokens() // request.ranks), ta + request.reference_audio,
                                       batch=request.batch, dtype=dtype, masked_tokens=request.masked_tokens())
    # two-stage: the upscaler takes stage 1's latent; single stage: the request is the upscaler's input
    acts["upscaler"] = upscaler_activation_bytes(math.prod(first), dtype)
    if request.two_stage and request.upscale.temporal:  # after the spatial upscaler: its output at stage-1 frames
        acts["temporal_upscaler"] = upscaler_activation_bytes(first[0] * grid[1] * grid[2], dtype)
    if request.two_stage:
        # tiled: one tile's activations, plus the whole latent's sampler state and blend accumulators
        tile_tokens = largest_tile_tokens(grid, request.tiles())
        # a guided stage 2 (Dub-It): the control tokens too (a tile takes those it overlaps: at most all of them)
        tokens = tile_tokens + request.control_tokens(2)
        share = tokens if tile_tokens < math.prod(grid) else -(-tokens // request.ranks)
        audio = ta + (ta if request.reference_audio else 0)  # Dub-It: the stage-1 audio as the reference
        masked = tokens if request.attention_mask and request.control_tokens(2) else 0
        acts["dit_stage2"] = (dit_activation_bytes(dit, share, audio, batch=request.batch, dtype=dtype,
                                                   masked_tokens=masked)
                              + (request.batch * math.prod(grid) * IO_BYTES_PER_TOKEN
                                 if tile_tokens < math.prod(grid) else 0))
    acts["video_vae"] = tile_device_bytes(decoder or vae, (1, vae.latent_channels, *grid), tiling, dtype)
    acts["audio_vae"] = audio_decode_activation_bytes(ta)
    return acts


def estimate_run(weights: Mapping[str, StageWeights], request: RunRequest, *, vram_budget: int, ram_budget: int,
                 dit_config: TransformerConfig | None = None, text_shape: DecoderShape = GEMMA3_12B,
                 minimal: bool = False, decoder_config=None) -> RunEstimate:
    """Per-stage VRAM and the run's RAM for ``request`` under the budgets (stages missing in ``weights``: skipped)."""
    dit_config = dit_config or TransformerConfig()
    acts = _stage_activations(request, dit_config, text_shape, decoder_config)
    stages: list[StageNeed] = []
    problems: list[str] = []
    for name, act in acts.items():
        w = weights.get("dit" if name == "dit_stage2" else name)
        if w is None:
            continue
        act += w.upcast_bytes(request.dtype)
        full = w.total + act
        least = w.fixed_bytes + act + 2 * max(w.block_bytes) if w.block_bytes else full
        least = min(least, full)
        vram = least if minimal else max(least, min(full, vram_budget))
        stages.append(StageNeed(name, w, act, least, full, vram))
        if least > vram_budget:
            how = "streamed, " if w.block_bytes else ""
            problems.append(f"the {name} stage needs at least {gib(least)} of VRAM ({how}{gib(act)} of it "
                            f"activations{_mask_note(request) if name == 'dit' else ''}) but the budget is "
                            f"{gib(vram_budget)}")
    # RAM: the stages this run has (a video encoder's weights count only when something is encoded)
    used = {s.name if s.name != "dit_stage2" else "dit": s.weights for s in stages}
    staging = max((2 * max(w.block_bytes) for w in used.values() if w.block_bytes), default=0)
    # the decoded video as float32 frames, when the video is decoded (not for a check of a sampler alone)
    frames_ram = request.frames * request.width * request.height * 3 * 4 if "video_vae" in used else 0
    required = PROCESS_RAM + sum(w.host_bytes for w in used.values()) + staging + frames_ram
    packable = sum(sum(w.block_bytes) for w in used.values() if w.block_bytes and not w.host_bytes)
    packed = required - staging + packable if required - staging + packable <= ram_budget else required
    if required > ram_budget:
        problems.append(f"the run needs {gib(required)} of RAM (process {gib(PROCESS_RAM)}, weights converted on load "
                        f"{gib(sum(w.host_bytes for w in used.values()))}, block staging {gib(staging)}, decoded "
                        f"frames {gib(frames_ram)}) but the RAM budget is {gib(ram_budget)}")
    return RunEstimate(request, vram_budget, ram_budget, stages, required, packed, problems)


def _mask_note(request: RunRequest) -> str:
    """What of the DiT's activations is the guides' self-attention mask, for a refusal ("" without one)."""
    tokens = request.masked_tokens()
    if not tokens:
        return ""
    mask = attention_mask_bytes(tokens, request.batch, request.dtype)
    return (f", {gib(mask)} of them the {tokens} x {tokens} self-attention mask an IC-LoRA guide with attention "
            "strength below 1 or an attention mask needs; attention strength 1.0 without a mask avoids it")


# ------------------------------------------------------------------------------------------------
# The refusal


def _largest(count: int, fits) -> int | None:
    """The largest ``k`` in ``1..count`` with ``fits(k)`` (``fits`` grows with ``k``: a smaller request never
    needs more), by bisection; None when not even ``fits(1)``."""
    if count < 1 or not fits(1):
        return None
    low, high = 1, count  # fits(low) holds; the answer is in low..high
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _scaled(request: RunRequest, k: int, step: int) -> tuple[int, int]:
    """(width, height) with the longer side ``k`` steps (k steps < the request's longer side), the aspect
    ratio kept, each side a multiple of ``step`` and at least one step."""
    longer = max(request.width, request.height)

    def side(value: int) -> int:
        return max(step, value * k * step // longer // step * step)

    return side(request.width), side(request.height)


def _size_and_frames(request: RunRequest, fits) -> list[str]:
    """Fewer frames at this size, and a smaller size at these frames; when neither fits, the smallest size
    with fewer frames. Each search bisects over every valid value, so when all find nothing, nothing smaller
    fits."""
    scale = VideoScale()
    step = size_multiple(scale, request.two_stage, request.upscale)
    time = frame_step(scale, request.two_stage, request.upscale)
    fewer = (request.frames - 1) // time - 1  # frame counts 1 + 8k (16k: temporal x2) below the request, k >= 1

    def frames_of(k: int) -> int:
        return 1 + time * k

    def sized(k: int, **change) -> bool:
        return fits(**dict(zip(("width", "height"), _scaled(request, k, step))), **change)

    found = []
    k = _largest(fewer, lambda k: fits(frames=frames_of(k)))
    if k is not None:
        found.append(f"{request.width}x{request.height} with {frames_of(k)} frames")
    k = _largest(math.ceil(max(request.width, request.height) / step) - 1, sized)
    if k is not None:
        w, h = _scaled(request, k, step)
        found.append(f"{w}x{h} with {request.frames} frames")
    if found:
        return found
    w, h = _scaled(request, 1, step)
    k = _largest(fewer, lambda k: sized(1, frames=frames_of(k)))
    return [f"{w}x{h} with {frames_of(k)} frames"] if k is not None else []


def _shorter_audio(request: RunRequest, fits) -> list[str]:
    """The longest audio-only run (1 + 8k frames at its fps, as ``shapes.frames_for_seconds`` counts seconds)
    shorter than the request that fits; its seconds rounded down, so that they give no more frames."""
    time = VideoScale().time
    k = _largest((request.frames - 1) // time - 1, lambda k: fits(frames=1 + time * k))
    if k is None:
        return []
    seconds = math.floor((1 + time * k) / request.fps * 100) / 100
    return [f"{seconds:.2f} s of audio ({1 + time * k} frames at {request.fps:g} fps)"]


def _alternatives(weights, request: RunRequest, kwargs: dict) -> list[str]:
    def fits(w=weights, **change) -> bool:
        return estimate_run(w, replace(request, **change), **kwargs).fits

    found = _shorter_audio(request, fits) if request.audio_only else _size_and_frames(request, fits)
    if request.attention_mask and fits(attention_mask=False):
        found.append("the IC-LoRA guide at attention strength 1.0 without an attention mask (no self-attention "
                     "mask is built)")
    fp8 = {k: v.as_fp8() for k, v in weights.items()}
    if fp8 != dict(weights) and fits(fp8):
        found.append("fp8 weights (an -fp8 checkpoint, or cast the DiT blocks to fp8 on load)")
    if request.batch > 1 and fits(batch=1):
        found.append("guidance passes run one after another instead of batched")
    if request.vae_tile != (256, 32) and "video_vae" in weights and fits(vae_tile=(256, 32)):
        found.append("a smaller VAE decode tile (256 px, 32 frames)")
    if request.two_stage:
        tiles = fitting_refine_tiles(weights, request, kwargs)
        if tiles is not None and tiles != request.tiles():
            found.append(f"stage 2 refined in {tiles.describe()} (--refine-tiles {tiles.rows}x{tiles.columns})")
    return found


def fitting_refine_tiles(weights, request: RunRequest, kwargs: dict) -> RefineTiles | None:
    """The fewest refine tiles with which ``request`` fits: the area rule's tiles (``auto_refine_tiles``), then
    ever smaller tiles (half the area each time) down to 4 x 4 latent cells; None when none fits."""
    grid = request.stage2_grid()
    cells = grid[1] * grid[2]
    while cells >= 16:
        try:
            tiles = replace(auto_refine_tiles(grid, max_cells=cells), tile_positions=request.tile_positions)
        except InputError:  # tiles this small cannot hold the overlaps
            return None
        if estimate_run(weights, replace(request, refine_tiles=tiles), **kwargs).fits:
            return tiles
        cells //= 2
    return None


def precheck(weights: Mapping[str, StageWeights], request: RunRequest, *, vram_budget: int, ram_budget: int,
             dit_config: TransformerConfig | None = None, text_shape: DecoderShape = GEMMA3_12B,
             minimal: bool = False, what: str = "", decoder_config=None) -> RunEstimate:
    """The estimate if ``request`` fits both budgets; otherwise ``OutOfMemoryError`` saying what would
    (``what``: which part is checked, e.g. "the sampler's latent", put before the size in the message).

    ``request.refine_tiles`` "auto" is resolved here: the area rule's tiles, or more tiles when those do not fit
    the budget; ``estimate.request.refine_tiles`` holds the tiles chosen."""
    kwargs = dict(vram_budget=vram_budget, ram_budget=ram_budget, dit_config=dit_config, text_shape=text_shape,
                  minimal=minimal, decoder_config=decoder_config)
    if isinstance(request.refine_tiles, str) and request.refine_tiles.strip().lower() == "auto":
        # "auto": the area rule's tiles, more if those do not fit the budget
        start = request.tiles()
        grown = fitting_refine_tiles(weights, replace(request, refine_tiles=start), kwargs) if request.two_stage \
            else None
        request = replace(request, refine_tiles=grown if grown is not None and grown.count > start.count else start)
    estimate = estimate_run(weights, request, **kwargs)
    if estimate.fits:
        return estimate
    options = _alternatives(weights, request, kwargs)
    advice = ("What would fit: " + "; ".join(options) + "." if options else
              f"Nothing smaller in {'length' if request.audio_only else 'resolution, frames'} or weight size fits "
              "these budgets; free VRAM/RAM or raise the budgets.")
    if estimate.ram_required > ram_budget:
        advice += (" To need less RAM: load weights in the file's dtype without casting (they stay memory-mapped), "
                   "use an -fp8 checkpoint file instead of casting to fp8 on load, or close other programs.")
    subject = f"{what} {request.describe()}" if what else request.describe()
    raise OutOfMemoryError(f"{subject} would not fit: " + "; ".join(estimate.problems) + ". " + advice)
