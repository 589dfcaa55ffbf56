"""Step arithmetic of the rectified-flow samplers (no model, no loop).

Rectified flow: ``x_sigma = (1 - sigma) * x0 + sigma * noise``; the model's velocity is
``noise - x0`` and its denoised estimate ``x0_hat = x - sigma * v``. Euler is the reference's
first-order step; ``euler_ancestral`` is Euler with fresh noise mixed in at every step (the reference's
``EulerAncestralDiffusionStep``, stage 1 of the LTX-2.5 distilled pipeline); ``res_2s`` is the
reference's second-order exponential Runge-Kutta step (two model evaluations per step, midpoint at
``sqrt(sigma * sigma_next)``) with variance-preserving SDE re-noising.
"""

from __future__ import annotations

import math

import torch


def to_velocity(sample: torch.Tensor, sigma: float | torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """``(x - x0_hat) / sigma`` in float32, returned in the sample's dtype (as the reference rounds it)."""
    sigma = float(sigma.float().item()) if isinstance(sigma, torch.Tensor) else float(sigma)
    if sigma == 0:
        raise ValueError("to_velocity: sigma is 0, the velocity is undefined there")
    calc = _calc_dtype(sample)
    return ((sample.to(calc) - denoised.to(calc)) / sigma).to(sample.dtype)


def euler_step(sample: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor
               ) -> torch.Tensor:
    """One Euler step from ``sigma`` to ``sigma_next`` (float32 math, result in the sample's dtype)."""
    velocity = to_velocity(sample, sigma, denoised)
    calc = _calc_dtype(sample)
    dt = sigma_next.float() - sigma.float()
    return (sample.to(calc) + velocity.to(calc) * dt).to(sample.dtype)


def post_process(denoised: torch.Tensor, mask: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Keep conditioned tokens clean: ``x0_hat * mask + clean * (1 - mask)`` (mask 1 = generate)."""
    return (denoised * mask + clean.to(_calc_dtype(clean)) * (1 - mask)).to(denoised.dtype)


def _calc_dtype(x: torch.Tensor) -> torch.dtype:
    """float32, as the reference computes, or the tensor's own dtype when it is wider (float64)."""
    return torch.promote_types(x.dtype, torch.float32)


# ------------------------------------------------------------------------------------------------
# res_2s


def phi(j: int, z: float) -> float:
    """Exponential-integrator function ``phi_j(z) = (e^z - sum_{k<j} z^k/k!) / z^j`` (``1/j!`` at 0)."""
    if abs(z) < 1e-10:
        return 1.0 / math.factorial(j)
    return (math.exp(z) - sum(z ** k / math.factorial(k) for k in range(j))) / z ** j


def res2s_coefficients(h: float, c2: float = 0.5) -> tuple[float, float, float]:
    """``(a21, b1, b2)`` of the 2-stage exponential RK with substep ``c2``; ``h = ln(sigma / sigma_next)``.

    Midpoint: ``x_mid = x + h*a21*(x0_1 - x)``; step: ``x_next = x + h*(b1*(x0_1 - x) + b2*(x0_2 - x))``.
    """
    a21 = c2 * phi(1, -h * c2)
    b2 = phi(2, -h) / c2
    b1 = phi(1, -h) - b2
    return a21, b1, b2


def sde_renoise(anchor: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                noise: torch.Tensor, eta: float) -> torch.Tensor:
    """Replace part of the deterministic move ``anchor (at sigma) -> target (at sigma_next)`` by fresh noise.

    The straight line through the two points gives a velocity ``v`` and its clean end point
    ``x0 = anchor - sigma*v``. The result sits at the same noise level ``sigma_next`` but with a
    fraction ``eta`` of its noise standard deviation replaced by ``noise``:
    ``sigma_up = eta*sigma_next`` (capped just below ``sigma_next``),
    ``alpha = (1 - sigma_next) + sqrt(sigma_next^2 - sigma_up^2)``, ``sigma_down = sqrt(...)/alpha``,
    ``x = alpha*(x0 + sigma_down*v) + sigma_up*noise`` -- signal weight ``1 - sigma_next`` and total
    noise std ``sigma_next`` are preserved. Nothing is injected when ``sigma_next`` or ``eta`` is 0.
    """
    sigma_up = torch.clamp(sigma_next * eta, max=sigma_next * 0.9999)
    if float(sigma_up) == 0 or float(sigma_next) == 0:
        return target
    residual = (sigma_next ** 2 - sigma_up ** 2).clamp(min=0) ** 0.5
    alpha = (1 - sigma_next) + residual
    sigma_down = residual / alpha
    velocity = (anchor - target) / (sigma - sigma_next)
    clean = anchor - sigma * velocity
    return (alpha * (clean + sigma_down * velocity) + sigma_up * noise).to(target.dtype)


# ------------------------------------------------------------------------------------------------
# Euler ancestral (LTX-2.5 distilled, stage 1)


def euler_ancestral_step(sample: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                         noise: torch.Tensor | None, eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """One rectified-flow ancestral Euler step (reference ``EulerAncestralDiffusionStep``), float32 math.

    A deterministic move to ``sigma_down = sigma_next * (1 + (sigma_next/sigma - 1) * eta)`` (interpolating
    between ``x`` and ``x0_hat``), then re-noising back up to ``sigma_next``: the signal is rescaled by
    ``alpha_next / alpha_down`` (``alpha = 1 - sigma``) and ``noise * s_noise`` is added with weight
    ``sqrt(sigma_next^2 - sigma_down^2 * alpha_next^2 / alpha_down^2)`` (clamped at 0). ``eta`` 0 is a plain
    Euler step (``noise`` unused, may be None); ``sigma_next`` 0 returns ``denoised``. Result in the sample's dtype.
    """
    sigma, sigma_next = sigma.float(), sigma_next.float()
    if float(sigma_next) == 0:
        return denoised.to(sample.dtype)
    if eta > 0 and noise is None:
        raise ValueError("euler_ancestral_step: eta > 0 needs a noise tensor")
    x, x0 = sample.float(), denoised.float()
    sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta)
    ratio = sigma_down / sigma
    x_next = ratio * x + (1.0 - ratio) * x0
    if eta > 0:
        alpha_next, alpha_down = 1.0 - sigma_next, 1.0 - sigma_down
        renoise = (sigma_next ** 2 - sigma_down ** 2 * alpha_next ** 2 / alpha_down ** 2).clamp(min=0) ** 0.5
        x_next = (alpha_next / alpha_down) * x_next + noise.float() * s_noise * renoise
    return x_next.to(sample.dtype)
