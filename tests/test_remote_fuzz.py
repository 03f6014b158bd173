"""Property-based abuse of one real `python -m engine.serve` process: random bytes, random
frames, random msgpack messages and truncated frames, before and after the hello. After every
example the server is alive and a good client that stayed connected is still answered."""

from __future__ import annotations

import socket

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.infill.request import to_dict
from engine.serve import RemoteEngine
from engine.serve import protocol as p

from .lsp_support import model_directory
from .remote_support import TOKEN, EngineProcess, hello, raw_connection
from .test_remote_engine import request

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

# msgpack values of every kind, nested a little
values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
messages = st.one_of(
    values,
    st.dictionaries(st.sampled_from(["type", "id", "request", "token", "version", "progress"]),
                    values, max_size=5),
    st.fixed_dictionaries({"type": st.sampled_from(["hello", "infill", "cancel", "info", "x"]),
                           "id": values, "request": values, "token": values,
                           "version": values}))


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    model = model_directory(request, tmp_path_factory)
    engine = EngineProcess(model, "--max-frame-bytes", "65536",
                           log=tmp_path_factory.mktemp("fuzz") / "engine.log")
    good = RemoteEngine(engine.url, TOKEN)
    good.connect()
    yield engine, good
    good.close()
    engine.stop()


def drain(sock: socket.socket) -> None:
    """Read whatever the server answers until it closes or goes quiet."""
    sock.settimeout(0.3)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def still_serving(server) -> None:
    engine, good = server
    assert engine.alive(), "the server process died"
    assert good.info()["protocol"] == p.PROTOCOL_VERSION


def attack(server, payload: bytes, after_hello: bool) -> None:
    engine, _ = server
    with raw_connection(engine.port) as sock:
        if after_hello:
            assert hello(sock)["type"] == "welcome"
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server closed on us already: fine
        drain(sock)
    still_serving(server)


@FUZZ
@given(payload=st.binary(max_size=300), after_hello=st.booleans())
def test_random_bytes(server, payload, after_hello):
    attack(server, payload, after_hello)


@FUZZ
@given(body=st.binary(min_size=1, max_size=200), after_hello=st.booleans())
def test_frames_with_random_bodies(server, body, after_hello):
    attack(server, p.HEADER.pack(len(body)) + body, after_hello)


@FUZZ
@given(message=messages, after_hello=st.booleans())
def test_random_msgpack_messages(server, message, after_hello):
    attack(server, p.HEADER.pack(0) if message == {} else _frame(message), after_hello)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000), which=st.sampled_from(["hello", "infill"]))
def test_truncated_frames(server, cut, which):
    if which == "hello":
        frame = p.pack({"type": "hello", "version": 1, "token": TOKEN, "client": "fuzz"})
        attack(server, frame[:cut % len(frame)], after_hello=False)
    else:
        frame = p.pack({"type": "infill", "id": 1, "request": to_dict(request())})
        attack(server, frame[:cut % len(frame)], after_hello=True)


def test_a_real_infill_after_the_abuse(server):
    _, good = server
    assert good.infill(request()).candidates


def _frame(message) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return p.HEADER.pack(len(body)) + body
