"""Sigma schedules: the LTX-2 shifted schedule, the distilled model's fixed lists, user lists.

A schedule is a 1-D float32 tensor of noise levels, strictly descending, in [0, 1], ending at 0;
step ``i`` goes from ``sigmas[i]`` to ``sigmas[i + 1]``. The float32 arithmetic below follows the
reference scheduler operation for operation so the lists match it bit for bit.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..errors import InputError

# Token counts at which the LTX-2 shift takes its base / max value (linear in between).
BASE_SHIFT_TOKENS = 1024
MAX_SHIFT_TOKENS = 4096

# Fixed lists of the distilled model (ltx_pipelines.utils.constants).
DISTILLED_STAGE1_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
DISTILLED_STAGE2_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)
# Stage 2 of the two-stage pipelines re-noises the upsampled latent to this level.
STAGE2_START_SIGMA = DISTILLED_STAGE2_SIGMAS[0]


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


def linear_quadratic_sigmas(steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
                            ) -> torch.Tensor:
    """Linear ramp of ``1 - sigma`` up to ``threshold_noise`` over ``linear_steps``, then quadratic to 1."""
    _check_steps(steps)
    if steps == 1:
        return torch.tensor([1.0, 0.0])
    linear_steps = steps // 2 if linear_steps is None else linear_steps
    ramp = [i * threshold_noise / linear_steps for i in range(linear_steps)]
    quad_steps = steps - linear_steps
    gap = linear_steps - threshold_noise * steps
    curve = []
    if quad_steps > 0:
        quad = gap / (linear_steps * quad_steps ** 2)
        lin = threshold_noise / linear_steps - 2 * gap / quad_steps ** 2
        const = quad * linear_steps ** 2
        curve = [quad * i ** 2 + lin * i + const for i in range(linear_steps, steps)]
    return torch.tensor([1.0 - t for t in ramp + curve + [1.0]], dtype=torch.float32)


BETA_SCHEDULE_SHIFT = 2.37
BETA_SCHEDULE_RESOLUTION = 10000


def beta_sigmas(steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at Beta(alpha, beta) quantiles of a shift-2.37 grid (arXiv 2407.12173).

    Duplicate timesteps are dropped, so the list can be shorter than ``steps + 1``.
    """
    _check_steps(steps)
    grid = _shifted_grid(BETA_SCHEDULE_SHIFT, BETA_SCHEDULE_RESOLUTION)
    last = len(grid) - 1
    indices = []
    for i in range(steps):
        index = int(round_half_even(beta_quantile(1.0 - i * (1.0 / steps), alpha, beta) * last))
        if index not in indices:
            indices.append(index)
    return torch.tensor([float(grid[i]) for i in indices] + [0.0], dtype=torch.float32)


@lru_cache(maxsize=4)
def _shifted_grid(shift: float, length: int) -> torch.Tensor:
    t = torch.arange(1, length + 1, 1) / length
    return math.exp(shift) / (math.exp(shift) + (1 / t - 1))


def round_half_even(x: float) -> float:
    """``numpy.rint``: nearest integer, ties to even (Python's ``round`` does the same)."""
    return float(round(x))


def beta_quantile(p: float, a: float, b: float) -> float:
    """Inverse CDF of Beta(a, b) by bisection on the regularized incomplete beta (to ~1e-15)."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if a == b and p == 0.5:
        return 0.5  # exact by symmetry; bisection could land one ulp low and flip a round-half-even tie
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if regularized_incomplete_beta(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) via its continued fraction (modified Lentz), using the symmetry for x > (a+1)/(a+b+2)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def distilled_sigmas(stage: int = 1) -> torch.Tensor:
    """The distilled model's fixed lists: stage 1 (8 steps from 1.0) or stage 2 (3 steps from 0.909375)."""
    if stage not in (1, 2):
        raise InputError(f"distilled schedule stage must be 1 or 2, got {stage!r}.")
    return torch.tensor(DISTILLED_STAGE1_SIGMAS if stage == 1 else DISTILLED_STAGE2_SIGMAS, dtype=torch.float32)


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
