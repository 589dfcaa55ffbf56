"""Model family detection (LTX-2 / LTX-2.3 / LTX-2.5, later refused): metadata, config switches, tensor fingerprints."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file

from conftest import find_golden
from ltx2_nodes.cli import main as cli_main
from ltx2_nodes.errors import CheckpointError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import DIT_PREFIX, LTX2Checkpoint
from ltx2_nodes.loading.family import (LTX_2, LTX_2_3, LTX_2_5, detect_family, detect_file_family,
                                      is_split_transformer_config, parse_model_version)
from ltx2_nodes.loading.components import load_text_connectors, load_transformer
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.model.transformer import TransformerConfig

FAMILY_OF_FLAVOUR = {"2.0": LTX_2, "2.0-head": LTX_2, "2.3": LTX_2_3}


def _released(flavour: str):
    """Tensors and metadata of a flavour's golden single-file checkpoint."""
    f = SafetensorsFile(find_golden("transformer", flavour).weights_path)
    return {k: f.tensor(k).clone() for k in f.keys()}, dict(f.metadata)


def _write(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _dit_only(tensors, prefixed: bool):
    """A ComfyUI-style DiT split: the ``model.diffusion_model.*`` tensors, with or without that prefix."""
    dit = {k: v for k, v in tensors.items() if k.startswith(DIT_PREFIX)}
    return dit if prefixed else {k[len(DIT_PREFIX):]: v for k, v in dit.items()}


@pytest.fixture(scope="module")
def released_23():
    return _released("2.3")


# -- the released layouts ------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", list(FAMILY_OF_FLAVOUR), ids=lambda f: f"golden-{f}")
def test_golden_checkpoint_family_is_detected(flavour):
    ckpt = LTX2Checkpoint(find_golden("transformer", flavour).weights_path)
    family = FAMILY_OF_FLAVOUR[flavour]
    assert ckpt.family is family and ckpt.variant.family is family
    assert ckpt.variant.describe() == f"{family.name} single-file checkpoint"
    assert ckpt.family_evidence


def test_golden_23_family_comes_from_config_when_model_version_is_stripped(tmp_path, released_23):
    tensors, meta = released_23
    ckpt = LTX2Checkpoint(_write(tmp_path / "noversion.safetensors", tensors, {"config": meta["config"]}))
    assert ckpt.family is LTX_2_3 and "model_version" not in ckpt.family_evidence
    assert "apply_gated_attention" in ckpt.family_evidence


def test_golden_23_json_quoted_model_version_is_read(tmp_path, released_23):
    tensors, meta = released_23
    quoted = {**meta, "model_version": json.dumps(meta["model_version"])}
    ckpt = LTX2Checkpoint(_write(tmp_path / "quoted.safetensors", tensors, quoted))
    assert ckpt.family is LTX_2_3 and "model_version metadata 2.3" in ckpt.family_evidence


@pytest.mark.parametrize("prefixed", [True, False], ids=["golden-2.3-prefixed", "golden-2.3-bare"])
def test_dit_split_without_metadata_is_detected_and_its_config_inferred(tmp_path, released_23, prefixed):
    tensors, meta = released_23
    ckpt = LTX2Checkpoint(_write(tmp_path / "dit.safetensors", _dit_only(tensors, prefixed)))
    assert ckpt.family is LTX_2_3 and ckpt.variant.layout == "diffusion_model" and ckpt.variant.config_inferred
    assert "to_gate_logits" in ckpt.family_evidence or "prompt_" in ckpt.family_evidence
    expected = json.loads(meta["config"])["transformer"]
    inferred = ckpt.config["transformer"]
    assert "caption_channels" not in inferred  # the Gemma width is not visible in an LTX-2.3 DiT
    for key, value in inferred.items():
        assert value == expected.get(key, value), key
    # every width, depth and switch the reference builds from is inferred, not defaulted
    for key in ("num_layers", "num_attention_heads", "attention_head_dim", "audio_num_attention_heads",
                "audio_attention_head_dim", "apply_gated_attention", "cross_attention_adaln",
                "caption_proj_before_connector", "connector_num_layers", "connector_num_attention_heads",
                "connector_attention_head_dim", "audio_connector_num_attention_heads",
                "audio_connector_attention_head_dim", "connector_apply_gated_attention"):
        assert key in inferred, key


def test_golden_20_dit_split_without_metadata_infers_ltx2_switches_off(tmp_path):
    tensors, _ = _released("2.0")
    ckpt = LTX2Checkpoint(_write(tmp_path / "dit20.safetensors", _dit_only(tensors, False)))
    inferred = ckpt.config["transformer"]
    assert ckpt.family is LTX_2
    assert not (inferred["apply_gated_attention"] or inferred["cross_attention_adaln"]
                or inferred["caption_proj_before_connector"] or inferred["connector_apply_gated_attention"])


def test_golden_23_single_file_without_config_names_the_family_and_the_fix(tmp_path, released_23):
    tensors, _ = released_23
    with pytest.raises(CheckpointError, match=r"LTX-2\.3 single file\) has no 'config' metadata.*ltx-2\.3-22b-dev"):
        LTX2Checkpoint(_write(tmp_path / "stripped.safetensors", tensors))


def test_golden_23_text_projection_file_is_named_with_its_family(tmp_path, released_23):
    tensors, _ = released_23
    projection = {k: v for k, v in tensors.items() if k.startswith("text_embedding_projection.")}
    with pytest.raises(CheckpointError, match=r"holds only the LTX-2\.3 text projection.*ltx-2\.3-22b"):
        LTX2Checkpoint(_write(tmp_path / "text_projection.safetensors", projection))
    assert detect_family("projection", projection).family is LTX_2_3


# -- contradictions and refusals -----------------------------------------------------------------


def test_golden_20_tensors_with_23_metadata_are_a_contradiction(tmp_path):
    tensors, meta = _released("2.0")
    with pytest.raises(CheckpointError, match=r"contradicts itself.*model_version metadata 2\.3\.0 means LTX-2\.3.*"
                                              r"means LTX-2\b.*use the file as originally released"):
        LTX2Checkpoint(_write(tmp_path / "lying.safetensors", tensors, {**meta, "model_version": "2.3.0"}))
    # a DiT split that kept only the version: the tensors contradict it
    with pytest.raises(CheckpointError, match=r"model_version metadata 2\.3\.0 means LTX-2\.3, but tensor "
                                              r"'[^']*caption_projection[^']*' means LTX-2\b"):
        LTX2Checkpoint(_write(tmp_path / "split.safetensors", _dit_only(tensors, False), {"model_version": "2.3.0"}))


def test_golden_23_tensors_with_20_metadata_are_a_contradiction(tmp_path, released_23):
    tensors, meta = released_23
    with pytest.raises(CheckpointError, match=r"contradicts itself.*model_version metadata 2\.0\.0 means LTX-2\b"):
        LTX2Checkpoint(_write(tmp_path / "old.safetensors", tensors, {**meta, "model_version": "2.0.0"}))
    config = json.loads(meta["config"])
    for flag in LTX_2_3.flags:
        config["transformer"].pop(flag)
    config["vocoder"] = config["vocoder"]["vocoder"]
    with pytest.raises(CheckpointError, match=r"contradicts itself.*config\.transformer without the LTX-2\.3"):
        LTX2Checkpoint(_write(tmp_path / "cfg.safetensors", _dit_only(tensors, True), {"config": json.dumps(config)}))


def test_golden_25_transformer_file_is_detected_by_version_and_by_fingerprint(tmp_path):
    path = find_golden("transformer", "2.5").weights_path
    ckpt = LTX2Checkpoint(path)
    assert ckpt.family is LTX_2_5 and ckpt.variant.layout == "split"
    assert ckpt.variant.describe() == "LTX-2.5 transformer file (split layout)"
    assert "model_version metadata 2.5.0" in ckpt.family_evidence
    f = SafetensorsFile(path)
    stripped = {k: f.tensor(k) for k in f.keys()}
    bare = LTX2Checkpoint(_write(tmp_path / "ltx25_nometa.safetensors", stripped))
    assert bare.family is LTX_2_5 and "keyframes_abs_pos_embedding" in bare.family_evidence
    assert bare.variant.layout == "diffusion_model" and bare.variant.config_inferred
    cfg = TransformerConfig.from_metadata(bare.config["transformer"])
    assert cfg.use_keyframes_abs_pos_embedding and not cfg.ff_bias and cfg.audio_ff_bias
    load_transformer(bare)  # every tensor matches the inferred architecture
    te = SafetensorsFile(find_golden("transformer", "2.5").path.parent / "ltx25_tiny_text_encoder.safetensors")
    assert load_text_connectors(bare, text_encoder=te).projection.config.separate_projections


def test_every_25_component_file_is_detected_as_25_golden():
    root = find_golden("transformer", "2.5").path.parent
    files = sorted(root.glob("ltx25_*.safetensors"))
    assert files
    for path in files:
        match = detect_file_family(SafetensorsFile(path))
        assert match is not None and match.family is LTX_2_5, (path.name, match)


def test_split_layout_is_a_config_with_only_a_transformer_section():
    assert is_split_transformer_config({"transformer": {"num_layers": 2}})
    assert not is_split_transformer_config({"transformer": {}, "vae": {}, "audio_vae": {}, "vocoder": {}})
    assert not is_split_transformer_config({"vae": {}}) and not is_split_transformer_config(None)


def test_a_component_file_with_a_few_transformer_widths_takes_its_family_from_model_version():
    """The 2.5 duration head copies two widths into ``config.transformer``; they tell nothing about switches."""
    config = {"transformer": {"cross_attention_dim": 32, "audio_cross_attention_dim": 16}}
    assert detect_family("head", [], metadata={"model_version": "2.5.0"}, config=config).family is LTX_2_5


def test_model_version_parsing_follows_the_reference():
    assert parse_model_version("2.3.0") == (2, 3, 0)
    assert parse_model_version('"2.3.0"') == (2, 3, 0)
    assert parse_model_version("2.3.rc1") == (2, 3)
    assert parse_model_version("2.4-rc2") == (2, 4)  # "-" read as ".", the tag dropped
    assert parse_model_version("") == () and parse_model_version(None) == ()
    assert detect_family("x.safetensors", [], metadata={"model_version": "2.4-rc2"}).family is LTX_2_3
    assert detect_family("x.safetensors", [], metadata={"model_version": "2.5.0"}).family is LTX_2_5
    with pytest.raises(UnsupportedModelError, match=r"LTX-2\.6 .*not supported yet"):
        detect_family("x.safetensors", [], metadata={"model_version": "2.6-rc1"})
    assert detect_family("x", [], metadata={"model_version": "2.3.rc1"}).family is LTX_2_3
    assert detect_family("x", [], metadata={"model_version": "2.0.0"}).family is LTX_2
    assert detect_family("x", ["transformer_blocks.0.attn1.to_q.weight"]) is None  # nothing tells


def test_block_table_rows_tell_the_family_when_names_do_not():
    names = ["transformer_blocks.0.scale_shift_table"]
    assert detect_family("x", names, shape=lambda n: (9, 32)).family is LTX_2_3
    assert detect_family("x", names, shape=lambda n: (6, 32)).family is LTX_2
    assert LTX_2_5 not in (LTX_2, LTX_2_3) and LTX_2_5.supported


# -- what users see ------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["2.0", "2.3"], ids=lambda f: f"golden-{f}")
def test_inspect_names_the_family_and_runs_its_transformer(flavour, capsys):
    path = find_golden("transformer", flavour).weights_path
    assert cli_main(["inspect", str(path), "--frames", "9", "--height", "32", "--width", "32"]) == 0
    out = capsys.readouterr().out
    assert f"{FAMILY_OF_FLAVOUR[flavour].name} single-file checkpoint" in out
    assert f"family: {FAMILY_OF_FLAVOUR[flavour].describe()}, from " in out
    assert "forward (float32" in out
