"""ComfyUI node classes (thin adapters over the pipeline API).

Registered ids never change once shipped: saved workflows refer to them.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
