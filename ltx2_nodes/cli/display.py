"""Terminal progress for ``run`` and ``queue``: a bar for the running job's steps and one for the batch.

Fed with ComfyUI's websocket messages (``executing``, ``progress``, ...), which the local executor emits too,
so server and local runs look the same. On a terminal one status line is redrawn in place; otherwise (a pipe,
a CI log) plain lines are printed: node starts, every quarter of a node's steps, and job results.
"""

from __future__ import annotations

import shutil
import time

from .launch import progress_stream
from .workflow import Workflow

_REDRAW_INTERVAL = 0.1


def _bar(done: float, total: float, width: int = 20) -> str:
    filled = 0 if total <= 0 else min(width, int(width * done / total))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Display:
    def __init__(self, total_jobs: int, stream=None, tty: bool | None = None):
        self.stream = stream or progress_stream()  # stderr; nothing on torchrun ranks other than 0
        self.tty = self.stream.isatty() if tty is None else tty
        self.total_jobs = total_jobs
        self.finished = 0
        self.number = 0
        self.workflow: Workflow | None = None
        self.node: str | None = None
        self.steps = (0, 0)
        self.job_start = 0.0
        self._last_quarter = 0
        self._last_draw = 0.0
        self._line_shown = False

    # ------------------------------------------------------------------ job lifecycle
    def start_job(self, number: int, title: str, workflow: Workflow | None = None) -> None:
        self.number, self.workflow, self.node, self.steps = number, workflow, None, (0, 0)
        self.job_start = time.monotonic()
        self._plain(f"started: {title}")
        self._draw(force=True)

    def finish_job(self, number: int, ok: bool, detail: str = "") -> None:
        """Job ``number`` ended; it need not be the one on screen (a server may finish jobs unseen)."""
        elapsed = f" in {time.monotonic() - self.job_start:.1f} s" if number == self.number else ""
        self.number = number
        self.finished += 1
        self._plain((f"done{elapsed}" + (f": {detail}" if detail else "")) if ok else f"failed: {detail}",
                    always=True)
        self.node, self.steps = None, (0, 0)
        self._draw(force=True)

    def skip_job(self, number: int, reason: str) -> None:
        self.number = number
        self.finished += 1
        self._plain(reason, always=True)
        self._draw(force=True)

    def note(self, text: str) -> None:
        """A line that is not tied to the current job (warnings, summaries)."""
        self._clear()
        print(text, file=self.stream, flush=True)
        self._draw(force=True)

    def close(self) -> None:
        self._clear()

    # ------------------------------------------------------------------ ComfyUI messages
    def event(self, kind: str, data: dict) -> None:
        if kind == "executing" and data.get("node") is not None:
            self.node, self.steps, self._last_quarter = str(data["node"]), (0, 0), 0
            self._plain(self._node_label())
            self._draw(force=True)
        elif kind == "progress":
            self.node = str(data.get("node") or self.node or "")
            self.steps = (int(data.get("value", 0)), int(data.get("max", 0)))
            done, total = self.steps
            quarter = 4 * done // total if total else 0
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                self._plain(f"{self._node_label()} {done}/{total}")
            self._draw(force=done >= total)

    # ------------------------------------------------------------------ rendering
    def _node_label(self) -> str:
        if self.node is None:
            return ""
        node = self.workflow.prompt.get(self.node) if self.workflow else None
        return f"node {self.node} ({node['class_type']})" if node else f"node {self.node}"

    def _prefix(self) -> str:
        return f"[{self.number}/{self.total_jobs}]"

    def _plain(self, text: str, always: bool = False) -> None:
        if self.tty and not always:
            return
        self._clear()
        print(f"{self._prefix()} {text}", file=self.stream, flush=True)

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_INTERVAL:
            return
        self._last_draw = now
        parts = []
        if self.total_jobs > 1:
            parts.append(f"batch {_bar(self.finished, self.total_jobs, 10)} {self.finished}/{self.total_jobs}")
        if self.number and self.finished < self.total_jobs:
            done, total = self.steps
            steps = f" {_bar(done, total)} {done}/{total}" if total else ""
            elapsed = int(now - self.job_start)
            label = self._node_label() or "waiting"
            parts.append(f"job {self.number}: {label}{steps} {elapsed // 60}:{elapsed % 60:02}")
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = " | ".join(parts)[:width]
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._line_shown = True

    def _clear(self) -> None:
        if self._line_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._line_shown = False
