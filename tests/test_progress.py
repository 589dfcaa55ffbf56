"""ltx2_nodes.progress: headless handler, ComfyUI's ProgressBar and interrupt inside ComfyUI."""

from __future__ import annotations

import sys
import types

import pytest

from ltx2_nodes import progress
from ltx2_nodes.errors import RunInterrupted


def test_headless_updates_go_to_the_handler_with_the_node_id():
    events = []
    with progress.reporting_to(lambda *e: events.append(e)):
        with progress.node_context("7"):
            bar = progress.ProgressBar(3)
        bar.update(1)
        bar.update(5)  # clamped to the total
        bar.update_absolute(1, total=4)
    assert events == [("7", 1, 3), ("7", 3, 3), ("7", 1, 4)]
    progress.ProgressBar(2).update(1)  # no handler, no ComfyUI: silently dropped


def test_inside_comfyui_the_bar_is_comfys(monkeypatch):
    updates = []

    class ComfyBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            updates.append((value, total))

    monkeypatch.setitem(sys.modules, "comfy.utils", types.SimpleNamespace(ProgressBar=ComfyBar))
    bar = progress.ProgressBar(10)
    bar.update(4)
    bar.update(4)
    assert updates == [(4, 10), (8, 10)]


def test_check_interrupted_raises_comfys_exception(monkeypatch):
    progress.check_interrupted()  # headless: nothing to check

    class InterruptProcessingException(Exception):
        pass

    def throw():
        raise InterruptProcessingException()

    monkeypatch.setitem(sys.modules, "comfy.model_management",
                        types.SimpleNamespace(throw_exception_if_processing_interrupted=throw))
    with pytest.raises(InterruptProcessingException):
        progress.check_interrupted()


def test_a_requested_interrupt_raises_once_at_the_next_check():
    progress.check_interrupted("nowhere")  # nothing requested
    progress.request_interrupt()
    with pytest.raises(RunInterrupted, match="Run cancelled during the test"):
        progress.check_interrupted("during the test")
    progress.check_interrupted()  # the request was used up
