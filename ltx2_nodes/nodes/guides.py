"""IC-LoRA control: the reference-video guide node (depth / pose / edge maps or any reference video)."""

from __future__ import annotations

import logging

from .. import stages
from ..errors import InputError
from ..sampling.guides import reference_scale_factors
from .common import LATENT, engine, require
from .comfy_types import fit_empty_channels, from_av_latents, latent_info, to_av_latents

log = logging.getLogger("ltx2_nodes")


class LTX2ICLoRAGuide:
    DESCRIPTION = ("IC-LoRA control: guides the next sampler with a control video (depth, pose or edge maps from any "
                   "ComfyUI preprocessor pack, or any reference clip), as the official IC-LoRA pipeline does. The "
                   "video is encoded now (tiled) at the latent's size divided by the IC-LoRA's "
                   "reference_downscale_factor (read from the LoRA file applied to 'model'; 1 when it has none) and "
                   "appended as clean guide tokens; they never reach the output. Connect the model with the IC-LoRA "
                   "applied (LTX-2 LoRA Loader) to this node and to the sampler it guides. Only the next sampler is "
                   "guided (the official recipe refines stage 2 without the guide and without the IC-LoRA). "
                   "strength: 1 keeps the reference clean; attention_strength: how much the video and the reference "
                   "attend each other (1 = fully, 0 = not at all); attention_mask (optional): where, per frame.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT",),
            "model": ("LTX2_MODEL", {"tooltip": "the model with the IC-LoRA applied: its reference scale is read "
                                                "from the LoRA file"}),
            "video_vae": ("LTX2_VIDEO_VAE",),
            "control_video": ("IMAGE", {"tooltip": "control frames (depth / pose / canny maps or a reference clip); "
                                                   "at most the latent's frame count is used"}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "1 = the reference stays clean"}),
            "attention_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                             "tooltip": "conditioning_attention_strength: 1 = full influence"}),
        }, "optional": {
            "attention_mask": ("MASK", {"tooltip": "where the control applies (per frame, framed like the control "
                                                   "video; white = fully), times attention_strength"}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "guide"
    CATEGORY = LATENT

    def guide(self, latent, model, video_vae, control_video, strength=1.0, attention_strength=1.0,
              attention_mask=None):
        video_vae = require(video_vae, "video VAE", "connect the video_vae output of an LTX-2 Checkpoint Loader.")
        model = require(model, "model", "connect the model output of an LTX-2 LoRA Loader that applied the IC-LoRA.")
        info = latent_info(latent)
        av = fit_empty_channels(to_av_latents(latent), video_channels=video_vae.latent_channels)
        if av.video is None:
            raise InputError("an IC-LoRA guide conditions a video; this latent holds audio only.")
        loras = [entry.lora for entry in model.loras]
        if not loras:
            log.warning("LTX-2 IC-LoRA Guide: the model has no LoRA applied; the guide works with an IC-LoRA (load "
                        "it with LTX-2 LoRA Loader and connect that model here and to the sampler)")
        downscale, temporal = reference_scale_factors(loras)
        guide = stages.encode_reference_guide(video_vae, control_video, av.video_grid(), engine(),
                                              downscale_factor=downscale, temporal_scale_factor=temporal,
                                              strength=strength, attention=attention_strength,
                                              attention_mask=attention_mask)
        log.info("LTX-2 IC-LoRA Guide: %d reference tokens (%s, downscale x%d%s)", guide.tokens,
                 "x".join(str(n) for n in guide.latent.shape[2:]), downscale,
                 f", temporal x{temporal}" if temporal != 1 else "")
        return (from_av_latents(av, info.replace(guides=info.guides + (guide,)), base=latent),)
