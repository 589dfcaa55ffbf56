"""GGUF files that cannot be loaded are refused with a message that says what is wrong and what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGUFWriter

from gguf_files import Q, random_blocks, write_gguf
from ltx2_nodes.errors import CheckpointError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint

DIT = {"transformer_blocks.0.attn1.to_q.weight": torch.randn(32, 64),
       "transformer_blocks.0.audio_attn1.to_q.bias": torch.randn(16)}


def test_garbage_after_the_magic_is_a_damaged_file(tmp_path):
    path = tmp_path / "ltx-2-19b-dev-Q4_K_M.gguf"
    path.write_bytes(b"GGUF" + np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="ltx-2-19b-dev-Q4_K_M.gguf is a damaged or truncated GGUF file.*"
                                              "download it again"):
        LTX2Checkpoint(path)


def test_a_gguf_named_safetensors_is_read_as_gguf(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="damaged or truncated GGUF"):
        LTX2Checkpoint(path)


def test_truncated_download_is_named(tmp_path):
    path = write_gguf(tmp_path / "full.gguf", DIT, Q.Q8_0)
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 700])
    with pytest.raises(CheckpointError, match=r"cut\.gguf is (a damaged or )?truncated.*download it again"):
        LTX2Checkpoint(cut)
    cut.write_bytes(data[:40])  # inside the header
    with pytest.raises(CheckpointError, match=r"cut\.gguf is a damaged or truncated GGUF"):
        LTX2Checkpoint(cut)


def test_unsupported_quant_type_is_named(tmp_path):
    path = tmp_path / "ltx-2-19b-dev-Q2_K.gguf"
    writer = GGUFWriter(str(path), "ltxv")
    writer.add_tensor("transformer_blocks.0.attn1.to_q.weight", random_blocks(Q.Q2_K, 32, 1), raw_dtype=Q.Q2_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="stored as Q2_K.*supported: F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K"):
        LTX2Checkpoint(path)


@pytest.mark.parametrize("arch,tensors,what", [
    ("flux", {"double_blocks.0.img_attn.qkv.weight": torch.randn(96, 32)}, "architecture 'flux': not an LTX-2 DiT"),
    ("gemma3", {"blk.0.attn_q.weight": torch.randn(32, 32), "token_embd.weight": torch.randn(8, 32)},
     "architecture 'gemma3': a language model .*models/text_encoders"),
])
def test_foreign_architectures_are_named(tmp_path, arch, tensors, what):
    path = write_gguf(tmp_path / f"{arch}-Q8_0.gguf", tensors, Q.Q8_0, arch=arch)
    with pytest.raises(CheckpointError, match=what):
        LTX2Checkpoint(path)


def test_video_only_ltxv_gguf_is_refused_like_its_safetensors(tmp_path):
    path = write_gguf(tmp_path / "ltxv-13b-0.9.8-Q8_0.gguf", {"transformer_blocks.0.attn1.to_q.weight":
                                                               torch.randn(32, 32)}, Q.Q8_0)
    with pytest.raises(Exception, match="video-only LTX-Video"):
        LTX2Checkpoint(path)
