"""The LTX-2.5 Euler-ancestral step against the reference (golden-2.5 ``io_sampler``): every step of the
fixture's schedule, every recorded eta, and the plain Euler step on the same inputs."""

from __future__ import annotations

import torch

from conftest import assert_close, find_golden
from ltx2_nodes.sampling.samplers import euler_ancestral_step, euler_step


def _golden():
    return find_golden("sampler", "2.5")


def _steps(golden) -> list[int]:
    return sorted(int(name.split(".")[0][4:]) for name in golden.tensors if name.endswith(".denoised"))


def test_golden_euler_ancestral_step_matches_the_reference_at_every_step_and_eta():
    golden = _golden()
    sigmas, sample = golden["distilled_sigmas"], golden["sample"]
    etas = golden.call["etas"]
    checked = 0
    for i in _steps(golden):
        denoised, noise = golden[f"step{i}.denoised"], golden[f"step{i}.noise"]
        for eta in etas:
            got = euler_ancestral_step(sample, denoised, sigmas[i], sigmas[i + 1], noise, eta=float(eta))
            assert_close(got, golden[f"step{i}.ancestral_eta{float(eta)}"], f"step{i} eta {eta}", tol=1e-6)
            checked += 1
    assert checked == len(etas) * (len(sigmas) - 1)


def test_golden_euler_step_matches_the_reference_on_the_sampler_fixture():
    golden = _golden()
    sigmas, sample = golden["distilled_sigmas"], golden["sample"]
    for i in _steps(golden):
        got = euler_step(sample, golden[f"step{i}.denoised"], sigmas[i], sigmas[i + 1])
        assert_close(got, golden[f"step{i}.euler"], f"step{i} euler", tol=1e-6)


def test_golden_ancestral_step_at_eta_zero_is_the_euler_step():
    golden = _golden()
    sigmas, sample = golden["distilled_sigmas"], golden["sample"]
    for i in _steps(golden)[:-1]:
        got = euler_ancestral_step(sample, golden[f"step{i}.denoised"], sigmas[i], sigmas[i + 1], None, eta=0.0)
        assert_close(got, golden[f"step{i}.euler"], f"step{i} eta 0", tol=1e-6)


def test_ancestral_step_to_sigma_zero_returns_the_denoised_estimate():
    x0 = torch.randn(1, 4, 3)
    out = euler_ancestral_step(torch.randn(1, 4, 3), x0, torch.tensor(0.4), torch.tensor(0.0), torch.randn(1, 4, 3))
    assert torch.equal(out, x0)
