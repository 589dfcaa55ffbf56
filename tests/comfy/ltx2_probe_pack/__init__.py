"""A tiny custom-node pack for ``queue_against_comfyui.py``: inside a real ComfyUI it reports progress through
``ltx2_nodes.progress`` and writes its file through ``ltx2_nodes.paths``, so the script checks that both
delegate to ComfyUI (websocket ``progress`` messages, ``folder_paths`` output folder and counter)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, whose ltx2_nodes we probe

from ltx2_nodes import paths, progress


class LTX2ProbeSave:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "default": ""}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1}),
                             "steps": ("INT", {"default": 5, "min": 1, "max": 100}),
                             "step_seconds": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 5.0})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = "ltx2_probe"

    def save(self, text, seed, steps, step_seconds):
        bar = progress.ProgressBar(steps)
        for _ in range(steps):
            progress.check_interrupted()
            time.sleep(step_seconds)
            bar.update(1)
        out = paths.next_output_file("probe/job", "txt")
        out.path.write_text(f"{text} #{seed}")
        return {"ui": {"texts": [out.ui_entry()]}}


NODE_CLASS_MAPPINGS = {"LTX2ProbeSave": LTX2ProbeSave}
