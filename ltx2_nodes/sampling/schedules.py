"""Sigma schedules: the LTX-2 shifted schedule and user lists (the distilled models' fixed lists are
presets of their family: ``sampling.recipe``).

A schedule is a 1-D float32 tensor of noise levels, strictly descending, in [0, 1], ending at 0;
step ``i`` goes from ``sigmas[i]`` to ``sigmas[i + 1]``. The float32 arithmetic below follows the
reference scheduler operation for operation so the lists match it bit for bit.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError

# Token counts at which the LTX-2 shift takes its base / max value (linear in between).
BASE_SHIFT_TOKENS = 1024
MAX_SHIFT_TOKENS = 4096


def ltx2_sigmas(steps: int, tokens: int | None = None, max_shift: float = 2.05, base_shift: float = 0.95,
                stretch: bool = True, terminal: float = 0.1) -> torch.Tensor:
    """The dev model's schedule: ``linspace(1, 0)`` pushed towards 1 by a token-count shift.

    ``tokens`` None means 4096, which is what the reference pipelines use (they never pass the
    latent), i.e. shift 2.05 whatever the resolution. With ``stretch`` the last non-zero sigma
    is moved to ``terminal`` by an affine map of ``1 - sigma``.
    """
    _check_steps(steps)
    tokens = MAX_SHIFT_TOKENS if tokens is None else tokens
    slope = (max_shift - base_shift) / (MAX_SHIFT_TOKENS - BASE_SHIFT_TOKENS)
    shift = tokens * slope + (base_shift - slope * BASE_SHIFT_TOKENS)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    sigmas = torch.where(sigmas != 0, math.exp(shift) / (math.exp(shift) + (1 / sigmas - 1)), 0)
    if stretch:
        nonzero = sigmas != 0
        one_minus = 1.0 - sigmas[nonzero]
        sigmas[nonzero] = 1.0 - one_minus / (one_minus[-1] / (1.0 - terminal))
    return sigmas.to(torch.float32)


def parse_sigmas(text: str) -> torch.Tensor:
    """A user-typed list such as ``"1.0, 0.9, 0.5, 0.0"`` (commas and/or whitespace), validated."""
    parts = [p for p in text.replace(",", " ").split()]
    if not parts:
        raise InputError("custom sigmas are empty: type a descending list ending at 0, e.g. '1.0, 0.9, 0.5, 0.0'.")
    values = []
    for i, part in enumerate(parts):
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"custom sigmas: entry {i + 1} ({part!r}) is not a number; type numbers separated by "
                             "commas, e.g. '1.0, 0.9, 0.5, 0.0'.") from None
    return validate_sigmas(values)


def validate_sigmas(sigmas, what: str = "custom sigmas") -> torch.Tensor:
    """Check a schedule: at least two finite values in [0, 1], strictly descending, last one 0."""
    values = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if len(values) < 2:
        raise InputError(f"{what}: need at least two values (a start level and the final 0), got {values}.")
    for i, v in enumerate(values):
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise InputError(f"{what}: entry {i + 1} is {v}; every sigma must lie in [0, 1] (1 = pure noise).")
    for i in range(1, len(values)):
        if values[i] >= values[i - 1]:
            raise InputError(f"{what}: entry {i + 1} ({values[i]}) is not below entry {i} ({values[i - 1]}); "
                             "sigmas must be strictly descending.")
    if values[-1] != 0.0:
        raise InputError(f"{what}: the last sigma is {values[-1]}; the list must end at 0 so the result is fully "
                         "denoised (append ', 0').")
    return torch.tensor(values, dtype=torch.float32)


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}.")
