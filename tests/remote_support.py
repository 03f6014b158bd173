"""What the remote engine's tests share: a real `python -m engine.serve` process on loopback
(started with the Language Server tests' tiny model, so it loads in a second) and raw-socket
helpers to speak the frame protocol by hand."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.serve import protocol as p

from .paths import ROOT

TOKEN = "remote-engine-test-token-0123456789"


class EngineProcess:
    """One server process; `url`, `port`, and its stderr (read when it fails to start)."""

    def __init__(self, model_dir: Path, *args: str, token: str | None = TOKEN,
                 port: int = 0, log: Path | None = None):
        env = dict(os.environ)
        env.pop("ASTDIFFUSE_TOKEN", None)
        if token is not None:
            env["ASTDIFFUSE_TOKEN"] = token
        self.log = log
        stderr = open(log, "a") if log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.serve", "--port", str(port), "--model",
             str(model_dir), "--device", "cpu", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        line = _readline(self.process, 120)
        if "listening on" not in line:
            self.stop()
            raise AssertionError(f"engine.serve did not start: {line!r} (log: {log})")
        self.port = int(line.split()[2].rsplit(":", 1)[1])
        self.banner = line
        self.url = f"astdiffuse://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def _readline(process: subprocess.Popen, timeout: float) -> str:
    """The process's first stdout line, or '' after `timeout` seconds or at its exit."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.readline()),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def raw_connection(port: int, timeout: float = 10.0, source: str | None = None):
    """A plain socket to the server; `source` another loopback address to come from (the
    server throttles by address)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    try:
        yield sock
    finally:
        sock.close()


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(p.pack(message))


def receive(sock: socket.socket, timeout: float = 10.0) -> dict | None:
    """The next message, or None when the server closed the connection."""
    sock.settimeout(timeout)
    header = _exactly(sock, p.HEADER.size)
    if header is None:
        return None
    length = p.frame_length(header, 64 * 1024 * 1024)
    body = _exactly(sock, length)
    return None if body is None else p.unpack(body, 64 * 1024 * 1024)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def hello(sock: socket.socket, token: str | None = TOKEN, version: int = p.PROTOCOL_VERSION
          ) -> dict:
    send(sock, {"type": "hello", "version": version, "token": token, "client": "tests"})
    return receive(sock)


def closed(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the server closes the connection within `timeout` (frames before are read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if receive(sock, timeout=max(0.1, deadline - time.monotonic())) is None:
                return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
    return False
