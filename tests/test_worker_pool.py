"""The sampler's ``gpus`` option (``ltx2_nodes.worker_pool``): the same ``stages.run_sampler`` on worker processes
started with torch's multiprocessing, here on the CPU (gloo), 2 processes.

Tolerance: the sequence-parallel forward splits the video tokens over the ranks; its reductions (attention
softmax sums, the output gather) run in another order than one process's, measured here at 0 to ~1e-6 on the
tiny demo model; asserted <= 1e-5 on the sampled latents (the torchrun path's tests assert the same).
"""

from __future__ import annotations

import os
import pickle
import threading
import time

import pytest
import torch
import torch.distributed as dist

from demo_support import demo_models  # noqa: F401
from ltx2_nodes import distributed, progress, stages, worker_pool
from ltx2_nodes.errors import InputError, RankFailedError, RunInterrupted
from ltx2_nodes.handles import load_gemma, load_lora_file, load_ltx2
from ltx2_nodes.memory import selection
from ltx2_nodes.memory.engine import MemoryEngine
from ltx2_nodes.nodes.comfy_types import to_av_latents, to_conditioning
from ltx2_nodes.nodes.latent import LTX2AudioToLatent, LTX2EmptyAVLatent, LTX2ImageToVideo
from ltx2_nodes.nodes.refine import LTX2RefineTiles
from ltx2_nodes.nodes.sampler import LTX2Sampler
from ltx2_nodes.worker_pool import PoolSpec, pool_for

TOLERANCE = 1e-5
WIDGETS = dict(seed=3, steps=3, schedule="ltx2", sigmas="", sampler="euler", video_cfg=1.0, audio_cfg=1.0,
               modality_scale=1.0, stg_scale=0.0, stg_blocks="29", rescale=0.0, start_sigma=1.0)


@pytest.fixture(scope="module")
def pool():
    """Two CPU workers for the protocol tests (started once; a test that breaks it leaves a fresh one behind)."""
    spec = PoolSpec.of(2, MemoryEngine("cpu"))
    yield lambda: pool_for(spec)
    worker_pool.close_pool()


# -- tasks run by the workers (module level: a spawned process imports them) ----------------------------------


def _worlds(*, engine, step):
    """Every rank's (rank, size, engine device) and whether the caller's process holds a group."""
    here = (distributed.world().rank, distributed.world().size, str(engine.device.device))
    gathered = [None] * distributed.world().size
    dist.all_gather_object(gathered, here)
    return gathered


def _steps(count, pause, *, engine, step):
    for index in range(count):
        time.sleep(pause)
        step(index + 1, count, None)
    return "finished"


def _fail_on(bad_rank, *, engine, step):
    if distributed.world().rank == bad_rank:
        raise InputError("rank-specific bad input: the fix is in this message")
    dist.barrier()  # the peer left: this collective fails at once
    return "unreachable"


def _pid(*, engine, step):
    return os.getpid()


# -- the protocol -------------------------------------------------------------------------------------------


def test_every_worker_is_one_rank_of_a_group_while_the_calling_process_stays_a_world_of_one(pool):
    assert pool().run(_worlds, (), {}) == [(0, 2, "cpu"), (1, 2, "cpu")]
    assert distributed.world().size == 1 and not dist.is_initialized()


def test_the_workers_stay_up_between_runs_and_report_every_step(pool):
    first = pool()
    seen = []
    assert first.run(_steps, (3, 0.0), {}, on_step=lambda *s: seen.append(s)) == "finished"
    assert seen == [(1, 3, None), (2, 3, None), (3, 3, None)]
    assert pool() is first and first.alive


def test_a_cancel_stops_every_rank_at_the_same_step_and_the_next_run_reuses_the_workers(pool):
    workers = pool()
    timer = threading.Timer(0.5, progress.request_interrupt)
    timer.start()
    started = time.monotonic()
    with pytest.raises(RunInterrupted):
        workers.run(_steps, (400, 0.05), {})
    assert time.monotonic() - started < 5.0  # the caller returns at once, not after 20 s of steps
    assert workers.run(_worlds, (), {}) == [(0, 2, "cpu"), (1, 2, "cpu")]  # no rank left in a collective
    assert pool() is workers and workers.alive


def test_comfyuis_own_cancel_passes_through_unchanged_and_the_workers_stay(pool, monkeypatch):
    """ComfyUI's Cancel raises its own exception at the check point; the node must re-raise that one (ComfyUI then
    reports a cancel, not an error), and the ranks still stop together."""
    from ltx2_nodes import comfy_env

    class InterruptProcessingException(Exception):  # what comfy.model_management raises
        pass

    started = time.monotonic()

    def throw_after_half_a_second():
        if time.monotonic() - started > 0.5:
            raise InterruptProcessingException()

    monkeypatch.setattr(comfy_env, "throw_if_interrupted", throw_after_half_a_second)
    workers = pool()
    with pytest.raises(InterruptProcessingException):
        workers.run(_steps, (400, 0.05), {})
    monkeypatch.undo()
    assert workers.run(_steps, (2, 0.0), {}) == "finished" and pool() is workers


def test_a_rank_that_raises_fails_the_run_with_its_own_error_and_the_next_run_starts_fresh_workers(pool):
    workers = pool()
    with pytest.raises(InputError, match="rank-specific bad input"):
        workers.run(_fail_on, (1,), {})
    assert not workers.alive
    fresh = pool()
    assert fresh is not workers and fresh.run(_worlds, (), {})[1] == (1, 2, "cpu")


def test_a_killed_rank_is_named_with_its_signal_and_the_pool_closes(pool):
    workers = pool()
    victim = workers._processes[1].pid
    threading.Timer(0.5, os.kill, (victim, 9)).start()
    with pytest.raises(RankFailedError, match=r"rank 1 of 2 was killed by signal 9 .* nothing was returned"):
        workers.run(_steps, (400, 0.05), {})
    assert not workers.alive and pool().run(_steps, (1, 0.0), {}) == "finished"


# -- the sampler node ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampler_inputs(demo_models):
    selection.configure_engine(device="cpu")
    ltx2 = load_ltx2(demo_models.checkpoint, device="cpu")
    features = stages.encode_prompts(load_gemma(demo_models.gemma, device="cpu"), ["a fox in the snow"])
    return ltx2, to_conditioning(stages.split_text(stages.connect_text(ltx2.text_connector, features), 0))


def _sampled(model, conditioning, latent, **widgets):
    return to_av_latents(LTX2Sampler().sample(model, conditioning, latent, **{**WIDGETS, **widgets})[0])


def test_the_sampler_on_two_worker_processes_equals_one_process_and_continues_the_noise_stream(sampler_inputs):
    ltx2, conditioning = sampler_inputs
    latent = LTX2EmptyAVLatent().create(128, 96, 17, 0.0, 24.0, 1)[0]
    one = LTX2Sampler().sample(ltx2.dit, conditioning, latent, **WIDGETS)[0]
    two = LTX2Sampler().sample(ltx2.dit, conditioning, latent, gpus=2, **WIDGETS)[0]
    a, b = to_av_latents(one), to_av_latents(two)
    assert b.video.shape == a.video.shape and (a.video - b.video).abs().max() <= TOLERANCE
    assert (a.audio - b.audio).abs().max() <= TOLERANCE
    # a second sampler with the same seed continues the stream from where the workers left it
    again = dict(WIDGETS, start_sigma=0.5)
    assert torch.equal(_sampled(ltx2.dit, conditioning, one, **again).video,
                       _sampled(ltx2.dit, conditioning, two, **again).video)


def test_the_canvas_gets_every_step_and_its_preview_latent_from_rank_zero(sampler_inputs, monkeypatch):
    from ltx2_nodes.nodes import sampler as sampler_node

    class Recorder(list):
        wants_preview = True

        def __call__(self, step, total, latent):
            self.append((step, total, None if latent is None else tuple(latent.shape)))

    recorder = Recorder()
    monkeypatch.setattr(sampler_node, "previewer_for", lambda *_: recorder)
    ltx2, conditioning = sampler_inputs
    out = _sampled(ltx2.dit, conditioning, LTX2EmptyAVLatent().create(128, 96, 17, 0.0, 24.0, 1)[0], gpus=2)
    assert recorder == [(step, 3, (1, *out.video.shape[1:])) for step in (1, 2, 3)]


def _image_to_video(ltx2, latent):  # I2AV: the first frame kept (per-token timesteps)
    image = torch.rand(1, 96, 128, 3, generator=torch.Generator().manual_seed(1))
    return LTX2ImageToVideo().condition(latent, ltx2.video_vae, image, frame_index=0, crf=0)[0]


def _audio_to_video(ltx2, latent):  # A2V: the audio latent frozen
    waveform = 0.1 * torch.randn(1, 2, 16000, generator=torch.Generator().manual_seed(2))
    return LTX2AudioToLatent().encode(latent, ltx2.audio_vae, {"waveform": waveform, "sample_rate": 16000})[0]


def _refine_tiles(ltx2, latent):  # a tiled stage 2: the tiles spread over the ranks
    return LTX2RefineTiles().request(latent, tiles="1x2", overlap=1)[0]


@pytest.mark.parametrize("prepare, widgets", [(_image_to_video, {}), (_audio_to_video, {}),
                                              (_refine_tiles, {"start_sigma": 0.9})],
                         ids=["i2av", "a2v", "tiled_stage2"])
def test_conditioned_and_tiled_samplers_on_two_workers_equal_one_process(sampler_inputs, prepare, widgets):
    ltx2, conditioning = sampler_inputs
    latent = prepare(ltx2, LTX2EmptyAVLatent().create(128, 96, 17, 0.0, 24.0, 1)[0])
    one, two = (_sampled(ltx2.dit, conditioning, latent, gpus=n, **widgets) for n in (1, 2))
    assert (one.video - two.video).abs().max() <= TOLERANCE and (one.audio - two.audio).abs().max() <= TOLERANCE
    if prepare is _audio_to_video:
        assert torch.equal(two.audio, to_av_latents(latent).audio)  # the given audio is kept on the workers too


def test_a_lora_model_samples_on_the_workers_as_in_this_process(sampler_inputs, demo_models):
    ltx2, conditioning = sampler_inputs
    model = ltx2.dit.with_lora(load_lora_file(demo_models.lora), 0.8)
    latent = LTX2EmptyAVLatent().create(96, 64, 9, 0.0, 24.0, 1)[0]
    base = _sampled(ltx2.dit, conditioning, latent)
    one, two = _sampled(model, conditioning, latent), _sampled(model, conditioning, latent, gpus=2)
    assert (one.video - two.video).abs().max() <= TOLERANCE and (one.video - base.video).abs().max() > 1e-3


def test_a_gpu_count_the_model_or_machine_cannot_run_is_refused_before_anything_starts(sampler_inputs,
                                                                                           monkeypatch):
    ltx2, conditioning = sampler_inputs
    latent = LTX2EmptyAVLatent().create(96, 64, 9, 0.0, 24.0, 1)[0]
    heads = ltx2.dit.config.num_attention_heads
    odd = next(n for n in range(2, heads + 2) if heads % n)
    started = []
    monkeypatch.setattr(worker_pool, "WorkerPool", lambda spec: started.append(spec))
    with pytest.raises(InputError, match=f"{odd} processes cannot split this transformer's"):
        _sampled(ltx2.dit, conditioning, latent, gpus=odd)
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(0, 2, 0, None))
    with pytest.raises(InputError, match="in a run started by torchrun .* Set gpus to 1"):
        worker_pool.check_gpus(2, torch.device("cpu"), ltx2.dit.config)
    monkeypatch.setattr(distributed, "world", lambda: distributed.SINGLE)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="gpus=2 but this machine has 1 CUDA device; set gpus to at most 1"):
        worker_pool.check_gpus(2, torch.device("cuda"), ltx2.dit.config)
    assert started == []


def test_models_and_lora_files_travel_to_a_worker_as_their_paths(demo_models):
    ltx2 = load_ltx2(demo_models.checkpoint, device="cpu")
    data = pickle.dumps(ltx2.dit)
    assert len(data) < 4096  # the path and options, not the weights
    assert pickle.loads(data).models is ltx2  # reopened through the cache: the same bundle in the same process
    lora = load_lora_file(demo_models.lora)
    again = pickle.loads(pickle.dumps(lora))
    assert again.targets.keys() == lora.targets.keys() and len(pickle.dumps(lora)) < 4096


def _start_pool_and_wait(ready):
    """A caller process: starts a pool, says so, waits to be killed."""
    from ltx2_nodes.memory.engine import MemoryEngine as Engine

    workers = pool_for(PoolSpec.of(2, Engine("cpu")))
    ready.put([p.pid for p in workers._processes])
    time.sleep(600)


def test_workers_exit_when_the_process_that_started_them_is_killed():
    """A killed ComfyUI server runs no exit handler: its workers notice and end, leaving no orphan on a GPU."""
    context = torch.multiprocessing.get_context("spawn")
    ready = context.Queue()
    caller = context.Process(target=_start_pool_and_wait, args=(ready,))  # not daemonic: it starts workers
    caller.start()
    pids = ready.get(timeout=120)
    caller.kill()
    caller.join()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
