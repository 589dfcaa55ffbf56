"""ltx2_nodes.paths: headless model/input/output folders, and delegation to ComfyUI's folder_paths."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ltx2_nodes import paths
from ltx2_nodes.errors import InputError, ModelNotFoundError


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    paths.reset()
    monkeypatch.delenv(paths.MODELS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    paths.reset()


@pytest.fixture
def models(tmp_path) -> Path:
    root = tmp_path / "models"
    for rel in ("checkpoints/ltx-2-19b-dev.safetensors", "checkpoints/sub/b.sft", "checkpoints/notes.txt",
                "clip/gemma.safetensors", "text_encoders/gemma-3-12b/model-00001-of-00005.safetensors",
                "diffusion_models/dit.safetensors", "unet/old.ckpt", "unet/ltx-2-19b-dev-Q4_K_M.gguf",
                "checkpoints/ignored.gguf", "text_encoders/gemma-3-12b-it-Q8_0.gguf"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def test_models_dir_from_configure_or_environment(models, monkeypatch):
    assert paths.models_dir() is None and paths.list_models("checkpoints") == []
    monkeypatch.setenv(paths.MODELS_DIR_ENV, str(models))
    assert paths.models_dir() == models
    paths.configure(models_dir=models / "checkpoints")  # the CLI option wins over the variable
    assert paths.models_dir() == models / "checkpoints"


def test_list_and_find_with_comfyui_folder_aliases(models):
    paths.configure(models_dir=models)
    assert paths.list_models("checkpoints") == ["ltx-2-19b-dev.safetensors", "sub/b.sft"]
    assert paths.list_models("text_encoders") == ["gemma-3-12b-it-Q8_0.gguf",
                                                   "gemma-3-12b/model-00001-of-00005.safetensors",
                                                   "gemma.safetensors"]
    assert paths.list_models("clip") == paths.list_models("text_encoders")
    # unet/ first, like ComfyUI; GGUF DiTs and text encoders are listed (not in checkpoints/: no GGUF has VAEs)
    assert paths.list_models("diffusion_models") == ["dit.safetensors", "ltx-2-19b-dev-Q4_K_M.gguf", "old.ckpt"]
    assert paths.find_model("checkpoints", "sub/b.sft") == models / "checkpoints" / "sub" / "b.sft"
    assert paths.find_model("text_encoders", "gemma.safetensors") == models / "clip" / "gemma.safetensors"
    assert paths.find_model("text_encoders", "gemma-3-12b") == models / "text_encoders" / "gemma-3-12b"  # folder
    # names cannot climb out of the model folder
    with pytest.raises(ModelNotFoundError):
        paths.find_model("checkpoints", "../clip/gemma.safetensors")


def test_find_model_errors_name_the_places_searched(models):
    with pytest.raises(ModelNotFoundError) as info:
        paths.find_model("checkpoints", "x.safetensors")
    assert str(info.value) == ("checkpoints file 'x.safetensors' not found; searched nowhere (no models directory "
                               "configured); pass --models-dir DIR or set $LTX2_MODELS_DIR to the folder that "
                               "holds checkpoints/")
    paths.configure(models_dir=models)
    with pytest.raises(ModelNotFoundError) as info:
        paths.find_model("diffusion_models", "x.safetensors")
    assert str(info.value) == (f"diffusion_models file 'x.safetensors' not found; searched {models / 'unet'}, "
                               f"{models / 'diffusion_models'}; put the file there or point --models-dir / "
                               f"$LTX2_MODELS_DIR at the folder that holds diffusion_models/")
    with pytest.raises(InputError, match="unknown model folder 'vae_approx'"):
        paths.list_models("vae_approx")


def test_output_and_input_directories(tmp_path):
    assert paths.output_directory() == tmp_path / "output"
    assert paths.input_directory() == tmp_path
    paths.configure(output_dir=tmp_path / "o", input_dir=tmp_path / "i")
    assert paths.input_file("a.png") == tmp_path / "i" / "a.png"
    assert paths.input_file("a.png [output]") == tmp_path / "o" / "a.png"
    assert paths.input_file("/abs/a.png") == Path("/abs/a.png")
    assert paths.temp_directory() == tmp_path / "o" / "temp"


def test_next_output_file_counts_like_comfyui(tmp_path):
    paths.configure(output_dir=tmp_path / "out")
    first = paths.next_output_file("ltx2/clip", "mp4")
    assert first.path == tmp_path / "out" / "ltx2" / "clip_00001_.mp4" and first.path.parent.is_dir()
    assert first.ui_entry() == {"filename": "clip_00001_.mp4", "subfolder": "ltx2", "type": "output"}
    first.path.write_bytes(b"")
    (tmp_path / "out" / "ltx2" / "clip_00007_.png").write_bytes(b"")
    (tmp_path / "out" / "ltx2" / "clipper_00020_.png").write_bytes(b"")
    assert paths.next_output_file("ltx2/clip", ".mp4").filename == "clip_00008_.mp4"
    assert paths.next_output_file("clip_%width%x%height%", "mp4", 64, 32).filename == "clip_64x32_00001_.mp4"
    with pytest.raises(InputError, match="points outside the output folder"):
        paths.next_output_file("../escape", "mp4")


def test_inside_comfyui_everything_delegates_to_folder_paths(monkeypatch, tmp_path):
    calls = []
    fp = types.ModuleType("folder_paths")
    fp.get_folder_paths = lambda folder: calls.append(("folders", folder)) or [str(tmp_path / folder)]
    fp.get_filename_list = lambda folder: calls.append(("list", folder)) or ["a.safetensors"]
    fp.get_output_directory = lambda: str(tmp_path / "comfy_out")
    fp.get_input_directory = lambda: str(tmp_path / "comfy_in")
    fp.get_temp_directory = lambda: str(tmp_path / "comfy_temp")
    fp.get_annotated_filepath = lambda name: str(tmp_path / "comfy_in" / name)
    fp.get_save_image_path = lambda prefix, out, w, h: (str(tmp_path / "comfy_out" / "sub"), "clip", 4, "sub", prefix)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    paths.configure(output_dir=tmp_path / "ignored")
    assert paths.list_models("clip") == ["a.safetensors"]
    assert calls == [("list", "text_encoders"), ("folders", "text_encoders")]  # ComfyUI's list, then .gguf files
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "gemma-3-12b-it-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert paths.list_models("clip") == ["a.safetensors", "gemma-3-12b-it-Q4_K_M.gguf"]
    (tmp_path / "diffusion_models").mkdir()
    (tmp_path / "diffusion_models" / "d.safetensors").write_bytes(b"")
    assert paths.find_model("unet", "d.safetensors") == tmp_path / "diffusion_models" / "d.safetensors"
    assert paths.output_directory() == tmp_path / "comfy_out"
    assert paths.input_file("x.png") == tmp_path / "comfy_in" / "x.png"
    out = paths.next_output_file("sub/clip", "mp4")
    assert out.path == tmp_path / "comfy_out" / "sub" / "clip_00004_.mp4" and out.subfolder == "sub"
