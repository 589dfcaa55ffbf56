"""The documented memory and FLOP formulas against measurements of the real model code."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from memory_support import LTX23_FLAGS, dit_inputs, one_thread, random_dit, tiny_gemma  # noqa: F401
from ltx2_nodes.memory.estimates import (DecoderShape, audio_tokens, decoder_activation_bytes, decoder_layer_flops,
                                         dit_activation_bytes, dit_block_flops, video_tokens)
from ltx2_nodes.memory.measure import LiveBytes
from ltx2_nodes.model.shapes import video_latent_size
from ltx2_nodes.model.transformer import Perturbations, SampleSkips


def test_token_counts_match_the_reference_worked_example():
    # ltx2-architecture.md §1.2: 768x512x121 at 24 fps -> latent [16, 16, 24], 6144 video and 126 audio tokens
    assert video_latent_size(121, 512, 768) == (16, 16, 24)
    assert video_tokens(768, 512, 121) == 6144
    assert audio_tokens(121, 24.0) == 126 and audio_tokens(121, 25.0) == 121


FAMILIES = pytest.mark.parametrize("flags", [{}, LTX23_FLAGS], ids=["ltx2", "ltx2.3"])


@FAMILIES
@pytest.mark.parametrize("grid,audio,text,batch,per_token", [
    ((4, 8, 8), 16, 32, 1, True), ((8, 8, 8), 32, 64, 2, True), ((8, 8, 8), 32, 64, 1, False),
    ((2, 4, 4), 8, 128, 1, True),  # more text than video tokens: the text cross-attention sets the peak
])
def test_dit_activation_estimate_bounds_the_measured_peak(grid, audio, text, batch, per_token, flags):
    model = random_dit(layers=2, heads=8, **flags)
    video, aud = dit_inputs(model.config, grid=grid, audio=audio, text=text, batch=batch)
    if not per_token:
        video = replace(video, timesteps=video.sigma)
    with torch.no_grad(), LiveBytes() as live:
        model(video, aud)
    estimate = dit_activation_bytes(model.config, video.latent.shape[1], audio, text_tokens=text, batch=batch,
                                    dtype=torch.float32, per_token_timesteps=per_token)
    assert live.peak <= estimate <= 1.35 * live.peak, (live.peak, estimate)


@pytest.mark.parametrize("hidden,layers,tokens,batch", [(64, 4, 64, 1), (128, 3, 96, 2)])
def test_gemma_activation_estimate_bounds_the_measured_peak(hidden, layers, tokens, batch):
    model = tiny_gemma(layers=layers, hidden=hidden)
    ids = torch.randint(0, 128, (batch, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[:, : tokens // 4] = 0
    with torch.no_grad(), LiveBytes() as live:
        model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    estimate = decoder_activation_bytes(DecoderShape.of(model.config), tokens, batch=batch, dtype=torch.float32)
    assert live.peak <= estimate <= 1.35 * live.peak, (live.peak, estimate)


@FAMILIES
def test_dit_block_flops_equal_the_counted_matmuls(flags):
    model = random_dit(layers=1, heads=2, **flags)
    video, audio = dit_inputs(model.config, grid=(2, 4, 4), audio=8, text=16, batch=2)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):  # the math path shows attention as countable bmm
        v, a = model.prepare(video, audio)
        with counter:
            model.transformer_blocks[0](v, a, Perturbations([SampleSkips()] * 2))
    assert counter.get_total_flops() == dit_block_flops(model.config, 32, 8, text_tokens=16, batch=2)


def test_gemma_layer_flops_equal_the_counted_matmuls():
    model = tiny_gemma(layers=1)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(input_ids=torch.zeros(2, 20, dtype=torch.long))
    assert counter.get_total_flops() == decoder_layer_flops(DecoderShape.of(model.config), 20, batch=2)


@FAMILIES
def test_released_sizes(flags):
    """Anchors for the docs: the estimate at the benchmark sizes (bf16, one sample per call), LTX-2 19B and
    LTX-2.3 22B (same widths; its text contexts come at the inner widths, no projected copy)."""
    from ltx2_nodes.model.transformer import TransformerConfig

    cfg = TransformerConfig(**flags)
    gib = 2 ** 30
    small = dit_activation_bytes(cfg, video_tokens(768, 512, 121), audio_tokens(121, 24.0))
    large = dit_activation_bytes(cfg, video_tokens(1280, 704, 121), audio_tokens(121, 24.0))
    assert 0.7 * gib < small < 0.8 * gib and 1.65 * gib < large < 1.75 * gib


def test_fp8_upcast_transient_matches_the_measured_dequantisation():
    from torch import nn

    from ltx2_nodes.loading.quant import cast_linears_to_fp8
    from ltx2_nodes.memory.estimates import fp8_upcast_bytes

    model = nn.Sequential(nn.Linear(64, 256), nn.Linear(256, 64))
    cast_linears_to_fp8(model)
    x = torch.randn(1, 64)
    with torch.no_grad(), LiveBytes() as live:
        model(x)
    outputs = (256 + 64) * 4
    assert fp8_upcast_bytes(model) == 2 * 64 * 256 * 4
    assert fp8_upcast_bytes(model) <= live.peak <= fp8_upcast_bytes(model) + outputs + 256 * 4


def test_connector_activation_estimate_bounds_the_measured_peak():
    """LTX-2.3 shape: 8 gated blocks, video and audio connectors of different widths, two projections."""
    from ltx2_nodes.memory.estimates import connector_activation_bytes
    from ltx2_nodes.model.connector import (ConnectorConfig, Embeddings1DConnector, TextConnectors, TextProjection,
                                            TextProjectionConfig)

    gemma, states, tokens, batch = 64, 5, 48, 2
    torch.manual_seed(0)
    video = Embeddings1DConnector(ConnectorConfig(4, 32, num_layers=8, num_learnable_registers=16,
                                                  gated_attention=True))
    audio = Embeddings1DConnector(ConnectorConfig(4, 16, num_layers=8, num_learnable_registers=16,
                                                  gated_attention=True))
    projection = TextProjection(TextProjectionConfig(gemma * states, 128, 64, separate_projections=True))
    module = TextConnectors(projection, video, audio).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.05)
    hidden = torch.randn(batch, tokens, gemma, states)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    mask[:, : tokens // 4] = 0
    with torch.no_grad(), LiveBytes() as live:
        module.connect(hidden, mask)
    estimate = connector_activation_bytes(gemma, states - 1, (128, 64), tokens=tokens, batch=batch,
                                          dtype=torch.float32)
    assert live.peak <= estimate <= 1.35 * live.peak, (live.peak, estimate)
