"""LTX-2.5 split packs: component files found in the model folders, the Gemma version lock, family checks, and the
bundle built from them (the released 2.5 tiny files of the golden set; the audio VAE file, which the set does not
carry, is cut from the 2.3 single file)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_close, find_golden
from ltx2_nodes import handles, paths
from ltx2_nodes.errors import CheckpointError, InputError, ModelNotFoundError, UnsupportedModelError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_text_connectors
from ltx2_nodes.loading.family import LTX_2_5
from ltx2_nodes.loading.safetensors_file import SafetensorsFile
from ltx2_nodes.loading.split import SPLIT_KINDS, assemble_split_pack
from ltx2_nodes.memory.precheck import checkpoint_weights
from ltx2_nodes.nodes.loaders import LTX2CheckpointLoader

FILES = {"transformer": "diffusion_models", "text_encoder": "text_encoders", "video_vae": "vae",
         "duration_head": "model_patches"}


def _released_25() -> dict:
    """kind -> path of the 2.5 golden set's component files (recognised by their headers)."""
    root = find_golden("transformer", "2.5").path.parent
    found = {}
    for path in sorted(root.glob("ltx25_*.safetensors")):
        file = SafetensorsFile(path)
        kind = next(k for k in SPLIT_KINDS.values() if k.recognise(file))
        found[kind.name] = path
    assert set(FILES) <= set(found), found
    return found


def _save(path, file: SafetensorsFile, keys, metadata: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: file.tensor(k).clone().contiguous() for k in keys}, str(path), metadata=metadata)
    return path


def _audio_vae_file(path, model_version: str = "2.5.0"):
    """An audio VAE + vocoder file in the split layout, from the 2.3 single file."""
    single = SafetensorsFile(find_golden("transformer", "2.3").weights_path)
    config = single.json_metadata("config")
    keys = [k for k in single.keys() if k.startswith(("audio_vae.", "vocoder."))]
    return _save(path, single, keys, {"config": json.dumps({"audio_vae": config["audio_vae"],
                                                            "vocoder": config["vocoder"]}),
                                      "model_version": model_version})


@pytest.fixture
def models_dir(tmp_path):
    root = tmp_path / "models"
    for kind, path in _released_25().items():
        target = root / FILES[kind] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    _audio_vae_file(root / "vae" / "ltx25_tiny_audio_vae.safetensors")
    paths.reset()
    paths.configure(models_dir=root)
    handles.clear_caches()
    yield root
    paths.reset()
    handles.clear_caches()


def _transformer(root):
    return root / "diffusion_models" / _released_25()["transformer"].name


def test_every_component_is_found_in_its_folder(models_dir):
    pack = assemble_split_pack(_transformer(models_dir), search=paths.model_folders)
    assert pack.family is LTX_2_5
    assert {kind: f.path.parent.name for kind, f in pack.files.items()} == {
        "text_encoder": "text_encoders", "video_vae": "vae", "audio_vae": "vae", "duration_head": "model_patches"}
    assert pack.source("video_decoder") is pack.files["video_vae"]
    assert pack.source("audio_decoder") is pack.files["audio_vae"] and pack.source("transformer") is pack.transformer
    assert "LTX-2.5 split pack" in pack.describe()


def test_a_missing_component_names_the_folders_searched_and_the_fix(models_dir):
    (models_dir / "vae" / _released_25()["video_vae"].name).unlink()
    with pytest.raises(ModelNotFoundError, match=r"no video VAE file: none found in .*vae.*models/vae/"):
        assemble_split_pack(_transformer(models_dir), search=paths.model_folders)
    pack = assemble_split_pack(_transformer(models_dir), search=paths.model_folders, require=False)
    with pytest.raises(ModelNotFoundError, match="no video VAE file"):
        pack.file("video_vae")


def test_gemma_version_mismatch_is_refused_with_both_versions(models_dir, tmp_path):
    te = SafetensorsFile(_released_25()["text_encoder"])
    config = te.json_metadata("gemma_config")
    expected = config["gemma_version"]
    other = _save(tmp_path / "other_te.safetensors", te, te.keys(),
                  {**te.metadata, "gemma_config": json.dumps({**config, "gemma_version": "gemma4-other"})})
    with pytest.raises(CheckpointError, match=rf"trained with gemma_version '{expected}'.*'gemma4-other'.*released"):
        assemble_split_pack(_transformer(models_dir), given={"text_encoder": other})
    # in the folder, a mismatching encoder is skipped when a matching one is there, and named when none is
    shutil.copy(other, models_dir / "text_encoders" / "a_first_other.safetensors")
    pack = assemble_split_pack(_transformer(models_dir), search=paths.model_folders)
    assert pack.files["text_encoder"].path.name == _released_25()["text_encoder"].name
    (models_dir / "text_encoders" / _released_25()["text_encoder"].name).unlink()
    with pytest.raises(CheckpointError, match="no text encoder .* fits.*gemma4-other"):
        assemble_split_pack(_transformer(models_dir), search=paths.model_folders)


def test_a_component_of_another_family_is_refused(models_dir, tmp_path):
    old = _audio_vae_file(tmp_path / "audio_23.safetensors", model_version="2.3.0")
    with pytest.raises(CheckpointError, match=r"is an LTX-2\.3 audio VAE.*LTX-2\.5"):
        assemble_split_pack(_transformer(models_dir), given={"audio_vae": old})
    with pytest.raises(CheckpointError, match="not an LTX-2.5 video VAE file"):
        assemble_split_pack(_transformer(models_dir), given={"video_vae": old})


def test_the_bundle_of_a_split_transformer_builds_its_components_from_the_pack(models_dir):
    models = handles.load_ltx2(_transformer(models_dir), "float32")
    assert models.pack is not None and models.dit.family is LTX_2_5
    golden = find_golden("embeddings_processor", "2.5")
    reference = load_text_connectors(LTX2Checkpoint(_released_25()["transformer"]), torch.float32,
                                     text_encoder=SafetensorsFile(_released_25()["text_encoder"]))
    states, mask = golden["call0.hidden_states"], golden["call0.attention_mask"]
    with torch.no_grad():
        ours = models.text_connector.connectors.connect(states, mask)
    assert_close(ours.video_context, reference.connect(states, mask).video_context, "video context", 0)
    audio = models.audio_vae
    assert audio.sample_rate == audio.vocoder_config.output_sample_rate and audio.decoder is not None
    assert models.source("video_decoder").path.parent.name == "vae"


def test_a_part_without_a_loader_is_refused_with_the_fix(models_dir):
    pack = assemble_split_pack(_transformer(models_dir), search=paths.model_folders)
    with pytest.raises(UnsupportedModelError, match="not supported by this ltx2_nodes version.*update"):
        pack.load("hologram_head")


def test_the_memory_precheck_counts_every_file_of_the_pack(models_dir):
    pack = assemble_split_pack(_transformer(models_dir), search=paths.model_folders)
    weights = checkpoint_weights(pack, dtype=torch.float32)
    assert set(weights) == {"dit", "connectors", "video_encoder", "video_vae", "audio_vae"}
    projection = sum(t.numel() for t in pack.state_dict("text_projection").values()) * 4
    connectors_only = sum(t.numel() for c in ("video_connector", "audio_connector")
                          for t in pack.state_dict(c).values()) * 4
    assert weights["connectors"].fixed_bytes == projection + connectors_only


def test_a_given_upscaler_joins_the_pack(models_dir):
    upscaler = find_golden("transformer", "2.3").path.parent / "ltx2_tiny_spatial_upscaler_x2.safetensors"
    if not upscaler.is_file():
        pytest.skip("the 2.3 set has no x2 upscaler file")
    pack = assemble_split_pack(_transformer(models_dir), given={"upscaler": upscaler})
    assert pack.load("latent_upsampler", torch.float32) is not None
    assert "upscaler" not in assemble_split_pack(_transformer(models_dir), search=paths.model_folders).files


def test_the_checkpoint_loader_node_returns_the_packs_handles(models_dir):
    name = _transformer(models_dir).name
    dit, video_vae, audio_vae, connector = LTX2CheckpointLoader().load(name, "float32")
    assert dit.family is LTX_2_5 and video_vae is not None and audio_vae is not None and connector is not None
    assert connector.connectors.projection.config.separate_projections
    (models_dir / "vae" / "ltx25_tiny_audio_vae.safetensors").unlink()
    handles.clear_caches()
    _, _, no_audio, _ = LTX2CheckpointLoader().load(name, "float32")
    assert no_audio is None  # a missing optional handle, logged with the folders searched


def test_the_duration_head_comes_from_the_pack_and_its_loader_node(models_dir):
    from ltx2_nodes.loading.components import load_duration_head
    from ltx2_nodes.nodes.loaders import FROM_MODEL, LTX2DurationHeadLoader

    dit = LTX2CheckpointLoader().load(_transformer(models_dir).name, "float32")[0]
    (head,) = LTX2DurationHeadLoader().load(FROM_MODEL, dit)
    assert head.path.parent.name == "model_patches" and head is dit.models.duration_head
    reference = load_duration_head(_released_25()["duration_head"], torch.float32)
    for (name, ours), theirs in zip(head.model.state_dict().items(), reference.state_dict().values()):
        assert_close(ours, theirs, name, 0)
    (by_name,) = LTX2DurationHeadLoader().load(head.path.name)
    assert by_name.path == head.path
    with pytest.raises(InputError, match="no model is connected"):
        LTX2DurationHeadLoader().load(FROM_MODEL)
    (models_dir / "model_patches" / head.path.name).unlink()
    handles.clear_caches()
    dit = LTX2CheckpointLoader().load(_transformer(models_dir).name, "float32")[0]
    with pytest.raises(ModelNotFoundError, match="no duration head file.*model_patches"):
        LTX2DurationHeadLoader().load(FROM_MODEL, dit)


def test_features_of_another_gemma_are_refused_at_the_connectors_with_the_fix(models_dir):
    from ltx2_nodes import stages
    from ltx2_nodes.text.gemma import GemmaFeatures

    models = handles.load_ltx2(_transformer(models_dir), "float32")
    golden = find_golden("embeddings_processor", "2.5")
    states, mask = golden["call0.hidden_states"], golden["call0.attention_mask"]
    version = SafetensorsFile(_released_25()["text_encoder"]).json_metadata("gemma_config")["gemma_version"]
    ok = stages.connect_text(models.text_connector, GemmaFeatures(states, mask, [0], "te.safetensors", version))
    assert ok.video_context.shape[:2] == states.shape[:2]
    for other in ("gemma4-other", None):
        with pytest.raises(CheckpointError, match=rf"mismatch.*gemma3\.safetensors is gemma_version {other!r}.*"
                                                  r"text_encoders"):
            stages.connect_text(models.text_connector, GemmaFeatures(states, mask, [0], "gemma3.safetensors", other))
