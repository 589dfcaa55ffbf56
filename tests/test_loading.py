"""Checkpoint reading: released layout variants, fp8, memory mapping, and every bad-input message."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from conftest import find_golden
from ltx2_nodes.errors import CheckpointError, ModelNotFoundError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import DIT_PREFIX, LTX2Checkpoint, build_module
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.quant import FP8Linear, quantize_weight
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.model.transformer import ModalityInput, TransformerConfig


@pytest.fixture(scope="module")
def golden():
    return find_golden("transformer")


@pytest.fixture(scope="module")
def released(golden):
    """Tensors and metadata of the golden single-file checkpoint (released layout)."""
    f = SafetensorsFile(golden.weights_path)
    return {k: f.tensor(k).clone() for k in f.keys()}, dict(f.metadata)


def _last_block(tensors) -> int:
    prefix = DIT_PREFIX + "transformer_blocks."
    return max(int(k[len(prefix):].split(".")[0]) for k in tensors if k.startswith(prefix))


def _write(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _forward(model, golden, call="call1"):
    def modality(name):
        timesteps = golden[f"{call}.{name}_timesteps"]  # per sample in call1: Modality.sigma holds the same values
        return ModalityInput(golden[f"{call}.{name}_latent"], timesteps.flatten(), timesteps,
                             golden[f"{name}_positions"], golden[f"{name}_context"])

    with torch.no_grad():
        return model(modality("video"), modality("audio"))


# -- the file as released ------------------------------------------------------------------------


def test_golden_checkpoint_is_recognised_and_split(golden):
    ckpt = LTX2Checkpoint(golden.weights_path)
    assert ckpt.variant.layout == "single_file" and not ckpt.variant.quantized
    assert set(ckpt.config) >= {"transformer", "vae", "audio_vae", "vocoder"}
    dit = ckpt.state_dict("transformer")
    assert "patchify_proj.weight" in dit and not any("embeddings_connector" in k for k in dit)
    assert "learnable_registers" in ckpt.state_dict("video_connector")
    assert "per_channel_statistics.mean-of-means" in ckpt.state_dict("video_decoder")
    total = sum(ckpt.component_bytes(c) for c in
                ("transformer", "video_connector", "audio_connector", "text_projection", "video_encoder",
                 "video_decoder", "vocoder", "audio_encoder", "audio_decoder"))
    # every tensor belongs to exactly one component, except the VAE statistics both VAE halves read
    shared = sum(ckpt.file.info(k).nbytes for k in ckpt.file.keys() if "per_channel_statistics" in k)
    assert total - shared == sum(ckpt.file.info(k).nbytes for k in ckpt.file.keys())


def test_loading_keeps_weights_memory_mapped(golden):
    ckpt = LTX2Checkpoint(golden.weights_path)
    model = load_transformer(ckpt)  # file dtype: no conversion, so no copy
    mapped = torch.frombuffer(ckpt.file._map(), dtype=torch.uint8)
    lo, hi = mapped.data_ptr(), mapped.data_ptr() + mapped.numel()
    for name, p in model.named_parameters():
        assert lo <= p.data_ptr() < hi, f"{name} was copied instead of mapped"
    assert model.compute_dtype == torch.bfloat16


# -- variants users have -------------------------------------------------------------------------


def test_diffusion_model_split_files_load_with_and_without_prefix(tmp_path, released, golden):
    tensors, meta = released
    reference = _forward(load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32), golden)
    dit = {k: v for k, v in tensors.items() if k.startswith(DIT_PREFIX)}
    bare = {k[len(DIT_PREFIX):]: v for k, v in dit.items()}
    for name, keys in (("prefixed", dit), ("bare", bare)):
        ckpt = LTX2Checkpoint(_write(tmp_path / f"{name}.safetensors", keys, meta))
        assert ckpt.variant.layout == "diffusion_model"
        out = _forward(load_transformer(ckpt, dtype=torch.float32), golden)
        assert all(torch.equal(a, b) for a, b in zip(out, reference)), name
        assert ckpt.has("video_connector") and not ckpt.has("video_decoder")
        with pytest.raises(CheckpointError, match="no video_decoder weights"):
            ckpt.state_dict("video_decoder")


def test_dit_file_without_metadata_infers_config_from_shapes(tmp_path, released, golden):
    tensors, meta = released
    cfg = json.loads(meta["config"])["transformer"]
    bare = {k[len(DIT_PREFIX):]: v for k, v in tensors.items() if k.startswith(DIT_PREFIX)}
    ckpt = LTX2Checkpoint(_write(tmp_path / "nometa.safetensors", bare))
    inferred = ckpt.config["transformer"]
    assert ckpt.variant.config_inferred
    for key in ("num_layers", "in_channels", "out_channels", "caption_channels", "audio_in_channels",
                "audio_out_channels", "cross_attention_dim", "audio_cross_attention_dim"):
        assert inferred[key] == cfg.get(key, inferred[key]), key
    for prefix in ("", "audio_"):
        assert (inferred[f"{prefix}num_attention_heads"] * inferred[f"{prefix}attention_head_dim"]
                == cfg[f"{prefix}num_attention_heads"] * cfg[f"{prefix}attention_head_dim"])
    model = load_transformer(ckpt, dtype=torch.float32)  # builds and loads with the inferred config
    if (cfg["attention_head_dim"], cfg["audio_attention_head_dim"]) == (128, 64):  # released head dims
        reference = load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32)
        assert all(torch.equal(a, b) for a, b in zip(_forward(model, golden), _forward(reference, golden)))


def test_fp8_file_keeps_fp8_weights_and_matches_dequantized(tmp_path, released, golden):
    tensors, meta = released
    quantized = dict(tensors)
    dequantized = dict(tensors)
    # same rule as the released fp8 files: block Linears except the first block (unless it is the only one)
    plain_block = ".transformer_blocks.0." if _last_block(tensors) > 0 else None
    for key, value in tensors.items():
        if (key.startswith(DIT_PREFIX + "transformer_blocks.") and (plain_block is None or plain_block not in key)
                and key.endswith(".weight") and value.ndim == 2):
            q, scale = quantize_weight(value)
            quantized[key] = q
            quantized[key[: -len("weight")] + "weight_scale"] = scale
            quantized[key[: -len("weight")] + "input_scale"] = torch.tensor(1.0)
            quantized[key[: -len("weight")] + "comfy_quant"] = torch.tensor(list(b'{"format":"float8_e4m3fn"}'),
                                                                            dtype=torch.uint8)
            dequantized[key] = q.float() * scale  # kept in float32: exact
    ckpt = LTX2Checkpoint(_write(tmp_path / "fp8.safetensors", quantized, meta))
    assert ckpt.variant.quantized and "(fp8)" in ckpt.variant.describe()
    kept = load_transformer(ckpt, dtype=torch.float32)
    fp8_layers = [m for m in kept.modules() if isinstance(m, FP8Linear)]
    assert fp8_layers and all(m.weight.dtype == torch.float8_e4m3fn for m in fp8_layers)
    if plain_block:
        assert not any(isinstance(m, FP8Linear) for m in kept.transformer_blocks[0].modules())
    upcast = load_transformer(ckpt, dtype=torch.float32, fp8="upcast")
    assert not any(isinstance(m, FP8Linear) for m in upcast.modules())
    reference = load_transformer(LTX2Checkpoint(_write(tmp_path / "deq.safetensors", dequantized, meta)),
                                 dtype=torch.float32)
    out_kept, out_up, out_ref = _forward(kept, golden), _forward(upcast, golden), _forward(reference, golden)
    for a, b, c in zip(out_kept, out_up, out_ref):
        assert torch.allclose(a, c, atol=1e-5) and torch.allclose(b, c, atol=1e-5)


def test_fp16_and_fp32_files_load(tmp_path, released, golden):
    tensors, meta = released
    reference = _forward(load_transformer(LTX2Checkpoint(golden.weights_path), dtype=torch.float32), golden)
    for dtype, tol in ((torch.float16, 2e-2), (torch.float32, 0.0)):
        converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        ckpt = LTX2Checkpoint(_write(tmp_path / f"{dtype}.safetensors", converted, meta))
        kept = load_transformer(ckpt)
        assert kept.compute_dtype == dtype
        out = _forward(load_transformer(ckpt, dtype=torch.float32), golden)
        for a, b in zip(out, reference):
            assert (a - b).abs().max() <= tol


# -- bad input -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        LTX2Checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file_names_missing_bytes(tmp_path, golden):
    data = golden.weights_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors is truncated: .*missing.*download it again"):
        LTX2Checkpoint(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="too short"):
        LTX2Checkpoint(tiny)


@pytest.mark.parametrize("payload,what", [
    (b"PK\x03\x04" + b"\0" * 64, "zip/pickle"),
    (b"\x80\x02" + b"\0" * 64, "pickle"),
])
def test_pickles_and_other_formats_are_refused(tmp_path, payload, what):
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=what):
        LTX2Checkpoint(path)


def test_header_length_that_looks_like_a_pickle_opcode_is_still_safetensors(tmp_path):
    # a JSON header of 640 bytes starts the file with 0x80 0x02, the pickle protocol-2 magic
    base = len(_write(tmp_path / "ok.safetensors", {"x": torch.zeros(2)}, {"pad": ""}).read_bytes()) - 8 - 8
    for pad in range(640 - base - 16, 640 - base + 16):
        path = _write(tmp_path / "ok.safetensors", {"x": torch.zeros(2)}, {"pad": "p" * pad})
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.skip("could not construct the colliding header length")
    assert torch.equal(SafetensorsFile(path).tensor("x"), torch.zeros(2))


def test_garbage_header(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = b"{not json"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        LTX2Checkpoint(path)


def test_missing_config_in_single_file(tmp_path, released):
    tensors, _ = released
    with pytest.raises(CheckpointError, match="has no 'config' metadata"):
        LTX2Checkpoint(_write(tmp_path / "noconfig.safetensors", tensors))


@pytest.mark.parametrize("keys,what", [
    ({"conditioner.embedders.0.transformer.text_model.embeddings.position_ids": (1, 4),
      "model.diffusion_model.input_blocks.0.0.weight": (4, 4)}, "SDXL"),
    ({"blocks.0.self_attn.q.weight": (4, 4), "patch_embedding.weight": (4, 4)}, "Wan"),
    ({"double_blocks.0.img_attn.qkv.weight": (4, 4)}, "Flux"),
    ({"model.layers.0.self_attn.q_proj.weight": (4, 4)}, "text_encoders"),
    ({"initial_conv.weight": (4, 4)}, "latent_upscale_models"),
    ({"something.else": (4, 4)}, "does not contain an LTX-2 transformer"),
])
def test_foreign_models_are_named(tmp_path, keys, what):
    path = _write(tmp_path / "foreign.safetensors", {k: torch.zeros(s) for k, s in keys.items()})
    with pytest.raises(CheckpointError, match=what):
        LTX2Checkpoint(path)


def test_newer_versions_and_video_only_files_are_refused_by_name(tmp_path, released):
    tensors, meta = released
    with pytest.raises(UnsupportedModelError, match=r"LTX-2\.6\.0.*not supported yet"):
        LTX2Checkpoint(_write(tmp_path / "ltx26.safetensors", tensors, {**meta, "model_version": "2.6.0"}))
    video_only = {k: v for k, v in tensors.items() if ".audio_" not in k}
    with pytest.raises(UnsupportedModelError, match="video-only LTX-Video"):
        LTX2Checkpoint(_write(tmp_path / "ltxv.safetensors", video_only, meta))


def test_shape_mismatch_and_missing_keys_are_named(tmp_path, released):
    tensors, meta = released
    key = DIT_PREFIX + "transformer_blocks.0.attn1.to_q.weight"
    wrong = dict(tensors)
    wrong[key] = torch.zeros(wrong[key].shape[0] + 1, wrong[key].shape[1], dtype=wrong[key].dtype)
    with pytest.raises(CheckpointError, match=r"'transformer_blocks\.0\.attn1\.to_q\.weight' has shape \[\d+, \d+\] "
                                              r"in the file but the config needs \[\d+, \d+\]"):
        load_transformer(LTX2Checkpoint(_write(tmp_path / "wrong.safetensors", wrong, meta)))
    last = _last_block(tensors)
    missing = {k: v for k, v in tensors.items() if not k.startswith(f"{DIT_PREFIX}transformer_blocks.{last}.ff.")}
    with pytest.raises(CheckpointError, match=rf"missing tensor\(s\), e\.g\. \['transformer_blocks\.{last}\.ff\."):
        load_transformer(LTX2Checkpoint(_write(tmp_path / "missing.safetensors", missing, meta)))


def test_config_that_disagrees_with_weights_is_refused(tmp_path, released):
    tensors, meta = released
    config = json.loads(meta["config"])
    config["transformer"]["num_layers"] += 1
    path = _write(tmp_path / "cfg.safetensors", tensors, {"config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"transformer weights do not match.*missing tensor"):
        load_transformer(LTX2Checkpoint(path))
    config["transformer"]["num_layers"] -= 1
    config["transformer"]["qk_norm"] = "layer_norm"
    path = _write(tmp_path / "cfg2.safetensors", tensors, {"config": json.dumps(config)})
    with pytest.raises(UnsupportedModelError, match="qk_norm='layer_norm'"):
        load_transformer(LTX2Checkpoint(path))


def test_transformer_config_takes_every_releases_flags_and_refuses_other_variants():
    release_23 = {"apply_gated_attention": True, "cross_attention_adaln": True, "caption_proj_before_connector": True}
    cfg = TransformerConfig.from_metadata(release_23)
    assert cfg.ada_rows == 9 and cfg.context_width("video") == cfg.cross_attention_dim
    assert cfg.context_width("audio") == cfg.audio_cross_attention_dim
    assert TransformerConfig.from_metadata({k: False for k in release_23}) == TransformerConfig()
    release_25 = TransformerConfig.from_metadata({**release_23, "ff_bias": False,
                                                  "use_keyframes_abs_pos_embedding": True})
    assert not release_25.ff_bias and release_25.audio_ff_bias and release_25.use_keyframes_abs_pos_embedding
    for key, value in (("use_prompt_adaln_single", "no"), ("ff_bias", "no"),
                       ("use_keyframes_abs_pos_embedding", 1.5), ("apply_gated_attention", "yes")):
        with pytest.raises(UnsupportedModelError, match=f"{key}={value!r}.*LTX-2.5"):
            TransformerConfig.from_metadata({**release_23, key: value})
    with pytest.raises(UnsupportedModelError, match="audio_num_attention_heads=16.*equal head counts"):
        TransformerConfig.from_metadata({"num_attention_heads": 32, "audio_num_attention_heads": 16})


def test_build_module_reports_unfilled_tensors():
    class WithBuffer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("extra", torch.zeros(2))

    state = {"lin.weight": torch.zeros(2, 2), "lin.bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"1 missing tensor\(s\), e\.g\. \['extra'\]"):
        build_module(WithBuffer, state, what="toy", source="toy.safetensors")
