"""``demo-models``: write tiny random-weight LTX-2 models (released layouts, demo names) into a models folder."""

from __future__ import annotations

HELP = ("write tiny random-weight demo models (LTX-2 and LTX-2.3 single files, their spatial upscalers (LTX-2.3's x1.5 "
        "too) and LoRAs, a "
        "Gemma 3 folder; the LTX-2.5 split files: transformer, Gemma 4 text encoder, video and audio VAEs, duration "
        "head, upscaler) into a ComfyUI-style models folder; they run every shipped workflow in seconds on a CPU and "
        "generate noise")


def add_parser(p) -> None:
    p.add_argument("directory", help="models folder to write into (checkpoints/, diffusion_models/, "
                                     "latent_upscale_models/, text_encoders/, loras/, vae/, model_patches/ are "
                                     "created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")


def run(args) -> int:
    import time

    from ..demo.models import DEMO_NOTICE, write_demo_models

    start = time.perf_counter()
    written = write_demo_models(args.directory, seed=args.seed)
    files = (written.checkpoint, written.upscaler, written.gemma, written.lora, written.checkpoint_23,
             written.upscaler_23, written.lora_23, *written.ltx25.files(), written.upscaler_x1_5_23,
             written.upscaler_temporal_23)
    for path in files:
        print(path)
    print(f"wrote {len(files)} demo models in {time.perf_counter() - start:.1f} s. {DEMO_NOTICE}\n"
          f"Try: python -m ltx2_nodes run workflows/demo/t2av_distilled_two_stage.api.json --models-dir "
          f"{args.directory} --out output (LTX-2.3: workflows/demo/ltx23_t2av_distilled_two_stage.api.json, "
          "LTX-2.5: workflows/demo/ltx25_t2av_distilled_two_stage.api.json)",
          flush=True)
    return 0
