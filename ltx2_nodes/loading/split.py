"""LTX-2.5 split packs: one model assembled from its per-component files.

LTX-2.5 is released as one file per component (reference ``ModelPaths.from_split``) instead of one
single file:

* ``transformer`` (``diffusion_models``, ``checkpoints``): ``model.diffusion_model.*``, the DiT and the two
  text connectors; ``config`` with only a ``transformer`` section;
* ``text_encoder`` (``text_encoders``): packed Gemma 4 + ``text_embedding_projection.*`` + tokenizer,
  ``gemma_config`` metadata;
* ``video_vae`` (``vae``): bare ``encoder.*`` / ``decoder.*`` / ``per_channel_statistics.*``, ``config.vae``;
* ``audio_vae`` (``vae``, ``checkpoints``): ``audio_vae.*`` + ``vocoder.*``, ``config.audio_vae`` / ``vocoder``;
* ``duration_head`` (``model_patches``, ``diffusion_models``): ``duration_head.*`` (optional);
* ``upscaler`` (``latent_upscale_models``): a latent upscaler, only when given (x2 and x1.5 exist).

:func:`assemble_split_pack` opens the transformer file, takes the other files given and finds the
missing ones in the folders by their headers (nothing is loaded), checks the Gemma version lock
(the transformer's ``gemma_source_checkpoint.gemma_version`` must equal the text encoder's
``gemma_config.gemma_version``, reference ``_check_gemma_version``) and that every file is of the
transformer's family, and says what is missing, where it looked, and the fix.

Modules are built through :data:`SPLIT_LOADERS` (part name -> ``(kind, loader(pack, dtype, device))``):
a component implemented elsewhere plugs in with one line there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError, UnsupportedModelError
from . import components
from .checkpoint import COMPONENTS, ComponentSpec, LTX2Checkpoint
from .family import ModelFamily, detect_file_family, parse_model_version
from .safetensors_file import SafetensorsFile

log = logging.getLogger("ltx2_nodes")

_SUFFIXES = (".safetensors", ".sft")


def _keys_start(file: SafetensorsFile, *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in file.keys())


def _config(file: SafetensorsFile) -> dict:
    try:
        config = file.json_metadata("config")
    except CheckpointError:
        return {}
    return config if isinstance(config, dict) else {}


@dataclass(frozen=True)
class SplitKind:
    """One component file kind of a split pack: where it is searched and how its header is recognised."""

    name: str
    what: str  # for messages
    folders: tuple[str, ...]
    required: bool
    recognise: Callable[[SafetensorsFile], bool]
    specs: tuple[ComponentSpec, ...] = ()  # the component key layouts the file holds (see ComponentFile)


def _bare_vae_spec(component: str, part: str) -> ComponentSpec:
    return ComponentSpec(component, ((f"vae.{part}.", ""), (f"{part}.", ""),
                                     ("vae.per_channel_statistics.", "per_channel_statistics."),
                                     ("per_channel_statistics.", "per_channel_statistics.")), config_section="vae")


SPLIT_KINDS: dict[str, SplitKind] = {kind.name: kind for kind in (
    SplitKind("transformer", "transformer (with the text connectors)", ("diffusion_models", "checkpoints"), True,
              lambda f: _keys_start(f, "model.diffusion_model.transformer_blocks.")),
    SplitKind("text_encoder", "text encoder (Gemma 4 + text projection + tokenizer)", ("text_encoders",), True,
              lambda f: "gemma_config" in f.metadata and _keys_start(f, "text_embedding_projection."),
              (COMPONENTS["text_projection"],)),
    SplitKind("video_vae", "video VAE", ("vae",), True,
              lambda f: "vae" in _config(f) and _keys_start(f, "decoder.", "vae.decoder."),
              (_bare_vae_spec("video_encoder", "encoder"), _bare_vae_spec("video_decoder", "decoder"))),
    SplitKind("audio_vae", "audio VAE + vocoder", ("vae", "checkpoints"), True,
              lambda f: _keys_start(f, "audio_vae.decoder.") and not _keys_start(f, "model.diffusion_model."),
              tuple(COMPONENTS[c] for c in ("audio_encoder", "audio_decoder", "vocoder"))),
    SplitKind("duration_head", "duration head", ("model_patches", "diffusion_models"), False,
              lambda f: _keys_start(f, "duration_head.")),
    SplitKind("upscaler", "latent upscaler", ("latent_upscale_models",), False,
              lambda f: "initial_conv.weight" in f),
)}


class ComponentFile:
    """A split-pack component file seen through the ``LTX2Checkpoint`` interface the component loaders use
    (``component_config``, ``state_dict``, ``has``, ``release_pages``, ``path``, ``family``)."""

    def __init__(self, file: SafetensorsFile, kind: SplitKind, family: ModelFamily):
        self.file, self.kind, self.family = file, kind, family
        self.path = file.path
        self.config = _config(file)
        self._specs = {spec.name: spec for spec in kind.specs}

    def component_config(self, component: str) -> dict:
        section = self._specs[component].config_section
        value = self.config.get(section)
        if not isinstance(value, dict):
            raise CheckpointError(f"{self.path.name}: metadata 'config' has no '{section}' section, needed to build "
                                  f"the {component}; use the {self.kind.what} file as released.")
        return value

    def has(self, component: str) -> bool:
        spec = self._specs.get(component)
        return spec is not None and any(spec.module_key(k) is not None for k in self.file.keys())

    def state_dict(self, component: str) -> dict[str, torch.Tensor]:
        spec = self._specs[component]
        out = {name: self.file.tensor(k) for k in self.file.keys() if (name := spec.module_key(k)) is not None}
        if not out:
            raise CheckpointError(f"{self.path.name} ({self.kind.what} file) has no {component} weights.")
        return out

    def release_pages(self, tensor: torch.Tensor) -> None:
        self.file.release_pages(tensor)



# ------------------------------------------------------------------------------------------------
# The pack


def gemma_version_required(transformer: SafetensorsFile) -> str | None:
    """The transformer's ``gemma_source_checkpoint.gemma_version`` (None when it declares none)."""
    source = transformer.json_metadata("gemma_source_checkpoint")
    return source.get("gemma_version") if isinstance(source, dict) else None


def gemma_version_of(text_encoder: SafetensorsFile) -> str | None:
    """The packed text encoder's ``gemma_config.gemma_version`` (None when it declares none)."""
    config = text_encoder.json_metadata("gemma_config")
    return config.get("gemma_version") if isinstance(config, dict) else None


def check_gemma_lock(transformer: SafetensorsFile, text_encoder: SafetensorsFile) -> None:
    """Refuse a text encoder other than the one the transformer was trained with (reference
    ``_check_gemma_version``): both ``gemma_version`` strings must be equal. A transformer of model version
    >= 2.4 that declares none is refused unless the encoder declares none either (then a warning)."""
    check_gemma_version(transformer, gemma_version_of(text_encoder), text_encoder.path.name)


def check_gemma_version(transformer: SafetensorsFile, actual: str | None, source: str) -> None:
    """:func:`check_gemma_lock` for a text encoder known by its ``gemma_version`` (``actual``; None: it declares
    none, e.g. Gemma 3) and its name ``source`` -- e.g. the encoder of features that reach the transformer's
    connectors after a separate text-encoder loader."""
    expected = gemma_version_required(transformer)
    if expected is None:
        if parse_model_version(transformer.metadata.get("model_version")) < (2, 4) or actual is None:
            if actual is None:
                log.warning("%s and %s declare no gemma_version; their compatibility is not checked.",
                            transformer.path.name, source)
            return
        raise CheckpointError(
            f"{transformer.path.name} declares no gemma_source_checkpoint.gemma_version, which LTX-2.4+ transformer "
            f"files carry, so {source} (gemma_version {actual!r}) cannot be checked against it; use "
            "the transformer file as released.")
    if expected != actual:
        raise CheckpointError(
            f"Gemma version mismatch: {transformer.path.name} was trained with gemma_version {expected!r} "
            f"(gemma_source_checkpoint), but {source} is gemma_version {actual!r}. Use the text "
            f"encoder file released with this transformer (its gemma_config.gemma_version is {expected!r}; for "
            "LTX-2.5 the packed gemma4-12b-with-proj-ltx-2.5 file in models/text_encoders).")


@dataclass
class SplitPack:
    """The opened files of one split model (``files[kind]``); ``searched`` records where missing kinds were looked
    for. Build with :func:`assemble_split_pack`."""

    transformer: LTX2Checkpoint
    files: dict[str, ComponentFile] = field(default_factory=dict)
    searched: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def family(self) -> ModelFamily:
        return self.transformer.family

    def has_file(self, kind: str) -> bool:
        return kind == "transformer" or kind in self.files

    # the LTX2Checkpoint interface over the whole pack (e.g. for ``memory.precheck.checkpoint_weights``)

    def has(self, component: str) -> bool:
        try:
            return self.source(component).has(component)
        except ModelNotFoundError:
            return False

    def state_dict(self, component: str) -> dict[str, torch.Tensor]:
        return self.source(component).state_dict(component)

    def component_config(self, component: str) -> dict:
        """``component``'s config section; the text projection's is the transformer's (reference
        ``ModelPaths.from_split``: config from the first of the embedding files)."""
        owner = self.transformer if component == "text_projection" else self.source(component)
        return owner.component_config(component)

    def file(self, kind: str) -> ComponentFile:
        """The component file of ``kind``; a missing one raises an error naming the folders searched and the fix."""
        if kind in self.files:
            return self.files[kind]
        raise ModelNotFoundError(_missing_message(self, kind))

    def source(self, component: str) -> LTX2Checkpoint | ComponentFile:
        """The file that holds ``component`` (an ``LTX2Checkpoint`` component name, e.g. ``video_decoder``)."""
        if component in COMPONENTS and component != "text_projection" and self.transformer.has(component):
            return self.transformer
        for kind in SPLIT_KINDS.values():
            if any(spec.name == component for spec in kind.specs):
                return self.file(kind.name)
        raise CheckpointError(f"no split-pack file kind holds the {component}")

    def release_pages(self, tensor: torch.Tensor) -> None:
        """Drop mapped pages behind ``tensor`` in whichever of the pack's files it views."""
        self.transformer.release_pages(tensor)
        for file in self.files.values():
            file.release_pages(tensor)

    def load(self, part: str, dtype: torch.dtype | None = None, device=None) -> nn.Module:
        """Build ``part`` (a :data:`SPLIT_LOADERS` name) from the pack's files."""
        if part not in SPLIT_LOADERS:
            raise UnsupportedModelError(
                f"the {self.family.name} {part.replace('_', ' ')} is not supported by this ltx2_nodes version "
                f"(supported parts of split packs: {', '.join(sorted(SPLIT_LOADERS))}); update ltx2_nodes.")
        kind, loader = SPLIT_LOADERS[part]
        if kind != "transformer":
            self.file(kind)  # a missing file is named before anything is built
        return loader(self, dtype, device)

    def describe(self) -> str:
        parts = [f"{kind}: {file.path.name}" for kind, file in self.files.items()]
        return f"{self.family.name} split pack ({self.transformer.path.name}; " + "; ".join(parts) + ")"


def _missing_message(pack: SplitPack, kind: str) -> str:
    spec = SPLIT_KINDS[kind]
    where = ", ".join(str(p) for p in pack.searched.get(kind, [])) or "no folder (not searched)"
    return (f"the {pack.family.name} model of {pack.transformer.path.name} has no {spec.what} file: none found in "
            f"{where}. Put the {spec.what} file of the same release in models/{spec.folders[0]}/.")


def _open_component(path: Path, kind: SplitKind, family: ModelFamily,
                    file: SafetensorsFile | None = None) -> ComponentFile:
    """``path`` as a ``kind`` file of ``family``: refused when its header says it is something else or of another
    family (``model_version`` / config clues)."""
    file = file or SafetensorsFile(path)
    if not kind.recognise(file):
        raise CheckpointError(f"{path.name} is not an {family.name} {kind.what} file (its tensors / metadata do not "
                              f"match); choose the {kind.what} file from models/{kind.folders[0]}/.")
    if kind.name != "upscaler":
        match = detect_file_family(file)
        if match is not None and match.family is not family:
            raise CheckpointError(
                f"{path.name} is an {match.family.name} {kind.what} ({match.evidence}) but the transformer is "
                f"{family.name}; use the {kind.what} file released with the {family.name} transformer.")
    return ComponentFile(file, kind, family)


def _candidates(kind: SplitKind, search: Callable[[str], list[Path]]) -> tuple[list[Path], list[Path]]:
    """(files under the kind's folders, the folders searched)."""
    folders = [d for name in kind.folders for d in search(name)]
    found = []
    for folder in folders:
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())
    return found, folders


def _discover(kind: SplitKind, transformer: LTX2Checkpoint, search: Callable[[str], list[Path]]
              ) -> tuple[ComponentFile | None, list[Path]]:
    """The first file of ``kind`` in its folders consistent with ``transformer`` (family and, for the text encoder,
    the Gemma version lock); files of that kind that fail a check are named in the error when none fits."""
    paths, folders = _candidates(kind, search)
    rejected = []
    for path in paths:
        try:
            file = SafetensorsFile(path)
        except CheckpointError:
            continue  # not a readable safetensors file: not a candidate
        if not kind.recognise(file):
            continue
        try:
            component = _open_component(path, kind, transformer.family, file)
            if kind.name == "text_encoder":
                check_gemma_lock(transformer.file, file)
        except CheckpointError as exc:
            rejected.append(str(exc))
            continue
        log.info("%s: using %s as its %s", transformer.path.name, path.name, kind.what)
        return component, folders
    if rejected:
        raise CheckpointError(f"no {kind.what} file fits {transformer.path.name}: " + " ".join(rejected))
    return None, folders


def assemble_split_pack(transformer: LTX2Checkpoint | str | Path, given: dict[str, str | Path] | None = None,
                        search: Callable[[str], list[Path]] | None = None, require: bool = True) -> SplitPack:
    """The split pack of ``transformer``: files in ``given`` (kind -> path) are used as they are, every other
    kind is looked for with ``search(folder) -> directories`` (e.g. ``paths.model_folders``; None: not searched).

    ``require``: a required kind that was searched for and not found raises ``ModelNotFoundError`` (what, where
    it looked, the fix); without it the pack is returned and :meth:`SplitPack.file` raises that error when the
    component is first needed. A file of another family or a Gemma version mismatch raises ``CheckpointError``."""
    ckpt = transformer if isinstance(transformer, LTX2Checkpoint) else LTX2Checkpoint(transformer)
    if ckpt.variant.layout != "split":
        raise CheckpointError(f"{ckpt.path.name} is an {ckpt.variant.describe()}, not a split-layout transformer "
                              "file; load it as a single file.")
    given = dict(given or {})
    unknown = set(given) - set(SPLIT_KINDS) - {"transformer"}
    if unknown:
        raise ValueError(f"unknown split-pack kinds {sorted(unknown)}; expected {sorted(SPLIT_KINDS)}")
    pack = SplitPack(ckpt)
    for kind in SPLIT_KINDS.values():
        if kind.name == "transformer":
            continue
        if given.get(kind.name) is not None:
            pack.files[kind.name] = _open_component(Path(given[kind.name]), kind, ckpt.family)
        elif search is not None and kind.name != "upscaler":  # upscalers (x2, x1.5) are chosen, never guessed
            component, pack.searched[kind.name] = _discover(kind, ckpt, search)
            if component is not None:
                pack.files[kind.name] = component
    if "text_encoder" in pack.files:
        check_gemma_lock(ckpt.file, pack.files["text_encoder"].file)
    for kind in (k.name for k in SPLIT_KINDS.values() if k.required and k.name in pack.searched):
        if not pack.has_file(kind):
            if require:
                pack.file(kind)  # raises, naming the folders searched
            log.warning("%s", _missing_message(pack, kind))
    return pack


# ------------------------------------------------------------------------------------------------
# Loaders: part -> (file kind, loader(pack, dtype, device)). A component implemented elsewhere adds its line.

Loader = Callable[[SplitPack, "torch.dtype | None", object], nn.Module]

SPLIT_LOADERS: dict[str, tuple[str, Loader]] = {
    "transformer": ("transformer", lambda p, dtype, device: components.load_transformer(p.transformer, dtype, device)),
    "connectors": ("text_encoder", lambda p, dtype, device: components.load_text_connectors(
        p.transformer, dtype, device, text_encoder=p.file("text_encoder").file)),
    "audio_encoder": ("audio_vae", lambda p, dtype, device: components.load_audio_encoder(
        p.file("audio_vae"), dtype, device)),
    "audio_decoder": ("audio_vae", lambda p, dtype, device: components.load_audio_decoder(
        p.file("audio_vae"), dtype, device)),
    "vocoder": ("audio_vae", lambda p, dtype, device: components.load_vocoder(p.file("audio_vae"), dtype, device)),
    "video_encoder": ("video_vae", lambda p, dtype, device: components.load_video_encoder(
        p.file("video_vae"), dtype, device)),
    "video_decoder": ("video_vae", lambda p, dtype, device: components.load_video_decoder(
        p.file("video_vae"), dtype, device)),
    "latent_statistics": ("video_vae", lambda p, dtype, device: components.load_latent_statistics(
        p.file("video_vae"), device)),
    "latent_upsampler": ("upscaler", lambda p, dtype, device: components.load_latent_upsampler(
        p.file("upscaler").path, dtype, device)),
    "duration_head": ("duration_head", lambda p, dtype, device: components.load_duration_head(
        p.file("duration_head").file, dtype, device)),
}
