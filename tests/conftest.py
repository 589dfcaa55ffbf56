"""Shared test fixtures.

Golden fixtures come from ``$LTX2_GOLDEN_DIR`` (default ``../shared/golden`` next to the repo).
Tests discover files by their ``component`` metadata and read every dimension and call
parameter from the files, so the same tests run unchanged on any fixture set of that format.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ltx2_nodes.loading.safetensors_file import SafetensorsFile  # noqa: E402

TOLERANCE = 1e-4  # max |diff| in float32 (golden README: a faithful port lands near 1e-6)


def golden_dir() -> Path:
    env = os.environ.get("LTX2_GOLDEN_DIR")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "golden").resolve()


@dataclass
class Golden:
    """One ``io_*.safetensors`` file: tensors by name plus parsed metadata."""

    path: Path
    tensors: dict[str, torch.Tensor]
    call: dict
    config: dict
    meta: dict

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    @property
    def weights_path(self) -> Path:
        """The checkpoint the fixture's outputs were computed from (``weights_file`` metadata)."""
        return self.path.parent / self.meta["weights_file"]


def _parse(value: str):
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def find_golden(component: str) -> Golden:
    """The fixture file whose ``component`` metadata equals ``component`` (skip if the set lacks it)."""
    root = golden_dir()
    if not root.is_dir():
        pytest.skip(f"golden fixtures not found at {root} (set LTX2_GOLDEN_DIR)")
    for path in sorted(root.glob("io_*.safetensors")):
        f = SafetensorsFile(path)
        if f.metadata.get("component") == component:
            meta = {k: _parse(v) for k, v in f.metadata.items()}
            tensors = {k: f.tensor(k).clone() for k in f.keys()}
            return Golden(path, tensors, meta.get("call") or {}, meta.get("config") or {}, meta)
    pytest.skip(f"no golden fixture with component '{component}' in {root}")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, tol: float = TOLERANCE) -> float:
    assert tuple(actual.shape) == tuple(expected.shape), f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().float(), expected.float()
    # NaN where the reference has NaN too (e.g. the std of a single element) agrees; a lone NaN fails
    diff = (a - e).abs().masked_fill(a.isnan() & e.isnan(), 0).max().item() if a.numel() else 0.0
    assert diff <= tol, f"{name}: max |diff| {diff:.3g} > {tol:g}"
    return diff
