"""ltx2_nodes: LTX-2 audio-video generation as ComfyUI nodes and a headless pipeline."""

__version__ = "0.1.0"
