"""LTX-2.5 text projection + connectors parity: the projection from the packed text-encoder file, the connectors
from the split-layout transformer file (the reference's ``EmbeddingsProcessor`` built from both files)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import CheckpointError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_text_connectors
from ltx2_nodes.loading.safetensors_file import SafetensorsFile


@pytest.fixture(scope="module")
def golden():
    return find_golden("embeddings_processor", "2.5")


def _files(golden) -> tuple[LTX2Checkpoint, SafetensorsFile]:
    """(transformer file, text-encoder file) from the fixture's ``weights_file`` list, told apart by content."""
    names = golden.meta["weights_file"]
    paths = [golden.path.parent / name for name in ([names] if isinstance(names, str) else names)]
    files = [SafetensorsFile(p) for p in paths]
    transformer = next(f for f in files if any(".transformer_blocks." in k for k in f.keys()))
    text_encoder = next(f for f in files if f is not transformer)
    return LTX2Checkpoint(transformer.path), text_encoder


@pytest.fixture(scope="module")
def connectors(golden):
    ckpt, text_encoder = _files(golden)
    return load_text_connectors(ckpt, dtype=torch.float32, text_encoder=text_encoder)


def _calls(golden) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in golden.tensors if k.endswith(".hidden_states")})


def test_every_call_matches_golden(golden, connectors):
    diffs = {}
    for call in _calls(golden):
        states, mask = golden[f"{call}.hidden_states"], golden[f"{call}.attention_mask"]
        with torch.no_grad():
            video_in, audio_in = connectors.project(states, mask)
            out = connectors.connect(states, mask)
        for name, actual in ((f"{call}.debug.video_features", video_in), (f"{call}.debug.audio_features", audio_in),
                             (f"{call}.video_encoding", out.video_context),
                             (f"{call}.audio_encoding", out.audio_context)):
            if name in golden.tensors:
                diffs[name] = assert_close(actual, golden[name], name)
        if f"{call}.binary_mask" in golden.tensors:
            assert torch.equal(out.mask, golden[f"{call}.binary_mask"].to(out.mask.dtype))
    assert any(name.endswith("_encoding") for name in diffs)
    print(f"\n2.5 text embeddings max |diff|: {diffs}")


def test_registers_and_widths_come_from_the_files_golden(golden, connectors):
    ckpt, _ = _files(golden)
    section = ckpt.component_config("transformer")
    assert connectors.video_width == section["cross_attention_dim"]
    assert connectors.audio_width == section["audio_cross_attention_dim"]
    registers = ckpt.state_dict("video_connector")["learnable_registers"].shape[0]
    assert connectors.video.config.num_learnable_registers == registers
    assert connectors.projection.config.separate_projections


def test_split_transformer_file_alone_names_the_text_encoder_file_for_the_projection_golden(golden):
    ckpt, _ = _files(golden)
    with pytest.raises(CheckpointError, match=r"split-layout transformer file.*packed text-encoder file"):
        load_text_connectors(ckpt)


def test_production_length_prompt_from_the_gemma4_fixture_matches_golden(golden, connectors):
    """The Gemma 4 fixture's prompts, left-padded to the production 1024 tokens, through projection + connectors."""
    gemma = find_golden("gemma4_text_encoder", "2.5")
    prompts = sorted({k.split(".", 1)[0] for k in gemma.tensors if k.endswith("_encoding")})
    if not prompts:
        pytest.skip("the Gemma 4 fixture stores no connector outputs")
    for prompt in prompts:
        with torch.no_grad():
            out = connectors.connect(gemma[f"{prompt}.hidden_states"], gemma[f"{prompt}.attention_mask"])
        assert_close(out.video_context, gemma[f"{prompt}.video_encoding"], f"{prompt}.video_encoding")
        assert_close(out.audio_context, gemma[f"{prompt}.audio_encoding"], f"{prompt}.audio_encoding")
