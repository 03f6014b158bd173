"""The Language Server on a remote engine: `astdiffuse.engine.url` sends the infill to a real
`python -m engine.serve` process on loopback; the editor sees the same edit as with the local
model, a clear error when the engine is down or the token wrong, and the next request after a
restart of the engine works again without touching the settings."""

import os
import subprocess
import sys
import time

import pytest

from .lsp_support import BUFFER, TOTAL_LINE, Session, cursor, model_directory
from .paths import ROOT
from .test_lsp_server import error_of, free_port, reason, reconfigure, shown, uri

TOKEN = "lsp-remote-test-token-0123456789"


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory):
    return model_directory(request, tmp_path_factory)


def start_engine(model_dir, port: int, log) -> subprocess.Popen:
    """`python -m engine.serve` on 127.0.0.1:port with TOKEN; returns once it listens."""
    env = dict(os.environ, ASTDIFFUSE_TOKEN=TOKEN)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.serve", "--port", str(port), "--model", str(model_dir),
         "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()  # the first line on stdout says where it listens
    if "listening on" not in line:
        process.kill()
        raise AssertionError(f"engine.serve did not start: {line!r}")
    return process


def stop_engine(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=30)


def test_the_language_server_on_a_remote_engine(model_dir, tmp_path):
    port = free_port()
    engine_log = open(tmp_path / "engine.log", "w")
    engine = start_engine(model_dir, port, engine_log)
    url = f"astdiffuse://127.0.0.1:{port}"
    session = Session(tmp_path / "server.log", init_options={"astdiffuse": {
        "engine": {"url": url, "token": TOKEN, "connectTimeout": 3}}})
    try:
        session.start()
        session.wait_for(lambda: "settings: " in session.server_log(), what="settings")
        doc = uri("remote.py")
        session.open(doc, BUFFER)
        keep = {"uri": doc, "ranges": [cursor(BUFFER, TOTAL_LINE, "count")],
                "keepAnchors": True, "apply": False}
        result = session.execute(keep, token="remote-1")
        # the same tiny model as the local tests: keep-anchors puts the trained operator back
        assert result["valid"] is True and result["applied"] is False
        assert result["candidates"][0]["spans"][0]["newText"] == "return price * count"
        assert f"127.0.0.1:{port}" in result["device"] and "cpu" in result["device"]
        assert [v for v in session.progress if v[0] == "remote-1" and v[1]["kind"] == "report"]
        assert "connected to the remote engine" in session.server_log()

        stop_engine(engine)  # the engine goes away: a clear error, quickly, never a hang
        began = time.monotonic()
        err = error_of(lambda: session.execute(keep))
        assert time.monotonic() - began < 15
        assert reason(err) == "remoteEngineUnavailable" and f"127.0.0.1:{port}" in err.message
        assert shown(session, "remote engine")

        engine = start_engine(model_dir, port, engine_log)  # back: the same settings work
        result = session.execute(keep)
        assert result["valid"] is True

        reconfigure(session, configuration={"engine": {"url": url, "token": "wrong",
                                                       "connectTimeout": 3}})
        err = error_of(lambda: session.execute(keep))
        assert reason(err) == "remoteEngineUnavailable" and "refused the token" in err.message
        assert TOKEN not in session.server_log() and "wrong" not in err.message
    finally:
        assert session.stop() == 0
        stop_engine(engine)
        engine_log.close()
