"""Each published layout end to end in the real processes a user runs: the Language Server
(pygls over stdio, a real client) with `astdiffuse.model` set to the checkpoint, and
`python -m engine.serve` with the remote client. No special token of the family may reach any
candidate's text. Marked e2e: runs after the unit tests."""

import pytest
from pygls.exceptions import JsonRpcException

from engine.serve import RemoteEngine
from engine.infill import ByteRange, InfillOptions, InfillRequest

from engine.benchmarks.published_layouts import LAYOUT_MAKERS
from .lsp_support import BUFFER, TOTAL_LINE, Session, cursor
from .remote_support import TOKEN, EngineProcess
from .test_families import SPECIALS

pytestmark = pytest.mark.e2e
LAYOUTS = tuple(LAYOUT_MAKERS)


def no_specials(layout: str, text: str) -> bool:
    return not any(token in text for token in SPECIALS[layout])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_language_server_on_a_published_layout(layout, checkpoints, tmp_path):
    session = Session(tmp_path / "server.log", init_options={"astdiffuse": {
        "model": str(checkpoints[layout]), "device": "cpu", "steps": 2, "candidates": 2}})
    try:
        session.start()
        doc = (tmp_path / "buffer.py").as_uri()
        session.open(doc, BUFFER)
        try:
            result = session.execute({"uri": doc, "apply": False,
                                      "ranges": [cursor(BUFFER, TOTAL_LINE, "count")]},
                                     timeout=180)
        except JsonRpcException as err:  # random weights: no valid infill is the likely answer
            assert "no valid infill" in err.message
            result = err.data
        assert result["candidates"], result
        for candidate in result["candidates"]:
            for span in candidate["spans"]:
                assert no_specials(layout, span["newText"]), span["newText"]
    finally:
        assert session.stop() == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_remote_engine_on_a_published_layout(layout, checkpoints, tmp_path):
    server = EngineProcess(checkpoints[layout], log=tmp_path / "engine.log")
    try:
        remote = RemoteEngine(server.url, TOKEN)
        welcome = remote.connect()
        assert welcome["device"] == "cpu"
        start = BUFFER.encode().index(b"return price + count")
        result = remote.infill(InfillRequest(
            BUFFER, "python", [ByteRange(start, start)],
            options=InfillOptions(steps=2, candidates=2, length_candidates=2)))
        assert result.candidates
        for candidate in result.candidates:
            for span in candidate.spans:
                assert no_specials(layout, span.new_text), span.new_text
        remote.close()
    finally:
        server.stop()
