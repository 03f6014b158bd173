"""The remote engine: `python -m engine.serve` serves one model over TCP (msgpack frames, token,
limits, dynamic batching); `RemoteEngine` is the client the Language Server uses."""

from .client import AuthenticationError, EngineUnreachableError, RemoteEngine, RemoteEngineError
from .protocol import DEFAULT_PORT, PROTOCOL_VERSION, Limits, parse_url

__all__ = ["AuthenticationError", "DEFAULT_PORT", "EngineUnreachableError", "Limits",
           "PROTOCOL_VERSION", "RemoteEngine", "RemoteEngineError", "parse_url"]
