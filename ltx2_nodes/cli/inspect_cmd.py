"""``inspect``: identify an LTX-2 checkpoint and run one transformer forward on it."""

from __future__ import annotations

import time

HELP = "describe an LTX-2 checkpoint (family, variant, config, components) and run one DiT forward on it"

_COMPONENTS = ("transformer", "video_connector", "audio_connector", "text_projection", "video_encoder",
               "video_decoder", "audio_encoder", "audio_decoder", "vocoder")


def add_parser(p) -> None:
    p.add_argument("checkpoint", help="path to ltx-2-19b-* / ltx-2.3-22b-*.safetensors (or a DiT-only file)")
    p.add_argument("--frames", type=int, default=17, help="pixel frames of the test latent (8k+1)")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--sigma", type=float, default=0.7, help="noise level of the test forward")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--no-forward", action="store_true", help="only describe the file")


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def run(args) -> int:
    # torch and the model code load only when this command runs: the CLI starts fast for the others
    import torch

    from ..loading.checkpoint import LTX2Checkpoint
    from ..loading.components import check_configs, load_transformer
    from ..loading.family import FAMILIES
    from ..model.audio_vae import AudioVAEConfig
    from ..model.patchify import audio_positions, patchify_video, video_positions
    from ..model.shapes import audio_latent_frames, checked_latent_size
    from ..model.transformer import ModalityInput
    from ..model.video_vae import VideoVAEConfig

    ckpt = LTX2Checkpoint(args.checkpoint)
    print(f"{ckpt.path.name}: {ckpt.variant.describe()}, {len(ckpt.file.keys())} tensors, "
          f"{_human(ckpt.file.file_size)}")
    print(f"  family: {ckpt.family.describe()}, from {ckpt.family_evidence}")
    cfg = ckpt.component_config("transformer")
    switches = [flag for family in FAMILIES for flag in family.flags if cfg.get(flag) is True]
    print(f"  transformer: {cfg.get('num_layers')} blocks, video {cfg.get('num_attention_heads')}x"
          f"{cfg.get('attention_head_dim')}, audio {cfg.get('audio_num_attention_heads')}x"
          f"{cfg.get('audio_attention_head_dim')}, rope {cfg.get('rope_type', 'split')}"
          + (f", {', '.join(switches)}" if switches else "")
          + (" (config inferred from shapes)" if ckpt.variant.config_inferred else ""))
    for name in _COMPONENTS:
        if ckpt.has(name):
            print(f"  {name:16s} {_human(ckpt.component_bytes(name))}")
    check_configs(ckpt)  # a damaged config is reported by name, never built
    if args.no_forward:
        return 0

    dtype = getattr(torch, args.dtype)
    model = load_transformer(ckpt, dtype=dtype)
    mc = model.config
    # the grid factors of this file's VAEs (released defaults for a DiT-only file)
    vae = VideoVAEConfig.from_metadata(ckpt.component_config("video_decoder")) if ckpt.has("video_decoder") \
        else VideoVAEConfig()
    audio_vae = AudioVAEConfig.from_metadata(ckpt.component_config("audio_decoder")) if ckpt.has("audio_decoder") \
        else AudioVAEConfig()
    frames, height, width = checked_latent_size(args.frames, args.height, args.width, vae.decoder_scale)
    audio_tokens = audio_latent_frames(args.frames, args.fps, audio_vae.timing)
    gen = torch.Generator().manual_seed(0)
    video_latent = torch.randn(1, mc.in_channels, frames, height, width, generator=gen)
    audio_tokens_in = torch.randn(1, audio_tokens, mc.audio_in_channels, generator=gen)
    sigma = torch.tensor([args.sigma])
    video = ModalityInput(patchify_video(video_latent), sigma, sigma,
                          video_positions(1, frames, height, width, args.fps, vae.decoder_scale),
                          torch.randn(1, 16, mc.context_width("video"), generator=gen))
    audio = ModalityInput(audio_tokens_in, sigma, sigma, audio_positions(1, audio_tokens, audio_vae.timing),
                          torch.randn(1, 16, mc.context_width("audio"), generator=gen))
    start = time.perf_counter()
    with torch.no_grad():
        v, a = model(video, audio)
    elapsed = time.perf_counter() - start
    print(f"forward ({args.dtype}, sigma {args.sigma}): video {video.latent.shape[1]} tokens -> velocity "
          f"{tuple(v.shape)} (std {v.float().std():.3f}), audio {audio_tokens} tokens -> velocity "
          f"{tuple(a.shape)} (std {a.float().std():.3f}) in {elapsed * 1000:.0f} ms")
    return 0
