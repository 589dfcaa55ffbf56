"""The types and bounds of every value in the frozen model config dataclasses (one rule for all of them).

Each config dataclass (``TransformerConfig``, ``ConnectorConfig``, ``VideoVAEConfig``, ``AudioVAEConfig``,
``VocoderConfig``, ``BigVGANConfig``, ``BWEVocoderConfig``, ``UpsamplerConfig``, ``GemmaConfig``,
``TextProjectionConfig``) calls :func:`check_config` from its ``__post_init__``, so a config only exists
with values of its declared types inside these bounds, and ``from_metadata`` refuses a checkpoint whose
metadata claims two million layers, ``"two"`` heads or a negative width before any module is built or
any buffer allocated (the meta-device build of 2,000,000 blocks alone would run for hours):

* an ``int`` field is an integer (not a bool): a count of modules (a name with ``layers`` or ``blocks``)
  from 1 to :data:`MAX_MODULES`, any other (widths, channels, heads, kernel sizes, rates, bins) from
  1 to :data:`MAX_SIZE`; the few named in :data:`WIDE` (vocabulary, sample rates, windows) up to
  :data:`MAX_WIDE`;
* a ``float`` is a finite number; a ``bool`` a bool; a ``str`` a string;
* a ``tuple[...]`` holds at most :data:`MAX_MODULES` entries, each checked by its own type; the
  integer parameters inside a dict entry (the video VAE's ``["res_x", {"num_layers": 4}]`` blocks)
  follow the ``int`` rule under their key's name.

The released models sit far inside every bound (48 layers, widths up to 15360, kernels up to 16).
The reference builds whatever its config says and fails inside PyTorch (or never returns).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, is_dataclass

from ..errors import UnsupportedModelError

MAX_MODULES = 256  # layers / blocks / levels / list entries of one model part (released: at most 48)
MAX_SIZE = 65_536  # widths, channels, heads, head dims, kernel sizes, rates, bins (released: at most 15360)
MAX_WIDE = 1 << 22  # vocabulary size, sample rates, attention windows, register counts
WIDE = frozenset({"vocab_size", "sample_rate", "input_sample_rate", "output_sample_rate", "sliding_window",
                  "in_features", "num_learnable_registers"})


def as_tuple(value):
    """A JSON list (nested lists too) as a tuple, anything else unchanged, for :func:`check_config` to judge."""
    return tuple(as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def check_config(config, section: str) -> None:
    """Refuse ``config`` (a dataclass instance) if a field breaks the module's rule; ``section`` names where
    its values came from (``config.transformer``, ``config.json``, ...) for the message."""
    hints = typing.get_type_hints(type(config))
    _refuse(section, [p for f in fields(config) for p in _problems(f.name, getattr(config, f.name), hints[f.name])])


def check_value(section: str, name: str, value, annotation=int) -> None:
    """The same rule for one value a ``from_metadata`` needs before it can build its config (a layer count)."""
    _refuse(section, _problems(name, value, annotation))


def _refuse(section: str, problems: list[str]) -> None:
    if problems:
        raise UnsupportedModelError(
            f"{section} has {'; '.join(problems[:4])}{' (and more)' if len(problems) > 4 else ''}. The released "
            "models have positive integer sizes (e.g. 48 layers, 32 heads); this metadata was edited or damaged. "
            "Use the original release file.")


def int_range(name: str) -> tuple[int, int]:
    """The inclusive range of an integer value called ``name``."""
    if "layers" in name or "blocks" in name:
        return 1, MAX_MODULES
    return 1, (MAX_WIDE if name in WIDE else MAX_SIZE)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problems(name: str, value, annotation) -> list[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        return _problems(name, value, next(a for a in args if a is not type(None)))
    if annotation is int:
        low, high = int_range(name)
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{name}={_show(value)} (expected an integer from {low} to {high:,})"]
        return [] if low <= value <= high else [f"{name}={value:,} (expected {low} to {high:,})"]
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return [] if ok else [f"{name}={_show(value)} (expected a finite number)"]
    if annotation in (bool, str):
        return [] if isinstance(value, annotation) else [f"{name}={_show(value)} (expected a {annotation.__name__})"]
    if origin is tuple:
        if not isinstance(value, tuple):
            return [f"{name}={_show(value)} (expected a list)"]
        if len(value) > MAX_MODULES:
            return [f"{name} with {len(value):,} entries (expected at most {MAX_MODULES})"]
        each = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(each) != len(value):
            return [f"{name}={_show(value)} (expected {len(each)} entries)"]
        return [p for item, kind in zip(value, each) for p in _problems(name, item, kind)]
    if annotation is dict:
        if not isinstance(value, dict):
            return [f"{name}={_show(value)} (expected an object)"]
        return [p for key, item in value.items() if isinstance(item, int | float) and not isinstance(item, bool)
                for p in _problems(f"{name}.{key}", item, int if isinstance(item, int) else float)]
    if isinstance(annotation, type) and is_dataclass(annotation) and not isinstance(value, annotation):
        return [f"{name}={_show(value)} (expected a {annotation.__name__})"]
    return []
