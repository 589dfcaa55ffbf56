"""Config switches of LTX-2.5-era files that the fixtures leave at their defaults: a switch off equals the model
with the parts it removes set to zero (no prompt AdaLN: the static context table alone; bias-free connector
feed-forward)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer, load_video_connector
from ltx2_nodes.model.connector import Embeddings1DConnector
from ltx2_nodes.model.transformer import LTX2Transformer, ModalityInput


@pytest.fixture(scope="module")
def ckpt():
    return LTX2Checkpoint(find_golden("transformer", "2.5").weights_path)


def _without(module: torch.nn.Module, make, dropped, zeroed):
    """(a copy of ``module`` built by ``make`` without the tensors ``dropped(name)`` selects, ``module`` with the
    parameters ``zeroed(name)`` selects set to zero)."""
    slim = make()
    slim.load_state_dict({k: v.clone() for k, v in module.state_dict().items() if not dropped(k)})
    for name, tensor in module.named_parameters():
        if zeroed(name):
            tensor.data.zero_()
    return slim.eval(), module


def test_no_prompt_adaln_equals_a_prompt_adaln_that_outputs_zero(ckpt):
    model = load_transformer(ckpt, dtype=torch.float32)
    cfg = replace(model.config, use_prompt_adaln_single=False)
    slim, zeroed = _without(model, lambda: LTX2Transformer(cfg), lambda k: "prompt_adaln_single." in k,
                            lambda k: "prompt_adaln_single.linear" in k)
    assert not hasattr(slim, "prompt_adaln_single") and not hasattr(slim, "audio_prompt_adaln_single")
    g = torch.Generator().manual_seed(0)

    def modality(tokens, channels, width, positions):
        return ModalityInput(torch.randn(1, tokens, channels, generator=g), torch.tensor([0.6]),
                             torch.full((1, tokens, 1), 0.6), positions, torch.randn(1, 8, width, generator=g))

    video_pos = torch.arange(6.0).view(1, 1, 6, 1).expand(1, 3, 6, 2).contiguous()
    video_pos[..., 1] += 1
    audio_pos = video_pos[:, :1].clone()
    video = modality(6, cfg.in_channels, cfg.cross_attention_dim, video_pos)
    audio = modality(6, cfg.audio_in_channels, cfg.audio_cross_attention_dim, audio_pos)
    with torch.no_grad():
        expected, ours = zeroed(video, audio), slim(video, audio)
    assert_close(ours[0], expected[0], "video", 1e-6)
    assert_close(ours[1], expected[1], "audio", 1e-6)


def test_bias_free_connector_feed_forward_equals_zero_biases(ckpt):
    connector = load_video_connector(ckpt, dtype=torch.float32)
    cfg = replace(connector.config, ff_bias=False)
    ff_bias = lambda k: ".ff.net." in k and k.endswith(".bias")  # noqa: E731
    slim, zeroed = _without(connector, lambda: Embeddings1DConnector(cfg), ff_bias, ff_bias)
    assert all(block.ff.net[2].bias is None for block in slim.transformer_1d_blocks)
    x = torch.randn(1, cfg.num_learnable_registers, cfg.inner_dim, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, x.shape[1], dtype=torch.int64)
    mask[:, -5:] = 1
    with torch.no_grad():
        assert_close(slim(x, mask), zeroed(x, mask), "connector", 1e-6)
