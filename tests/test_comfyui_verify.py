"""The pack inside a real ComfyUI (tests/comfy/verify_in_comfyui.py): every node registers, every shipped workflow
(API and UI format) runs on the demo models, and a graph mixing our sampler with core's LTX-2 latent/audio nodes
runs. Skipped unless $COMFYUI_SRC names an exported ComfyUI tree set up with the shared harness."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "comfy" / "verify_in_comfyui.py"


@pytest.mark.skipif(not os.environ.get("COMFYUI_SRC"), reason="set COMFYUI_SRC to an exported ComfyUI tree")
def test_every_node_and_shipped_workflow_in_a_real_comfyui():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "0 failure(s)" in result.stdout
