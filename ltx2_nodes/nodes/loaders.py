"""Loader nodes: LTX-2 single file, Gemma 3, LoRA. Loading is lazy and cached (``ltx2_nodes.handles``):
the node returns handles at once; each module is built from the memory-mapped file when a stage first
needs it."""

from __future__ import annotations

import logging

from .. import paths
from ..handles import (FP8_MODES, GEMMA_FP8_MODES, GEMMA_WEIGHT_DTYPES, WEIGHT_DTYPES, load_gemma, load_lora_file,
                      load_ltx2)
from .common import LOADERS, checkpoint_names, device, find_checkpoint, find_text_encoder, signature, text_encoder_names

log = logging.getLogger("ltx2_nodes")


class LTX2CheckpointLoader:
    DESCRIPTION = ("Loads an LTX-2 single file (LTX-2 19B: ltx-2-19b-dev / -distilled, fp8 or not; LTX-2.3 22B: "
                   "ltx-2.3-22b-dev / -distilled): the audio-video transformer, the video VAE, the audio VAE with its "
                   "vocoder and the text connectors. An LTX-2.5 transformer file (diffusion_models) brings the other "
                   "files of its release from the model folders (text encoder, VAEs, duration head; the Gemma "
                   "version must match). The model family is detected from the file and logged. DiT-only files "
                   "from diffusion_models load too, GGUF ones (Q8_0, Q6_K, Q5_K, Q4_K, Q4_0) and NVFP4 ones "
                   "included: their weights stay quantized and are dequantized layer by layer.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ckpt_name": (checkpoint_names(), {"tooltip": "models/checkpoints (or diffusion_models for a DiT-only "
                                                          "file, which has no VAEs: .safetensors or .gguf)."}),
            "weight_dtype": (list(WEIGHT_DTYPES), {"default": "auto", "tooltip": "auto: bfloat16 on a GPU, float32 "
                                                                                "on the CPU."}),
            "fp8": (list(FP8_MODES), {"default": "as stored", "tooltip": "as stored: fp8 files stay fp8 (half the "
                                      "memory); upcast on load: multiply fp8 weights out; cast bf16 to fp8: quantise "
                                      "the transformer blocks of a bf16 file at load."}),
        }}

    RETURN_TYPES = ("LTX2_MODEL", "LTX2_VIDEO_VAE", "LTX2_AUDIO_VAE", "LTX2_TEXT_CONNECTOR")
    RETURN_NAMES = ("model", "video_vae", "audio_vae", "text_connector")
    FUNCTION = "load"
    CATEGORY = LOADERS

    @classmethod
    def IS_CHANGED(cls, ckpt_name, **_):
        return signature("checkpoints", ckpt_name)

    def load(self, ckpt_name, weight_dtype="auto", fp8="as stored"):
        models = load_ltx2(find_checkpoint(ckpt_name), weight_dtype, fp8, device=device())
        ckpt = models.ckpt
        log.info("LTX-2 checkpoint loader: %s is an %s (%s; family from %s)", models.name, ckpt.variant.describe(),
                 ckpt.family.describe(), ckpt.family_evidence)
        if models.pack is not None:
            log.info("LTX-2 checkpoint loader: %s", models.pack.describe())
        return (models.dit, models.optional("video_vae"), models.optional("audio_vae"),
                models.optional("text_connector"))


class LTX2GemmaLoader:
    DESCRIPTION = ("Loads the Gemma text encoder: Gemma 3 12B (a ComfyUI single file in bf16, fp8 or NVFP4, a GGUF "
                   "file -- llama.cpp's gemma3, with tokenizer.model next to it -- or a Hugging Face folder) or "
                   "LTX-2.5's packed Gemma 4 file.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "gemma_name": (text_encoder_names(), {"tooltip": "models/text_encoders: gemma_3_12B_it*.safetensors, "
                                                             "gemma-3-12b-it-*.gguf or a google/gemma-3-12b-it "
                                                             "folder (LTX-2, LTX-2.3); "
                                                             "gemma4-12b-with-proj-ltx-2.5*.safetensors (LTX-2.5)."}),
            "weight_dtype": (list(GEMMA_WEIGHT_DTYPES), {"default": "auto"}),
            "fp8": (list(GEMMA_FP8_MODES), {"default": "as stored"}),
        }}

    RETURN_TYPES = ("LTX2_GEMMA",)
    RETURN_NAMES = ("gemma",)
    FUNCTION = "load"
    CATEGORY = LOADERS

    @classmethod
    def IS_CHANGED(cls, gemma_name, **_):
        return signature("text_encoders", gemma_name)

    def load(self, gemma_name, weight_dtype="auto", fp8="as stored"):
        return (load_gemma(find_text_encoder(gemma_name), weight_dtype, fp8, device=device()),)


class LTX2LoraLoader:
    DESCRIPTION = ("Adds a LoRA to the transformer, e.g. the distilled LoRA for the refinement stage of the dev "
                   "model. Applied on the fly while sampling; the loaded model itself is never changed.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LTX2_MODEL",),
            "lora_name": (paths.list_models("loras"),),
            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.05}),
        }}

    RETURN_TYPES = ("LTX2_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = LOADERS

    @classmethod
    def IS_CHANGED(cls, lora_name, **_):
        return signature("loras", lora_name)

    def load(self, model, lora_name, strength=1.0):
        path = paths.find_model("loras", lora_name)
        return (model.with_lora(load_lora_file(path), strength, path.name),)
