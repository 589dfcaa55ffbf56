"""The Euler-ancestral loop (LTX-2.5 distilled stage 1): the reference's noise seeding (seed + 10000, plain
randn in the latent dtype, video then audio, nothing drawn into sigma 0), pinned conditioned tokens,
batch independence, eta 0 = Euler, and that it samples the right distribution with an exact denoiser."""

from __future__ import annotations

import pytest
import torch

from ltx2_nodes.sampling.loop import ANCESTRAL_SEED_OFFSET, denoise
from ltx2_nodes.sampling.noise import SeededNoise
from ltx2_nodes.sampling.samplers import euler_ancestral_step
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, add_noise, initial_state
from test_sampling_loop import MU, STD, GaussianDenoiser

SIGMAS = torch.tensor([1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0])


def _states(batch=1, seed=0, dtype=torch.float32):
    vgrid, agrid = VideoGrid(4, 2, 2, 3, fps=24.0), AudioGrid(2, 6, 4)
    video, audio = initial_state(vgrid, batch, dtype=dtype), initial_state(agrid, batch, dtype=dtype)
    v, a = SeededNoise(seed, batch).draw(tuple(video.latent.shape[1:]), tuple(audio.latent.shape[1:]))
    return add_noise(video, v, 1.0), add_noise(audio, a, 1.0)


def _item(state, i):
    return state.replace(latent=state.latent[i:i + 1], clean=state.clean[i:i + 1], mask=state.mask[i:i + 1],
                         positions=state.positions[i:i + 1])


def test_ancestral_noise_is_the_reference_stream_seeded_seed_plus_10000_video_then_audio():
    video, audio = _states()
    seed, denoiser = 42, GaussianDenoiser()
    out_v, out_a = denoise(denoiser, video, audio, SIGMAS, sampler="euler_ancestral", seed=seed)
    # the reference loop: one generator seeded seed + 10000, randn(latent.shape) video then audio per step
    generator = torch.Generator().manual_seed(seed + ANCESTRAL_SEED_OFFSET)
    v, a = video.latent, audio.latent
    for i in range(len(SIGMAS) - 1):
        x0_v, x0_a = denoiser(video.replace(latent=v), audio.replace(latent=a), SIGMAS[i], i)
        last = float(SIGMAS[i + 1]) == 0
        n_v = None if last else torch.randn(v.shape, generator=generator)
        n_a = None if last else torch.randn(a.shape, generator=generator)
        v = euler_ancestral_step(v, x0_v, SIGMAS[i], SIGMAS[i + 1], n_v)
        a = euler_ancestral_step(a, x0_a, SIGMAS[i], SIGMAS[i + 1], n_a)
    assert torch.equal(out_v.latent, v)
    assert torch.equal(out_a.latent, a)


def test_ancestral_sampler_is_seeded_and_batch_independent():
    video, audio = _states(batch=2, seed=3)

    def run(v, a, seed):
        return denoise(GaussianDenoiser(), v, a, SIGMAS, sampler="euler_ancestral", seed=seed)

    first, again, other = run(video, audio, 7), run(video, audio, 7), run(video, audio, 8)
    assert torch.equal(first[0].latent, again[0].latent)
    assert (first[0].latent - other[0].latent).abs().max() > 1e-3
    single = run(_item(video, 1), _item(audio, 1), 8)  # item 1 with seed 7 == batch-1 with seed 8
    assert torch.equal(first[0].latent[1:], single[0].latent)
    assert torch.equal(first[1].latent[1:], single[1].latent)


def test_ancestral_sampler_at_eta_zero_is_the_euler_sampler():
    video, audio = _states()
    euler = denoise(GaussianDenoiser(), video, audio, SIGMAS, sampler="euler")
    plain = denoise(GaussianDenoiser(), video, audio, SIGMAS, sampler="euler_ancestral", eta=0.0)
    for e, p in zip(euler, plain):
        assert torch.allclose(e.latent, p.latent, atol=1e-5)


def test_ancestral_sampler_keeps_conditioned_tokens_clean():
    grid = VideoGrid(4, 3, 2, 2, fps=24.0)
    given = torch.randn(1, *grid.shape)
    mask = torch.ones(1, 1, 3, 2, 2)
    mask[:, :, 0] = 0
    state = initial_state(grid, 1, given, mask)
    state = add_noise(state, SeededNoise(1, 1).draw((grid.tokens, 4))[0], 1.0)
    out, _ = denoise(GaussianDenoiser(), state, None, torch.linspace(1, 0, 5), sampler="euler_ancestral")
    assert torch.equal(out.to_grid()[:, :, 0], given[:, :, 0])


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_ancestral_sampler_with_an_exact_denoiser_samples_the_data_distribution(eta):
    grid = AudioGrid(4, 4096, 1)
    state = initial_state(grid, 1, dtype=torch.float64)
    state = add_noise(state, SeededNoise(0, 1).draw((grid.tokens, 4))[0].double(), 1.0)
    _, out = denoise(GaussianDenoiser(), None, state, torch.linspace(1, 0, 321), sampler="euler_ancestral",
                     seed=5, eta=eta)  # first order: the std error halves with each doubling of the steps
    assert abs(out.latent.mean().item() - MU) < 0.01
    assert abs(out.latent.std().item() - STD) < 0.01
