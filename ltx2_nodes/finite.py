"""The one NaN/Inf check every stage runs on what it produced (``stages.py``; the MP4 writer on what it muxes).

A checkpoint with NaN weights, or float16 weights that overflow, would otherwise give an all-black video
(NaN clamps to 0) or a raw encoder error after the whole run. ``check_finite`` costs one reduction per
tensor on the tensor's own device (``aminmax``) and a single host sync for all of them, so a stage pays one
sync whatever it returns; the counts and the blame are computed only on the failure path. When the
stage's *inputs* are not finite either, the stage is not at fault and the message says the values came
from an earlier step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .errors import NonFiniteError

WEIGHTS_FIX = ("The weights are likely damaged or incomplete: compare the file's size and SHA-256 with the "
               "release and download it again. With float16 weights values can overflow: load the model in "
               "bfloat16 or float32 (weight dtype).")


def _floating(tensors: Iterable[torch.Tensor | None]) -> list[torch.Tensor]:
    return [t for t in tensors if t is not None and t.is_floating_point() and t.numel()]


def all_finite(*tensors: torch.Tensor | None) -> bool:
    """Whether every floating tensor holds only finite values: one ``aminmax`` reduction each, one sync in all.

    Exact: min and max propagate NaN, and an Inf is an extreme. ``aminmax`` reads the tensor once without a
    temporary; ``isfinite(t).all()`` writes a bool tensor first and is ~25x slower on the CPU
    (benchmarks/finite_check.py)."""
    present = _floating(tensors)
    if not present:
        return True
    device = present[0].device
    extremes = torch.stack([v.to(device) for t in present for v in torch.aminmax(t.detach().reshape(-1))])
    return bool(torch.isfinite(extremes).all())


def _counts(tensors: list[torch.Tensor]) -> str:
    nan = sum(int(torch.isnan(t).sum()) for t in tensors)
    inf = sum(int(torch.isinf(t).sum()) for t in tensors)
    total = sum(t.numel() for t in tensors)
    return f"{nan} NaN and {inf} Inf of {total} values"


def check_finite(outputs: Iterable[torch.Tensor | None], *, stage: str, model: str,
                 inputs: Iterable[torch.Tensor | None] = (), fix: str = WEIGHTS_FIX) -> None:
    """Raise ``NonFiniteError`` naming ``stage`` and ``model`` (the file) if ``outputs`` hold NaN or Inf.

    ``inputs``: what the stage was given; looked at only when the outputs fail, to tell a bad model from
    a bad input (then the message blames the earlier step instead of ``model``)."""
    outputs = _floating(outputs)
    if all_finite(*outputs):
        return
    inputs = _floating(inputs)
    if inputs and not all_finite(*inputs):
        raise NonFiniteError(
            f"the {stage} stage ({model}) was given NaN/Inf values ({_counts(inputs)}): an earlier step produced "
            "them, not this model. Check the models and nodes that made this stage's inputs (each stage of this "
            "pack checks its own outputs); nothing was written.")
    raise NonFiniteError(f"the {stage} stage produced NaN/Inf values ({_counts(outputs)}) with {model}; nothing "
                         f"was written. {fix}")
