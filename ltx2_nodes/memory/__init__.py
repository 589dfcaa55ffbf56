"""Memory engine: stage placement, block streaming, budgets and pre-run estimates.

Public API (see each module's docs):
* ``MemoryEngine`` / ``StageHandle`` / ``parse_size`` — stage placement context (``engine.py``)
* ``StageProfile`` / ``StreamPlan`` / ``plan_streaming`` — streaming plans (``planner.py``)
* ``dit_profile`` / ``decoder_profile`` and the formulas in ``estimates.py``
* ``precheck`` / ``RunRequest`` / ``estimate_run`` — refuse runs that cannot fit (``precheck.py``)
* ``comfy.comfy_engine`` — the same engine configured from ComfyUI's model management
"""

from .engine import MemoryEngine, StageHandle, parse_size
from .estimates import DecoderShape, decoder_profile, dit_profile
from .planner import DeviceSpeed, StageProfile, StreamPlan, plan_streaming

__all__ = ["DecoderShape", "DeviceSpeed", "MemoryEngine", "StageHandle", "StageProfile", "StreamPlan",
           "decoder_profile", "dit_profile", "parse_size", "plan_streaming"]
