"""Memory engine: stage placement, block streaming, budgets and pre-run estimates.

Public API (see each module's docs):
* ``MemoryEngine`` / ``StageHandle`` / ``parse_size`` — stage placement context (``engine.py``)
* ``StageProfile`` / ``StreamPlan`` / ``plan_streaming`` — streaming plans (``planner.py``)
* ``dit_profile`` / ``decoder_profile`` and the formulas in ``estimates.py``
* ``precheck`` / ``RunRequest`` / ``checkpoint_weights`` / ``module_weights`` — refuse runs that cannot fit
  (``precheck.py``; ``MemoryEngine.precheck`` applies the engine's budgets)
* ``selection.default_engine`` — the process-wide engine: ``comfy_engine`` (configured from ComfyUI's model
  management) inside ComfyUI, the headless one (``configure_engine``) otherwise
"""

from .engine import MemoryEngine, StageHandle, parse_size
from .estimates import DecoderShape, audio_tokens, decoder_profile, dit_profile, video_tokens
from .planner import DeviceSpeed, StageProfile, StreamPlan, plan_streaming
from .precheck import RunEstimate, RunRequest, StageWeights, checkpoint_weights, module_weights, precheck

__all__ = ["DecoderShape", "DeviceSpeed", "MemoryEngine", "RunEstimate", "RunRequest", "StageHandle", "StageProfile",
           "StageWeights", "StreamPlan", "audio_tokens", "checkpoint_weights", "decoder_profile", "dit_profile",
           "module_weights", "parse_size", "plan_streaming", "precheck", "video_tokens"]
