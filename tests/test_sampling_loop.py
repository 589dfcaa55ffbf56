"""Sampler accuracy with an exact denoiser, res_2s determinism, loop callbacks and cancellation.

Data x0 ~ N(mu, s^2) per coordinate and x_sigma = (1 - sigma) x0 + sigma * noise: the exact
denoiser is E[x0 | x_sigma] = mu + (1-sigma) s^2 / var * (x - (1-sigma) mu) with
var = (1-sigma)^2 s^2 + sigma^2, and the exact probability-flow ODE keeps the standardized value
z = (x - (1-sigma) mu) / sqrt(var) fixed, so noise z (at sigma 1) must end at mu + s z.
"""

from __future__ import annotations

import math

import pytest
import torch

from ltx2_nodes import progress
from ltx2_nodes.errors import InputError, RunInterrupted
from ltx2_nodes.sampling.loop import denoise
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

MU, STD = 0.7, 0.4


class GaussianDenoiser:
    """Exact x0 estimate for Gaussian data (float64), for both streams."""

    def __init__(self):
        self.calls = 0

    def _x0(self, state, sigma):
        if state is None:
            return None
        x, s = state.latent.double(), float(sigma)
        var = (1 - s) ** 2 * STD ** 2 + s ** 2
        return (MU + (1 - s) * STD ** 2 / var * (x - (1 - s) * MU)).to(state.latent.dtype)

    def __call__(self, video, audio, sigma, step):
        self.calls += 1
        return self._x0(video, sigma), self._x0(audio, sigma)


def _noise_state(batch=1, tokens=48, channels=4, seed=0, dtype=torch.float64):
    grid = AudioGrid(channels, tokens, 1)
    state = initial_state(grid, batch, dtype=dtype)
    z = SeededNoise(seed, batch).draw((tokens, channels))[0].to(dtype)
    return add_noise(state, z, 1.0), z


def _error(sampler: str, steps: int) -> float:
    state, z = _noise_state()
    _, out = denoise(GaussianDenoiser(), None, state, torch.linspace(1, 0, steps + 1), sampler=sampler,
                     eta=0.0, substep_eta=0.0)
    return (out.latent - (MU + STD * z)).abs().max().item()


def _order(sampler: str) -> float:
    steps = [8, 16, 32, 64]
    errors = [_error(sampler, n) for n in steps]
    assert all(e1 > e2 for e1, e2 in zip(errors, errors[1:])), errors
    # least-squares slope of log(error) against log(1/steps)
    xs = [-math.log(n) for n in steps]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def test_euler_converges_at_first_order():
    assert 0.85 < _order("euler") < 1.2


def test_res2s_converges_at_second_order():
    assert 1.8 < _order("res_2s") < 2.5
    assert _error("res_2s", 16) < _error("euler", 32) / 3  # about the same evaluations, far smaller error


def test_res2s_uses_two_evaluations_per_step_plus_final():
    state, _ = _noise_state()
    denoiser = GaussianDenoiser()
    denoise(denoiser, None, state, torch.linspace(1, 0, 6), sampler="res_2s")
    assert denoiser.calls == 2 * 5 + 1


def test_res2s_sde_noise_is_seeded_and_batch_independent():
    state, _ = _noise_state(batch=2, seed=5)
    sigmas = torch.linspace(1, 0, 5)

    def run(s, seed):
        return denoise(GaussianDenoiser(), None, s, sigmas, sampler="res_2s", seed=seed)[1].latent

    a, b, other = run(state, 7), run(state, 7), run(state, 8)
    assert torch.equal(a, b)
    assert (a - other).abs().max() > 1e-3
    # item 1 of a batch with seed 7 == a batch-1 run of that item with seed 8
    item = state.replace(latent=state.latent[1:], clean=state.clean[1:], mask=state.mask[1:],
                         positions=state.positions[1:])
    assert torch.allclose(a[1:], run(item, 8), atol=1e-12)


def test_masked_tokens_stay_clean_in_both_samplers():
    grid = VideoGrid(4, 3, 2, 2, fps=24.0)
    given = torch.randn(1, *grid.shape, dtype=torch.float64)
    mask = torch.ones(1, 1, 3, 2, 2)
    mask[:, :, 0] = 0  # first latent frame kept
    for sampler in ("euler", "res_2s"):
        state = initial_state(grid, 1, given, mask, dtype=torch.float64)
        state = add_noise(state, SeededNoise(1, 1).draw((grid.tokens, 4))[0].double(), 1.0)
        out, _ = denoise(GaussianDenoiser(), state, None, torch.linspace(1, 0, 4), sampler=sampler)
        assert torch.equal(out.to_grid()[:, :, 0], given[:, :, 0]), sampler
        assert not torch.equal(out.to_grid()[:, :, 1], given[:, :, 1])


def test_callback_progress_and_interruption():
    state, _ = _noise_state()
    seen = []
    denoise(GaussianDenoiser(), None, state, torch.linspace(1, 0, 5),
            callback=lambda step, total, preview: seen.append((step, total, tuple(preview.shape))))
    assert seen == [(i, 4, (1, 4, 48, 1)) for i in range(1, 5)]

    class Stop(Exception):
        pass

    def stop_at_2(step, total, preview):
        if step == 2:
            raise Stop

    denoiser = GaussianDenoiser()
    with pytest.raises(Stop):
        denoise(denoiser, None, state, torch.linspace(1, 0, 5), callback=stop_at_2)
    assert denoiser.calls == 2
    progress.request_interrupt()
    with pytest.raises(RunInterrupted, match="cancelled during sampling, at step 1 of 4"):
        denoise(GaussianDenoiser(), None, state, torch.linspace(1, 0, 5))


def test_loop_input_errors():
    state, _ = _noise_state()
    with pytest.raises(InputError, match="unknown sampler 'dpm'"):
        denoise(GaussianDenoiser(), None, state, torch.linspace(1, 0, 3), sampler="dpm")
    with pytest.raises(InputError, match="nothing to denoise"):
        denoise(GaussianDenoiser(), None, None, torch.linspace(1, 0, 3))
