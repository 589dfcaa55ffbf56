"""Shared helpers of the node / workflow / stage tests: the demo models (written once per session), a
configured headless environment, the shipped workflow files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ltx2_nodes import paths
from ltx2_nodes.demo.models import write_demo_models
from ltx2_nodes.handles import clear_caches, load_gemma, load_ltx2
from ltx2_nodes.memory import selection

REPO = Path(__file__).resolve().parents[1]
DEMO_WORKFLOWS = REPO / "workflows" / "demo"
DEMO_INPUTS = DEMO_WORKFLOWS / "input"


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory):
    """The demo models tree (``python -m ltx2_nodes demo-models``), written once."""
    return write_demo_models(tmp_path_factory.mktemp("demo_models"))


@pytest.fixture
def headless(demo_models, tmp_path):
    """Paths pointed at the demo models, outputs in ``tmp_path/out``, a plain CPU engine, 2 threads."""
    paths.reset()
    paths.configure(models_dir=demo_models.root, output_dir=tmp_path / "out", input_dir=DEMO_INPUTS)
    previous = selection._HEADLESS_ENGINE
    engine = selection.configure_engine(device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield engine
    torch.set_num_threads(threads)
    selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
    paths.reset()


@pytest.fixture
def family(request, headless, demo_models):
    """(LTX-2 bundle, Gemma) of the demo model family ``request.param`` ("2.0" or "2.3"; parametrize indirectly)."""
    clear_caches()
    path = demo_models.checkpoint if request.param == "2.0" else demo_models.checkpoint_23
    return load_ltx2(path, device="cpu"), load_gemma(demo_models.gemma, device="cpu")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
