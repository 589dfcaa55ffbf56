"""The video VAE file of an LTX-2.5 split pack (``models/vae``) and which decoder a VAE config describes.

The released 2.5 layout ships the video VAE as its own file with bare keys: ``encoder.*`` (the conv
encoder), ``decoder.*`` (the diffusion decoder of ``model.diffusion_vae``, or the conv decoder in the
conv-decoder variant) and the shared ``per_channel_statistics.*``, described by ``config.vae``.
``VideoVAEFile`` gives it the component interface of ``LTX2Checkpoint`` (``component_config``,
``state_dict``, ``has``, ``release_pages``, ``path``) for the ``video_encoder`` / ``video_decoder``
components, so the loaders in ``components`` take either.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from ..model.diffusion_vae import CLASS_NAME as DIFFUSION_VAE_CLASS
from .safetensors_file import SafetensorsFile

CONV_VAE_CLASS = "CausalVideoAutoencoder"
_PREFIXES = {"video_encoder": ("encoder.", "per_channel_statistics."),
             "video_decoder": ("decoder.", "per_channel_statistics.")}


def is_diffusion_vae(vae_config: dict) -> bool:
    """Whether ``config.vae`` describes the diffusion decoder (reference: ``vae._class_name`` decides; absent
    means the conv VAE)."""
    return vae_config.get("_class_name", CONV_VAE_CLASS) == DIFFUSION_VAE_CLASS


class VideoVAEFile:
    """A split-layout video VAE file (bare ``encoder.*`` / ``decoder.*`` / ``per_channel_statistics.*`` keys)."""

    def __init__(self, path: str | Path | SafetensorsFile):
        self.file = path if isinstance(path, SafetensorsFile) else SafetensorsFile(path)
        self.path = self.file.path
        keys = self.file.keys()
        if not any(k.startswith("decoder.") for k in keys):
            found = "a single-file LTX-2 checkpoint (models/checkpoints)" if any(
                k.startswith("vae.decoder.") for k in keys) else f"{len(keys)} tensors, e.g. {keys[:3]}"
            raise CheckpointError(
                f"{self.path.name} is not a split-layout video VAE file (no 'decoder.*' keys; found {found}). "
                "Put the LTX-2.5 video VAE file (ltx-2.5-*vae*.safetensors) in models/vae.")
        config = self.file.json_metadata("config")
        if not isinstance(config, dict) or not isinstance(config.get("vae"), dict):
            raise CheckpointError(
                f"{self.path.name} has no 'config' metadata with a 'vae' section; released VAE files carry it. The "
                "file was re-saved by a tool that dropped the metadata; use the original release file.")
        self.config: dict = config

    @property
    def is_diffusion(self) -> bool:
        return is_diffusion_vae(self.config["vae"])

    def component_config(self, component: str) -> dict:
        self._prefixes(component)
        return self.config["vae"]

    def _prefixes(self, component: str) -> tuple[str, ...]:
        if component not in _PREFIXES:
            raise CheckpointError(f"{self.path.name} is a video VAE file; it has no {component.replace('_', ' ')}.")
        return _PREFIXES[component]

    def has(self, component: str) -> bool:
        prefix = self._prefixes(component)[0]
        return any(k.startswith(prefix) for k in self.file.keys())

    def state_dict(self, component: str) -> dict[str, torch.Tensor]:
        """Tensors under module key names (``decoder.`` / ``encoder.`` stripped), memory-mapped."""
        own, shared = self._prefixes(component)
        if not self.has(component):
            raise CheckpointError(f"{self.path.name} has no '{own}*' tensors; this VAE file does not carry the "
                                  f"{component.replace('_', ' ')}.")
        return {(k[len(own):] if k.startswith(own) else k): self.file.tensor(k)
                for k in self.file.keys() if k.startswith((own, shared))}

    def component_bytes(self, component: str) -> int:
        prefixes = self._prefixes(component)
        return sum(self.file.info(k).nbytes for k in self.file.keys() if k.startswith(prefixes))

    def release_pages(self, tensor: torch.Tensor) -> None:
        self.file.release_pages(tensor)

    def __repr__(self) -> str:
        kind = "diffusion decoder" if self.is_diffusion else "conv decoder"
        return f"VideoVAEFile({self.path.name}: {kind})"
