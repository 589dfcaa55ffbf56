"""The denoising loop over (video, audio) latent states: Euler, Euler ancestral or res_2s.

Each step asks a denoiser for clean estimates ``x0_hat`` of both modalities (one guided
prediction per modality), pins conditioned tokens to their clean values
(``x0_hat * mask + clean * (1 - mask)``) and moves the states to the next sigma.

``res_2s`` (reference HEAD, ``ltx_pipelines/utils/samplers.py``): per step two model evaluations,
at ``sigma`` and at the midpoint ``sqrt(sigma * sigma_next)``, combined by the second-order
exponential Runge-Kutta weights (``samplers.res2s_coefficients``); all sampler math in float64
(float32 on MPS). SDE noise handling, as in the reference's default ("legacy") mode:

* after the midpoint move and after the full step, a fraction ``eta`` of the noise at the new level
  is replaced by fresh Gaussian noise (``samplers.sde_renoise``; the substep uses ``substep_eta``,
  which the reference fixes at 0.5), then conditioned tokens are pinned back to their clean values;
* each fresh noise tensor is standard-normal noise normalized to zero mean / unit std per batch
  item (the reference normalizes over the whole tensor, then per item: identical for batch 1);
* "bongmath": for small steps (``h < 0.5``, ``sigma > 0.03``) the step's anchor is moved so that the
  re-noised midpoint lies exactly on the first-order path from it -- the reference iterates
  ``anchor = mid - h*a21*(x0_1 - anchor)`` 100 times; we use its closed-form fixed point
  ``(mid - h*a21*x0_1) / (1 - h*a21)`` (same value to float64 rounding);
* a final 0 in the schedule is replaced by 0.0011 and followed by one more evaluation whose
  ``x0_hat`` is the result (2N + 1 evaluations for N steps).

Determinism: the SDE noise comes from per-item CPU generators seeded ``seed + i + 10000`` (step
noise) and ``seed + i + 20000`` (substep noise), drawn video first then audio, so a seed gives the
same result on any device and batch size. (The reference seeds its two generators with fixed
constants -1 and 9999, independent of the user seed.)

``euler_ancestral`` (reference HEAD ``euler_ancestral_denoising_loop``, stage 1 of ``DistilledPipeline`` for
``model_version >= 2.5``): per step one evaluation; on a non-terminal step fresh standard-normal noise
(plain ``randn`` in the latent's dtype, video first then audio) goes into ``samplers.euler_ancestral_step``
with ``eta`` (default 1) and ``s_noise`` (1), conditioned tokens are pinned back to their clean values
after the step, and the step into sigma 0 returns the clean estimate. The noise stream is its own: per-item
CPU generators seeded ``seed + i + 10000`` (the reference's ``ANCESTRAL_NOISE_SEED_OFFSET``: the pipeline
seed plus 10000, one generator on the latent's device -- the same stream on the CPU for batch 1), so the
stream the initial noise and stage 2 use (``SeededNoise`` passed by the caller, with its record/resume)
is not touched. eta 0 draws nothing and is the Euler loop.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from ..errors import InputError
from ..progress import check_interrupted
from .noise import SeededNoise
from .samplers import euler_ancestral_step, euler_step, post_process, res2s_coefficients, sde_renoise
from .state import LatentState

SAMPLERS = ("euler", "euler_ancestral", "res_2s")
DEFAULT_ETA = {"euler_ancestral": 1.0, "res_2s": 0.5}  # the reference's: ANCESTRAL_ETA, res_2s' eta
ANCESTRAL_SEED_OFFSET = 10000
RES2S_STEP_SEED_OFFSET = 10000
RES2S_SUBSTEP_SEED_OFFSET = 20000
RES2S_LAST_SIGMA = 0.0011  # stands in for a final 0 (log-step size must stay finite)
BONGMATH_MAX_H = 0.5
BONGMATH_MIN_SIGMA = 0.03

Callback = Callable[[int, int, torch.Tensor], None]


class Denoiser(Protocol):
    def __call__(self, video: LatentState | None, audio: LatentState | None, sigma: torch.Tensor, step: int
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Clean estimates ``[B, T, C]`` for the given states at global noise level ``sigma`` (0-d)."""


def denoise(denoiser: Denoiser, video: LatentState | None, audio: LatentState | None, sigmas: torch.Tensor, *,
            sampler: str = "euler", seed: int = 0, eta: float | None = None, substep_eta: float = 0.5,
            s_noise: float = 1.0, bongmath: bool = True, callback: Callback | None = None
            ) -> tuple[LatentState | None, LatentState | None]:
    """Run the schedule ``sigmas`` and return the final states.

    ``callback(step, total, preview)`` runs after every step with the current clean estimate of
    the video in grid layout ``[B, C, F, H, W]`` (the audio's ``[B, C, T, M]`` when there is no
    video); an exception it raises propagates unchanged. ``progress.check_interrupted`` runs before every
    model evaluation (a cancelled run raises there). ``seed`` and ``eta`` (None: the sampler's
    ``DEFAULT_ETA``) matter for ``euler_ancestral`` and ``res_2s``, ``s_noise`` for ``euler_ancestral``,
    ``substep_eta``/``bongmath`` for ``res_2s``.
    """
    if video is None and audio is None:
        raise InputError("nothing to denoise: both the video and the audio state are missing.")
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}.")
    sigmas = sigmas.detach().to("cpu", torch.float32)
    with torch.no_grad():
        if sampler == "euler":
            return _euler(denoiser, video, audio, sigmas, callback)
        eta = DEFAULT_ETA[sampler] if eta is None else float(eta)
        if sampler == "euler_ancestral":
            return _euler_ancestral(denoiser, video, audio, sigmas, seed, eta, s_noise, callback)
        return _res2s(denoiser, video, audio, sigmas, seed, eta, substep_eta, bongmath, callback)


def _check_cancel(step: int, total: int) -> None:
    check_interrupted(f"during sampling, at step {step + 1} of {total}")


def _preview(video: LatentState | None, audio: LatentState | None, x0_video, x0_audio) -> torch.Tensor:
    return video.to_grid(x0_video) if video is not None else audio.to_grid(x0_audio)


def _clean_estimates(denoiser, video, audio, sigma, step):
    x0_v, x0_a = denoiser(video, audio, sigma, step)
    x0_v = post_process(x0_v, video.mask, video.clean) if video is not None else None
    x0_a = post_process(x0_a, audio.mask, audio.clean) if audio is not None else None
    return x0_v, x0_a


def _euler(denoiser, video, audio, sigmas, callback):
    total = len(sigmas) - 1
    for i in range(total):
        _check_cancel(i, total)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_v, x0_a = _clean_estimates(denoiser, video, audio, sigma, i)
        if video is not None:
            video = video.replace(latent=euler_step(video.latent, x0_v, sigma, sigma_next))
        if audio is not None:
            audio = audio.replace(latent=euler_step(audio.latent, x0_a, sigma, sigma_next))
        if callback is not None:
            callback(i + 1, total, _preview(video, audio, x0_v, x0_a))
    return video, audio


def _euler_ancestral(denoiser, video, audio, sigmas, seed, eta, s_noise, callback):
    states = {k: s for k, s in (("video", video), ("audio", audio)) if s is not None}
    first = next(iter(states.values()))
    noise = SeededNoise(seed, first.batch, ANCESTRAL_SEED_OFFSET)
    total = len(sigmas) - 1
    for i in range(total):
        _check_cancel(i, total)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0 = dict(zip(("video", "audio"), denoiser(states.get("video"), states.get("audio"), sigma, i)))
        x0 = {k: post_process(x0[k].float(), s.mask, s.clean) for k, s in states.items()}
        terminal = float(sigma_next) == 0
        draws = [None] * len(states)
        if not terminal and eta > 0:  # the reference draws in the latent's dtype (both modalities share it)
            draws = noise.draw(*[tuple(s.latent.shape[1:]) for s in states.values()], dtype=first.latent.dtype)
        for (k, s), n in zip(list(states.items()), draws):
            if n is not None:
                n = n.to(s.latent.device)
            moved = euler_ancestral_step(s.latent.float(), x0[k], sigma, sigma_next, n, eta, s_noise)
            if n is not None:
                moved = post_process(moved, s.mask, s.clean)
            states[k] = s.replace(latent=moved.to(s.latent.dtype))
        if callback is not None:
            callback(i + 1, total, _preview(states.get("video"), states.get("audio"), x0.get("video"), x0.get("audio")))
    return states.get("video"), states.get("audio")


def _sde_noise(noise: SeededNoise, states: list[LatentState], dtype) -> list[torch.Tensor]:
    """Fresh SDE noise per present state, each normalized per batch item (the reference's
    whole-tensor then per-item normalization, done item by item)."""
    draws = noise.draw(*[tuple(s.latent.shape[1:]) for s in states], dtype=torch.float64)
    out = []
    for state, n in zip(states, draws):
        dims = tuple(range(1, n.ndim))
        n = (n - n.mean(dim=dims, keepdim=True)) / n.std(dim=dims, keepdim=True)
        n = (n - n.mean(dim=(-2, -1), keepdim=True)) / n.std(dim=(-2, -1), keepdim=True)
        out.append(n.to(device=state.latent.device, dtype=dtype))
    return out


def _res2s(denoiser, video, audio, sigmas, seed, eta, substep_eta, bongmath, callback):
    states = {k: s for k, s in (("video", video), ("audio", audio)) if s is not None}
    first = next(iter(states.values()))
    hp = torch.float32 if first.latent.device.type == "mps" else torch.float64
    step_noise = SeededNoise(seed, first.batch, RES2S_STEP_SEED_OFFSET)
    substep_noise = SeededNoise(seed, first.batch, RES2S_SUBSTEP_SEED_OFFSET)
    total = len(sigmas) - 1
    final_eval = float(sigmas[-1]) == 0.0
    if final_eval:
        sigmas = torch.cat([sigmas[:-1], torch.tensor([RES2S_LAST_SIGMA, 0.0])])
    sig = sigmas.to(torch.float64)

    def pinned(x: torch.Tensor, state: LatentState) -> torch.Tensor:
        return post_process(x, state.mask, state.clean)

    def evaluate(current: dict, sigma: float, step: int) -> dict:
        x0 = _clean_estimates(denoiser, current.get("video"), current.get("audio"),
                              torch.tensor(sigma, dtype=torch.float32), step)
        return {k: x for k, x in zip(("video", "audio"), x0) if k in current}

    def preview(x0: dict) -> torch.Tensor:
        return _preview(states.get("video"), states.get("audio"), x0.get("video"), x0.get("audio"))

    for i in range(total):
        _check_cancel(i, total)
        sigma, sigma_next = sig[i].to(hp), sig[i + 1].to(hp)
        h = float(-torch.log(sig[i + 1] / sig[i]))
        a21, b1, b2 = res2s_coefficients(h)
        sub_sigma = torch.sqrt(sigma * sigma_next)
        anchor = {k: s.latent.to(hp) for k, s in states.items()}
        x0_1 = {k: x.to(hp) for k, x in evaluate(states, float(sig[i]), i).items()}
        mid = {}
        for (k, s), n in zip(states.items(), _sde_noise(substep_noise, list(states.values()), hp)):
            moved = anchor[k] + h * a21 * (x0_1[k] - anchor[k])
            mid[k] = pinned(sde_renoise(anchor[k], moved, sigma, sub_sigma, n, substep_eta), s)
            if bongmath and h < BONGMATH_MAX_H and float(sigma) > BONGMATH_MIN_SIGMA:
                c = h * a21
                anchor[k] = (mid[k] - c * x0_1[k]) / (1 - c)
        _check_cancel(i, total)
        mid_states = {k: s.replace(latent=mid[k].to(s.latent.dtype)) for k, s in states.items()}
        x0_2 = {k: x.to(hp) for k, x in evaluate(mid_states, float(sub_sigma), 0).items()}
        for (k, s), n in zip(list(states.items()), _sde_noise(step_noise, list(states.values()), hp)):
            moved = anchor[k] + h * (b1 * (x0_1[k] - anchor[k]) + b2 * (x0_2[k] - anchor[k]))
            moved = pinned(sde_renoise(anchor[k], moved, sigma, sigma_next, n, eta), s)
            states[k] = s.replace(latent=moved.to(s.latent.dtype))
        if callback is not None and not (final_eval and i == total - 1):
            callback(i + 1, total, preview(x0_2))
    if final_eval:
        _check_cancel(total - 1, total)
        x0 = evaluate(states, float(sig[total]), total)
        states = {k: s.replace(latent=x0[k].to(s.latent.dtype)) for k, s in states.items()}
        if callback is not None:
            callback(total, total, preview(x0))
    return states.get("video"), states.get("audio")

