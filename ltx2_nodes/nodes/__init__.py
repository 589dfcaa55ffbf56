"""ComfyUI node classes (thin adapters over ``ltx2_nodes.stages``).

Registered ids never change once shipped: saved workflows refer to them. The classes are ComfyUI's
classic ("V1") node classes -- ``INPUT_TYPES`` / ``RETURN_TYPES`` / ``FUNCTION`` -- because the headless
runner (``python -m ltx2_nodes run|queue``, ``cli/executor.py``) executes the very same classes without
ComfyUI; V3 ``comfy_api`` classes cannot even be imported without ComfyUI. Nothing here imports ComfyUI:
everything ComfyUI-owned is reached through ``ltx2_nodes.paths`` / ``progress`` / ``memory.selection`` and
lazily in ``types`` (nested tensors, VIDEO).
"""

from .decode import LTX2AudioDecode, LTX2AVCombine, LTX2VideoDecodeTiled
from .latent import (LTX2AudioToLatent, LTX2EmptyAVLatent, LTX2GeneratedKeyframes, LTX2ImageToVideo, LTX2KeyframeSlots,
                     LTX2LatentUpscaler)
from .loaders import LTX2CheckpointLoader, LTX2CompileDiT, LTX2DurationHeadLoader, LTX2GemmaLoader, LTX2LoraLoader
from .refine import LTX2RefineTiles
from .guides import LTX2ICLoRAGuide
from .dubit import LTX2DubItReferenceAudio
from .editing import LTX2ExtendJoin, LTX2ExtendWindow, LTX2Retake, LTX2VideoEncode
from .sampler import LTX2Sampler
from .soundtrack import LTX2AudioOnlyModel, LTX2EmptyAudioLatent, LTX2VideoToAudioLatent
from .text import LTX2GemmaEncode, LTX2PromptEnhance, LTX2TextConnector

_NODES = {
    "LTX2CheckpointLoader": (LTX2CheckpointLoader, "LTX-2 Checkpoint Loader"),
    "LTX2GemmaLoader": (LTX2GemmaLoader, "LTX-2 Gemma 3 Loader"),
    "LTX2GemmaEncode": (LTX2GemmaEncode, "LTX-2 Gemma Encode"),
    "LTX2TextConnector": (LTX2TextConnector, "LTX-2 Text Connector"),
    "LTX2EmptyAVLatent": (LTX2EmptyAVLatent, "LTX-2 Empty Audio+Video Latent"),
    "LTX2ImageToVideo": (LTX2ImageToVideo, "LTX-2 Image to Video"),
    "LTX2AudioToLatent": (LTX2AudioToLatent, "LTX-2 Audio to Latent (Audio to Video)"),
    "LTX2LoraLoader": (LTX2LoraLoader, "LTX-2 LoRA Loader"),
    "LTX2DurationHeadLoader": (LTX2DurationHeadLoader, "LTX-2 Duration Head Loader (LTX-2.5)"),
    "LTX2Sampler": (LTX2Sampler, "LTX-2 Sampler (Audio+Video)"),
    "LTX2LatentUpscaler": (LTX2LatentUpscaler, "LTX-2 Latent Upscaler x2"),
    "LTX2RefineTiles": (LTX2RefineTiles, "LTX-2 Refine in Tiles (high resolution)"),
    "LTX2KeyframeSlots": (LTX2KeyframeSlots, "LTX-2 Keyframe Slots (LTX-2.5)"),
    "LTX2GeneratedKeyframes": (LTX2GeneratedKeyframes, "LTX-2 Generated Keyframes (LTX-2.5)"),
    "LTX2VideoDecodeTiled": (LTX2VideoDecodeTiled, "LTX-2 Video Decode (Tiled)"),
    "LTX2AudioDecode": (LTX2AudioDecode, "LTX-2 Audio Decode"),
    "LTX2AVCombine": (LTX2AVCombine, "LTX-2 Save Video (MP4 with Audio)"),
    "LTX2PromptEnhance": (LTX2PromptEnhance, "LTX-2 Prompt Enhance (Gemma)"),
    "LTX2CompileDiT": (LTX2CompileDiT, "LTX-2 Compile DiT (torch.compile)"),
    "LTX2VideoToAudioLatent": (LTX2VideoToAudioLatent, "LTX-2 Video to Latent (Video to Audio)"),
    "LTX2EmptyAudioLatent": (LTX2EmptyAudioLatent, "LTX-2 Empty Audio Latent (Text to Audio)"),
    "LTX2AudioOnlyModel": (LTX2AudioOnlyModel, "LTX-2 Audio-Only Model (Text to Audio)"),
    # editing (issue 15)
    "LTX2VideoEncode": (LTX2VideoEncode, "LTX-2 Video Encode (Tiled)"),
    "LTX2ExtendWindow": (LTX2ExtendWindow, "LTX-2 Extend Window"),
    "LTX2ExtendJoin": (LTX2ExtendJoin, "LTX-2 Extend Join"),
    "LTX2Retake": (LTX2Retake, "LTX-2 Retake (Regenerate a Time Window)"),
    # control (issue 16)
    "LTX2ICLoRAGuide": (LTX2ICLoRAGuide, "LTX-2 IC-LoRA Guide (Control Video)"),
    "LTX2DubItReferenceAudio": (LTX2DubItReferenceAudio, "LTX-2 Dub-It Reference Audio"),
}

NODE_CLASS_MAPPINGS: dict[str, type] = {node_id: cls for node_id, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {node_id: name for node_id, (_, name) in _NODES.items()}
