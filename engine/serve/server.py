"""The remote engine's asyncio TCP server: authenticates each connection, checks every frame
against the limits, hands infills to the `Batcher` and streams progress and results back. A
bad frame costs the sender an error (or its connection), never the server."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..errors import AstdiffuseError
from . import protocol as p
from .batcher import Batcher, QueueFullError, Work

log = logging.getLogger(__name__)

OUTBOX_PROGRESS_LIMIT = 64  # progress frames a slow client may have waiting; more are dropped
OUTBOX_LIMIT = 32  # other frames waiting for a client that does not read them: then its
#   next frames are not read either (else its answers pile up in the server's memory)


class Throttle:
    """Slows down an address after failed hellos: the n-th failure within `window_s` makes
    that address wait base * 2**(n-1) seconds (at most `cap_s`) before each hello is judged."""

    def __init__(self, base_s: float = 0.25, cap_s: float = 8.0, window_s: float = 300.0):
        self.base_s, self.cap_s, self.window_s = base_s, cap_s, window_s
        self._failures: dict[str, tuple[int, float]] = {}

    def delay(self, address: str) -> float:
        count, last = self._failures.get(address, (0, 0.0))
        if count == 0 or time.monotonic() - last > self.window_s:
            return 0.0
        return min(self.cap_s, self.base_s * 2 ** (count - 1))

    def failed(self, address: str) -> None:
        count, last = self._failures.get(address, (0, 0.0))
        if time.monotonic() - last > self.window_s:
            count = 0
        self._failures[address] = (count + 1, time.monotonic())
        if len(self._failures) > 10_000:  # bounded memory under a scan
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


@dataclass
class ServerInfo:
    model: str
    device: str
    sampling_defaults: dict = field(default_factory=dict)


class EngineServer:
    """Serves one engine (through one Batcher) to many connections."""

    def __init__(self, batcher: Batcher, info: ServerInfo, *, token: str | None,
                 limits: p.Limits | None = None, throttle: Throttle | None = None):
        self.batcher = batcher
        self.info = info
        self.token = token.encode("utf-8") if token is not None else None
        self.limits = (limits or p.Limits()).check()
        self.throttle = throttle or Throttle()
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, ssl=None) -> asyncio.base_events.Server:
        self._server = await asyncio.start_server(self._connection, host, port, ssl=ssl,
                                                  limit=64 * 1024)
        return self._server

    def status(self) -> dict:
        return {"model": self.info.model, "device": self.info.device, "version": __version__,
                "protocol": p.PROTOCOL_VERSION, "queued": self.batcher.queued,
                "running": self.batcher.running, "connections": self.connections,
                "batches": self.batcher.stats.batches, "requests": self.batcher.stats.requests,
                "largest_batch": self.batcher.stats.largest,
                "max_batch": self.batcher.max_batch}

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        connection = _Connection(self, reader, writer, address)
        self.connections += 1
        try:
            if self.connections > self.limits.max_connections:
                await connection.fatal(p.TOO_MANY_CONNECTIONS,
                                       f"the server takes {self.limits.max_connections} "
                                       "connections at once; try again later")
                return
            await connection.serve()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # the peer went away; its work is cancelled below
        except Exception:  # noqa: BLE001 - one connection's bug must not take the server down
            log.exception("connection from %s failed", address)
        finally:
            self.connections -= 1
            connection.cancel_all()
            await connection.close()


class _Connection:
    def __init__(self, server: EngineServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, address: str):
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.address = address
        self.loop = asyncio.get_running_loop()
        self.running: dict[int, Work] = {}
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.progress_waiting = 0
        self.sender = asyncio.create_task(self._send_loop())

    # -- writing -------------------------------------------------------------------------------

    def post(self, message: dict) -> None:
        """Queue a frame (event-loop thread only)."""
        if message.get("type") == "progress":
            if self.progress_waiting >= OUTBOX_PROGRESS_LIMIT:
                return  # a slow reader loses progress frames, never results
            self.progress_waiting += 1
        self.outbox.put_nowait(message)

    def post_threadsafe(self, message: dict) -> None:
        try:
            self.loop.call_soon_threadsafe(self.post, message)
        except RuntimeError:
            pass  # the loop is closed: the server is stopping

    async def _send_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                return
            if message.get("type") == "progress":
                self.progress_waiting -= 1
            try:
                self.writer.write(p.pack(message))
                await self.writer.drain()
            except (ConnectionError, OSError):
                return

    async def fatal(self, code: str, text: str, request_id: Any = None) -> None:
        self.post(p.error_message(code, text, request_id, fatal=True))

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self.sender, timeout=2.0)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            self.sender.cancel()
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout=2.0)
        except (ConnectionError, OSError, asyncio.TimeoutError, Exception):  # noqa: BLE001
            pass

    def cancel_all(self) -> None:
        for work in self.running.values():
            work.cancel_event.set()

    # -- reading -------------------------------------------------------------------------------

    async def read(self, timeout: float | None) -> dict:
        header = await asyncio.wait_for(self.reader.readexactly(p.HEADER.size), timeout)
        length = p.frame_length(header, self.limits.max_frame_bytes)
        body = await asyncio.wait_for(self.reader.readexactly(length),
                                      self.limits.frame_timeout_s)
        return p.unpack(body, self.limits.max_frame_bytes)

    async def serve(self) -> None:
        if not await self._hello():
            return
        while True:
            await self._wait_for_reader()
            try:
                message = await self.read(None)
            except p.ProtocolError as err:
                if err.code == p.FRAME_TOO_LARGE:
                    await self.fatal(err.code, str(err))
                    return
                self.post(p.error_message(err.code, str(err)))
                continue
            except asyncio.TimeoutError:
                await self.fatal(p.MALFORMED, "a frame stopped arriving halfway")
                return
            try:
                self._dispatch(message)
            except p.ProtocolError as err:
                self.post(p.error_message(err.code, str(err), message.get("id")))

    async def _wait_for_reader(self) -> None:
        while self.outbox.qsize() - self.progress_waiting > OUTBOX_LIMIT:
            if self.sender.done():
                raise ConnectionError("the client is gone")
            await asyncio.sleep(0.01)

    async def _hello(self) -> bool:
        try:
            message = await self.read(self.limits.hello_timeout_s)
        except asyncio.TimeoutError:
            await self.fatal(p.NO_HELLO, f"no hello within {self.limits.hello_timeout_s:g} s")
            return False
        except p.ProtocolError as err:
            await self.fatal(p.NO_HELLO if err.code == p.MALFORMED else err.code,
                             f"{err}; a connection starts with a hello")
            return False
        if message.get("type") != "hello":
            await self.fatal(p.NO_HELLO, f"the first message was {message['type']!r}; a "
                                         "connection starts with a hello")
            return False
        delay = self.server.throttle.delay(self.address)
        if delay:
            await asyncio.sleep(delay)
        version = message.get("version")
        if version != p.PROTOCOL_VERSION:
            await self.fatal(p.BAD_VERSION, f"protocol version {version!r} is not served here "
                                            f"(this server speaks {p.PROTOCOL_VERSION}); "
                                            "use a client of the same astdiffuse version")
            return False
        if not self._token_ok(message.get("token")):
            self.server.throttle.failed(self.address)
            log.warning("wrong token from %s", self.address)
            await self.fatal(p.UNAUTHORIZED, "the token was refused; set the token the server "
                                             "was started with (ASTDIFFUSE_TOKEN or a token "
                                             "file)")
            return False
        self.server.throttle.succeeded(self.address)
        info = self.server.info
        self.post({"type": "welcome", "version": p.PROTOCOL_VERSION, "server": __version__,
                   "model": info.model, "device": info.device,
                   "sampling_defaults": info.sampling_defaults,
                   "limits": self.limits.to_dict()})
        return True

    def _token_ok(self, token: Any) -> bool:
        expected = self.server.token
        if expected is None:
            return True  # loopback without a token: anyone on this machine may connect
        given = token.encode("utf-8") if isinstance(token, str) else b""
        return hmac.compare_digest(given, expected)

    def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if kind == "infill":
            self._infill(message)
        elif kind == "cancel":
            work = self.running.get(p.request_id(message))
            if work is not None:
                work.cancel_event.set()
        elif kind == "info":
            self.post({"type": "info", "id": p.request_id(message), **self.server.status()})
        elif kind == "hello":
            raise p.ProtocolError(p.MALFORMED, "hello was already received")
        else:
            raise p.ProtocolError(p.MALFORMED, f"unknown message type {kind!r}")

    def _infill(self, message: dict) -> None:
        from ..infill import InfillRequest
        from ..infill.request import InvalidRequestError, from_dict

        request_id = p.request_id(message)
        if request_id in self.running:
            raise p.ProtocolError(p.DUPLICATE_ID, f"request {request_id} is still running")
        if len(self.running) >= self.limits.max_running_per_connection:
            raise p.ProtocolError(p.TOO_MANY_REQUESTS,
                                  f"{len(self.running)} requests of this connection are "
                                  "running; wait for one to end")
        data = message.get("request")
        if isinstance(data, dict):
            text = data.get("text")
            if isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) \
                    > self.limits.max_document_bytes:
                raise p.ProtocolError(p.DOCUMENT_TOO_LARGE,
                                      f"the document is over {self.limits.max_document_bytes:,}"
                                      " bytes, the server's limit")
            ranges = data.get("ranges")
            if isinstance(ranges, list) and len(ranges) > self.limits.max_spans:
                raise p.ProtocolError(p.TOO_MANY_SPANS,
                                      f"{len(ranges)} ranges: the server takes at most "
                                      f"{self.limits.max_spans}")
        try:
            request = from_dict(InfillRequest, data)
            request.check()
        except InvalidRequestError as err:
            raise p.ProtocolError(p.INVALID_REQUEST, str(err)) from None

        def finish(outcome: Any) -> None:
            self.loop.call_soon_threadsafe(self._finished, request_id, work, outcome)

        progress = None
        if message.get("progress", True):
            def progress(event: Any) -> None:
                self.post_threadsafe({"type": "progress", "id": request_id,
                                      "event": _event_dict(event)})

        work = Work(request=request, finish=finish, progress=progress,
                    timeout_s=self.limits.request_timeout_s)
        try:
            self.server.batcher.submit(work)
        except QueueFullError as err:
            raise p.ProtocolError(p.BUSY, str(err)) from None
        self.running[request_id] = work

    def _finished(self, request_id: int, work: Work, outcome: Any) -> None:
        from ..infill import InfillCancelled
        from ..infill.request import to_dict

        if self.running.get(request_id) is work:
            del self.running[request_id]
        if isinstance(outcome, InfillCancelled):
            if work.expired:
                self.post(p.error_message(p.TIMEOUT, f"the request ran past the server's "
                                          f"{self.limits.request_timeout_s:g} s limit",
                                          request_id))
            else:
                self.post(p.error_message(p.CANCELLED, str(outcome) or "cancelled",
                                          request_id))
        elif isinstance(outcome, AstdiffuseError):
            self.post(p.error_message(p.INVALID_REQUEST, str(outcome), request_id,
                                      kind=type(outcome).__name__, data=p.error_data(outcome)))
        elif isinstance(outcome, BaseException):
            self.post(p.error_message(p.ENGINE_FAILED, f"the engine failed: "
                                      f"{type(outcome).__name__}: {outcome}", request_id))
        else:
            self.post({"type": "result", "id": request_id, "result": to_dict(outcome)})


def _event_dict(event: Any) -> dict:
    from dataclasses import asdict

    return asdict(event)
