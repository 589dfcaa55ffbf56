"""ComfyUI entry point of the ltx2_nodes pack.

ComfyUI imports this folder as a package; the real code lives in the ``ltx2_nodes`` subpackage,
which never imports ComfyUI at module level, so this file imports cleanly with or without it.
"""

from .ltx2_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
