"""An in-process stand-in for a ComfyUI server: ``POST /prompt``, ``GET /queue``, ``GET /history/<id>`` and the
``/ws`` websocket, with a worker thread that "executes" prompts in order and sends ComfyUI's messages
(``execution_start``, ``executing``, ``progress``, ``executed``, ``execution_success`` / ``execution_error``,
then ``executing`` with node ``None``) to the submitting client only, like ComfyUI does.

Knobs: ``websocket=False`` answers 404 on /ws (polling fallback); ``paused`` holds the worker; prompts whose
JSON contains ``reject_on`` get ComfyUI's HTTP 400 validation answer, those containing ``fail_on`` end with an
execution error. The first message of every prompt is sent in two fragments and a ping precedes the progress,
so the client's frame handling is exercised too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeComfy:
    def __init__(self, websocket: bool = True, steps: int = 3, step_delay: float = 0.0, reject_on: str | None = None,
                 fail_on: str | None = None, paused: bool = False):
        self.websocket, self.steps, self.step_delay = websocket, steps, step_delay
        self.reject_on, self.fail_on = reject_on, fail_on
        self.paused = paused
        self.pending: list[tuple[str, dict, str]] = []
        self.running: tuple[str, dict, str] | None = None
        self.history: dict[str, dict] = {}
        self.submitted: list[tuple[str, str]] = []  # (prompt id, client id) per accepted POST
        self.ws_clients: list[str] = []
        self.pongs = 0
        self.sockets: dict[str, tuple[object, threading.Lock]] = {}
        self.cond = threading.Condition()
        self._stop = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._threads = [threading.Thread(target=self.httpd.serve_forever, daemon=True),
                         threading.Thread(target=self._work, daemon=True)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def resume(self):
        with self.cond:
            self.paused = False
            self.cond.notify_all()

    def forget(self, prompt_id: str) -> None:
        """Drop a pending prompt, as a server restart would."""
        with self.cond:
            self.pending = [p for p in self.pending if p[0] != prompt_id]

    # ------------------------------------------------------------------ the worker
    def _work(self):
        while True:
            with self.cond:
                while not self._stop and (self.paused or not self.pending):
                    self.cond.wait()
                if self._stop:
                    return
                self.running = self.pending.pop(0)
            prompt_id, prompt, client_id = self.running
            failed = self.fail_on is not None and self.fail_on in json.dumps(prompt)
            send = lambda kind, data: self._send(client_id, kind, {**data, "prompt_id": prompt_id})  # noqa: E731
            send("execution_start", {"timestamp": 0})
            send("execution_cached", {"nodes": []})
            first = sorted(prompt)[0]
            send("executing", {"node": first, "display_node": first})
            self._ping(client_id)
            for step in range(1, self.steps + 1):
                time.sleep(self.step_delay)
                send("progress", {"value": step, "max": self.steps, "node": first})
            outputs = {first: {"images": [{"filename": f"{prompt_id[:8]}_00001_.png", "subfolder": "fake",
                                           "type": "output"}]}}
            if failed:
                messages = [["execution_start", {"prompt_id": prompt_id}],
                            ["execution_error", {"prompt_id": prompt_id, "node_id": first,
                                                 "node_type": prompt[first]["class_type"],
                                                 "exception_message": "boom\ndetails", "exception_type": "ValueError"}]]
                send("execution_error", messages[-1][1])
                entry = {"prompt": [0, prompt_id, prompt, {}, [first]], "outputs": {},
                         "status": {"status_str": "error", "completed": False, "messages": messages}}
            else:
                send("executed", {"node": first, "display_node": first, "output": outputs[first]})
                send("execution_success", {})
                entry = {"prompt": [0, prompt_id, prompt, {}, [first]], "outputs": outputs,
                         "status": {"status_str": "success", "completed": True, "messages": []}}
            with self.cond:
                self.history[prompt_id] = entry
                self.running = None
            send("executing", {"node": None})

    # ------------------------------------------------------------------ websocket frames (server side)
    def _send(self, client_id, kind, data):
        text = json.dumps({"type": kind, "data": data}).encode()
        if kind == "execution_start":  # fragmented: text frame without FIN, then a continuation
            self._frame(client_id, [(0x01, text[:10], False), (0x00, text[10:], True)])
        else:
            self._frame(client_id, [(0x01, text, True)])

    def _ping(self, client_id):
        self._frame(client_id, [(0x09, b"hi", True)])

    def _frame(self, client_id, frames):
        entry = self.sockets.get(client_id)
        if entry is None:
            return
        wfile, lock = entry
        data = b""
        for opcode, payload, fin in frames:
            header = bytes([(0x80 if fin else 0) | opcode])
            n = len(payload)
            if n < 126:
                header += bytes([n])
            elif n < 65536:
                header += bytes([126]) + struct.pack("!H", n)
            else:
                header += bytes([127]) + struct.pack("!Q", n)
            data += header + payload
        try:
            with lock:
                wfile.write(data)
                wfile.flush()
        except OSError:
            self.sockets.pop(client_id, None)

    # ------------------------------------------------------------------ HTTP
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                if parts.path == "/queue":
                    with fake.cond:
                        running = [[0, fake.running[0], {}, {}, []]] if fake.running else []
                        pending = [[i + 1, p[0], {}, {}, []] for i, p in enumerate(fake.pending)]
                    self._json(200, {"queue_running": running, "queue_pending": pending})
                elif parts.path.startswith("/history/"):
                    prompt_id = parts.path[len("/history/"):]
                    with fake.cond:
                        entry = fake.history.get(prompt_id)
                    self._json(200, {prompt_id: entry} if entry else {})
                elif parts.path == "/ws" and fake.websocket:
                    self._websocket(parse_qs(parts.query).get("clientId", [""])[0])
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body.get("prompt", {})
                if fake.reject_on and fake.reject_on in json.dumps(prompt):
                    node_id = sorted(prompt)[0]
                    self._json(400, {"error": {"type": "prompt_outputs_failed_validation",
                                               "message": "Prompt outputs failed validation", "details": ""},
                                     "node_errors": {node_id: {"class_type": prompt[node_id]["class_type"],
                                                               "errors": [{"message": "Value not in list",
                                                                           "details": "mode: 'x' not in [...]"}]}}})
                    return
                prompt_id = str(body.get("prompt_id") or uuid.uuid4())
                with fake.cond:
                    fake.submitted.append((prompt_id, body.get("client_id")))
                    fake.pending.append((prompt_id, prompt, body.get("client_id")))
                    fake.cond.notify_all()
                self._json(200, {"prompt_id": prompt_id, "number": len(fake.submitted), "node_errors": {}})

            def _websocket(self, client_id):
                key = self.headers["Sec-WebSocket-Key"]
                accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
                fake.ws_clients.append(client_id)
                fake.sockets[client_id] = (self.wfile, threading.Lock())
                fake._send(client_id, "status", {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id})
                try:
                    while True:  # read client frames (masked) until close
                        head = self.rfile.read(2)
                        if len(head) < 2:
                            break
                        opcode, length = head[0] & 0x0F, head[1] & 0x7F
                        if length == 126:
                            length = struct.unpack("!H", self.rfile.read(2))[0]
                        elif length == 127:
                            length = struct.unpack("!Q", self.rfile.read(8))[0]
                        mask = self.rfile.read(4) if head[1] & 0x80 else b""
                        self.rfile.read(length)
                        if opcode == 0x0A and mask:
                            fake.pongs += 1
                        if opcode == 0x08:
                            break
                except OSError:
                    pass
                finally:
                    if fake.sockets.get(client_id, (None,))[0] is self.wfile:
                        fake.sockets.pop(client_id, None)
                    self.close_connection = True

        return Handler
