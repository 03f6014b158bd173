"""The remote engine's wire format: length-prefixed msgpack frames, the messages they carry,
their limits and error codes. Shared by `engine.serve`'s server and its client; no pickle, no
msgpack ext types.

A frame is a 4-byte big-endian length N (1..max_frame_bytes) and N bytes of msgpack holding one
map with a "type". Client -> server: hello, infill, cancel, info. Server -> client: welcome,
progress, result, error, info. See docs/remote.md for every field.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, fields
from typing import Any

import msgpack

from ..errors import AstdiffuseError

PROTOCOL_VERSION = 1
DEFAULT_PORT = 7341
HEADER = struct.Struct(">I")
SCHEMES = {"astdiffuse": False, "astdiffuse+tls": True, "tcp": False, "tls": True}  # -> TLS?

# Error codes of an error frame. "fatal" ones close the connection after the frame.
UNAUTHORIZED = "unauthorized"  # wrong or missing token (fatal)
NO_HELLO = "no-hello"  # the first frame was not a hello, or none came in time (fatal)
BAD_VERSION = "bad-version"  # the client speaks another protocol version (fatal)
FRAME_TOO_LARGE = "frame-too-large"  # a length prefix over the limit, or 0 (fatal)
TOO_MANY_CONNECTIONS = "too-many-connections"  # (fatal)
MALFORMED = "malformed"  # undecodable msgpack, not a map, unknown type, bad fields
BUSY = "busy"  # the request queue is full
DOCUMENT_TOO_LARGE = "document-too-large"
TOO_MANY_SPANS = "too-many-spans"
TOO_MANY_REQUESTS = "too-many-requests"  # this connection has as many running as allowed
DUPLICATE_ID = "duplicate-id"  # an id still running on this connection
INVALID_REQUEST = "invalid-request"  # the engine refused the request (see "kind")
TIMEOUT = "timeout"  # the request ran past the per-request timeout
CANCELLED = "cancelled"  # the client cancelled it
ENGINE_FAILED = "engine-failed"  # the model failed (out of memory, ...); the server goes on
SHUTTING_DOWN = "shutting-down"


@dataclass(frozen=True)
class Limits:
    """What one server accepts; sent to the client in the welcome."""

    max_frame_bytes: int = 4 * 1024 * 1024
    max_document_bytes: int = 1024 * 1024
    max_spans: int = 64
    request_timeout_s: float = 120.0
    max_connections: int = 64
    max_queued: int = 256  # requests waiting for the model, all connections together
    max_running_per_connection: int = 16
    hello_timeout_s: float = 5.0
    frame_timeout_s: float = 30.0  # for the rest of a frame once its length arrived

    def check(self) -> "Limits":
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"limit {f.name} must be positive, not {getattr(self, f.name)}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class ProtocolError(AstdiffuseError):
    """A frame or message that breaks the protocol; `code` is the error frame's code."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def pack(message: dict) -> bytes:
    """One frame: length prefix and msgpack body."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, max_frame_bytes: int) -> int:
    """The body length a 4-byte header announces; ProtocolError when it is 0 or over the
    limit (the stream cannot be trusted after that: the connection closes)."""
    (length,) = HEADER.unpack(header)
    if length == 0 or length > max_frame_bytes:
        raise ProtocolError(FRAME_TOO_LARGE, f"frame of {length:,} bytes: frames are 1 to "
                                             f"{max_frame_bytes:,} bytes")
    return length


def unpack(body: bytes, max_frame_bytes: int) -> dict:
    """A frame body -> its message map with a str "type"; ProtocolError(MALFORMED) otherwise.
    Strict: str keys only, no ext types, every size bounded by the frame limit."""
    try:
        message = msgpack.unpackb(
            body, raw=False, strict_map_key=True, max_ext_len=0, use_list=True,
            max_str_len=max_frame_bytes, max_bin_len=max_frame_bytes,
            max_array_len=max_frame_bytes, max_map_len=max_frame_bytes)
    except Exception as err:  # noqa: BLE001 - msgpack raises many types on garbage
        raise ProtocolError(MALFORMED, f"malformed msgpack: {type(err).__name__}: {err}") \
            from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(MALFORMED, "a message must be a map with a string \"type\"")
    return message


class FrameBuffer:
    """Reassembles frames from bytes as they arrive (the blocking client's reader)."""

    def __init__(self, max_frame_bytes: int):
        self.max_frame_bytes = max_frame_bytes
        self._data = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        """Add received bytes; every message now complete, in order."""
        self._data += data
        out = []
        while len(self._data) >= HEADER.size:
            length = frame_length(bytes(self._data[:HEADER.size]), self.max_frame_bytes)
            end = HEADER.size + length
            if len(self._data) < end:
                break
            out.append(unpack(bytes(self._data[HEADER.size:end]), self.max_frame_bytes))
            del self._data[:end]
        return out


def error_message(code: str, message: str, request_id: Any = None, *, fatal: bool = False,
                  kind: str | None = None, data: dict | None = None) -> dict:
    """An error frame's message; `kind` names the engine's error class for invalid-request,
    `data` its public attributes (`error_data`)."""
    out = {"type": "error", "id": request_id, "code": code, "message": message, "fatal": fatal}
    if kind is not None:
        out["kind"] = kind
    if data:
        out["data"] = data
    return out


def error_data(err: BaseException) -> dict:
    """An engine error's public attributes that are plain values (str, int, float, bool, None,
    or lists of them), e.g. UnsupportedLanguageError's `requested` and `supported`."""
    plain = (str, int, float, bool, type(None))
    out = {}
    for name, value in vars(err).items():
        if name.startswith("_"):
            continue
        if isinstance(value, plain) or (isinstance(value, (list, tuple))
                                        and all(isinstance(v, plain) for v in value)):
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def request_id(message: dict) -> int:
    """The message's "id": an int in the signed 64-bit range, or ProtocolError."""
    value = message.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or not -2 ** 63 <= value < 2 ** 63:
        raise ProtocolError(MALFORMED, f"{message.get('type')} needs an integer \"id\"")
    return value


def parse_url(url: str) -> tuple[str, int, bool]:
    """`astdiffuse://host:port` or `astdiffuse+tls://host:port` -> (host, port, tls); the port
    defaults to DEFAULT_PORT. ValueError with what to write instead."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"engine URL {url!r}: write astdiffuse://HOST:PORT or "
                         "astdiffuse+tls://HOST:PORT")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"engine URL {url!r}: the port must be a number 1..65535") from None
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"engine URL {url!r}: only a scheme, host and port are taken")
    return parts.hostname, port, SCHEMES[parts.scheme]
