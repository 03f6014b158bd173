"""`python -m engine.serve` and `RemoteEngine` on loopback, with real server processes: a request
end to end, authentication, every limit, cancellation, a client that goes away, a server that
dies, reconnecting, concurrent clients, TLS, and the CLI's refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from engine.errors import UnsupportedLanguageError
from engine.infill import ByteRange, InfillCancelled, InfillEngine, InfillOptions, InfillRequest
from engine.infill.request import to_dict
from engine.serve import (AuthenticationError, EngineUnreachableError, RemoteEngine,
                          RemoteEngineError)
from engine.serve import protocol as p

from .lsp_support import BUFFER, LONG, model_directory
from .paths import ROOT
from .remote_support import (TOKEN, EngineProcess, closed, free_port, hello, raw_connection,
                             receive, send)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory):
    return model_directory(request, tmp_path_factory)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """One server for most tests: a token, batching on, small limits that tests can reach."""
    log = tmp_path_factory.mktemp("serve") / "engine.log"
    engine = EngineProcess(model_dir, "--max-batch", "8", "--batch-window-ms", "50",
                           "--max-document-bytes", "20000", "--max-spans", "4",
                           "--max-frame-bytes", "100000", log=log)
    yield engine
    engine.stop()


def slow(**options) -> InfillRequest:
    """400 masks decoded one a step (threshold 1): about 400 steps, seconds even for the tiny
    model, however sure it is."""
    return request(LONG, "lowest, highest", **{"steps": 2000, "lengths": [400],
                                               "threshold": 1.0, **options})


def request(text: str = BUFFER, needle: str = "price + count", seed: int = 0,
            **options) -> InfillRequest:
    point = text.encode("utf-8").index(needle.encode("utf-8"))
    defaults = dict(steps=3, repair_rounds=0, length_candidates=1, seed=seed)
    return InfillRequest(text, "python", [ByteRange(point, point)],
                         options=InfillOptions(**{**defaults, **options}))


def test_a_request_end_to_end_equals_the_local_engine(server, model_dir):
    remote = RemoteEngine(server.url, TOKEN)
    welcome = remote.connect()
    assert welcome["version"] == p.PROTOCOL_VERSION and welcome["device"] == "cpu"
    assert welcome["limits"]["max_spans"] == 4
    events = []
    result = remote.infill(request(), progress=events.append)
    local = InfillEngine.load(model_dir, device="cpu").infill(request())
    assert [c.text for c in result.candidates] == [c.text for c in local.candidates]
    assert result.valid == local.valid and result.steps == local.steps
    assert events and events[-1].step == result.steps and events[0].phase == "denoise"
    info = remote.info()
    assert info["model"] and info["device"] == "cpu" and info["queued"] == 0
    assert info["version"] and info["protocol"] == p.PROTOCOL_VERSION
    remote.close()


def test_the_engines_own_errors_arrive_typed(server):
    remote = RemoteEngine(server.url, TOKEN)
    bad = InfillRequest(BUFFER, "cobol", [ByteRange(0, 0)])
    with pytest.raises(UnsupportedLanguageError, match="cobol") as caught:
        remote.infill(bad)
    # its attributes travel too, as a local caller would read them
    assert caught.value.requested == "cobol" and "python" in caught.value.supported
    assert remote.infill(request()).candidates  # the connection is still good


def test_a_wrong_or_missing_token_is_refused_and_closes(server):
    with pytest.raises(AuthenticationError, match="refused the token"):
        RemoteEngine(server.url, "wrong").connect()
    with pytest.raises(AuthenticationError):
        RemoteEngine(server.url, None).connect()
    with raw_connection(server.port) as sock:
        answer = hello(sock, token="also wrong")
        assert answer["code"] == p.UNAUTHORIZED and answer["fatal"] is True
        assert closed(sock)


def test_repeated_failures_are_slowed_down(server):
    """The throttle doubles the wait before each hello from an address that keeps failing
    (127.0.0.3: an address no other test failed from)."""
    waits = []
    for _ in range(4):
        began = time.monotonic()
        with raw_connection(server.port, source="127.0.0.3") as sock:
            assert hello(sock, token="nope")["code"] == p.UNAUTHORIZED
        waits.append(time.monotonic() - began)
    assert waits[-1] > 0.8 and waits[-1] > waits[0] + 0.5, waits
    # a good token still gets in (after its wait) and clears the record
    assert RemoteEngine(server.url, TOKEN, connect_timeout=15).connect()["version"] == 1


def test_no_hello(server):
    with raw_connection(server.port) as sock:
        send(sock, {"type": "info", "id": 1})
        answer = receive(sock)
        assert answer["code"] == p.NO_HELLO and closed(sock)
    with raw_connection(server.port, timeout=15) as sock:  # silence: the hello timeout (5 s)
        answer = receive(sock, timeout=15)
        assert answer["code"] == p.NO_HELLO and "within" in answer["message"]


def test_frame_and_request_limits(server):
    with raw_connection(server.port) as sock:
        assert hello(sock)["type"] == "welcome"
        send(sock, {"type": "infill", "id": 1, "request": {**to_dict(request()),
                                                          "text": "x = 1\n" * 4000}})
        answer = receive(sock)
        assert (answer["id"], answer["code"]) == (1, p.DOCUMENT_TOO_LARGE)
        five = to_dict(request())
        five["ranges"] = [{"start": 0, "end": 0}] * 5
        send(sock, {"type": "infill", "id": 2, "request": five})
        assert receive(sock)["code"] == p.TOO_MANY_SPANS
        sock.sendall(p.HEADER.pack(5) + b"\xc1\xc1\xc1\xc1\xc1")  # not msgpack
        assert receive(sock)["code"] == p.MALFORMED
        send(sock, {"type": "launch-missiles", "id": 3})
        assert "unknown message type" in receive(sock)["message"]
        send(sock, {"type": "infill", "id": 4, "request": {"text": 5}})
        answer = receive(sock)
        assert answer["code"] == p.INVALID_REQUEST and "InfillRequest" in answer["message"]
        send(sock, {"type": "info", "id": 5})  # still usable after all of that
        assert receive(sock)["type"] == "info"
        sock.sendall(p.HEADER.pack(100_001))  # over --max-frame-bytes: the stream is closed
        answer = receive(sock)
        assert answer["code"] == p.FRAME_TOO_LARGE and answer["fatal"] and closed(sock)


def test_bad_version_and_duplicate_ids(server):
    with raw_connection(server.port) as sock:
        assert hello(sock, version=99)["code"] == p.BAD_VERSION and closed(sock)
    with raw_connection(server.port) as sock:
        hello(sock)
        long_one = to_dict(slow())
        send(sock, {"type": "infill", "id": 7, "request": long_one, "progress": False})
        send(sock, {"type": "infill", "id": 7, "request": long_one, "progress": False})
        assert receive(sock)["code"] == p.DUPLICATE_ID
        send(sock, {"type": "cancel", "id": 7})
        assert receive(sock, timeout=30)["code"] == p.CANCELLED


def test_cancel_keeps_the_connection(server):
    remote = RemoteEngine(server.url, TOKEN)
    seen = []
    with pytest.raises(InfillCancelled):
        remote.infill(slow(), progress=seen.append, cancelled=lambda: bool(seen))
    assert len(seen) < 50
    assert remote.infill(request()).candidates


def test_a_request_over_the_time_limit(model_dir, tmp_path):
    engine = EngineProcess(model_dir, "--request-timeout", "0.5", log=tmp_path / "log")
    try:
        with pytest.raises(RemoteEngineError, match="limit") as info:
            RemoteEngine(engine.url, TOKEN).infill(slow())
        assert info.value.code == p.TIMEOUT
    finally:
        engine.stop()


def test_a_client_that_leaves_mid_request_has_its_work_cancelled(server):
    watcher = RemoteEngine(server.url, TOKEN)
    before = watcher.info()["requests"]
    with raw_connection(server.port) as sock:
        hello(sock)
        send(sock, {"type": "infill", "id": 1, "request": to_dict(slow())})
        assert receive(sock, timeout=30)["type"] == "progress"
    # run to the end, its 400 steps would hold the model for seconds; it stops at its next one
    began = time.monotonic()
    while True:
        info = watcher.info()
        if info["running"] == 0 and info["requests"] > before:
            break
        assert time.monotonic() - began < 2.5, info
        time.sleep(0.05)
    assert watcher.infill(request()).candidates


def test_concurrent_clients_get_their_own_results_in_shared_batches(server, model_dir):
    requests = [request(seed=seed, temperature=0.8, cache_refresh=1) for seed in range(6)]
    local = InfillEngine.load(model_dir, device="cpu")
    expected = [[c.text for c in local.infill(r).candidates] for r in requests]
    got: dict[int, list[str]] = {}
    before = RemoteEngine(server.url, TOKEN).info()["batches"]
    barrier = threading.Barrier(len(requests))

    def client(index: int) -> None:
        remote = RemoteEngine(server.url, TOKEN)
        remote.connect()
        barrier.wait()
        got[index] = [c.text for c in remote.infill(requests[index]).candidates]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [got.get(i) for i in range(len(requests))] == expected
    info = RemoteEngine(server.url, TOKEN).info()
    assert info["largest_batch"] > 1 and info["batches"] - before < len(requests)


def test_the_server_killed_mid_request_then_back(model_dir, tmp_path):
    port = free_port()
    engine = EngineProcess(model_dir, port=port, log=tmp_path / "log")
    remote = RemoteEngine(engine.url, TOKEN, connect_timeout=3)
    outcome = []

    def on_progress(event):
        if engine.alive():
            engine.process.kill()

    began = time.monotonic()
    with pytest.raises(EngineUnreachableError, match="closed the connection|lost"):
        remote.infill(slow(), progress=on_progress)
    assert time.monotonic() - began < 10
    engine.stop()
    began = time.monotonic()
    with pytest.raises(EngineUnreachableError, match="cannot connect"):
        remote.infill(request())  # nobody listens: a clear error, quickly
    assert time.monotonic() - began < 4
    engine = EngineProcess(model_dir, port=port, log=tmp_path / "log")
    try:
        outcome.append(remote.infill(request()))  # the same client object reconnects
        assert outcome[0].candidates
    finally:
        engine.stop()


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, **(env or {}))
    environment.pop("ASTDIFFUSE_TOKEN", None) if env is None else None
    return subprocess.run([sys.executable, "-m", "engine.serve", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=60)


def test_the_cli_refuses_an_open_port_without_a_token(tmp_path):
    out = serve("--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 2 and "without a token" in out.stderr
    assert "listening" not in out.stdout
    out = serve("--tls-cert", str(tmp_path / "c.pem"))
    assert out.returncode == 2 and "both --tls-cert and --tls-key" in out.stderr
    empty = tmp_path / "token"
    empty.write_text("\n")
    out = serve("--host", "0.0.0.0", "--token-file", str(empty))
    assert out.returncode == 2 and "is empty" in out.stderr


def test_the_port_0_banner_and_loopback_without_a_token(model_dir, tmp_path):
    engine = EngineProcess(model_dir, token=None, log=tmp_path / "log")
    try:
        assert engine.port > 0 and f"127.0.0.1:{engine.port}" in engine.banner
        assert "token required" not in engine.banner
        assert RemoteEngine(engine.url).infill(request()).candidates
    finally:
        engine.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls(model_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    engine = EngineProcess(model_dir, "--tls-cert", str(cert), "--tls-key", str(key),
                           log=tmp_path / "log")
    try:
        assert "astdiffuse+tls://" in engine.banner
        secure = RemoteEngine(f"astdiffuse+tls://127.0.0.1:{engine.port}", TOKEN,
                              ca_file=str(cert))
        assert secure.infill(request()).candidates
        with pytest.raises(EngineUnreachableError):  # system trust: the self-signed cert fails
            RemoteEngine(f"astdiffuse+tls://127.0.0.1:{engine.port}", TOKEN).connect()
        with pytest.raises(EngineUnreachableError):  # plain TCP to a TLS server
            RemoteEngine(engine.url, TOKEN, connect_timeout=3).connect()
        assert secure.info()["device"] == "cpu"
    finally:
        engine.stop()
