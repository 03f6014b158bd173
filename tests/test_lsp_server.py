"""End to end: the real `python -m lsp_server` process over stdio, driven by pygls'
LanguageClient (tests/lsp_support.py), with a tiny model overfitted to one file so that
keep-anchors edits are valid and known; plain infills of unseen code may be invalid, and the
tests accept "no valid infill" there as a reported outcome."""

import socket
import subprocess
import sys
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from engine.infill import DEFAULT_MODEL_DIR
from engine.syntax import parses

from .lsp_support import (BUFFER, CONVERTER, DISCOUNT_LINE, LABEL_LINE, LONG, LOOP_LINES,
                          TOTAL_LINE, TRAINED, Session, apply_text_edits, cursor, dump, edits_of,
                          model_directory, position, progress_values, units)
from .paths import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def model_dir(request, tmp_path_factory):
    return model_directory(request, tmp_path_factory)


@pytest.fixture(scope="module")
def session(model_dir, tmp_path_factory):
    """The editor most tests use: every capability, UTF-16, configuration pulled."""
    log = tmp_path_factory.mktemp("lsp") / "server.log"
    session = Session(log, init_options={"astdiffuse": {"model": str(model_dir)}},
                      configuration={"device": "cpu"})
    session.start()
    session.wait_for(lambda: "settings: " in session.server_log(), what="settings")
    yield session
    assert session.stop() == 0


def uri(name: str) -> str:
    return (ROOT / "tests" / "lsp-docs" / name).as_uri()  # never written: the editor's buffers


def error_of(call) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as info:
        call()
    return info.value


def reason(err: JsonRpcException) -> str:
    return (err.data or {}).get("reason")


def shown(session: Session, words: str) -> list[types.ShowMessageParams]:
    return [m for m in session.messages if words in m.message]


def reconfigure(session: Session, configuration=None, push=None) -> None:
    """workspace/didChangeConfiguration, and wait until the server has taken the settings."""
    taken = session.server_log().count("settings: ")
    session.change_configuration(configuration, push)
    session.wait_for(lambda: session.server_log().count("settings: ") > taken,
                     what="the new settings")


def code_actions(session: Session, doc: str, rng: dict, only=None):
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=doc),
        range=CONVERTER.structure(rng, types.Range),
        context=types.CodeActionContext(diagnostics=[], only=only))
    return session.raw_request(types.TEXT_DOCUMENT_CODE_ACTION, params) or []


def test_initialize_advertises_what_the_server_does(session):
    capabilities = session.initialize_result.capabilities
    assert session.initialize_result.server_info.name == "astdiffuse-lsp"
    assert capabilities.position_encoding == types.PositionEncodingKind.Utf16
    assert capabilities.code_action_provider.resolve_provider is True
    assert list(capabilities.code_action_provider.code_action_kinds) == ["refactor.rewrite"]
    assert list(capabilities.execute_command_provider.commands) == ["astdiffuse.diffuseBlock"]
    sync = capabilities.text_document_sync
    assert sync.open_close and sync.change == types.TextDocumentSyncKind.Incremental
    assert session.configuration_requests >= 1  # workspace/configuration was pulled
    assert session.messages == []  # good settings: nothing to complain about


def test_code_action_is_offered_cheaply_and_resolved_with_the_edit(session):
    doc = uri("actions.py")
    session.open(doc, BUFFER)
    at = cursor(BUFFER, TOTAL_LINE, "price +")
    actions = code_actions(session, doc, at)
    assert [a["title"] for a in actions] == ["Diffuse this block",
                                             "Diffuse this block (keep structure)"]
    assert all(a["kind"] == "refactor.rewrite" and "edit" not in a and "command" not in a
               for a in actions)
    assert actions[1]["data"]["keepAnchors"] is True
    assert actions[0]["data"]["keepAnchors"] is False
    assert code_actions(session, doc, at, only=["quickfix"]) == []
    assert len(code_actions(session, doc, at, only=["refactor"])) == 2
    blank = cursor(BUFFER, TOTAL_LINE + 1, "")
    assert code_actions(session, doc, blank) == []  # nothing to diffuse on a blank line

    before = len(session.created_tokens)
    resolved = session.call(session.client.code_action_resolve_async(
        CONVERTER.structure(actions[1], types.CodeAction)))
    edit = CONVERTER.unstructure(resolved.edit)
    new = apply_text_edits(BUFFER, edits_of(edit, doc), "utf-16")
    assert new.split("\n")[TOTAL_LINE] == "    return price * count"
    assert new == BUFFER.replace("price + count", "price * count")
    # the server created a progress token for the resolve and reported on it
    [token] = session.created_tokens[before:]
    kinds = [v["kind"] for v in progress_values(session, token)]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds


def test_command_applies_the_best_candidate_with_progress(session):
    doc = uri("apply.py")
    session.open(doc, BUFFER)
    result = session.execute({"uri": doc, "ranges": [cursor(BUFFER, TOTAL_LINE, "count")],
                              "keepAnchors": True}, token="client-token-1")
    assert result["applied"] is True and result["valid"] is True, dump(result)
    assert session.text(doc) == BUFFER.replace("price + count", "price * count")
    assert parses(session.text(doc), "python")
    [candidate] = result["candidates"]
    assert candidate["spans"][0]["newText"] == "return price * count"
    values = progress_values(session, "client-token-1")
    assert values[0]["kind"] == "begin" and values[0]["cancellable"] is True
    reports = [v for v in values if v["kind"] == "report"]
    assert reports and all(0 <= v["percentage"] <= 99 for v in reports)
    percents = [v["percentage"] for v in reports]
    assert percents == sorted(percents)
    assert "step" in reports[0]["message"]
    assert values[-1]["kind"] == "end" and "valid" in values[-1]["message"]
    assert any("Diffuse this block" in m.message for m in session.logs)


def test_two_ranges_in_one_edit_and_utf16_positions_after_an_emoji(session):
    doc = uri("two.py")
    session.open(doc, BUFFER)
    label = cursor(BUFFER, LABEL_LINE, "name")  # after "😀": 2 UTF-16 units, 1 code point
    assert label["start"]["character"] == units('    return "\U0001F600 " - ', "utf-16") == 19
    result = session.execute({"uri": doc, "ranges": [cursor(BUFFER, DISCOUNT_LINE, "rate"),
                                                     label], "keepAnchors": True})
    assert result["applied"] is True, dump(result)
    spans = result["candidates"][0]["spans"]
    assert [s["newText"] for s in spans] == ["reduced = price - price * rate",
                                            'return "\U0001F600 " + name']
    # the label span ends after "name": 23 UTF-16 units into the line (22 code points)
    assert spans[1]["range"]["end"] == {"line": LABEL_LINE, "character": 23}
    expected = BUFFER.replace("price + price", "price - price").replace('" - name', '" + name')
    assert session.text(doc) == expected
    [edit] = session.applied[-1:]
    assert len(edits_of(edit, doc)) == 2


def test_incremental_changes_are_followed(session):
    """The server's copy follows ranged didChange events (UTF-16 columns after the emoji);
    the command then repairs what the edit broke, with the new document version."""
    doc = uri("incremental.py")
    session.open(doc, TRAINED)
    plus = position(TRAINED, LABEL_LINE, "+")
    session.edit_range(doc, {"start": plus, "end": {**plus, "character": plus["character"] + 1}},
                       "-")
    assert session.text(doc) == TRAINED.replace('" + name', '" - name')
    result = session.execute({"uri": doc, "ranges": [cursor(session.text(doc), LABEL_LINE,
                                                            "name")], "keepAnchors": True})
    assert result["applied"] and result["version"] == 2
    assert session.text(doc) == TRAINED


def test_preview_returns_candidates_without_applying(session):
    doc = uri("preview.py")
    session.open(doc, BUFFER)
    applied = len(session.applied)
    result = session.execute({"uri": doc, "ranges": [cursor(BUFFER, LABEL_LINE, "return")],
                              "keepAnchors": True, "apply": False, "candidates": 2})
    assert result["applied"] is False and len(session.applied) == applied
    assert session.text(doc) == BUFFER
    assert 1 <= len(result["candidates"]) <= 2
    best = result["candidates"][0]
    assert best["valid"] and best["parses"] and best["sameKind"]
    assert best["edit"]["documentChanges"][0]["textDocument"] == {"uri": doc, "version": 1}
    new = apply_text_edits(BUFFER, edits_of(best["edit"], doc), "utf-16")
    assert new == BUFFER.replace('" - name', '" + name')


def test_plain_infill_of_unseen_code_is_valid_or_reported(session):
    doc = uri("unseen.py")
    session.open(doc, LONG)
    line = LONG.split("\n").index("    counts = [0] * bins")
    arguments = {"uri": doc, "ranges": [cursor(LONG, line, "counts")]}
    try:
        result = session.execute(arguments)
    except JsonRpcException as err:
        assert err.code == -32803 and reason(err) == "noValidInfill"
        assert "no valid infill" in err.message and err.data["candidates"]
        assert all(not c["valid"] for c in err.data["candidates"])
        assert shown(session, "no valid infill")
        assert session.text(doc) == LONG  # nothing was applied
    else:
        assert result["applied"] and parses(session.text(doc), "python")


def start_long_run(session: Session, doc: str, msg_id: str, token: str):
    """A plain infill of the unseen loop (hundreds of steps); waits until it is under way."""
    first, end = LOOP_LINES
    future = session.execute_later({"uri": doc, "ranges": [{
        "start": {"line": first, "character": 0}, "end": {"line": end, "character": 0}}]},
        msg_id, token)
    session.wait_for(lambda: any(v["kind"] == "report" for v in progress_values(session, token)),
                     what="the first progress report")
    return future


def test_cancel_request_stops_a_running_generation(session):
    doc = uri("cancel.py")
    session.open(doc, LONG)
    future = start_long_run(session, doc, "cancel-me", "tok-cancel")
    session.cancel_request("cancel-me")
    with pytest.raises(JsonRpcException) as info:
        future.result(60)
    assert info.value.code == -32800
    session.wait_for(lambda: progress_values(session, "tok-cancel")[-1]["kind"] == "end",
                     what="the progress end")
    assert progress_values(session, "tok-cancel")[-1]["message"] == "cancelled"
    reports = [v for v in progress_values(session, "tok-cancel") if v["kind"] == "report"]
    assert reports[-1]["percentage"] < 90  # it stopped early, between two steps
    assert session.text(doc) == LONG


def test_progress_cancel_button_stops_it_too(session):
    doc = uri("cancel-button.py")
    session.open(doc, LONG)
    future = start_long_run(session, doc, "button", "tok-button")
    messages = len(session.messages)
    session.cancel_progress("tok-button")
    with pytest.raises(JsonRpcException) as info:
        future.result(60)
    assert info.value.code == -32800 and "cancelled by the user" in info.value.message
    assert len(session.messages) == messages  # a cancel is no error to show


def test_a_newer_request_for_the_document_supersedes_the_older(session):
    doc = uri("supersede.py")
    session.open(doc, LONG)
    older = start_long_run(session, doc, "older", "tok-older")
    result = session.execute({"uri": doc, "ranges": [cursor(LONG, TOTAL_LINE, "count")],
                              "keepAnchors": True})
    with pytest.raises(JsonRpcException) as info:
        older.result(60)
    assert info.value.code == -32800 and "superseded" in info.value.message
    assert result["applied"] is True and parses(session.text(doc), "python")
    # the unseen code after it is context the model never saw: the operator it puts back
    # may differ, but only that statement changed
    [span] = result["candidates"][0]["spans"]
    assert span["oldText"] == "return price + count"
    assert session.text(doc) == LONG.replace(span["oldText"], span["newText"])


def test_invalid_range(session):
    doc = uri("range.py")
    session.open(doc, BUFFER)
    far = {"start": {"line": 999, "character": 0}, "end": {"line": 999, "character": 0}}
    err = error_of(lambda: session.execute({"uri": doc, "ranges": [far]}))
    assert err.code == -32602 and reason(err) == "invalidRange" and "line 999" in err.message
    assert shown(session, "line 999")
    err = error_of(lambda: session.execute({"uri": doc, "ranges": []}))
    assert err.code == -32602 and reason(err) == "invalidArguments"
    err = error_of(lambda: session.execute({"uri": doc, "ranges": [far], "mode": "line"}))
    assert reason(err) == "invalidArguments" and "mode" in err.message


def test_unsupported_language_and_nothing_to_infill(session):
    notes = uri("notes.txt")
    session.open(notes, "buy milk\n", language_id="plaintext")
    at = cursor("buy milk\n", 0, "milk")
    assert code_actions(session, notes, at) == []
    err = error_of(lambda: session.execute({"uri": notes, "ranges": [at]}))
    assert err.code == -32803 and reason(err) == "unsupportedLanguage"
    assert "plaintext" in err.message and "python" in err.message
    assert shown(session, "unsupported language")
    doc = uri("blank.py")
    session.open(doc, BUFFER)
    err = error_of(lambda: session.execute({"uri": doc, "ranges": [
        cursor(BUFFER, TOTAL_LINE + 1, "")]}))
    assert reason(err) == "nothingToInfill"
    # and the server keeps going
    assert session.execute({"uri": doc, "ranges": [cursor(BUFFER, TOTAL_LINE, "return")],
                            "keepAnchors": True})["applied"]


def test_an_edit_the_editor_refuses(session):
    doc = uri("readonly.py")
    session.open(doc, BUFFER)
    session.reject_edits = True
    try:
        err = error_of(lambda: session.execute({"uri": doc, "keepAnchors": True, "ranges": [
            cursor(BUFFER, TOTAL_LINE, "count")]}))
    finally:
        session.reject_edits = False
    assert reason(err) == "editRejected" and "read-only buffer" in err.message


def test_trajectory_notifications_when_asked_for(session):
    doc = uri("trajectory.py")
    session.open(doc, BUFFER)
    # a plain infill: many masks, several steps (its result may be "no valid infill")
    arguments = {"uri": doc, "ranges": [cursor(BUFFER, TOTAL_LINE, "count")], "apply": False}

    def run():
        try:
            session.execute(arguments)
        except JsonRpcException as err:
            assert reason(err) == "noValidInfill"

    run()
    assert session.trajectory == []  # off by default
    reconfigure(session, {"device": "cpu", "trajectory": True})
    try:
        run()
    finally:
        reconfigure(session, {"device": "cpu"})
    events = session.trajectory
    assert len(events) >= 2
    assert all(e["uri"] == doc and e["version"] == 1 for e in events)
    steps = [e["step"] for e in events]
    assert steps[0] == 1 and steps == sorted(steps)
    assert {e["phase"] for e in events} <= {"denoise", "repair"}
    start = position(BUFFER, TOTAL_LINE, "return")
    for event in events:
        [span] = event["spans"]
        assert span["range"]["start"] == start  # the statement being rewritten
        assert span["range"]["end"]["line"] == TOTAL_LINE
    assert "\u2591" in events[0]["spans"][0]["text"]  # still-masked tokens show as ░


def test_utf32_client_null_configuration_bad_settings_and_model_at_start(model_dir,
                                                                         tmp_path):
    session = Session(tmp_path / "server.log", encodings=("utf-32", "utf-16"),
                      configuration=None, init_options={"astdiffuse": {
                          "model": str(model_dir), "device": "cpu", "steps": "many",
                          "colour": "blue", "loadModel": "start",
                          "engine": {"token": "s3cret-token"}}})
    try:
        result = session.start()
        assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf32
        session.wait_for(lambda: shown(session, "invalid settings"), what="the settings warning")
        [warning] = shown(session, "invalid settings")
        assert warning.type == types.MessageType.Warning
        assert "astdiffuse.steps" in warning.message and "astdiffuse.colour" in warning.message
        assert session.configuration_requests == 1  # answered null: the init options hold
        # loadModel "start": the model loads right after initialize, before any request
        session.wait_for(lambda: "loaded on cpu" in session.server_log(), what="the model")
        doc = uri("utf32.py")
        session.open(doc, BUFFER)
        label = cursor(BUFFER, LABEL_LINE, "name", "utf-32")
        assert label["start"]["character"] == 18  # code points
        result = session.execute({"uri": doc, "ranges": [label], "keepAnchors": True})
        assert result["candidates"][0]["spans"][0]["range"]["end"]["character"] == 22
        assert session.text(doc) == BUFFER.replace('" - name', '" + name')
        assert "s3cret-token" not in session.server_log()  # settings are logged, tokens not
    finally:
        assert session.stop() == 0


def test_a_plain_client_model_failures_and_settings_pushed(model_dir, tmp_path):
    """No configuration pull, no progress, no versioned edits, no resolve: the code action
    carries the command; a model that cannot load is an error the server survives."""
    session = Session(tmp_path / "server.log", progress=False, answers_configuration=False,
                      document_changes=False, resolve=False,
                      init_options={"astdiffuse": {"device": "cpu"}})
    try:
        session.start()
        doc = uri("plain.py")
        session.open(doc, BUFFER)
        at = cursor(BUFFER, TOTAL_LINE, "count")
        actions = code_actions(session, doc, at)
        assert [a["command"]["command"] for a in actions] == ["astdiffuse.diffuseBlock"] * 2
        assert [a["kind"] for a in actions] == ["refactor.rewrite"] * 2
        keep = actions[1]["command"]["arguments"][0]
        assert keep["keepAnchors"] is True

        if not (DEFAULT_MODEL_DIR / "config.json").is_file():  # the shipped default model
            err = error_of(lambda: session.execute(keep))
            assert reason(err) == "modelLoadFailed" and "default model" in err.message
            assert shown(session, "failed to load")[-1].type == types.MessageType.Error

        reconfigure(session, push={"astdiffuse": {"model": str(tmp_path / "no-model-here"),
                                                  "device": "cpu"}})
        err = error_of(lambda: session.execute(keep))
        assert reason(err) == "modelLoadFailed" and "no-model-here" in err.message

        port = free_port()  # nothing listens there: the remote engine is unreachable
        reconfigure(session, push={"astdiffuse": {"model": str(model_dir), "engine": {
            "url": f"astdiffuse://127.0.0.1:{port}", "connectTimeout": 2}}})
        err = error_of(lambda: session.execute(keep))
        assert reason(err) == "remoteEngineUnavailable" and f"127.0.0.1:{port}" in err.message
        assert "cannot connect" in err.message and "engine.serve" in err.message
        assert shown(session, "cannot connect")[-1].type == types.MessageType.Error

        reconfigure(session, push={"astdiffuse": {"model": str(model_dir), "device": "cpu"}})
        result = session.execute(keep)
        assert result["applied"] is True
        assert "changes" in session.applied[-1] and not session.applied[-1].get(
            "documentChanges")
        assert session.text(doc) == BUFFER.replace("price + count", "price * count")
        assert session.created_tokens == [] and session.progress == []
    finally:
        assert session.stop() == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_version_and_tcp(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lsp_server", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("astdiffuse-lsp ")
    port = free_port()
    log = tmp_path / "tcp.log"
    server = subprocess.Popen([sys.executable, "-m", "lsp_server", "--tcp",
                               f"127.0.0.1:{port}", "--log-file", str(log)], cwd=ROOT,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    session = Session(tmp_path / "unused.log")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                session.call(session.client.start_tcp("127.0.0.1", port), 10)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        result = session.call(session.client.initialize_async(types.InitializeParams(
            capabilities=session.capabilities)), 30)
        assert result.server_info.name == "astdiffuse-lsp"
        session.call(session.client.shutdown_async(None), 30)
        session.on_loop(session.client.exit, None)
        assert server.wait(30) is not None
    finally:
        if server.poll() is None:
            server.kill()
        session.loop.call_soon_threadsafe(session.loop.stop)
