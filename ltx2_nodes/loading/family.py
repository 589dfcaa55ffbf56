"""Which LTX-2 model family a file (checkpoint, DiT split, text projection or LoRA) belongs to.

This module is the one owner of that fact. A family is a released generation of the model:

- LTX-2 (Jan 2026, 19B; ``ltx-2-19b-{dev,distilled}[-fp8]``): DiT ``caption_projection``, one
  ``aggregate_embed``;
- LTX-2.3 (Mar 2026, 22B; ``ltx-2.3-22b-{dev,distilled}``): gated attention, prompt AdaLN (9-row
  tables), no caption projection, two aggregate embeds, vocoder with bandwidth extension;
- LTX-2.5 (Aug 2026; split per-component files): the LTX-2.3 DiT plus a bias-free video feed-forward and the
  keyframe absolute-position embedding (``use_keyframes_abs_pos_embedding``), Gemma 4 text encoder. Its
  transformer file carries ``model_version`` ``"2.5.0"`` and a ``config`` with only a ``transformer``
  section (:func:`is_split_transformer_config`, how the reference trainer recognises a split pack).

Detection reads, in this order (architecture reference §10.3 and §12.5):

1. ``model_version`` metadata (``"2.3.0"``, plain or JSON-quoted, as the official
   ``detect_model_version`` reads it; a version >= 2.6 is refused outright);
2. the ``config`` metadata: ``config.transformer`` switches (``apply_gated_attention``,
   ``cross_attention_adaln``, ``caption_proj_before_connector``, ...) and a ``bwe`` section in
   ``config.vocoder``;
3. metadata of LTX-2.5 component files: a Gemma 4 ``gemma_config`` (packed text encoder), a
   ``gemma_source_checkpoint`` (the transformer's Gemma version lock), ``config.vae`` of the
   diffusion decoder (``CausalDiffusionVAE``);
4. tensor names (metadata stripped, e.g. ComfyUI DiT-only splits with or without the
   ``model.diffusion_model.`` prefix, a separate text-projection file, a LoRA's targets) and the
   row count of the block AdaLN tables / ``adaln_single.linear`` (6 in LTX-2, 9 from LTX-2.3).

Every clue narrows the set of families it is consistent with; the file is the oldest family
consistent with all of them. Clues that exclude each other (``model_version`` 2.0 with gated
attention tensors) raise a :class:`CheckpointError` naming both. The official code keys its
pipeline presets on ``model_version`` alone; we also read the tensors because ComfyUI's
re-saved files drop the metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import CheckpointError, UnsupportedModelError


@dataclass(frozen=True)
class ModelFamily:
    """A released model generation and what distinguishes its files.

    ``markers`` are tensor-name fragments this family introduced (kept by its successors unless
    one lists them in ``dropped``); ``flags`` are ``config.transformer`` switches it introduced
    (true in its files); ``adaln_rows`` is the row count of its block AdaLN tables when it changed;
    ``preset`` holds ``config.transformer`` values that tensor shapes cannot show, used when a
    DiT file lost its metadata.
    """

    name: str
    version: str
    summary: str  # size and release, for messages
    files: str  # the release files, for messages
    markers: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    adaln_rows: int | None = None
    preset: tuple[tuple[str, object], ...] = ()
    supported: bool = True

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_model_version(self.version)

    def describe(self) -> str:
        return f"{self.name} ({self.summary})"


LTX_2 = ModelFamily(
    "LTX-2", "2.0", "19B, Jan 2026", "ltx-2-19b-dev / ltx-2-19b-distilled (or their -fp8 files)",
    markers=("caption_projection", "text_embedding_projection.aggregate_embed."), adaln_rows=6)
LTX_2_3 = ModelFamily(
    "LTX-2.3", "2.3", "22B, Mar 2026", "ltx-2.3-22b-dev / ltx-2.3-22b-distilled",
    markers=("to_gate_logits", "prompt_adaln_single", "prompt_scale_shift_table", "video_aggregate_embed",
             "audio_aggregate_embed", "bwe_generator"),
    dropped=LTX_2.markers,
    flags=("apply_gated_attention", "cross_attention_adaln", "caption_proj_before_connector"),
    adaln_rows=9,
    preset=(("caption_projection_first_linear", False), ("caption_proj_input_norm", False),
            ("caption_projection_second_linear", False), ("text_encoder_norm_type", "per_token_rms")))
LTX_2_5 = ModelFamily(
    "LTX-2.5", "2.5", "Aug 2026, split files, Gemma 4 text encoder",
    "the LTX-2.5 per-component files (transformer, text encoder, video VAE, audio VAE, duration head)",
    markers=("keyframes_abs_pos_embedding",), flags=("use_keyframes_abs_pos_embedding",),
    preset=LTX_2_3.preset)  # the LTX-2.3 text projection (FeatureExtractorV2)

FAMILIES: tuple[ModelFamily, ...] = (LTX_2, LTX_2_3, LTX_2_5)  # oldest first; each inherits its predecessor
_REFUSED_SINCE = (2, 6)  # the newest release this code knows is 2.5
_SUPPORTED = " and ".join(f.describe() for f in FAMILIES if f.supported)


@dataclass(frozen=True)
class FamilyMatch:
    """The detected family and the clues that decided it (for logs, ``inspect`` and error messages)."""

    family: ModelFamily
    evidence: str


def parse_model_version(value: object) -> tuple[int, ...]:
    """``"2.3.0"`` / ``'"2.3.0"'`` / ``"2.4-rc2"`` -> ``(2, 3, 0)`` / ``(2, 3, 0)`` / ``(2, 4)``; ``()`` if none.

    Like the official ``parse_model_version`` (numeric parts up to the first non-numeric one, "-"
    read as "."), plus the JSON quoting some tools write around metadata strings.
    """
    text = str(value or "").strip()
    if text.startswith('"'):
        try:
            text = str(json.loads(text)).strip()
        except json.JSONDecodeError:
            text = text.strip('"')
    parts = []
    for part in text.replace("-", ".").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# ------------------------------------------------------------------------------------------------
# Lineage: which families carry a marker, a flag, a table size


def _effective(attribute: str) -> dict[ModelFamily, set]:
    """Per family, the markers (or flags) it carries: introduced by it or a predecessor, not dropped
    (``dropped`` names markers only, so flags are never removed)."""
    carried: set = set()
    out = {}
    for family in FAMILIES:
        carried = (carried - set(family.dropped)) | set(getattr(family, attribute))
        out[family] = set(carried)
    return out


_MARKERS = _effective("markers")
_FLAGS = _effective("flags")


def _rows(family: ModelFamily) -> int | None:
    rows = None
    for f in FAMILIES[: FAMILIES.index(family) + 1]:
        rows = f.adaln_rows or rows
    return rows


def _carrying(marker: str, present: bool = True) -> frozenset[ModelFamily]:
    return frozenset(f for f in FAMILIES if (marker in _MARKERS[f]) == present)


_CAPTION = "caption_projection"
_ADALN = re.compile(r"(?:^|\.)adaln_single\.linear(?:\.weight)?$")
_BLOCK_TABLE = re.compile(r"(?:^|\.)transformer_blocks\.\d+\.scale_shift_table$")


# ------------------------------------------------------------------------------------------------
# Clues


Clue = tuple[frozenset, str]  # (families consistent with it, what was seen)


def _version_clue(metadata: Mapping[str, str], source: str) -> list[Clue]:
    raw = metadata.get("model_version")
    version = parse_model_version(raw)
    if not version:
        return []
    text = ".".join(map(str, version))
    if version >= _REFUSED_SINCE:
        raise UnsupportedModelError(
            f"{source} is LTX-{text} (model_version metadata); ltx2_nodes runs {_SUPPORTED}. Releases after "
            f"{FAMILIES[-1].name} are not supported yet; use an {' / '.join(f.name for f in FAMILIES)} file or "
            "update ltx2_nodes.")
    family = [f for f in FAMILIES if f.version_tuple <= version][-1:] or [FAMILIES[0]]
    return [(frozenset(family), f"model_version metadata {text}")]


def _config_clues(config: Mapping | None) -> list[Clue]:
    if not isinstance(config, Mapping):
        return []
    clues = []
    transformer = config.get("transformer")
    if isinstance(transformer, Mapping):
        known = set().union(*_FLAGS.values())
        on = sorted(flag for flag in known if transformer.get(flag) is True)
        for flag in on:
            clues.append((frozenset(f for f in FAMILIES if flag in _FLAGS[f]), f"config.transformer {flag}=true"))
        if not on and _describes_whole_transformer(transformer):
            newer = "/".join(f.name for f in FAMILIES if f.flags)
            clues.append((frozenset(f for f in FAMILIES if not _FLAGS[f]),
                          f"config.transformer without the {newer} switches"))
    vocoder = config.get("vocoder")
    if isinstance(vocoder, Mapping):
        has_bwe = "bwe" in vocoder
        clues.append((_carrying("bwe_generator", has_bwe), "config.vocoder " + ("with" if has_bwe else "without")
                      + " a 'bwe' (bandwidth extension) section"))
    return clues


def _since(family: ModelFamily) -> frozenset[ModelFamily]:
    return frozenset(FAMILIES[FAMILIES.index(family):])


def _json(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _component_clues(metadata: Mapping[str, str], config: Mapping | None) -> list[Clue]:
    """What LTX-2.5 component files say about themselves besides ``model_version``."""
    clues = []
    gemma = _json(metadata.get("gemma_config"))
    model_type = str(gemma.get("model_type", "")) if isinstance(gemma, Mapping) else ""
    if model_type.startswith("gemma4"):
        clues.append((_since(LTX_2_5), f"gemma_config model_type {model_type} (Gemma 4 text encoder)"))
    if "gemma_source_checkpoint" in metadata:
        clues.append((_since(LTX_2_5), "gemma_source_checkpoint metadata (Gemma 4 version lock)"))
    vae = config.get("vae") if isinstance(config, Mapping) else None
    if isinstance(vae, Mapping) and vae.get("_class_name") == "CausalDiffusionVAE":
        clues.append((_since(LTX_2_5), "config.vae CausalDiffusionVAE (diffusion video decoder)"))
    return clues


def _describes_whole_transformer(section: Mapping) -> bool:
    """A ``config.transformer`` that describes a DiT, not the few widths a component file (the 2.5 duration
    head) copies from it: only such a section tells a family by the switches it lacks."""
    return "num_layers" in section or "_class_name" in section


def is_split_transformer_config(config: Mapping | None) -> bool:
    """The file's ``config`` is that of a split-layout transformer file: a ``transformer`` section and no
    ``vae`` / ``audio_vae`` / ``vocoder`` one (LTX-2.5 per-component files; the absence is how the reference
    trainer recognises a split pack). Single files carry all four sections."""
    return (isinstance(config, Mapping) and isinstance(config.get("transformer"), Mapping)
            and not any(section in config for section in ("vae", "audio_vae", "vocoder")))


def _name_clues(names: list[str], complete: bool) -> list[Clue]:
    clues = []
    for family in FAMILIES:
        for marker in family.markers:
            hit = next((n for n in names if marker in n), None)
            if hit is not None:
                clues.append((_carrying(marker), f"tensor '{hit}'"))
    # every LTX-2 DiT projects captions itself; a whole DiT without that projection is LTX-2.3+
    if complete and any("transformer_blocks." in n for n in names) and not any(_CAPTION in n for n in names):
        clues.append((_carrying(_CAPTION, False), f"no {_CAPTION} tensors in the transformer"))
    return clues


def _shape_clues(names: list[str], shape: Callable[[str], tuple[int, ...] | None]) -> list[Clue]:
    clues = []
    for pattern, rows_of, what in ((_BLOCK_TABLE, lambda s: s[0], "rows"),
                                   (_ADALN, lambda s: s[0] // s[1] if s[1] else 0, "x width outputs")):
        name = next((n for n in names if pattern.search(n)), None)
        dims = shape(name) if name is not None else None
        if dims and len(dims) == 2:
            rows = rows_of(dims)
            clues.append((frozenset(f for f in FAMILIES if _rows(f) == rows), f"'{name}' has {rows} {what}"))
    return clues


def detect_family(source: str, names: Iterable[str], *, metadata: Mapping[str, str] | None = None,
                  config: Mapping | None = None, shape: Callable[[str], tuple[int, ...] | None] | None = None,
                  complete: bool = False) -> FamilyMatch | None:
    """The family of a file from its metadata, config, tensor/module ``names`` and ``shape(name)``.

    ``complete``: ``names`` are a whole model's (a missing marker is a clue too), not a LoRA's
    subset. Returns None when nothing tells (e.g. a LoRA of attention layers only, which have
    the same shapes in every family). Raises ``UnsupportedModelError`` for LTX-2.4+ / LTX-2.5
    and ``CheckpointError`` when two clues exclude each other.
    """
    names = list(names)
    clues = (_version_clue(metadata or {}, source) + _config_clues(config) + _component_clues(metadata or {}, config)
             + _name_clues(names, complete) + (_shape_clues(names, shape) if shape is not None else []))
    if not clues:
        return None
    consistent = frozenset(FAMILIES)
    for families, seen in clues:
        if not consistent & families:
            first = next(what for fams, what in clues if not fams & families)
            raise CheckpointError(
                f"{source} contradicts itself about the model family: {first} means "
                f"{_names(consistent)}, but {seen} means {_names(families)}. The metadata was edited or tensors "
                "of two model versions were merged; use the file as originally released (the models: "
                f"{'; '.join(f'{f.name}: {f.files}' for f in FAMILIES if f.supported)}).")
        consistent &= families
    family = min(consistent, key=FAMILIES.index)
    deciding = sorted((c for c in clues if family in c[0] and len(c[0]) < len(FAMILIES)), key=lambda c: len(c[0]))
    match = FamilyMatch(family, "; ".join(seen for _, seen in deciding[:3]))  # the most telling clues first
    if not family.supported:
        raise UnsupportedModelError(
            f"{source} is an {family.name} model ({match.evidence}); ltx2_nodes runs {_SUPPORTED}. "
            f"{family.describe()} is not supported yet; use an LTX-2 or LTX-2.3 file.")
    return match


def detect_file_family(file, *, complete: bool = False) -> FamilyMatch | None:
    """:func:`detect_family` of an opened ``SafetensorsFile`` (its names, metadata, ``config`` and shapes): works
    for every LTX file, the LTX-2.5 component files (transformer, text encoder, VAEs, duration head) included."""
    return detect_family(file.path.name, file.keys(), metadata=file.metadata, config=file.json_metadata("config"),
                         shape=lambda key: file.info(key).shape, complete=complete)


def _names(families: frozenset) -> str:
    return " / ".join(f.name for f in FAMILIES if f in families) or "no known family"
