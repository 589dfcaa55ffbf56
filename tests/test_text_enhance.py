"""Prompt enhancement: chat format, greedy parity with transformers' generate, seeded sampling."""

from __future__ import annotations

import pytest
import torch

from tiny_gemma import hf_model, write_hf_folder
from ltx2_nodes import progress
from ltx2_nodes.errors import InputError, RunInterrupted
from ltx2_nodes.text.enhance import chat_ids, enhance_prompt, generate, system_prompt, user_turn
from ltx2_nodes.text.gemma import load_gemma_encoder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # the chat prompt is longer than the window; this seed's greedy continuation is not one repeated token
    model = hf_model(seed=4, sliding_window=6)
    encoder = load_gemma_encoder(write_hf_folder(model, tmp_path_factory.mktemp("enh"), tokenizer="wordlevel"))
    return model, encoder


def test_reference_system_prompts_ship_with_the_package():
    assert system_prompt("t2v").startswith("You are a Creative Assistant. Given a user's raw input prompt")
    assert "image-to-video" in system_prompt("i2v")
    assert user_turn("a cat", "t2v") == "user prompt: a cat"
    assert user_turn("a cat", "i2v") == "User Raw Input Prompt: a cat."
    with pytest.raises(InputError, match="t2v"):
        system_prompt("v2v")


def test_gemma3_chat_layout(setup):
    _, encoder = setup
    tok = encoder.tokenizer
    ids = chat_ids(encoder, "a sky", "a cat")
    start, end = tok.token_id("<start_of_turn>"), tok.token_id("<end_of_turn>")
    expected = tok.bos_ids + [start] + tok.pieces("user\na sky\n\na cat") + [end] + tok.pieces("\n") + [start] \
        + tok.pieces("model\n")
    assert ids == expected and ids[:2] == [2, start] and ids.count(start) == 2


def test_greedy_generation_equals_transformers(setup):
    model, encoder = setup
    prompt = chat_ids(encoder, "a red bird flies in the sky", "a big dog runs in the park")
    ours = generate(encoder, prompt, max_new_tokens=12, seed=0, temperature=0.0, top_k=0, top_p=1.0, stop_ids={1})
    with torch.no_grad():
        theirs = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                max_new_tokens=12, do_sample=False, eos_token_id=1, pad_token_id=0)
    assert len(prompt) > model.config.sliding_window and len(set(ours)) > 2
    assert ours == theirs[0, len(prompt):].tolist()


def test_sampling_is_deterministic_for_a_seed(setup):
    _, encoder = setup
    runs = {seed: enhance_prompt(encoder, "a cat sits on the mat", seed=seed, max_new_tokens=8, temperature=1.5,
                                 top_k=0, top_p=1.0) for seed in (1, 2, 3)}
    assert enhance_prompt(encoder, "a cat sits on the mat", seed=2, max_new_tokens=8, temperature=1.5, top_k=0,
                          top_p=1.0) == runs[2]
    assert len(set(runs.values())) > 1


def test_progress_and_interruption(setup):
    _, encoder = setup
    seen = []
    enhance_prompt(encoder, "a cat", max_new_tokens=3, temperature=0.0, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[0] == (1, 3)
    progress.request_interrupt()
    with pytest.raises(RunInterrupted, match="after 0 token"):
        enhance_prompt(encoder, "a cat")
