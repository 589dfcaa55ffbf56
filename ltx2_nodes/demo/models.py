"""Tiny random-weight demo models in the released file layouts (``python -m ltx2_nodes demo-models DIR``).

They make every shipped workflow runnable anywhere -- CPU, CI, a fresh ComfyUI -- in seconds, and
they generate **noise** (random weights, honestly named ``ltx2-demo-*``). Written into a ComfyUI-style
models tree:

* ``checkpoints/ltx2-demo-av.safetensors``: one single file with every component under the released
  key names (``model.diffusion_model.*`` DiT + connectors, ``text_embedding_projection.*``,
  ``vae.*``, ``audio_vae.*``, ``vocoder.*``) and the released ``config`` metadata format;
* ``latent_upscale_models/ltx2-demo-spatial-upscaler-x2.safetensors`` (flat ``config`` metadata);
* ``text_encoders/ltx2-demo-gemma3/``: a Gemma 3 Hugging Face folder (config.json, sharded weights,
  a SentencePiece ``tokenizer.model`` trained in code with Gemma's special and chat tokens);
* ``loras/ltx2-demo-distilled-lora.safetensors``: a rank-4 LoRA in the official key format (and for LTX-2.3 an
  IC-LoRA, ``ltx2.3-demo-ic-lora-union-control-ref0.5``, whose metadata says its reference is at half size);
* the LTX-2.3 set (``ltx2.3-demo-*``) and the LTX-2.5 split files (``ltx25-demo-*``, see "LTX-2.5" below).

Sizes (see ``DEMO_*`` below): the DiT has the released block count (48, so STG block 29 of the
dev recipe exists) at width 32/16; the video VAE compresses 8x32x32 like the release with 8 latent
channels; the audio VAE and vocoder keep the released mel (64 bins, 16 kHz), latent (8 x 16) and
upsampling (x240 -> 24 kHz) shapes with narrow channels, which ComfyUI core's
``LTXVAudioVAELoader`` / ``LTXVAudioVAEDecode`` can load (core hard-codes the 128-long audio latent
statistics and the vocoder's 128 input channels). Weights are deterministic: every tensor is drawn
from a generator seeded by the model seed and the tensor's name.
"""

from __future__ import annotations

import copy
import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..loading.safetensors_file import write_safetensors

CHECKPOINT = "ltx2-demo-av.safetensors"
UPSCALER = "ltx2-demo-spatial-upscaler-x2.safetensors"
GEMMA = "ltx2-demo-gemma3"
LORA = "ltx2-demo-distilled-lora.safetensors"
DEMO_NOTICE = ("ltx2_nodes demo model: tiny random weights in the released LTX-2 layout; it generates noise. "
               "For real videos download the released models from Lightricks/LTX-2 and google/gemma-3-12b-it.")

DEMO_GEMMA = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                  rope_scaling={"rope_type": "linear", "factor": 8.0}, max_position_embeddings=4096,
                  pad_token_id=0, eos_token_id=1, bos_token_id=2)
DEMO_VIDEO_LATENT_CHANNELS = 8
DEMO_CAPTION_CHANNELS = 24

DEMO_TRANSFORMER = {
    "_class_name": "AVTransformer3DModel", "num_layers": 48,
    "num_attention_heads": 2, "attention_head_dim": 16, "cross_attention_dim": 32,
    "audio_num_attention_heads": 2, "audio_attention_head_dim": 8, "audio_cross_attention_dim": 16,
    "in_channels": DEMO_VIDEO_LATENT_CHANNELS, "out_channels": DEMO_VIDEO_LATENT_CHANNELS,
    "audio_in_channels": 128, "audio_out_channels": 128, "caption_channels": DEMO_CAPTION_CHANNELS,
    "connector_num_attention_heads": 3, "connector_attention_head_dim": 8, "connector_num_layers": 2,
    "connector_num_learnable_registers": 8, "connector_positional_embedding_max_pos": [4096],
    "positional_embedding_max_pos": [20, 2048, 2048], "audio_positional_embedding_max_pos": [20],
    "positional_embedding_theta": 10000.0, "positional_embedding_type": "rope", "rope_type": "split",
    "frequencies_precision": "float64", "norm_eps": 1e-06, "activation_fn": "gelu-approximate",
    "attention_bias": True, "qk_norm": "rms_norm", "cross_attention_norm": True, "norm_elementwise_affine": False,
    "timestep_scale_multiplier": 1000, "av_ca_timestep_scale_multiplier": 1000, "av_cross_ada_norm": True,
    "causal_temporal_positioning": True, "use_audio_video_cross_attention": True, "use_embeddings_connector": True,
    "use_middle_indices_grid": True, "standardization_norm": "rms_norm",
}
_RES = lambda layers: ["res_x", {"num_layers": layers}]  # noqa: E731
DEMO_VAE = {
    "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
    "latent_channels": DEMO_VIDEO_LATENT_CHANNELS, "patch_size": 4, "norm_layer": "pixel_norm",
    "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False, "timestep_conditioning": False,
    "normalize_latent_channels": False, "scaling_factor": 1.0,
    "encoder_spatial_padding_mode": "zeros", "decoder_spatial_padding_mode": "reflect",
    "encoder_blocks": [_RES(1), ["compress_space_res", {"multiplier": 2}], _RES(1),
                       ["compress_time_res", {"multiplier": 2}], _RES(1), ["compress_all_res", {"multiplier": 2}],
                       _RES(1), ["compress_all_res", {"multiplier": 2}], _RES(1)],
    "decoder_blocks": [["res_x", {"num_layers": 1, "inject_noise": False}],
                       ["compress_all", {"residual": True, "multiplier": 2}],
                       ["res_x", {"num_layers": 1, "inject_noise": False}],
                       ["compress_all", {"residual": True, "multiplier": 2}],
                       ["res_x", {"num_layers": 1, "inject_noise": False}],
                       ["compress_all", {"residual": True, "multiplier": 2}],
                       ["res_x", {"num_layers": 1, "inject_noise": False}]],
}
DEMO_AUDIO_VAE = {
    "model": {"params": {
        "ddconfig": {"double_z": True, "mel_bins": 64, "z_channels": 8, "resolution": 256, "downsample_time": False,
                     "in_channels": 2, "out_ch": 2, "ch": 128, "ch_mult": [1, 1, 1], "num_res_blocks": 1,
                     "attn_resolutions": [], "dropout": 0.0, "mid_block_add_attention": False, "norm_type": "pixel",
                     "causality_axis": "height"},
        "sampling_rate": 16000}},
    "preprocessing": {"stft": {"filter_length": 1024, "hop_length": 160, "win_length": 1024, "causal": True},
                      "mel": {"n_mel_channels": 64, "mel_fmin": 0, "mel_fmax": 8000}},
}
DEMO_VOCODER = {
    "resblock_kernel_sizes": [3, 7, 11], "upsample_rates": [6, 5, 2, 2, 2], "upsample_kernel_sizes": [16, 15, 8, 4, 4],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_initial_channel": 32, "stereo": True,
    "resblock": "1", "output_sample_rate": 24000,
}
DEMO_UPSCALER = {"_class_name": "LatentUpsampler", "in_channels": DEMO_VIDEO_LATENT_CHANNELS, "mid_channels": 32,
                 "num_blocks_per_stage": 1, "dims": 3, "spatial_upsample": True, "temporal_upsample": False,
                 "spatial_scale": 2.0, "rational_resampler": False}
# the other released kinds at the demo's widths: the rational x1.5 and the temporal x2 upscaler
DEMO_UPSCALER_X1_5 = {**DEMO_UPSCALER, "rational_resampler": True, "spatial_scale": 1.5}
DEMO_UPSCALER_TEMPORAL = {**DEMO_UPSCALER, "spatial_upsample": False, "temporal_upsample": True}
# LTX-2.3 (22B layout: gated attention, prompt AdaLN, projection before 8-layer gated connectors with their own
# audio width, the 2.3 VAE block list with zero padding, BigVGAN + bandwidth extension to 48 kHz); the audio VAE
# and the latent sizes are the 2.0 demo's, so both sets share the Gemma folder and the demo inputs.
DEMO_TRANSFORMER_23 = {
    **DEMO_TRANSFORMER, "apply_gated_attention": True, "cross_attention_adaln": True,
    "caption_proj_before_connector": True, "caption_projection_first_linear": False, "caption_proj_input_norm": False,
    "caption_projection_second_linear": False, "text_encoder_norm_type": "per_token_rms",
    "connector_apply_gated_attention": True, "connector_num_layers": 8, "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 16, "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 8, "connector_num_learnable_registers": 128, "connector_norm_output": True,
}
DEMO_VAE_23 = {
    **{k: v for k, v in DEMO_VAE.items() if not k.endswith("spatial_padding_mode")},
    "spatial_padding_mode": "zeros", "encoder_base_channels": 8, "decoder_base_channels": 4,
    "decoder_blocks": [_RES(1), ["compress_all", {"multiplier": 2}], _RES(1), ["compress_all", {"multiplier": 2}],
                       _RES(1), ["compress_all", {"multiplier": 2}], _RES(1)],
}
_BIGVGAN = {"resblock": "AMP1", "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
            "stereo": True, "use_tanh_at_final": False, "activation": "snakebeta", "use_bias_at_final": False}
DEMO_VOCODER_23 = {
    "vocoder": {**_BIGVGAN, "upsample_initial_channel": 64, "upsample_rates": [5, 2, 2, 2, 2, 2],
                "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4]},
    "bwe": {**_BIGVGAN, "upsample_initial_channel": 32, "upsample_rates": [6, 5, 2, 2, 2],
            "upsample_kernel_sizes": [12, 11, 4, 4, 4], "apply_final_activation": False, "input_sampling_rate": 16000,
            "output_sampling_rate": 48000, "hop_length": 80, "n_fft": 512, "win_size": 512, "num_mels": 64},
}
MODEL_VERSION_23 = "2.3.0"
CHECKPOINT_23 = "ltx2.3-demo-av.safetensors"
UPSCALER_23 = "ltx2.3-demo-spatial-upscaler-x2.safetensors"
UPSCALER_X1_5_23 = "ltx2.3-demo-spatial-upscaler-x1.5.safetensors"  # the rational x1.5 kind (LTX-2.3)
UPSCALER_TEMPORAL_23 = "ltx2.3-demo-temporal-upscaler-x2.safetensors"  # the temporal x2 kind (LTX-2.3)
LORA_23 = "ltx2.3-demo-distilled-lora.safetensors"
# an IC-LoRA like the released union-control one (``ref0.5``: its reference video at half the output size)
IC_LORA_23 = "ltx2.3-demo-ic-lora-union-control-ref0.5.safetensors"
IC_LORA_METADATA = {"reference_downscale_factor": "2"}
# a Dub-It IC-LoRA stand-in (the released one: ltx-2.3-22b-ic-lora-dubit-0.9; reference video at the output size)
DUBIT_LORA_23 = "ltx2.3-demo-ic-lora-dubit.safetensors"
DEMO_LORA_TARGETS = ("attn1.to_q", "attn1.to_v", "ff.net.2")
DEMO_LORA_RANK = 4

@dataclass(frozen=True)
class DemoModels:
    """The written files: the LTX-2 set (``checkpoint``, ``upscaler``, ``lora``), the LTX-2.3 set (``*_23``)
    and the Gemma folder both use; ``ltx25``: the LTX-2.5 split files (:class:`DemoModels25`)."""

    root: Path
    checkpoint: Path
    upscaler: Path
    gemma: Path
    lora: Path
    checkpoint_23: Path
    upscaler_23: Path
    lora_23: Path
    ltx25: "DemoModels25 | None" = None
    upscaler_x1_5_23: Path | None = None
    upscaler_temporal_23: Path | None = None


def _seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


def _random_value(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A plausible random value for a tensor of this name: O(1) activations through every layer, positive
    statistics, small biases."""
    g = torch.Generator().manual_seed(_seed(seed, name))
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("std-of-means", "mean-of-stds", "mean-of-stds_over_std-of-means"):
        return torch.rand(shape, generator=g) + 0.5
    if leaf == "channel":
        return torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    if leaf == "mean-of-means":
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=g) / math.sqrt(fan_in)
    if "norm" in name and leaf == "weight":
        return 1.0 + torch.randn(shape, generator=g) * 0.05
    return torch.randn(shape, generator=g) * 0.05


def checkpoint_state(config: dict, text_width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 tensors under the released single-file key names for ``config`` (the ``config``
    metadata); ``text_width``: Gemma's hidden size x (layers + 1), the text projection's input."""
    from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig
    from ..loading.components import vocoder_config
    from ..model.connector import ConnectorConfig, Embeddings1DConnector, TextProjection, TextProjectionConfig
    from ..model.transformer import LTX2Transformer, TransformerConfig
    from ..model.video_vae import PerChannelStatistics, VideoDecoder, VideoEncoder, VideoVAEConfig

    dit_cfg = TransformerConfig.from_metadata(config["transformer"])
    vae_cfg = VideoVAEConfig.from_metadata(config["vae"])
    audio_cfg = AudioVAEConfig.from_metadata(config["audio_vae"])
    projection = TextProjectionConfig(
        in_features=text_width, video_width=dit_cfg.caption_channels, audio_width=dit_cfg.caption_channels,
        separate_projections=TextProjectionConfig.separate_from_metadata(config["transformer"]))
    if projection.separate_projections:  # LTX-2.3: the projection feeds each connector at its DiT width
        projection = replace(projection, video_width=dit_cfg.inner_dim, audio_width=dit_cfg.audio_inner_dim)
    # (module, prefix in the file, prefix of its per-channel statistics in the file)
    parts = [
        (lambda: LTX2Transformer(dit_cfg), "model.diffusion_model.", None),
        (lambda: Embeddings1DConnector(ConnectorConfig.from_metadata(config["transformer"])),
         "model.diffusion_model.video_embeddings_connector.", None),
        (lambda: Embeddings1DConnector(ConnectorConfig.from_metadata(config["transformer"], audio=True)),
         "model.diffusion_model.audio_embeddings_connector.", None),
        (lambda: TextProjection(projection), "text_embedding_projection.", None),
        (lambda: VideoEncoder(vae_cfg), "vae.encoder.", "vae."),
        (lambda: VideoDecoder(vae_cfg), "vae.decoder.", "vae."),
        (lambda: AudioEncoder(audio_cfg), "audio_vae.encoder.", "audio_vae."),
        (lambda: AudioDecoder(audio_cfg), "audio_vae.decoder.", "audio_vae."),
    ]
    state: dict[str, torch.Tensor] = {}
    for build, prefix, stats_prefix in parts:
        with torch.device("meta"):
            module = build()
        for key, value in module.state_dict().items():
            name = (stats_prefix + key) if stats_prefix and key.startswith("per_channel_statistics.") else prefix + key
            state.setdefault(name, _random_value(name, tuple(value.shape), seed))
    state.update(vocoder_state(vocoder_config(config["vocoder"]), seed))
    if projection.separate_projections:  # LTX-2.3 files leave out the statistics nothing reads
        return state
    for leaf in PerChannelStatistics.UNREAD:  # the 2.0 release stores statistics nothing reads
        name = f"vae.per_channel_statistics.{leaf}"
        state[name] = _random_value(name, (vae_cfg.latent_channels,), seed)
    return state


def vocoder_state(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    """``vocoder.*`` tensors for ``cfg`` (a HiFi-GAN ``VocoderConfig`` or a ``BWEVocoderConfig``): random
    weights; for the LTX-2.3 BigVGAN the stored buffers hold what the release stores: the anti-alias filters'
    kaiser-sinc taps, the bandwidth extension's causal STFT bases (real DFT x periodic Hann, and the unread
    inverse basis) and its slaney mel filterbank at the input rate."""
    from ..media.mel import MelConfig, mel_filterbank
    from ..model.bigvgan import BWEVocoder, BWEVocoderConfig
    from ..model.vocoder import Vocoder

    if not isinstance(cfg, BWEVocoderConfig):
        with torch.device("meta"):
            module = Vocoder(cfg)
        return {f"vocoder.{k}": _random_value(f"vocoder.{k}", tuple(v.shape), seed)
                for k, v in module.state_dict().items()}
    module = BWEVocoder(cfg)  # built for real: its filter buffers are the stored values
    parameters = {name for name, _ in module.named_parameters()}
    state = {f"vocoder.{k}": _random_value(f"vocoder.{k}", tuple(v.shape), seed) if k in parameters else v.clone()
             for k, v in module.state_dict().items()}
    n = torch.arange(cfg.n_fft, dtype=torch.float64)
    k = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
    window = torch.hann_window(cfg.n_fft, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * k * n / cfg.n_fft
    basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).unsqueeze(1).float()
    state["vocoder.mel_stft.stft_fn.forward_basis"] = basis
    state["vocoder.mel_stft.stft_fn.inverse_basis"] = basis.clone()
    mel = MelConfig(sample_rate=cfg.input_sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                    n_mels=cfg.num_mels)
    state["vocoder.mel_stft.mel_basis"] = mel_filterbank(mel).T.contiguous()
    return state


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], dtype: torch.dtype) -> Path:
    """Stream ``tensors`` (floating ones cast to ``dtype``) to ``path``; pads the metadata if the header
    length would look like a pickle to the reader's sniff."""
    def entries():
        for name, tensor in tensors.items():
            target = dtype if tensor.is_floating_point() else tensor.dtype
            yield name, tuple(tensor.shape), target, lambda t=tensor, d=target: t.to(d).contiguous()

    write_safetensors(path, entries(), metadata)
    head = path.read_bytes()[:2]
    if head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        write_safetensors(path, entries(), {**metadata, "padding": "-" * 8})
    return path


def demo_config(version: str = "2.0") -> dict:
    """The ``config`` metadata of the demo checkpoint of family ``version`` ("2.0" or "2.3")."""
    if version == "2.3":
        return {"transformer": copy.deepcopy(DEMO_TRANSFORMER_23), "vae": copy.deepcopy(DEMO_VAE_23),
                "audio_vae": copy.deepcopy(DEMO_AUDIO_VAE), "vocoder": copy.deepcopy(DEMO_VOCODER_23)}
    return {"transformer": copy.deepcopy(DEMO_TRANSFORMER), "vae": copy.deepcopy(DEMO_VAE),
            "audio_vae": copy.deepcopy(DEMO_AUDIO_VAE), "vocoder": copy.deepcopy(DEMO_VOCODER)}


def write_checkpoint(path: Path, seed: int = 0, config: dict | None = None, version: str = "2.0") -> Path:
    """The single-file checkpoint; ``version`` "2.3" writes the LTX-2.3 layout with its ``model_version``."""
    config = config or demo_config(version)
    text_width = DEMO_GEMMA["hidden_size"] * (DEMO_GEMMA["num_hidden_layers"] + 1)
    state = checkpoint_state(config, text_width, seed)
    metadata = {"config": json.dumps(config), "ltx2_nodes_demo": DEMO_NOTICE}
    if version == "2.3":
        metadata["model_version"] = MODEL_VERSION_23
    return _write(path, state, metadata, torch.bfloat16)


def write_upscaler(path: Path, seed: int = 0, config: dict | None = None) -> Path:
    """A latent upscaler file of the demo's widths: ``config`` (default ``DEMO_UPSCALER``, the x2 spatial one) may
    ask for the other released kinds (x1.5 rational, temporal x2) with the same flat ``config`` keys."""
    from ..model.upsampler import LatentUpsampler, UpsamplerConfig

    config = DEMO_UPSCALER if config is None else config
    with torch.device("meta"):
        module = LatentUpsampler(UpsamplerConfig.from_metadata(config))
    state = {k: _random_value("upscaler." + k, tuple(v.shape), seed) for k, v in module.state_dict().items()}
    return _write(path, state, {"config": json.dumps(config), "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def write_lora(path: Path, seed: int = 0, transformer: dict | None = None, metadata: dict | None = None) -> Path:
    """Rank-4 factors for a few Linears of every block of ``transformer`` (a ``config.transformer``, the
    2.0 demo's by default), official ``diffusion_model.*.lora_A/B`` names; ``metadata``: more file metadata (an
    IC-LoRA's ``reference_downscale_factor``)."""
    from ..model.transformer import TransformerConfig

    cfg = TransformerConfig.from_metadata(transformer or DEMO_TRANSFORMER)
    tensors = {}
    widths = {"attn1.to_q": (cfg.inner_dim, cfg.inner_dim), "attn1.to_v": (cfg.inner_dim, cfg.inner_dim),
              "ff.net.2": (cfg.inner_dim * 4, cfg.inner_dim)}
    for block in range(cfg.num_layers):
        for target in DEMO_LORA_TARGETS:
            fan_in, fan_out = widths[target]
            name = f"diffusion_model.transformer_blocks.{block}.{target}"
            g = torch.Generator().manual_seed(_seed(seed, name))
            tensors[name + ".lora_A.weight"] = torch.randn(DEMO_LORA_RANK, fan_in, generator=g) / math.sqrt(fan_in)
            tensors[name + ".lora_B.weight"] = torch.randn(fan_out, DEMO_LORA_RANK, generator=g) * 0.05
    return _write(path, tensors, {"ltx2_nodes_demo": DEMO_NOTICE, **(metadata or {})}, torch.bfloat16)


def write_gemma(folder: Path, seed: int = 0) -> Path:
    from .tiny_gemma import hf_model, spm_bytes, write_hf_folder

    model = hf_model(seed=seed, **DEMO_GEMMA)
    tokenizer = spm_bytes(vocab_size=DEMO_GEMMA["vocab_size"], byte_fallback=True)
    write_hf_folder(model, folder, tokenizer=tokenizer, shard_bytes=64_000)
    (folder / "README.txt").write_text(DEMO_NOTICE + "\n")
    return folder


def write_demo_models(root: str | Path, seed: int = 0) -> DemoModels:
    """Write every demo model under ``root`` (a ComfyUI-style models folder); returns their paths."""
    root = Path(root)
    folders = {name: root / name for name in ("checkpoints", "latent_upscale_models", "text_encoders", "loras")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    paths = DemoModels(root, folders["checkpoints"] / CHECKPOINT, folders["latent_upscale_models"] / UPSCALER,
                       folders["text_encoders"] / GEMMA, folders["loras"] / LORA,
                       folders["checkpoints"] / CHECKPOINT_23, folders["latent_upscale_models"] / UPSCALER_23,
                       folders["loras"] / LORA_23)
    write_checkpoint(paths.checkpoint, seed)
    write_upscaler(paths.upscaler, seed)
    write_gemma(paths.gemma, seed)
    write_lora(paths.lora, seed)
    write_checkpoint(paths.checkpoint_23, seed, version="2.3")
    write_upscaler(paths.upscaler_23, seed + 1)
    x1_5 = write_upscaler(folders["latent_upscale_models"] / UPSCALER_X1_5_23, seed + 2, DEMO_UPSCALER_X1_5)
    temporal = write_upscaler(folders["latent_upscale_models"] / UPSCALER_TEMPORAL_23, seed + 3,
                              DEMO_UPSCALER_TEMPORAL)
    write_lora(paths.lora_23, seed, DEMO_TRANSFORMER_23)
    write_lora(folders["loras"] / IC_LORA_23, seed + 7, DEMO_TRANSFORMER_23, IC_LORA_METADATA)
    write_lora(folders["loras"] / DUBIT_LORA_23, seed + 8, DEMO_TRANSFORMER_23)
    return replace(paths, ltx25=write_demo_models_25(root, seed), upscaler_x1_5_23=x1_5,
                   upscaler_temporal_23=temporal)


# ------------------------------------------------------------------------------------------------
# LTX-2.5: the released split layout, one file per component (``ltx25-demo-*``)
# Written by ``python -m ltx2_nodes demo-models`` next to the LTX-2 / LTX-2.3 sets, under ``ltx25-demo-*``
# names, each in the folder ComfyUI (and ``loading.split``) looks in:
#
# * ``diffusion_models/ltx25-demo-transformer.safetensors``: ``model.diffusion_model.*`` (the DiT of the 2.3
#   demo plus the 2.5 flags: bias-free video feed-forward, keyframe embedding) and the two text connectors;
#   ``config`` with only a ``transformer`` section, ``model_version`` "2.5.0", ``gemma_source_checkpoint``;
# * ``text_encoders/ltx25-demo-gemma4.safetensors``: a packed Gemma 4 text encoder (``demo.tiny_gemma``'s
#   writer) with the text projection and a word-level ``tokenizer_json``, its ``gemma_version`` the
#   transformer's;
# * ``vae/ltx25-demo-video-vae.safetensors``: the video VAE (conv encoder + diffusion decoder, the release's
#   bare keys with the static gates the loader folds);
# * ``vae/ltx25-demo-audio-vae.safetensors``: ``audio_vae.*`` + ``vocoder.*`` (the 2.3 demo's, 48 kHz: 2.5
#   keeps the 2.3 audio VAE and BigVGAN + bandwidth-extension vocoder);
# * ``model_patches/ltx25-demo-duration-head.safetensors``: the duration head, its output bias set so it
#   predicts about 1.5 s (a short clip on a CPU);
# * ``latent_upscale_models/ltx25-demo-spatial-upscaler-x2.safetensors``.
#
# They generate noise, like every demo model (``DEMO_NOTICE``).

MODEL_VERSION_25 = "2.5.0"
GEMMA_VERSION_25 = "ltx25-demo-gemma4"
TRANSFORMER_25 = "ltx25-demo-transformer.safetensors"
TEXT_ENCODER_25 = "ltx25-demo-gemma4.safetensors"
VIDEO_VAE_25 = "ltx25-demo-video-vae.safetensors"
AUDIO_VAE_25 = "ltx25-demo-audio-vae.safetensors"
DURATION_HEAD_25 = "ltx25-demo-duration-head.safetensors"
UPSCALER_25 = "ltx25-demo-spatial-upscaler-x2.safetensors"
DEMO_SECONDS_25 = 1.5  # what the demo duration head predicts (about; its weights are small)

DEMO_TRANSFORMER_25 = {**DEMO_TRANSFORMER_23, "ff_bias": False, "use_keyframes_abs_pos_embedding": True}
DEMO_GEMMA4 = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                   global_head_dim=16, intermediate_size=64, sliding_window=8,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"])
DEMO_DURATION_HEAD = {"pooler_hidden_dim": 16, "num_queries": 2, "num_pooler_heads": 2, "mlp_hidden": 16}
# the diffusion decoder: the 2.5 ladder at tiny widths, 2 denoising steps
DEMO_DIFFUSION_DECODER = {
    "head_dim": 8, "t_emb_dim": 32, "default_num_inference_steps": 2, "timestep_scale_multiplier": 1000.0,
    "stage_channels": [64, 32, 16, 16, 8], "stage_depths": [1, 1, 1, 1, 1],
    "stage_kernels": [[3, 3, 3]] * 5, "stage5_kernel": [3, 3, 3], "stage5_channels": 16,
    "in_channels": DEMO_VIDEO_LATENT_CHANNELS, "out_channels": 3, "patch_size": 4,
}


@dataclass(frozen=True)
class DemoModels25:
    """The written LTX-2.5 files (kind -> path, ``loading.split`` kinds) and the upscaler."""

    transformer: Path
    text_encoder: Path
    video_vae: Path
    audio_vae: Path
    duration_head: Path
    upscaler: Path

    def files(self) -> tuple[Path, ...]:
        return (self.transformer, self.text_encoder, self.video_vae, self.audio_vae, self.duration_head,
                self.upscaler)


def _module_state(build, prefix: str, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        module = build()
    return {prefix + k: _random_value(prefix + k, tuple(v.shape), seed) for k, v in module.state_dict().items()}


def write_transformer(path: Path, seed: int = 0) -> Path:
    """The DiT and both connectors, with the 2.5 metadata (``config.transformer`` only, version, Gemma lock)."""
    from ..model.connector import ConnectorConfig, Embeddings1DConnector
    from ..model.transformer import LTX2Transformer, TransformerConfig

    config = copy.deepcopy(DEMO_TRANSFORMER_25)
    state = _module_state(lambda: LTX2Transformer(TransformerConfig.from_metadata(config)),
                          "model.diffusion_model.", seed)
    for name, audio in (("video", False), ("audio", True)):
        state.update(_module_state(lambda a=audio: Embeddings1DConnector(ConnectorConfig.from_metadata(config,
                                                                                                       audio=a)),
                                   f"model.diffusion_model.{name}_embeddings_connector.", seed))
    metadata = {"config": json.dumps({"transformer": config}), "model_version": MODEL_VERSION_25,
                "gemma_source_checkpoint": json.dumps({"gemma_version": GEMMA_VERSION_25}),
                "ltx2_nodes_demo": DEMO_NOTICE}
    return _write(path, state, metadata, torch.bfloat16)


def write_text_encoder(path: Path, seed: int = 0) -> Path:
    """The packed Gemma 4 file: language model, the 2.3-style text projection into the demo DiT's widths, tokenizer."""
    from ..model.connector import TextProjection, TextProjectionConfig
    from ..model.transformer import TransformerConfig
    from .tiny_gemma import gemma4_config, gemma4_state, write_packed_text_encoder

    config = gemma4_config(GEMMA_VERSION_25, **DEMO_GEMMA4)
    dit = TransformerConfig.from_metadata(DEMO_TRANSFORMER_25)
    width = DEMO_GEMMA4["hidden_size"] * (DEMO_GEMMA4["num_hidden_layers"] + 1)
    projection = _module_state(lambda: TextProjection(TextProjectionConfig(
        in_features=width, video_width=dit.inner_dim, audio_width=dit.audio_inner_dim, separate_projections=True)),
        "text_embedding_projection.", seed)
    write_packed_text_encoder(path, config, gemma4_state(config, seed), projection=projection, dtype=torch.bfloat16)
    return path


def write_audio_vae(path: Path, seed: int = 0) -> Path:
    """``audio_vae.*`` + ``vocoder.*`` of the 2.3 demo (same seeds: the same weights), 2.5 split metadata."""
    from ..loading.components import vocoder_config
    from ..model.audio_vae import AudioDecoder, AudioEncoder, AudioVAEConfig

    audio = AudioVAEConfig.from_metadata(DEMO_AUDIO_VAE)
    state: dict[str, torch.Tensor] = {}
    for build, prefix in ((lambda: AudioEncoder(audio), "audio_vae.encoder."),
                          (lambda: AudioDecoder(audio), "audio_vae.decoder.")):
        for key, value in _module_state(build, prefix, seed).items():
            name = "audio_vae." + key[len(prefix):] if ".per_channel_statistics." in key else key
            state.setdefault(name, _random_value(name, tuple(value.shape), seed))
    state.update(vocoder_state(vocoder_config(DEMO_VOCODER_23), seed))
    config = {"audio_vae": copy.deepcopy(DEMO_AUDIO_VAE), "vocoder": copy.deepcopy(DEMO_VOCODER_23)}
    return _write(path, state, {"config": json.dumps(config), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def write_duration_head(path: Path, seed: int = 0) -> Path:
    """The duration head; its output layer is scaled down and biased to ``DEMO_SECONDS_25`` (log seconds)."""
    from ..model.duration_head import DurationHead, DurationHeadConfig

    dit = {k: DEMO_TRANSFORMER_25[k] for k in ("cross_attention_dim", "audio_cross_attention_dim")}
    config = {"transformer": dit, "duration_head": dict(DEMO_DURATION_HEAD)}
    state = _module_state(lambda: DurationHead(DurationHeadConfig.from_metadata(config)), "duration_head.", seed)
    state["duration_head.mlp_out.weight"] = state["duration_head.mlp_out.weight"] * 0.01
    state["duration_head.mlp_out.bias"] = torch.full_like(state["duration_head.mlp_out.bias"],
                                                          math.log(DEMO_SECONDS_25))
    return _write(path, state, {"config": json.dumps(config), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def video_vae_config() -> dict:
    """``config.vae`` of the demo video VAE file: the 2.3 demo's conv encoder nested, the diffusion decoder."""
    encoder = {"dims": 3, "in_channels": 3, "out_channels": DEMO_VIDEO_LATENT_CHANNELS,
               "blocks": copy.deepcopy(DEMO_VAE_23["encoder_blocks"]), "patch_size": DEMO_VAE_23["patch_size"],
               "norm_layer": DEMO_VAE_23["norm_layer"], "latent_log_var": DEMO_VAE_23["latent_log_var"],
               "spatial_padding_mode": "zeros"}
    return {"_class_name": "CausalDiffusionVAE", "latent_channels": DEMO_VIDEO_LATENT_CHANNELS,
            "model_output_type": "v", "encoder": encoder, "decoder": copy.deepcopy(DEMO_DIFFUSION_DECODER)}


def write_video_vae(path: Path, seed: int = 0) -> Path:
    """Conv encoder (``encoder.*``), diffusion decoder (``decoder.*``, the release's key layout: the module's keys
    plus the static per-channel ``diff_blocks.N.gate_{msa,mlp,ctx}`` the loader folds) and the shared
    ``per_channel_statistics.*``."""
    from ..model.diffusion_vae import GATE_FOLDS, DiffusionDecoderConfig, DiffusionVideoDecoder
    from ..model.video_vae import VideoEncoder, VideoVAEConfig

    config = video_vae_config()
    state = _module_state(lambda: VideoEncoder(VideoVAEConfig.from_metadata(config)), "encoder.", seed)
    state.update(_module_state(lambda: DiffusionVideoDecoder(DiffusionDecoderConfig.from_metadata(config)),
                               "decoder.", seed))
    for key in [k for k in state if k.startswith(("encoder.per_channel_statistics.",
                                                  "decoder.per_channel_statistics."))]:
        state["per_channel_statistics." + key.split("per_channel_statistics.", 1)[1]] = state.pop(key)
    blocks = sorted({k.split(".")[2] for k in state if k.startswith("decoder.diff_blocks.")}, key=int)
    for block in blocks:
        width = state[f"decoder.diff_blocks.{block}.attn.proj.weight"].shape[0]
        for gate in GATE_FOLDS:
            name = f"decoder.diff_blocks.{block}.{gate}"
            state[name] = 1.0 + _random_value(name, (width,), seed)
    return _write(path, state, {"config": json.dumps({"vae": config}), "model_version": MODEL_VERSION_25,
                                "ltx2_nodes_demo": DEMO_NOTICE}, torch.bfloat16)


def write_demo_models_25(root: Path, seed: int = 0) -> DemoModels25:
    """Every LTX-2.5 demo file under ``root`` (a ComfyUI-style models folder), in its folder."""
    files = DemoModels25(root / "diffusion_models" / TRANSFORMER_25, root / "text_encoders" / TEXT_ENCODER_25,
                         root / "vae" / VIDEO_VAE_25, root / "vae" / AUDIO_VAE_25,
                         root / "model_patches" / DURATION_HEAD_25, root / "latent_upscale_models" / UPSCALER_25)
    for path in files.files():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_transformer(files.transformer, seed)
    write_text_encoder(files.text_encoder, seed)
    write_video_vae(files.video_vae, seed)
    write_audio_vae(files.audio_vae, seed)
    write_duration_head(files.duration_head, seed)
    write_upscaler(files.upscaler, seed + 2)
    return files
