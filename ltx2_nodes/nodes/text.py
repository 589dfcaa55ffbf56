"""Text nodes: Gemma encode (prompt -> features), the text connectors (features -> CONDITIONING),
prompt enhancement."""

from __future__ import annotations

from .. import stages
from ..text.enhance import MODES
from .common import TEXT, engine, prompt_cache_dir, require
from .comfy_types import to_conditioning


class LTX2GemmaEncode:
    DESCRIPTION = ("Runs Gemma 3 on the prompt and keeps every hidden state (what LTX-2's text connectors read). "
                   "Progress per Gemma layer; prompts seen before come from the prompt cache.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gemma": ("LTX2_GEMMA",), "prompt": ("STRING", {"multiline": True, "default": ""})},
                "optional": {"disk_cache": ("BOOLEAN", {"default": False, "tooltip": "also keep the encoded prompt "
                                                        "on disk (user folder), so it survives a restart"})}}

    RETURN_TYPES = ("LTX2_TEXT_FEATURES",)
    RETURN_NAMES = ("features",)
    FUNCTION = "encode"
    CATEGORY = TEXT

    def encode(self, gemma, prompt, disk_cache=False):
        cache = prompt_cache_dir() if disk_cache else None
        return (stages.encode_prompts(gemma, [prompt], engine(), cache_dir=cache),)


class LTX2TextConnector:
    DESCRIPTION = "Turns Gemma features into the video and audio text conditioning of the LTX-2 transformer."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text_connector": ("LTX2_TEXT_CONNECTOR",), "features": ("LTX2_TEXT_FEATURES",)}}

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "connect"
    CATEGORY = TEXT

    def connect(self, text_connector, features):
        connector = require(text_connector, "text connector", "load a full LTX-2 single file (a DiT-only file has "
                                                              "no text connectors).")
        return (to_conditioning(stages.connect_text(connector, features, engine())),)


class LTX2PromptEnhance:
    DESCRIPTION = ("Gemma rewrites a short prompt into the detailed, audio-aware kind LTX-2 was trained on "
                   "(the reference's system prompts; i2v describes a given first frame). Same seed, same text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "gemma": ("LTX2_GEMMA",),
            "prompt": ("STRING", {"multiline": True, "default": ""}),
            "mode": (list(MODES), {"default": "t2v"}),
            "seed": ("INT", {"default": 42, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "max_new_tokens": ("INT", {"default": 512, "min": 16, "max": 2048}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)
    FUNCTION = "enhance"
    CATEGORY = TEXT

    def enhance(self, gemma, prompt, mode="t2v", seed=42, max_new_tokens=512):
        return (stages.enhance_prompt(gemma, prompt, engine(), mode=mode, seed=seed, max_new_tokens=max_new_tokens),)
