"""Pre-run estimates: weights from headers equal what the engine places; refusals say what would fit."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch

from conftest import find_golden
from ltx2_nodes.errors import OutOfMemoryError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import UNREAD, load_audio_decoder, load_transformer, load_vocoder
from ltx2_nodes.loading.quant import cast_linears_to_fp8
from ltx2_nodes.memory.precheck import (RunRequest, StageWeights, checkpoint_weights, estimate_run, module_weights,
                                        precheck)
from ltx2_nodes.model.transformer import LTX2Transformer, TransformerConfig

GiB = 2 ** 30


FLAVOURS = pytest.mark.parametrize("flavour", ["2.0", "2.3"], ids=["golden-2.0", "golden-2.3"])


@FLAVOURS
@pytest.mark.parametrize("dtype", [None, torch.float32])
@pytest.mark.parametrize("fp8", [False, True])
def test_header_sizes_equal_the_loaded_model_as_the_engine_lays_it_out(dtype, fp8, flavour):
    ckpt = LTX2Checkpoint(find_golden("transformer", flavour).weights_path)
    from_header = checkpoint_weights(ckpt, dtype=dtype, fp8=fp8)["dit"]
    model = load_transformer(ckpt, dtype=dtype)
    if fp8:
        cast_linears_to_fp8(model.transformer_blocks)
    loaded = module_weights("dit", model, model.transformer_blocks)
    assert (from_header.fixed_bytes, from_header.block_bytes) == (loaded.fixed_bytes, loaded.block_bytes)
    if not fp8:  # the fp8 variant predicted from the bf16 header matches a real cast
        cast_linears_to_fp8(model.transformer_blocks)
        assert from_header.fp8_block_bytes == module_weights("dit", model, model.transformer_blocks).block_bytes
    # file dtype, no cast: everything stays memory-mapped
    assert (from_header.host_bytes == 0) == (dtype is None and not fp8)


@FLAVOURS
@pytest.mark.parametrize("dtype", [None, torch.float32])
@pytest.mark.parametrize("fp8", [False, True])
def test_header_sizes_of_the_audio_only_dit_equal_the_built_audio_only_model(dtype, fp8, flavour):
    """Text-to-audio prices the DiT as ``load_transformer(audio_only=True)`` builds it: the audio stream's tensors
    alone, laid out as the engine lays them out (and cast as ``LTX2Models.audio_transformer`` casts them)."""
    ckpt = LTX2Checkpoint(find_golden("transformer", flavour).weights_path)
    weights = checkpoint_weights(ckpt, dtype=dtype, fp8=fp8, audio_only=True)
    assert set(weights) == {"dit", "connectors", "audio_vae"}
    model = load_transformer(ckpt, dtype=dtype, audio_only=True)
    if fp8:
        cast_linears_to_fp8(model.transformer_blocks)
    loaded = module_weights("dit", model, model.transformer_blocks)
    from_header = weights["dit"]
    assert (from_header.fixed_bytes, from_header.block_bytes) == (loaded.fixed_bytes, loaded.block_bytes)
    assert from_header.total < checkpoint_weights(ckpt, dtype=dtype, fp8=fp8)["dit"].total  # no video weights


@FLAVOURS
def test_checkpoint_weights_cover_every_stage_of_the_single_file(flavour):
    ckpt = LTX2Checkpoint(find_golden("transformer", flavour).weights_path)
    weights = checkpoint_weights(ckpt)
    assert set(weights) == {"dit", "connectors", "video_encoder", "video_vae", "audio_vae"}
    assert weights["dit"].block_bytes and not weights["connectors"].block_bytes
    components = {"dit": ("transformer",), "connectors": ("text_projection", "video_connector", "audio_connector"),
                  "video_encoder": ("video_encoder",), "video_vae": ("video_decoder",),
                  "audio_vae": ("audio_decoder", "vocoder")}
    for stage, names in components.items():
        # the file's tensors, less those no loader reads; the LTX-2.3 vocoder is counted in float32
        expected = sum(math.prod(t.shape) * (4 if name == "vocoder" and flavour == "2.3" else t.dtype.itemsize)
                       for name in names for key, t in ckpt.state_dict(name).items()
                       if key not in UNREAD.get(name, ()))
        if stage == "dit":  # block tensors are 256-byte aligned as the engine lays them out
            assert expected <= weights[stage].total < expected + 256 * len(ckpt.state_dict("transformer"))
        else:
            assert weights[stage].total == expected, stage


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float32])
def test_the_ltx23_vocoder_is_counted_as_loaded_in_float32_golden(dtype):
    ckpt = LTX2Checkpoint(find_golden("vocoder", "2.3").weights_path)
    audio = checkpoint_weights(ckpt, dtype=dtype)["audio_vae"]
    decoder = load_audio_decoder(ckpt, dtype=dtype)
    vocoder = load_vocoder(ckpt, dtype=dtype)
    assert {t.dtype for t in vocoder.state_dict().values()} == {torch.float32}
    loaded = sum(t.numel() * t.element_size() for m in (decoder, vocoder) for t in m.state_dict().values())
    assert audio.total == loaded
    # the file stores bf16: the float32 vocoder (and a cast decoder) occupy RAM of their own
    stored = sum(math.prod(t.shape) * t.dtype.itemsize for t in ckpt.state_dict("audio_decoder").values())
    assert audio.host_bytes == loaded - (stored if dtype in (None, torch.bfloat16) else 0)


@pytest.fixture(scope="module")
def released():
    """Stage weights of the released 19B in bf16 (DiT and Gemma built on the meta device; small stages from
    the parameter counts in ltx2-architecture.md §2.2/§7)."""
    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel

    with torch.device("meta"):
        dit = LTX2Transformer(TransformerConfig()).to(torch.bfloat16)
        gemma = Gemma3TextModel(Gemma3TextConfig(
            vocab_size=262208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
            num_attention_heads=16, num_key_value_heads=8, head_dim=256)).to(torch.bfloat16)
    dit_weights = module_weights("dit", dit, dit.transformer_blocks)
    cast_linears_to_fp8(dit.transformer_blocks)
    fp8_blocks = module_weights("dit", dit, dit.transformer_blocks).block_bytes
    return {
        "gemma": module_weights("gemma", gemma, gemma.layers),
        "connectors": StageWeights("connectors", 2 * (2 * 354_500_000 + 722_500_000)),
        "dit": replace(dit_weights, fp8_block_bytes=fp8_blocks),
        "upscaler": StageWeights("upscaler", 2 * 498_000_000),
        "video_vae": StageWeights("video_vae", 2 * 528_400_000),
        "audio_vae": StageWeights("audio_vae", 2 * (31_900_000 + 55_600_000)),
    }


def test_released_sizes(released):
    assert released["dit"].total == pytest.approx(2 * 18_876_174_592, rel=1e-3)
    assert released["dit"].block_bytes[0] == pytest.approx(2 * 386_074_624, rel=1e-3)
    assert released["dit"].fp8_block_bytes[0] == pytest.approx(386_074_624, rel=2e-3)
    assert released["gemma"].total == pytest.approx(23.5e9, rel=0.01)


def test_720p_fits_an_8gb_budget_and_32gb_of_ram_with_fp8_blocks(released):
    weights = dict(released, dit=released["dit"].as_fp8())
    estimate = precheck(weights, RunRequest(1280, 704, 121), vram_budget=8 * GiB, ram_budget=32 * GiB)
    assert estimate.peak_vram <= 8 * GiB and estimate.ram_required <= 32 * GiB
    needs = {s.name: s for s in estimate.stages}
    assert needs["dit"].streamed and needs["gemma"].streamed and not needs["video_vae"].streamed
    assert needs["dit"].min_vram < 4 * GiB  # non-block weights + activations + two fp8 slots
    assert weights["dit"].upcast_bytes(torch.bfloat16) == 2 * 16384 * 4096 * 2  # the feed-forward dequantised
    assert "peak VRAM" in estimate.table()


def test_refusal_names_the_stage_and_every_suggestion_fits(released):
    request = RunRequest(1920, 1088, 241, batch=2)
    kwargs = dict(vram_budget=6 * GiB, ram_budget=64 * GiB)
    with pytest.raises(OutOfMemoryError) as info:
        precheck(released, request, **kwargs)
    message = str(info.value)
    assert message.startswith("1920x1088x241 would not fit: the dit stage needs at least ")
    assert "What would fit: " in message
    suggestions = message.split("What would fit: ")[1].rstrip(".").split("; ")
    assert len(suggestions) >= 2
    for text in suggestions:
        size = re.match(r"(\d+)x(\d+) with (\d+) frames", text)
        if size:
            w, h, f = map(int, size.groups())
            precheck(released, RunRequest(w, h, f, batch=2), **kwargs)
        elif text.startswith("fp8"):
            precheck({k: v.as_fp8() for k, v in released.items()}, request, **kwargs)
        elif text.startswith("guidance passes"):
            precheck(released, RunRequest(1920, 1088, 241, batch=1), **kwargs)
        else:
            pytest.fail(f"unexpected suggestion {text!r}")


def test_ram_refusal_when_converted_weights_do_not_fit(released):
    weights = dict(released, dit=released["dit"].as_fp8())  # fp8 cast on load: 18.5 GB of RAM of its own
    with pytest.raises(OutOfMemoryError, match=r"the run needs .* of RAM \(process 2.00 GiB, weights converted on "
                                               r"load 17.\d\d GiB, .* To need less RAM: load weights in the file's"):
        precheck(weights, RunRequest(768, 512, 121), vram_budget=24 * GiB, ram_budget=16 * GiB)
    estimate = estimate_run(released, RunRequest(768, 512, 121), vram_budget=24 * GiB, ram_budget=16 * GiB)
    assert estimate.fits  # memory-mapped bf16 weights need no RAM of their own
    assert estimate.ram_packed == estimate.ram_required  # ... but are too big to pack into 16 GiB


def test_engine_precheck_uses_its_budget(released):
    from ltx2_nodes.memory import MemoryEngine

    request = RunRequest(1280, 704, 121)  # bf16 weights stay memory-mapped: little RAM of their own
    estimate = MemoryEngine("cpu", virtual=True, vram_budget="8GiB").precheck(released, request)
    assert estimate.vram_budget == 8 * GiB and estimate.peak_vram <= 8 * GiB
    with pytest.raises(OutOfMemoryError, match=r"1920x1088x241 would not fit: .* What would fit: "):
        MemoryEngine("cpu", virtual=True, vram_budget="6GiB").precheck(released, RunRequest(1920, 1088, 241))


def test_the_run_precheck_prices_an_ltx25_diffusion_decode_with_its_tile_overlap_floor(released):
    """LTX-2.5's diffusion decoder: the run's decode is priced by its own memory model, on tiles whose overlaps
    meet the floor its attention needs (the conv VAE's 64 px would be refused by the diffusion tiler)."""
    from ltx2_nodes.memory.vae import tile_device_bytes, tiling_with_overlaps
    from ltx2_nodes.model.diffusion_vae import DiffusionDecoderConfig
    from ltx2_nodes.model.shapes import video_latent_size

    decoder, request = DiffusionDecoderConfig(), RunRequest(1536, 1024, 121)
    budgets = dict(vram_budget=80 * GiB, ram_budget=200 * GiB)
    conv = {s.name: s.activation_bytes for s in estimate_run(released, request, **budgets).stages}
    ours = {s.name: s.activation_bytes for s in estimate_run(released, request, decoder_config=decoder,
                                                              **budgets).stages}
    grid = video_latent_size(121, 1024, 1536, decoder.scale)
    tiling = tiling_with_overlaps(*request.vae_tile, decoder.min_tile_overlaps)
    assert tiling.tile_overlap_in_pixels >= decoder.min_tile_overlaps[1] > 64
    assert ours["video_vae"] == tile_device_bytes(decoder, (1, decoder.in_channels, *grid), tiling, request.dtype)
    assert ours["video_vae"] != conv["video_vae"] and ours["dit"] == conv["dit"]


def test_a_run_split_over_ranks_checks_each_ranks_share_of_the_video_tokens(released):
    """Sequence parallel (torchrun, the sampler's gpus): each rank holds its share of the video tokens' activations,
    so a clip refused on one 12 GiB card fits two; a tiled stage 2 is split by tiles, not tokens (unchanged)."""
    weights = dict(released, dit=released["dit"].as_fp8())
    request = RunRequest(1920, 1088, 241, batch=2)
    one = {s.name: s for s in estimate_run(weights, request, vram_budget=12 * GiB, ram_budget=64 * GiB).stages}
    two = {s.name: s for s in estimate_run(weights, replace(request, ranks=2), vram_budget=12 * GiB,
                                           ram_budget=64 * GiB).stages}
    assert 0.45 < two["dit"].activation_bytes / one["dit"].activation_bytes < 0.55
    with pytest.raises(OutOfMemoryError, match="dit"):
        precheck(weights, request, vram_budget=12 * GiB, ram_budget=64 * GiB)
    precheck(weights, replace(request, ranks=2), vram_budget=12 * GiB, ram_budget=64 * GiB)
    tiled = RunRequest(2560, 1472, 121, two_stage=True, refine_tiles="2x2")
    stage2 = [{s.name: s.activation_bytes
               for s in estimate_run(weights, replace(tiled, ranks=n), vram_budget=1 << 50, ram_budget=1 << 50).stages
               }["dit_stage2"] for n in (1, 2)]
    assert stage2[0] == stage2[1]


def test_a_guide_attention_mask_is_counted_and_a_refusal_names_it_with_attention_one_as_the_way_out(released):
    """An IC-LoRA control video at attention strength below 1: the DiT holds a T x T self-attention mask over the
    grid and guide tokens; a run that fits without it is refused with it, the message naming the mask."""
    from ltx2_nodes.memory.estimates import attention_mask_bytes

    weights = dict(released, dit=released["dit"].as_fp8())
    request = RunRequest(1280, 704, 121, control=(1, 1), attention_mask=True)
    assert request.stage1_tokens() == 2 * 14080 and request.masked_tokens() == 2 * 14080  # grid + same-size guide
    huge = dict(vram_budget=1 << 50, ram_budget=1 << 50)
    plain, masked = ({s.name: s for s in estimate_run(weights, replace(request, attention_mask=mask), **huge).stages}
                     ["dit"] for mask in (False, True))
    assert masked.activation_bytes - plain.activation_bytes >= attention_mask_bytes(2 * 14080, 1, torch.bfloat16)
    kwargs = dict(vram_budget=(plain.min_vram + masked.min_vram) // 2, ram_budget=64 * GiB)
    with pytest.raises(OutOfMemoryError) as info:
        precheck(weights, request, **kwargs)
    message = str(info.value)
    assert re.search(r"the dit stage needs at least .* of them the 28160 x 28160 self-attention mask an IC-LoRA "
                     r"guide with attention strength below 1 or an attention mask needs; attention strength 1.0 "
                     r"without a mask avoids it\)", message), message
    assert "the IC-LoRA guide at attention strength 1.0 without an attention mask" in message.split("What would fit")[1]
    precheck(weights, replace(request, attention_mask=False), **kwargs)


def test_stage_one_tokens_count_the_control_guide_and_the_appended_tokens(released):
    """Stage 1's DiT holds its grid, the control video's guide tokens (at the IC-LoRA's fraction of stage 1's size
    and frames) and the tokens appended for images past frame 0 / keyframe slots; stage 2 only its grid."""
    from ltx2_nodes.memory.estimates import audio_tokens, dit_activation_bytes

    request = RunRequest(1536, 1024, 121, two_stage=True, control=(2, 2), guide_tokens=2 * 16 * 24)
    assert request.stage1_shape() == (121, 512, 768)
    assert request.control_size() == (57, 256, 384)  # 1 + 60 of 120 frames, cut to 1 + 8k
    assert request.stage1_tokens() == 16 * 16 * 24 + 8 * 8 * 12 + 2 * 16 * 24
    acts = {s.name: s.activation_bytes for s in estimate_run({"dit": released["dit"]}, request, vram_budget=1 << 50,
                                                               ram_budget=1 << 50).stages}
    assert acts["dit"] == dit_activation_bytes(TransformerConfig(), request.stage1_tokens(), audio_tokens(121, 24.0))
