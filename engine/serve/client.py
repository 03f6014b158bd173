"""The remote engine's client: the same `infill(request, progress=, cancelled=)` as a local
`InfillEngine`, over one blocking connection that reconnects when the server restarts. Every
wait is bounded: an unreachable or dead server is an `EngineUnreachableError`, never a hang."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, Callable

from ..errors import (AstdiffuseError, BinaryFileError, EmptySourceError, InvalidRangeError,
                      NothingToInfillError, SourceDecodeError, SourceTooLargeError,
                      UnsupportedLanguageError)
from . import protocol as p

POLL_S = 0.1  # how often a waiting request checks its cancelled flag
CANCEL_GRACE_S = 10.0  # after a cancel, how long to wait for the server's answer
TIMEOUT_GRACE_S = 15.0  # past the server's request timeout, how long before giving up


class RemoteEngineError(AstdiffuseError):
    """The remote engine refused or failed a request; `code` is the protocol's error code."""

    def __init__(self, message: str, code: str = ""):
        self.code = code
        super().__init__(message)


class EngineUnreachableError(RemoteEngineError):
    """No connection to the remote engine (down, unreachable, died mid-request, TLS failed)."""


class AuthenticationError(RemoteEngineError):
    """The server refused the token."""


def _engine_error_types() -> dict[str, type]:
    from ..infill import InfillCancelled
    from ..infill.canvas import SpanOutsideCanvasError, SpansOverlapError
    from ..infill.request import InvalidRequestError

    return {cls.__name__: cls for cls in (
        UnsupportedLanguageError, InvalidRangeError, NothingToInfillError, SourceTooLargeError,
        SourceDecodeError, BinaryFileError, EmptySourceError, SpanOutsideCanvasError,
        SpansOverlapError, InvalidRequestError, InfillCancelled)}


def _rebuild(cls: type, message: str, data: object = None) -> Exception:
    """An instance of an engine error class carrying the server's message and the attributes
    the server sent (`data`: plain values, e.g. `supported` of UnsupportedLanguageError)."""
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    if isinstance(data, dict):
        for name, value in data.items():
            if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                setattr(err, name, value)
    return err


class RemoteEngine:
    """A connection to `python -m engine.serve` at `url` (astdiffuse://HOST:PORT or
    astdiffuse+tls://HOST:PORT). One request at a time per object; thread-safe."""

    def __init__(self, url: str, token: str | None = None, *, connect_timeout: float = 5.0,
                 ca_file: str | None = None, client: str = "astdiffuse"):
        self.url = url
        self.host, self.port, self.tls = p.parse_url(url)
        self.token = token
        self.connect_timeout = connect_timeout
        self.ca_file = ca_file
        self.client = client
        self.welcome: dict = {}
        self._sock: socket.socket | None = None
        self._buffer: p.FrameBuffer | None = None
        self._pending: list[dict] = []  # messages received, not yet read
        self._next_id = 1
        self._lock = threading.Lock()

    # -- what a local engine also has ----------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.welcome.get('model', '?')} at {self.host}:{self.port}"

    @property
    def device(self) -> str:
        return f"{self.welcome.get('device', '?')} at {self.host}:{self.port}"

    @property
    def sampling_defaults(self) -> dict:
        return dict(self.welcome.get("sampling_defaults") or {})

    def default_options(self, **overrides):
        from ..infill import InfillOptions

        return InfillOptions(**{**self.sampling_defaults, **overrides})

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> dict:
        """Connect and say hello unless connected; the welcome (model, device, limits)."""
        with self._lock:
            self._ensure()
            return dict(self.welcome)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _where(self) -> str:
        return f"the remote engine at {self.host}:{self.port}"

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._buffer, self._pending = None, None, []

    def _alive(self) -> bool:
        """Whether the open connection still stands (a restarted server closed it: readable
        with EOF, or an error frame waiting)."""
        if self._sock is None:
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return True
            data = self._sock.recv(65536)
        except (OSError, ValueError):
            return False
        if not data:
            return False
        for message in self._buffer.feed(data):  # nothing should come unasked; an error
            if message.get("type") == "error" and message.get("fatal"):  # frame means closing
                return False
        return True

    def _ensure(self) -> None:
        if self._alive():
            return
        self._drop()
        deadline = time.monotonic() + self.connect_timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as err:
            raise EngineUnreachableError(
                f"cannot connect to {self._where()}: {err.strerror or err} (is `python -m "
                "engine.serve` running there, and the port or SSH tunnel open?)",
                "unreachable") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                context = ssl.create_default_context(cafile=self.ca_file)
                sock = context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as err:
            sock.close()
            raise EngineUnreachableError(f"TLS with {self._where()} failed: {err}",
                                         "tls") from None
        self._sock, self._buffer = sock, p.FrameBuffer(64 * 1024 * 1024)
        try:
            self._send({"type": "hello", "version": p.PROTOCOL_VERSION, "token": self.token,
                        "client": self.client})
            message = self._receive(deadline)
        except BaseException:
            self._drop()
            raise
        if message.get("type") == "error":
            self._drop()
            self._raise(message)
        if message.get("type") != "welcome":
            self._drop()
            raise EngineUnreachableError(f"{self._where()} answered the hello with "
                                         f"{message.get('type')!r}", p.MALFORMED)
        self.welcome = message
        self._buffer.max_frame_bytes = 64 * 1024 * 1024

    def _send(self, message: dict) -> None:
        try:
            self._sock.settimeout(self.connect_timeout)
            self._sock.sendall(p.pack(message))
        except OSError as err:
            self._drop()
            raise EngineUnreachableError(f"lost {self._where()}: {err}", "unreachable") \
                from None

    def _receive(self, deadline: float, cancelled: Callable[[], bool] | None = None,
                 on_cancel: Callable[[], None] | None = None) -> dict:
        """The next message, waiting until `deadline` (monotonic); polls `cancelled`."""
        pending = self._pending
        while not pending:
            now = time.monotonic()
            if now >= deadline:
                self._drop()
                raise EngineUnreachableError(f"{self._where()} did not answer in time",
                                             p.TIMEOUT)
            if cancelled is not None and on_cancel is not None and cancelled():
                on_cancel()
                on_cancel = None
            try:
                self._sock.settimeout(min(POLL_S, deadline - now))
                data = self._sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError as err:
                self._drop()
                raise EngineUnreachableError(f"lost {self._where()}: {err}",
                                             "unreachable") from None
            if not data:
                self._drop()
                raise EngineUnreachableError(
                    f"{self._where()} closed the connection (stopped or restarted?)",
                    "unreachable")
            try:
                pending.extend(self._buffer.feed(data))
            except p.ProtocolError as err:
                self._drop()
                raise EngineUnreachableError(f"{self._where()} sent a bad frame: {err}",
                                             err.code) from None
        return pending.pop(0)

    def _raise(self, message: dict) -> None:
        code = str(message.get("code", ""))
        text = str(message.get("message", "")) or code
        if code == p.UNAUTHORIZED:
            raise AuthenticationError(f"{self._where()} refused the token: {text}", code)
        if code == p.CANCELLED:
            from ..infill import InfillCancelled

            raise InfillCancelled(text)
        if code == p.INVALID_REQUEST:
            cls = _engine_error_types().get(str(message.get("kind", "InvalidRequestError")))
            if cls is not None:
                raise _rebuild(cls, text, message.get("data"))
        if message.get("fatal"):
            self._drop()
        raise RemoteEngineError(f"{self._where()}: {text}", code)

    # -- requests ------------------------------------------------------------------------------

    def info(self, timeout: float = 10.0) -> dict:
        """Model, device, queue length, version and batching counters of the server."""
        with self._lock:
            self._ensure()
            request_id = self._take_id()
            self._send({"type": "info", "id": request_id})
            deadline = time.monotonic() + timeout
            while True:
                message = self._receive(deadline)
                if message.get("id") == request_id or message.get("fatal"):
                    if message.get("type") == "error":
                        self._raise(message)
                    return {k: v for k, v in message.items() if k not in ("type", "id")}

    def infill(self, request, progress: Callable[[Any], None] | None = None,
               cancelled: Callable[[], bool] | None = None):
        """Run `request` (an InfillRequest) remotely -> InfillResult, with the same progress
        events and cancellation as a local engine."""
        from ..infill import InfillCancelled, InfillResult, ProgressEvent
        from ..infill.request import from_dict, to_dict

        with self._lock:
            if cancelled is not None and cancelled():
                raise InfillCancelled("cancelled before it was sent")
            message = {"type": "infill", "request": to_dict(request),
                       "progress": progress is not None}
            self._ensure()
            message["id"] = request_id = self._take_id()
            try:
                self._send(message)
            except EngineUnreachableError:  # the server restarted between two requests
                self._ensure()
                self._send(message)
            limit = float(self.welcome.get("limits", {}).get("request_timeout_s", 120.0))
            deadline = time.monotonic() + limit + TIMEOUT_GRACE_S
            state = {"cancelled": False}

            def send_cancel() -> None:
                state["cancelled"] = True
                self._send({"type": "cancel", "id": request_id})

            while True:
                wait = deadline
                if state["cancelled"]:
                    wait = min(deadline, time.monotonic() + CANCEL_GRACE_S)
                try:
                    reply = self._receive(wait, cancelled, None if state["cancelled"]
                                          else send_cancel)
                except EngineUnreachableError:
                    if state["cancelled"]:
                        raise InfillCancelled("cancelled (the server did not confirm)") \
                            from None
                    raise
                if reply.get("id") != request_id and not reply.get("fatal"):
                    continue  # a late frame of an earlier, abandoned request
                kind = reply.get("type")
                if kind == "progress":
                    if progress is not None and not state["cancelled"]:
                        event = reply.get("event") or {}
                        progress(ProgressEvent(**event))
                    continue
                if kind == "result":
                    return from_dict(InfillResult, reply.get("result"))
                if kind == "error":
                    self._raise(reply)
                raise RemoteEngineError(f"{self._where()} sent an unexpected {kind!r}",
                                        p.MALFORMED)

    def _take_id(self) -> int:
        request_id, self._next_id = self._next_id, self._next_id + 1
        return request_id
