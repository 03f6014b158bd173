"""lsp_server.jobs, arguments, errors and capabilities: cancellation bookkeeping, progress
payloads, the command's arguments, engine options per call and the errors a user sees."""

import threading
from dataclasses import dataclass, field

import pytest
from lsprotocol import types
from lsprotocol.converters import get_converter

from engine.errors import EmptySourceError, InvalidRangeError, UnsupportedLanguageError
from lsp_server import arguments, errors, jobs
from lsp_server.capabilities import ClientSupport
from lsp_server.errors import InvalidArgumentsError
from lsp_server.settings import Settings

RANGE = {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}


@dataclass
class Event:
    step: int
    total: int
    spans: list = field(default_factory=lambda: ["x = \u2591\u2591"])
    phase: str = "denoise"


def test_a_newer_job_for_the_same_document_cancels_the_older():
    registry = jobs.JobRegistry()
    first = registry.start("file:///a.py", 1)
    other = registry.start("file:///b.py", 1)
    second = registry.start("file:///a.py", 2)
    assert first.cancelled() and first.reason == jobs.SUPERSEDED
    assert not second.cancelled() and not other.cancelled()
    registry.finish(first)  # the older one ending does not forget the newer one
    assert registry.cancel_uri("file:///a.py", jobs.CLOSED) and second.reason == jobs.CLOSED
    registry.finish(second)
    assert not registry.cancel_uri("file:///a.py", jobs.CLOSED)
    assert [job.uri for job in registry.active()] == ["file:///b.py"]


def test_cancel_by_request_id():
    registry = jobs.JobRegistry()
    job = registry.start("file:///a.py", 1, request="req-7")
    assert not registry.cancel_request("req-8") and not registry.cancel_request(None)
    assert registry.cancel_request("req-7") and job.reason == jobs.USER_CANCELLED


def test_cancel_by_progress_token_and_all():
    registry = jobs.JobRegistry()
    job = registry.start("file:///a.py", None)
    registry.attach_token(job, "tok-1")
    assert not registry.cancel_token("tok-2")
    assert registry.cancel_token("tok-1") and job.reason == jobs.USER_CANCELLED
    job.cancel("again")
    assert job.reason == jobs.USER_CANCELLED  # the first reason stays
    more = [registry.start(f"file:///{i}.py", 1) for i in range(3)]
    registry.cancel_all(jobs.SHUTDOWN)
    assert all(j.cancelled() and j.reason == jobs.SHUTDOWN for j in more)


def test_the_flag_is_visible_from_another_thread():
    job = jobs.JobRegistry().start("file:///a.py", 1)
    seen = []
    started = threading.Event()

    def engine_loop():
        started.set()
        while not job.cancelled():
            pass
        seen.append(True)

    thread = threading.Thread(target=engine_loop)
    thread.start()
    started.wait()
    job.cancel(jobs.USER_CANCELLED)
    thread.join(5)
    assert seen == [True]


def test_progress_percent_never_goes_back():
    tracker = jobs.ProgressTracker()
    assert tracker.report(Event(1, 10)) == (10, "denoising: step 1/10")
    assert tracker.report(Event(5, 10))[0] == 50
    # a repair round raises the estimated total: the bar does not jump back
    percent, message = tracker.report(Event(6, 20, phase="repair"))
    assert percent == 50 and message == "repairing: step 6/20"
    assert tracker.report(Event(20, 20))[0] == 99  # 100 is for the end
    assert tracker.report(Event(0, 0))[0] == 99


def test_trajectory_params():
    job = jobs.Job(3, "file:///a.py", 4)
    span_range = {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 5}}
    params = jobs.trajectory_params(job, Event(2, 8), [span_range])
    assert params == {"uri": "file:///a.py", "version": 4, "job": 3, "step": 2, "total": 8,
                      "phase": "denoise",
                      "spans": [{"range": span_range, "text": "x = \u2591\u2591"}]}


def test_command_arguments():
    call = arguments.parse_command_arguments([{"uri": "file:///a.py", "ranges": [RANGE]}])
    assert call.mode == "node" and call.apply is True and call.keep_anchors is False
    assert call.candidates is None and call.ranges[0].start == types.Position(1, 4)
    call = arguments.parse_command_arguments([{
        "uri": "file:///a.py", "ranges": [RANGE, RANGE], "mode": "block", "keepAnchors": True,
        "candidates": 4, "apply": False}])
    assert (call.mode, call.keep_anchors, call.candidates, call.apply) == ("block", True, 4,
                                                                           False)
    assert arguments.parse_call(arguments.call_json(call)) == call


@pytest.mark.parametrize("args, words", [
    ([], "takes one argument"),
    ([{}, {}], "takes one argument"),
    (["file:///a.py"], "must be an object"),
    ([{"uri": "file:///a.py"}], "non-empty list"),
    ([{"uri": "file:///a.py", "ranges": []}], "non-empty list"),
    ([{"ranges": [RANGE]}], "uri"),
    ([{"uri": "file:///a.py", "ranges": [RANGE], "mode": "line"}], "mode must be one of"),
    ([{"uri": "file:///a.py", "ranges": [RANGE], "keepAnchors": 1}], "keepAnchors must be"),
    ([{"uri": "file:///a.py", "ranges": [RANGE], "candidates": 0}], "candidates must be"),
    ([{"uri": "file:///a.py", "ranges": [RANGE], "keep_anchors": True}], "unknown key"),
    ([{"uri": "file:///a.py", "ranges": [{"start": RANGE["start"]}]}], r"ranges\[0\].end"),
])
def test_bad_command_arguments(args, words):
    with pytest.raises(InvalidArgumentsError, match=words):
        arguments.parse_command_arguments(args)


def test_infill_options_per_call():
    call = arguments.parse_call({"uri": "u", "ranges": [RANGE]})
    assert arguments.infill_options(Settings(), call) == {
        "candidates": 3, "keep_anchors": False, "context_tokens": 1024, "samples": 1}
    options = arguments.infill_options(Settings(steps=9, temperature=0.0, candidates=5), call)
    assert options["steps"] == 9 and options["temperature"] == 0.0
    assert options["candidates"] == 5 and options["samples"] == 2  # 3 lengths per sample
    keep = arguments.parse_call({"uri": "u", "ranges": [RANGE], "keepAnchors": True,
                                 "candidates": 4})
    options = arguments.infill_options(Settings(), keep)
    assert options["keep_anchors"] and options["samples"] == 4  # one row per sample
    from engine.infill import InfillOptions

    InfillOptions(**options).check()  # the engine takes them as they are


def test_code_action_kind_filter():
    kind = types.CodeActionKind.RefactorRewrite.value
    assert arguments.offers_kind(None, kind) and arguments.offers_kind([], kind)
    assert arguments.offers_kind(["refactor"], kind)
    assert arguments.offers_kind([types.CodeActionKind.RefactorRewrite], kind)
    assert not arguments.offers_kind(["quickfix", "refactor.extract"], kind)
    assert not arguments.offers_kind(["refactor.rewrite.other"], kind)


@pytest.mark.parametrize("error, reason, code, show", [
    (UnsupportedLanguageError("plaintext", ["python"]), errors.UNSUPPORTED_LANGUAGE,
     errors.REQUEST_FAILED, True),
    (EmptySourceError("empty"), errors.NOTHING_TO_INFILL, errors.REQUEST_FAILED, True),
    (InvalidRangeError("line 9"), errors.INVALID_RANGE, errors.INVALID_PARAMS, True),
    (InvalidArgumentsError("bad"), errors.INVALID_ARGUMENTS, errors.INVALID_PARAMS, True),
    (errors.NoValidInfillError("none"), errors.NO_VALID_INFILL, errors.REQUEST_FAILED, True),
    (errors.ModelLoadFailedError("gone"), errors.MODEL_LOAD_FAILED, errors.REQUEST_FAILED,
     True),
    (errors.DocumentChangedError("edited"), errors.DOCUMENT_CHANGED, errors.CONTENT_MODIFIED,
     True),
    (errors.JobCancelledError("superseded"), errors.CANCELLED, errors.REQUEST_CANCELLED,
     False),
    (KeyError("bug"), errors.INTERNAL, errors.INTERNAL_ERROR, True),
])
def test_user_errors(error, reason, code, show):
    problem = errors.user_error(error)
    assert (problem.reason, problem.code, problem.show) == (reason, code, show)
    assert problem.message.startswith("astdiffuse: ")
    assert problem.error_data()["reason"] == reason
    if reason == errors.MODEL_LOAD_FAILED:
        assert problem.severity == "error"
    if reason == errors.UNSUPPORTED_LANGUAGE:
        assert "'plaintext'" in problem.message and "python" in problem.message
        assert "--language" not in problem.message  # no command-line advice in an editor


def test_client_support_from_capabilities():
    assert ClientSupport.of(None) == ClientSupport()
    capabilities = get_converter().structure({
        "workspace": {"applyEdit": True, "configuration": True,
                      "workspaceEdit": {"documentChanges": True},
                      "didChangeConfiguration": {"dynamicRegistration": True}},
        "window": {"workDoneProgress": True},
        "textDocument": {"codeAction": {
            "codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["refactor"]}},
            "resolveSupport": {"properties": ["edit"]}}},
    }, types.ClientCapabilities)
    assert ClientSupport.of(capabilities) == ClientSupport(True, True, True, True, True, True,
                                                           True)
    bare = ClientSupport.of(types.ClientCapabilities())
    assert not bare.resolve_edit and not bare.work_done_progress and not bare.document_changes


def test_samples_follow_the_model_familys_length_rule():
    # DreamOn decodes one canvas per sample (its length found while decoding): three
    # candidates need three samples, where three length rows need one
    assert arguments.samples_needed(3, False, length_candidates=1) == 3
    assert arguments.samples_needed(3, False) == 1
    assert arguments.samples_needed(4, True, length_candidates=1) == 4
