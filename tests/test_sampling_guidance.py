"""Guidance and step arithmetic against the reference (generic over fixture sets), and the guided
denoiser's pass planning / batched-vs-sequential equality on the tiny golden transformer."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import assert_close, find_golden
from ltx2_nodes.errors import InputError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.model.transformer import Skip, to_denoised
from ltx2_nodes.sampling.guidance import (NO_GUIDANCE, GuidanceParams, GuidedDenoiser, combine, plan_passes,
                                          text_for_batch)
from ltx2_nodes.sampling.recipe import recipe_for
from ltx2_nodes.sampling.samplers import euler_step, post_process, to_velocity
from ltx2_nodes.model.connector import TextConditioning
from ltx2_nodes.sampling.state import AudioGrid, VideoGrid, add_noise, initial_state

DEV_VIDEO_GUIDANCE, DEV_AUDIO_GUIDANCE = recipe_for().dev.video_guidance, recipe_for().dev.audio_guidance


# the guidance arithmetic is the same in every reference revision; each flavour's files are checked
FLAVOURS = ["2.0", "2.0-head", "2.3"]


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"golden-{f}" for f in FLAVOURS])
def flavour(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def golden(flavour):
    return find_golden("guidance", flavour)


def _number(text: str, pattern: str) -> float:
    return float(re.search(pattern, text).group(1))


def test_cfg_entries(golden):
    cond, uncond = golden["cond"], golden["uncond"]
    names = sorted({k.rsplit(".", 1)[0] for k in golden.tensors if k.startswith("cfg.")})
    assert names
    for name in names:
        scale = golden.call["params"][name]["scale"] if name in golden.call.get("params", {}) else \
            _number(name, r"scale([-\d.]+)$")
        combined = combine(cond, uncond, 0.0, 0.0, GuidanceParams(cfg=scale))
        assert_close(combined, golden[f"{name}.combined"], f"{name}.combined")
        assert_close(combined - cond, golden[f"{name}.delta"], f"{name}.delta")


def test_stg_delta(golden):
    scale = _number(golden.call["stg"], r"STGGuider\(([-\d.]+)\)")
    cond, perturbed = golden["cond"], golden["perturbed"]
    ours = combine(cond, 0.0, perturbed, 0.0, GuidanceParams(stg=scale, stg_blocks=(0,))) - cond
    assert_close(ours, golden["stg.delta"], "stg.delta")


def test_euler_steps(golden):
    sample, denoised, sigmas = golden["euler.sample"], golden["euler.denoised"], golden["euler.sigmas"]
    steps = sorted(int(k[len("euler.step"):]) for k in golden.tensors if re.fullmatch(r"euler\.step\d+", k))
    assert steps
    for i in steps:
        assert_close(euler_step(sample, denoised, sigmas[i], sigmas[i + 1]), golden[f"euler.step{i}"], f"step{i}")


def test_velocity_denoised_and_post_process(golden):
    for key in [k for k in golden.tensors if k.startswith("to_velocity.sigma")]:
        sigma = float(key[len("to_velocity.sigma"):])
        velocity = to_velocity(golden["euler.sample"], sigma, golden["cond"])
        assert_close(velocity, golden[key], key)
        assert_close(to_denoised(golden["euler.sample"], golden[key], torch.tensor(sigma)),
                     golden[f"to_denoised.sigma{sigma:g}"], f"to_denoised.sigma{sigma:g}")
    out = post_process(golden["cond"], golden["post_process.denoise_mask"], golden["post_process.clean"])
    assert_close(out, golden["post_process.out"], "post_process.out")


def test_multimodal_guidance_entries(flavour):
    golden = find_golden("multimodal_guidance", flavour)
    params = golden.call["params"]
    assert params
    cond, uncond, perturbed, isolated = golden["cond"], golden["uncond"], golden["perturbed"], golden["modality"]
    for name, p in params.items():
        g = GuidanceParams(cfg=p["cfg_scale"], stg=p["stg_scale"], stg_blocks=(0,), rescale=p["rescale_scale"],
                           modality=p["modality_scale"])
        assert_close(combine(cond, uncond, perturbed, isolated, g), golden[f"{name}.combined"], f"{name}.combined")
        if f"{name}.combined_scalar_zeros" in golden.tensors:
            assert_close(combine(cond, 0.0, 0.0, 0.0, g), golden[f"{name}.combined_scalar_zeros"],
                         f"{name}.combined_scalar_zeros")


def test_per_sample_rescale_is_per_item():
    torch.manual_seed(0)
    cond, uncond = torch.randn(3, 10, 4), torch.randn(3, 10, 4)
    both = combine(cond, uncond, 0.0, 0.0, DEV_VIDEO_GUIDANCE, per_sample=True)
    for i in range(3):
        alone = combine(cond[i:i + 1], uncond[i:i + 1], 0.0, 0.0, DEV_VIDEO_GUIDANCE)  # whole-tensor std
        assert_close(both[i:i + 1], alone, f"item {i}", 1e-6)


def test_pass_plan():
    names = [p.name for p in plan_passes(DEV_VIDEO_GUIDANCE, DEV_AUDIO_GUIDANCE)]
    assert names == ["cond", "uncond", "perturbed", "isolated"]
    assert [p.name for p in plan_passes(NO_GUIDANCE, NO_GUIDANCE)] == ["cond"]
    cfg_only = GuidanceParams(cfg=4.0)
    assert [p.name for p in plan_passes(cfg_only, NO_GUIDANCE)] == ["cond", "uncond"]
    # STG with scale 0 or no blocks, modality 1: no extra passes
    assert [p.name for p in plan_passes(GuidanceParams(stg=0.0, stg_blocks=(3,)), GuidanceParams(stg=1.0))] == ["cond"]
    # one stream: nothing to isolate; the absent stream's params are ignored
    assert [p.name for p in plan_passes(DEV_VIDEO_GUIDANCE, DEV_AUDIO_GUIDANCE, has_audio=False)] == \
        ["cond", "uncond", "perturbed"]
    ptb = plan_passes(GuidanceParams(stg=1.0, stg_blocks=(2,)), GuidanceParams(stg=2.0, stg_blocks=(5, 6)))[1]
    assert ptb.skips.skipped(Skip.VIDEO_SELF_ATTN, 2) and not ptb.skips.skipped(Skip.VIDEO_SELF_ATTN, 5)
    assert ptb.skips.skipped(Skip.AUDIO_SELF_ATTN, 6) and not ptb.skips.skipped(Skip.AUDIO_SELF_ATTN, 2)


# ------------------------------------------------------------------------------------------------
# Guided denoiser on the tiny golden transformer


@pytest.fixture(scope="module")
def model():
    return load_transformer(LTX2Checkpoint(find_golden("transformer").weights_path), dtype=torch.float32)


def _texts(model, batch=1, length=12):
    g = torch.Generator().manual_seed(1)
    cv, ca = model.config.context_width("video"), model.config.context_width("audio")

    def one():
        return TextConditioning(torch.randn(batch, length, cv, generator=g),
                                torch.randn(batch, length, ca, generator=g),
                                torch.ones(batch, length, dtype=torch.int64))

    return one(), one()


def _states(model, batch=2, seed=3):
    cfg = model.config
    vgrid = VideoGrid(cfg.in_channels, 2, 2, 3, fps=24.0)
    agrid = AudioGrid(1, 7, cfg.audio_in_channels)
    g = torch.Generator().manual_seed(seed)
    video = add_noise(initial_state(vgrid, batch), torch.randn(batch, vgrid.tokens, cfg.in_channels, generator=g), 1.0)
    audio = add_noise(initial_state(agrid, batch), torch.randn(batch, agrid.tokens, cfg.audio_in_channels, generator=g),
                      1.0)
    return video, audio


def _params(model, base: GuidanceParams) -> GuidanceParams:
    last = model.config.num_layers - 1
    return GuidanceParams(base.cfg, base.stg, (last,), base.rescale, base.modality)


def test_batched_and_sequential_passes_agree(model):
    positive, negative = _texts(model)
    video, audio = _states(model)
    vp, ap = _params(model, DEV_VIDEO_GUIDANCE), _params(model, DEV_AUDIO_GUIDANCE)
    batched = GuidedDenoiser(model, positive, negative, vp, ap, batched=True)
    sequential = GuidedDenoiser(model, positive, negative, vp, ap, batched=False)
    sigma = torch.tensor(0.6)
    bv, ba = batched(video, audio, sigma, 0)
    sv, sa = sequential(video, audio, sigma, 0)
    assert (batched.forwards, sequential.forwards) == (1, 4)
    for b, s, name in ((bv, sv, "video"), (ba, sa, "audio")):  # relative to the prediction's magnitude
        assert_close(b, s, f"{name} batched vs sequential", 1e-6 * max(1.0, s.abs().max().item()))
    # guidance changes the prediction relative to the plain conditional pass
    plain_v, _ = GuidedDenoiser(model, positive)(video, audio, sigma, 0)
    assert (plain_v - bv).abs().max() > 1e-3


def test_guided_items_do_not_depend_on_batch(model):
    positive, negative = _texts(model)
    video, audio = _states(model, batch=2)
    vp, ap = _params(model, DEV_VIDEO_GUIDANCE), _params(model, DEV_AUDIO_GUIDANCE)
    bv, ba = GuidedDenoiser(model, positive, negative, vp, ap)(video, audio, torch.tensor(0.4), 0)
    for i in range(2):
        item_v = video.replace(latent=video.latent[i:i + 1], clean=video.clean[i:i + 1], mask=video.mask[i:i + 1],
                               positions=video.positions[i:i + 1])
        item_a = audio.replace(latent=audio.latent[i:i + 1], clean=audio.clean[i:i + 1], mask=audio.mask[i:i + 1],
                               positions=audio.positions[i:i + 1])
        v, a = GuidedDenoiser(model, positive, negative, vp, ap)(item_v, item_a, torch.tensor(0.4), 0)
        assert_close(bv[i:i + 1], v, f"video item {i}", 1e-5)
        assert_close(ba[i:i + 1], a, f"audio item {i}", 1e-5)


def test_model_is_told_per_token_timesteps_and_per_sample_sigma_zero_for_a_frozen_stream(model):
    """As the reference's modality_from_latent_state: a frozen stream (whole mask 0) has Modality.sigma 0."""
    positive, _ = _texts(model)
    cfg = model.config
    vgrid, agrid = VideoGrid(cfg.in_channels, 2, 2, 3, fps=24.0), AudioGrid(1, 7, cfg.audio_in_channels)
    video_mask = torch.ones(2, 1, *vgrid.shape[1:])
    video_mask[:, :, 0] = 0  # first frame conditioned: timestep 0 there, the sample still at sigma
    audio_mask = torch.ones(2, 1, agrid.frames, 1)
    audio_mask[0] = 0  # sample 0 keeps its audio (audio-to-video)
    video, audio = initial_state(vgrid, 2, mask=video_mask), initial_state(agrid, 2, mask=audio_mask)
    seen = []
    hook = model.register_forward_pre_hook(lambda _m, args: seen.append(args[:2]))
    try:
        GuidedDenoiser(model, positive)(video, audio, torch.tensor(0.6), 0)
    finally:
        hook.remove()
    (v, a), = seen
    assert_close(v.sigma, torch.tensor([0.6, 0.6]), "video sigma", 0)
    assert_close(a.sigma, torch.tensor([0.0, 0.6]), "audio sigma", 0)
    assert_close(v.timesteps, video.mask * 0.6, "video timesteps", 0)
    assert_close(a.timesteps, audio.mask * 0.6, "audio timesteps", 0)


def test_skip_step_reuses_last_prediction(model):
    positive, negative = _texts(model)
    video, audio = _states(model, batch=1)
    params = GuidanceParams(cfg=3.0, skip_step=1)
    denoiser = GuidedDenoiser(model, positive, negative, params, params)
    first = denoiser(video, audio, torch.tensor(0.9), 0)
    assert denoiser.forwards == 2  # cond + negative prompt, one after another (the default)
    again = denoiser(video, audio, torch.tensor(0.5), 1)  # odd step: guidance skipped, no forward
    assert denoiser.forwards == 2 and again[0] is first[0] and again[1] is first[1]


def test_denoiser_errors(model):
    positive, negative = _texts(model)
    layers = model.config.num_layers
    with pytest.raises(InputError, match=rf"video STG blocks \[{layers}\] do not exist; this transformer has blocks "
                                         rf"0\.\.{layers - 1}"):
        GuidedDenoiser(model, positive, negative, GuidanceParams(stg=1.0, stg_blocks=(layers,)))
    with pytest.raises(InputError, match="no negative prompt conditioning was given"):
        GuidedDenoiser(model, positive, None, NO_GUIDANCE, GuidanceParams(cfg=7.0))
    with pytest.raises(InputError, match="guidance cfg must be a finite number"):
        GuidanceParams(cfg=float("nan"))
    bad_mask = TextConditioning(positive.video_context, positive.audio_context, torch.ones(1, 3, dtype=torch.int64))
    with pytest.raises(InputError, match="text mask covers 3 tokens but the contexts have"):
        text_for_batch(bad_mask, 1)


def test_all_ones_mask_is_dropped_and_batch_one_is_shared(model):
    positive, _ = _texts(model)
    fitted = text_for_batch(positive, 3)
    assert fitted.mask is None and fitted.video_context.shape[0] == 3
    assert torch.equal(fitted.audio_context[2], positive.audio_context[0])
    two = TextConditioning(torch.zeros(2, 4, 1), torch.zeros(2, 4, 1), None)
    with pytest.raises(InputError, match="text conditioning video_context has batch 2, the latents have 3"):
        text_for_batch(two, 3)


def test_context_mask_is_honoured(model):
    """Masked-out text tokens must not influence the prediction, in batched and sequential mode."""
    positive, negative = _texts(model)
    video, audio = _states(model, batch=1)
    length = positive.video_context.shape[1]
    mask = torch.ones(1, length, dtype=torch.int64)
    mask[:, length // 2:] = 0
    scrambled = positive.video_context.clone()
    scrambled[:, length // 2:] = 100.0
    scrambled_audio = positive.audio_context.clone()
    scrambled_audio[:, length // 2:] = -100.0
    sigma = torch.tensor(0.5)
    params = GuidanceParams(cfg=3.0)
    for batched in (True, False):
        a = GuidedDenoiser(model, TextConditioning(positive.video_context, positive.audio_context, mask), negative,
                           params, params, batched=batched)(video, audio, sigma, 0)
        b = GuidedDenoiser(model, TextConditioning(scrambled, scrambled_audio, mask), negative, params, params,
                           batched=batched)(video, audio, sigma, 0)
        assert_close(a[0], b[0], "video, masked tokens changed", 1e-5)
        assert_close(a[1], b[1], "audio, masked tokens changed", 1e-5)
