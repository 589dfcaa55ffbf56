"""The pack inside a real ComfyUI, through the scripts in ``tests/comfy/`` (each prints ``0 failure(s)``):

* ``verify_in_comfyui.py``: every node registers, every shipped workflow (API and UI format) runs on the demo
  models, and a graph mixing our sampler with core's LTX-2 latent/audio nodes runs;
* ``queue_against_comfyui.py``: ``queue`` into a real server, killed mid-batch and resumed, then the shipped
  demo workflow queued with real MP4 outputs.

Skipped unless $COMFYUI_SRC names an exported ComfyUI tree set up with the shared harness
(``../shared/tools/comfy_harness``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "comfy"


@pytest.mark.skipif(not os.environ.get("COMFYUI_SRC"), reason="set COMFYUI_SRC to an exported ComfyUI tree")
@pytest.mark.parametrize("script", ["verify_in_comfyui.py", "queue_against_comfyui.py"])
def test_in_a_real_comfyui(script):
    result = subprocess.run([sys.executable, str(SCRIPTS / script)], capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "0 failure(s)" in result.stdout
