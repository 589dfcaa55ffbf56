"""Writing small GGUF files for the tests with the ``gguf`` package (``GGUFWriter`` + ``gguf.quants``).

``write_gguf`` stores tensors the way the community converters do: 2-D ``.weight`` tensors whose rows
are whole blocks in the chosen quant type, everything else in ``plain`` (BF16 keeps a bf16 golden
checkpoint exact). ``gguf.quants.quantize`` has numpy quantizers for Q8_0 / Q4_0 / BF16 but not for
the K-quants; ``quantize_q4_k`` is a plain (non-optimising) Q4_K quantizer for the forward tests, and
``random_blocks`` builds valid random blocks of any type for the dequantization tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, quants

Q = GGMLQuantizationType


def quantize_q4_k(values: np.ndarray) -> np.ndarray:
    """float32 ``[..., k * 256]`` -> Q4_K bytes ``[..., k * 144]``: per 32-value sub-block an affine
    ``scale * q - min`` with 6-bit scale and min codes and 4-bit ``q``."""
    lead = values.shape[:-1]
    x = values.astype(np.float32).reshape(-1, 8, 32)
    mins = np.maximum(-x.min(axis=-1), 0)
    scales = (x.max(axis=-1) + mins) / 15
    d = (scales.max(axis=-1) / 63).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63).astype(np.float16)
    safe = lambda v: np.where(v == 0, 1, v).astype(np.float32)[:, None]  # noqa: E731
    sc = np.clip(np.rint(scales / safe(d)), 0, 63).astype(np.uint8)
    mn = np.clip(np.rint(mins / safe(dmin)), 0, 63).astype(np.uint8)
    step = (d.astype(np.float32)[:, None] * sc)[..., None]
    offset = (dmin.astype(np.float32)[:, None] * mn)[..., None]
    q = np.clip(np.rint((x + offset) / np.where(step == 0, 1, step)), 0, 15).astype(np.uint8)
    packed_scales = np.concatenate([
        (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6),
        (mn[:, :4] & 63) | ((mn[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 15) | ((mn[:, 4:] & 15) << 4)], axis=-1)
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8),
                             packed_scales, qs], axis=-1)
    return blocks.reshape(*lead, -1)


def quantize(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    return quantize_q4_k(values) if qtype == Q.Q4_K else quants.quantize(values.astype(np.float32), qtype)


def random_blocks(qtype: GGMLQuantizationType, rows: int, blocks_per_row: int, seed: int = 0) -> np.ndarray:
    """Random bytes in ``qtype``'s block layout with finite float16 scales (NaN/inf scales are not weights)."""
    size = GGML_QUANT_SIZES[qtype][1]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows * blocks_per_row, size), dtype=np.uint8)
    for at in {Q.Q6_K: (size - 2,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2)}.get(qtype, (0,)):
        raw[:, at:at + 2] = rng.uniform(-0.05, 0.05, (len(raw), 1)).astype(np.float16).view(np.uint8)
    return raw.reshape(rows, blocks_per_row * size)


def quantizable(key: str, shape: tuple[int, ...], qtype: GGMLQuantizationType) -> bool:
    block = GGML_QUANT_SIZES[qtype][0]
    return key.endswith(".weight") and len(shape) == 2 and shape[-1] % block == 0


def write_gguf(path: Path, tensors: dict[str, torch.Tensor], qtype: GGMLQuantizationType | None,
               plain: GGMLQuantizationType = Q.BF16, arch: str = "ltxv", quantize_key=quantizable,
               extra: dict[str, object] | None = None, vocabulary: bytes | None = None) -> Path:
    """Write ``tensors`` (torch, logical shapes) to ``path``; returns the path. ``vocabulary``: a SentencePiece
    model whose pieces are stored as llama.cpp's converter stores a Gemma vocabulary (``tokenizer.ggml.*``)."""
    writer = GGUFWriter(str(path), arch)
    for key, value in (extra or {}).items():
        writer.add_string(key, str(value))
    if vocabulary is not None:
        _add_sentencepiece_vocabulary(writer, vocabulary)
    for key, tensor in tensors.items():
        values = tensor.float().numpy()
        kind = qtype if qtype is not None and quantize_key(key, tuple(tensor.shape), qtype) else plain
        if kind == Q.F32:
            writer.add_tensor(key, values)
        elif kind == Q.F16:
            writer.add_tensor(key, values.astype(np.float16))
        else:
            writer.add_tensor(key, quantize(values, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_sentencepiece_vocabulary(writer: GGUFWriter, model_proto: bytes) -> None:
    """The ``tokenizer.ggml.*`` keys of llama.cpp's ``convert_hf_to_gguf`` for a SentencePiece (Gemma) vocabulary:
    model "llama", every piece with its score and type, the special ids, BOS added, no space prefix."""
    import sentencepiece as spm
    from gguf import TokenType

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    kinds = ((sp.is_unknown, TokenType.UNKNOWN), (sp.is_control, TokenType.CONTROL), (sp.is_unused, TokenType.UNUSED),
             (sp.is_byte, TokenType.BYTE))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    types = [next((kind for test, kind in kinds if test(i)), TokenType.NORMAL) for i in range(len(pieces))]
    types = [TokenType.USER_DEFINED if p.startswith("<") and p.endswith(">") and t == TokenType.NORMAL else t
             for p, t in zip(pieces, types)]
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(pieces)
    writer.add_token_scores([sp.get_score(i) for i in range(len(pieces))])
    writer.add_token_types(types)
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_pad_token_id(sp.pad_id())
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
