"""Step progress and cancellation for long-running work (sampling, decoding), inside ComfyUI and headless.

Node and pipeline code reports progress only through this module::

    bar = ProgressBar(total=steps)
    for i in range(steps):
        check_interrupted()          # ComfyUI's Cancel button; headless Ctrl-C raises KeyboardInterrupt anyway
        ...
        bar.update(1)

Inside ComfyUI (``comfy.utils`` already imported by the server) the bar is a ``comfy.utils.ProgressBar``, so
the canvas and the websocket ``progress`` messages show it. Headless, the runner installs a handler with
:func:`reporting_to` and marks the running node with :func:`node_context`; the handler receives
``(node_id, value, total)`` for every update. With neither, updates are dropped.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressHandler = Callable[[str | None, int, int], None]

_handler: ProgressHandler | None = None
_current_node: contextvars.ContextVar[str | None] = contextvars.ContextVar("ltx2_current_node", default=None)


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
        comfy_utils = sys.modules.get("comfy.utils") if _handler is None else None
        self._comfy = comfy_utils.ProgressBar(self.total) if comfy_utils is not None else None

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


def check_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; call it once per step.

    Headless this is a no-op: Ctrl-C already raises ``KeyboardInterrupt`` in the running thread."""
    model_management = sys.modules.get("comfy.model_management")
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()
