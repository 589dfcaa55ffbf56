"""``queue`` against a real ComfyUI (tests/comfy/queue_against_comfyui.py); skipped unless $COMFYUI_SRC names an
exported ComfyUI tree set up with the shared harness (../shared/tools/comfy_harness)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "comfy" / "queue_against_comfyui.py"


@pytest.mark.skipif(not os.environ.get("COMFYUI_SRC"), reason="set COMFYUI_SRC to an exported ComfyUI tree")
def test_queue_against_a_real_comfyui_server_killed_and_resumed():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "0 failure(s)" in result.stdout
