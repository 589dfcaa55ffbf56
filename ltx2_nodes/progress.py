"""Step progress and cancellation for long-running work (sampling, decoding), inside ComfyUI and headless.

Node and pipeline code reports progress only through this module::

    bar = ProgressBar(total=steps)
    for i in range(steps):
        check_interrupted(f"at step {i + 1} of {steps}")   # raises when the run was cancelled
        ...
        bar.update(1)

Inside ComfyUI (``comfy.utils`` already imported by the server) the bar is a ``comfy.utils.ProgressBar``, so
the canvas and the websocket ``progress`` messages show it. Headless, the runner installs a handler with
:func:`reporting_to` and marks the running node with :func:`node_context`; the handler receives
``(node_id, value, total)`` for every update. With neither, updates are dropped.

Cancellation has one protocol: a cancelled run **raises** at its next check point. Every loop that runs
long (Gemma layers and generated tokens, sampling steps, the memory engine's stage entries and block
boundaries, decode tiles, muxed frames) calls :func:`check_interrupted`; nothing returns a "cancelled" flag.
The exception is :class:`~ltx2_nodes.errors.RunInterrupted` after :func:`request_interrupt` (headless: a UI
thread, a signal handler, a test) and ComfyUI's own interrupt exception after its Cancel button (passed
through unchanged, so ComfyUI reports a cancel, not an error). The memory engine guarantees that nothing of
a stage stays on the compute device when either leaves it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import comfy_env
from .errors import RunInterrupted

ProgressHandler = Callable[[str | None, int, int], None]

_handler: ProgressHandler | None = None
_current_node: contextvars.ContextVar[str | None] = contextvars.ContextVar("ltx2_current_node", default=None)
_interrupt_requested = threading.Event()


@contextmanager
def reporting_to(handler: ProgressHandler) -> Iterator[None]:
    """Send every :class:`ProgressBar` update made inside the block to ``handler(node_id, value, total)``."""
    global _handler
    previous, _handler = _handler, handler
    try:
        yield
    finally:
        _handler = previous


@contextmanager
def node_context(node_id: str) -> Iterator[None]:
    """Attribute progress made inside the block to workflow node ``node_id`` (the headless executor's job)."""
    token = _current_node.set(node_id)
    try:
        yield
    finally:
        _current_node.reset(token)


class ProgressBar:
    """Progress of one node's work in steps; same surface as ``comfy.utils.ProgressBar``."""

    def __init__(self, total: int):
        self.total = int(total)
        self.current = 0
        self._node = _current_node.get()
        self._comfy = comfy_env.progress_bar(self.total) if _handler is None else None

    def update(self, steps: int = 1) -> None:
        self.update_absolute(self.current + steps)

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        """``preview``: ComfyUI's preview tuple ``("JPEG", PIL image, max size)``, shown on the node inside
        ComfyUI (dropped headless)."""
        if total is not None:
            self.total = int(total)
        self.current = min(int(value), self.total)
        if self._comfy is not None:
            if preview is None:
                self._comfy.update_absolute(self.current, self.total)
            else:
                self._comfy.update_absolute(self.current, self.total, preview)
        elif _handler is not None:
            _handler(self._node, self.current, self.total)


def request_interrupt() -> None:
    """Cancel the running work at its next :func:`check_interrupted` (thread-safe; ComfyUI's Cancel button
    needs no call: its flag is polled too)."""
    _interrupt_requested.set()


def check_interrupted(where: str | None = None) -> None:
    """The check point of the one cancellation protocol (module doc); call it once per step, block or tile.

    Raises ComfyUI's interrupt exception inside ComfyUI after Cancel, and ``RunInterrupted`` after
    :func:`request_interrupt` (the request is used up by the raise). ``where`` completes the message
    ("during the dit stage"). Headless Ctrl-C needs no check: it raises ``KeyboardInterrupt`` anywhere."""
    comfy_env.throw_if_interrupted()
    if _interrupt_requested.is_set():
        _interrupt_requested.clear()
        raise RunInterrupted(f"Run cancelled{' ' + where if where else ''}.")
