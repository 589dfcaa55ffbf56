"""A minimal RFC 6455 websocket client (stdlib only) for ComfyUI's ``/ws`` progress messages.

Client side only, no extensions: the opening handshake with ``Sec-WebSocket-Accept`` check, masked
client frames, text/binary messages (fragmented ones reassembled), ping -> pong, close. :meth:`recv` takes a
timeout and keeps a partly received frame buffered, so a caller can poll other things between messages.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
from urllib.parse import urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(OSError):
    """The handshake failed or the connection broke."""


class WebSocket:
    def __init__(self, sock: socket.socket, leftover: bytes = b""):
        self.sock = sock
        self._buffer = bytearray(leftover)
        self._fragments: list[bytes] = []
        self._fragment_opcode = _TEXT
        self.closed = False

    @classmethod
    def connect(cls, url: str, timeout: float = 10.0) -> "WebSocket":
        """Open ``ws://host:port/path?query`` (or ``wss://``)."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode()
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
            sock.sendall(request.encode())
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk:
                    raise WebSocketError(f"{url}: connection closed during the websocket handshake")
                response += chunk
                if len(response) > 65536:
                    raise WebSocketError(f"{url}: oversized handshake response")
            head, _, leftover = response.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)
            if len(status) < 2 or status[1] != "101":
                raise WebSocketError(f"{url}: server answered {lines[0]!r} instead of switching to websocket")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            if headers.get("sec-websocket-accept") != expected:
                raise WebSocketError(f"{url}: bad Sec-WebSocket-Accept in the handshake")
        except BaseException:
            sock.close()
            raise
        return cls(sock, leftover)

    # ------------------------------------------------------------------ receiving
    def recv(self, timeout: float | None = None) -> str | bytes | None:
        """The next message (``str`` for text, ``bytes`` for binary), or ``None`` if ``timeout`` passed first.

        Raises :class:`WebSocketError` when the connection closes."""
        self.sock.settimeout(timeout)
        while True:
            frame = self._parse_frame()
            if frame is None:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return None
                except OSError as exc:
                    self.closed = True
                    raise WebSocketError(f"websocket connection lost: {exc}") from exc
                if not chunk:
                    self.closed = True
                    raise WebSocketError("websocket closed by the server")
                self._buffer += chunk
                continue
            fin, opcode, payload = frame
            if opcode == _PING:
                self._send_frame(_PONG, payload)
            elif opcode == _PONG:
                pass
            elif opcode == _CLOSE:
                if not self.closed:
                    self._send_frame(_CLOSE, payload[:2])
                self.closed = True
                raise WebSocketError("websocket closed by the server")
            else:
                if opcode != _CONTINUATION:
                    self._fragment_opcode, self._fragments = opcode, []
                self._fragments.append(payload)
                if fin:
                    data = b"".join(self._fragments)
                    self._fragments = []
                    return data.decode("utf-8") if self._fragment_opcode == _TEXT else data

    def _parse_frame(self) -> tuple[bool, int, bytes] | None:
        """One complete frame from the buffer (removed from it), or ``None`` while it is incomplete."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, offset = struct.unpack("!Q", buf[2:10])[0], 10
        mask = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            mask, offset = bytes(buf[offset:offset + 4]), offset + 4
        if len(buf) < offset + length:
            return None
        payload = bytes(buf[offset:offset + length])
        del buf[:offset + length]
        if masked:
            payload = _apply_mask(payload, mask)
        return fin, opcode, payload

    # ------------------------------------------------------------------ sending
    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        try:
            self.sock.sendall(bytes(header) + mask + _apply_mask(payload, mask))
        except OSError as exc:
            self.closed = True
            raise WebSocketError(f"websocket connection lost: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            try:
                self._send_frame(_CLOSE, struct.pack("!H", 1000))
            except WebSocketError:
                pass
            self.closed = True
        self.sock.close()


def _apply_mask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")
