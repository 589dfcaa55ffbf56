"""ComfyUI's HTTP API, the parts a batch queue needs: ``POST /prompt``, ``GET /history/<id>``, ``GET /queue``,
and the ``/ws`` websocket for progress. Stdlib only (``urllib`` + :mod:`.websocket`)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import LTX2Error
from .common import ExitCode, server_base
from .websocket import WebSocket
from .workflow import ui_file_entries


class ServerUnreachable(LTX2Error):
    """No answer from the ComfyUI server (not running, wrong address, connection lost)."""

    exit_code = ExitCode.UNREACHABLE


class PromptRejected(LTX2Error):
    """The server refused a prompt (HTTP 400: validation errors, unknown node types, ...)."""


class ComfyClient:
    def __init__(self, server: str, timeout: float = 30.0):
        self.base = server_base(server)
        self.timeout = timeout

    def _request(self, path: str, payload: dict | None = None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode() or "null")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            try:
                return_body = json.loads(body)
            except ValueError:
                return_body = body
            raise _HTTPStatus(exc.code, return_body) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"cannot reach ComfyUI at {self.base} ({reason}); start it or pass "
                                    f"--server URL") from None
        except ValueError as exc:
            raise ServerUnreachable(f"{self.base}{path} did not answer JSON ({exc}); is it a ComfyUI server?") \
                from None

    def _get(self, path: str):
        try:
            return self._request(path)
        except _HTTPStatus as exc:
            raise ServerUnreachable(f"{self.base} answered HTTP {exc.status} to GET {path}; is it a ComfyUI "
                                    f"server?") from None

    def check(self) -> None:
        """Fail with :class:`ServerUnreachable` unless a ComfyUI server answers."""
        answer = self._get("/queue")
        if not isinstance(answer, dict) or "queue_running" not in answer:
            raise ServerUnreachable(f"{self.base} does not look like a ComfyUI server (GET /queue)")

    def submit(self, prompt: dict, prompt_id: str, client_id: str, extra_data: dict | None = None) -> str:
        """Queue a prompt under our own ``prompt_id`` (so a resumed queue can find it); returns the id."""
        body = {"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id}
        if extra_data:
            body["extra_data"] = extra_data
        try:
            answer = self._request("/prompt", body)
        except _HTTPStatus as exc:
            raise PromptRejected(describe_rejection(exc.body, prompt)) from None
        return str(answer.get("prompt_id", prompt_id)) if isinstance(answer, dict) else prompt_id

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a finished prompt, or ``None`` while it is queued, running or unknown."""
        answer = self._get(f"/history/{quote(prompt_id)}")
        return answer.get(prompt_id) if isinstance(answer, dict) else None

    def queued_ids(self) -> set[str]:
        """Prompt ids running or waiting on the server."""
        answer = self._get("/queue")
        items = (answer.get("queue_running") or []) + (answer.get("queue_pending") or [])
        return {str(item[1]) for item in items if isinstance(item, list) and len(item) > 1}

    def websocket(self, client_id: str) -> WebSocket:
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", f"clientId={client_id}", ""))
        return WebSocket.connect(url, timeout=self.timeout)


class _HTTPStatus(Exception):
    def __init__(self, status: int, body):
        super().__init__(status)
        self.status = status
        self.body = body


def describe_rejection(body, prompt: dict) -> str:
    """One line from ComfyUI's 400 answer: the node errors, else the top-level error."""
    if not isinstance(body, dict):
        return f"the server rejected the prompt: {str(body)[:300]}"
    problems = []
    for node_id, info in (body.get("node_errors") or {}).items():
        class_type = info.get("class_type") or prompt.get(node_id, {}).get("class_type", "?")
        for error in info.get("errors", []):
            problems.append(f"node {node_id} ({class_type}): {error.get('message', '')}: {error.get('details', '')}"
                            .rstrip(": "))
    if not problems:
        error = body.get("error") or {}
        if isinstance(error, dict):
            text = error.get("message", "rejected")
            details = str(error.get("details", "")).replace("\n", "; ")
            problems.append(f"{text}: {details}" if details else text)
        else:
            problems.append(str(error))
    return "the server rejected the prompt: " + "; ".join(problems)


def history_outcome(entry: dict) -> tuple[bool, list[str], str]:
    """``(succeeded, output files, error)`` from a ``/history`` entry; files as ``type/subfolder/name``."""
    files = ["/".join(p for p in (item.get("type") or "output", item.get("subfolder") or "", item["filename"]) if p)
             for item in ui_file_entries(entry.get("outputs"))]
    status = entry.get("status") or {}
    if status.get("status_str", "success") == "success":
        return True, files, ""
    for event, data in status.get("messages") or []:
        if event == "execution_error":
            message = (str(data.get("exception_message") or "").strip().splitlines() or [""])[0]
            return False, files, (f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                  f"{data.get('exception_type', 'error')}: {message}")
        if event == "execution_interrupted":
            return False, files, f"interrupted on the server at node {data.get('node_id')}"
    return False, files, "the server reported an error without details"
