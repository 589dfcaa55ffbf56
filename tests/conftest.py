"""Shared test fixtures.

Golden fixtures come in flavours, each from its own directory (an environment variable, else the
shared set next to the repo):

| flavour | variable | default |
|---|---|---|
| ``2.0`` (January 2026 release semantics) | ``LTX2_GOLDEN_DIR`` | ``../shared/golden`` |
| ``2.0-head`` (2.0 weights, official HEAD semantics) | ``LTX2_GOLDEN_20_HEAD_DIR`` | ``../shared/golden-2.0-head`` |
| ``2.3`` | ``LTX2_GOLDEN_23_DIR`` | ``../shared/golden-2.3`` |
| ``2.5`` | ``LTX2_GOLDEN_25_DIR`` | ``../shared/golden-2.5`` |
| ``temporal_upsampler`` (repo) | ``LTX2_GOLDEN_TEMPORAL_UPSAMPLER_DIR`` | ``tests/fixtures/temporal_upsampler`` |
| ``iclora`` (IC-LoRA guides on the 2.0-head, 2.3, 2.5 DiTs) | ``LTX2_GOLDEN_ICLORA_DIR`` | ``tests/fixtures/iclora`` |
| ``dubit`` (Dub-It reference audio, official HEAD) | ``LTX2_GOLDEN_DUBIT_DIR`` | ``tests/fixtures/dubit`` |

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

from ltx2_nodes import paths  # noqa: E402
from ltx2_nodes.loading.safetensors_file import SafetensorsFile  # noqa: E402
from ltx2_nodes.memory import selection  # noqa: E402

TOLERANCE = 1e-4  # max |diff| in float32 (golden README: a faithful port lands near 1e-6)


GOLDEN_FLAVOURS = {
    "2.0": ("LTX2_GOLDEN_DIR", "golden"),
    "2.0-head": ("LTX2_GOLDEN_20_HEAD_DIR", "golden-2.0-head"),
    "2.3": ("LTX2_GOLDEN_23_DIR", "golden-2.3"),
    "2.5": ("LTX2_GOLDEN_25_DIR", "golden-2.5"),
    "temporal_upsampler": ("LTX2_GOLDEN_TEMPORAL_UPSAMPLER_DIR", "tests/fixtures/temporal_upsampler"),
    "iclora": ("LTX2_GOLDEN_ICLORA_DIR", "tests/fixtures/iclora"),  # in the repo (scripts/fixtures/make_iclora.py)
    "dubit": ("LTX2_GOLDEN_DUBIT_DIR", "tests/fixtures/dubit"),  # in the repo (scripts/fixtures/make_dubit.py)
}


def golden_dir(flavour: str = "2.0") -> Path:
    variable, default = GOLDEN_FLAVOURS[flavour]
    env = os.environ.get(variable)
    base = REPO if default.startswith("tests/") else REPO.parent / "shared"  # fixtures stored in the repo, or shared
    return Path(env).expanduser().resolve() if env else (base / default).resolve()


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


def find_golden(component: str, flavour: str = "2.0") -> Golden:
    """The fixture file whose ``component`` metadata equals ``component`` (skip if the set lacks it)."""
    root = golden_dir(flavour)
    if not root.is_dir():
        pytest.skip(f"golden {flavour} fixtures not found at {root} (set {GOLDEN_FLAVOURS[flavour][0]})")
    for path in sorted(root.glob("io_*.safetensors")):
        if SafetensorsFile(path).metadata.get("component") == component:
            return load_golden(path)
    pytest.skip(f"no golden fixture with component '{component}' in {root}")


def load_golden(path: Path) -> Golden:
    """One fixture file: its tensors and parsed metadata."""
    f = SafetensorsFile(path)
    meta = {k: _parse(v) for k, v in f.metadata.items()}
    tensors = {k: f.tensor(k).clone() for k in f.keys()}
    return Golden(path, tensors, meta.get("call") or {}, meta.get("config") or {}, meta)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, tol: float = TOLERANCE) -> float:
    assert tuple(actual.shape) == tuple(expected.shape), \
        f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().float(), expected.float()
    # NaN where the reference has NaN too (e.g. the std of a single element) agrees; a lone NaN fails
    diff = (a - e).abs().masked_fill(a.isnan() & e.isnan(), 0).max().item() if a.numel() else 0.0
    assert diff <= tol, f"{name}: max |diff| {diff:.3g} > {tol:g}"
    return diff


# -- golden parity accounting: how many ran, so a run that found no fixtures is visible -------------------------

_GOLDEN_OUTCOMES: dict[str, str] = {}
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_runtest_logreport(report):
    """Remember the outcome of every golden parity test (``golden`` in its id; the worst of its phases)."""
    if "golden" in report.nodeid and (report.when == "call" or report.outcome != "passed"):
        previous = _GOLDEN_OUTCOMES.get(report.nodeid, "passed")
        _GOLDEN_OUTCOMES[report.nodeid] = max(previous, report.outcome, key=_SEVERITY.get)


def _golden_counts() -> tuple[int, int, int]:
    outcomes = list(_GOLDEN_OUTCOMES.values())
    return outcomes.count("passed"), outcomes.count("failed"), outcomes.count("skipped")


def pytest_terminal_summary(terminalreporter):
    if not _GOLDEN_OUTCOMES:
        return
    passed, failed, skipped = _golden_counts()
    found = ", ".join(f"{flavour} {'found' if golden_dir(flavour).is_dir() else 'missing'} ({golden_dir(flavour)})"
                      for flavour in GOLDEN_FLAVOURS)
    terminalreporter.write_sep("-", "golden parity")
    terminalreporter.write_line(f"golden parity tests: {passed + failed} ran ({passed} passed, {failed} failed), "
                                f"{skipped} skipped")
    terminalreporter.write_line(f"golden fixtures: {found}")


def pytest_sessionfinish(session, exitstatus):
    """On CI (``CI=true``) with the 2.0 fixtures present, golden tests that were collected but all skipped fail
    the run: the fixtures were there and still not found."""
    passed, failed, skipped = _golden_counts()
    if os.environ.get("CI") == "true" and skipped and not passed + failed and golden_dir("2.0").is_dir():
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"error: all {skipped} golden parity tests were skipped although {golden_dir('2.0')} exists",
                    red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def isolated():
    """The model/input/output folders and the headless memory engine put back as they were after the test (for
    tests that run the CLI in-process)."""
    paths.reset()
    previous = selection._HEADLESS_ENGINE
    yield
    selection.configure_engine(previous) if previous is not None else setattr(selection, "_HEADLESS_ENGINE", None)
    paths.reset()
