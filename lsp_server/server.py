"""The astdiffuse Language Server (pygls 2): each LSP feature is one small function on the
module-level `server`; the logic lives in selection / edits / settings / jobs / arguments, the
model work on the engine thread (engine_host)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from engine.errors import AstdiffuseError
from engine.offsets import TextIndex

from . import __version__, arguments, edits, jobs, selection
from .arguments import COMMAND, DiffuseCall
from .capabilities import ClientSupport
from .engine_host import EngineHost
from .errors import (INTERNAL_ERROR, DocumentChangedError, DocumentNotFoundError,
                     EditRejectedError, InvalidArgumentsError, JobCancelledError,
                     NoValidInfillError, user_error)
from .settings import SECTION, ParsedSettings, Settings, merge_layers, model_key, section_of

log = logging.getLogger(__name__)

SERVER_NAME = "astdiffuse-lsp"
ACTION_KIND = types.CodeActionKind.RefactorRewrite
ACTION_TITLE = "Diffuse this block"
ACTION_TITLE_KEEP = "Diffuse this block (keep structure)"
TRAJECTORY = "astdiffuse/trajectory"
SETTINGS_WAIT_S = 10.0  # how long a request waits for the client's configuration answer

_WORK_DONE_TOKEN: contextvars.ContextVar = contextvars.ContextVar("work_done_token",
                                                                  default=None)
_MESSAGE_TYPES = {"error": types.MessageType.Error, "warning": types.MessageType.Warning,
                  "info": types.MessageType.Info, "debug": types.MessageType.Log}
_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
           "debug": logging.DEBUG}


class AstdiffuseProtocol(LanguageServerProtocol):
    """pygls' protocol, keeping the client's workDoneToken of `workspace/executeCommand` (the
    command handler only sees the arguments)."""

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams):
        _WORK_DONE_TOKEN.set(params.work_done_token)
        return (yield from super().lsp_workspace__execute_command(params))

    def _handle_cancel_notification(self, msg_id):
        # pygls cancels the request's future, which for a command is not the running handler
        # (that runs under an id of its own): the job's flag stops the generation itself.
        self._server.jobs.cancel_request(msg_id)
        super()._handle_cancel_notification(msg_id)


class AstdiffuseServer(LanguageServer):
    """The server and its state: settings layers, client support, jobs, the engine thread."""

    def __init__(self):
        super().__init__(SERVER_NAME, __version__, protocol_cls=AstdiffuseProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.client = ClientSupport()
        self.settings = Settings()
        self.init_section: Any = None  # initializationOptions' astdiffuse section
        self.settings_ready = asyncio.Event()
        self.jobs = jobs.JobRegistry()
        self.host = EngineHost()
        self.background: set[asyncio.Task] = set()

    @property
    def encoding(self) -> str:
        return selection.encoding_name(self.workspace.position_encoding)

    def show(self, message: str, severity: str = "warning") -> None:
        self.window_show_message(types.ShowMessageParams(type=_MESSAGE_TYPES[severity],
                                                         message=message))

    def log_client(self, message: str, level: str = "info") -> None:
        """window/logMessage, at the `logLevel` setting or above."""
        if _LEVELS[level] >= _LEVELS[self.settings.log_level]:
            self.window_log_message(types.LogMessageParams(type=_MESSAGE_TYPES[level],
                                                           message=message))

    def use_settings(self, parsed: ParsedSettings) -> None:
        """Adopt new settings: report what was wrong with them, drop a model they replace."""
        previous, self.settings = self.settings, parsed.settings
        _set_log_level(self.settings.log_level)
        if parsed.problems:
            self.show(f"astdiffuse: invalid settings, using the defaults for them: "
                      f"{'; '.join(parsed.problems)}")
            for problem in parsed.problems:
                log.warning("setting: %s", problem)
        if model_key(previous) != model_key(self.settings):
            self.host.submit(self.host.forget)
        if self.settings.load_model == "start":
            self.spawn(self.preload())
        log.info("settings: %s", self.settings)

    def spawn(self, coroutine: Awaitable) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def preload(self) -> None:
        """`loadModel: "start"`: load now, on the engine thread; a failure is shown."""
        try:
            await asyncio.wrap_future(self.host.submit(self.host.engine, self.settings))
        except Exception as err:  # noqa: BLE001 - reported, the server keeps running
            self.show(user_error(err).message, "error")

    async def pull_configuration(self) -> Any:
        """The client's `astdiffuse` section (workspace/configuration), or None."""
        try:
            answer = await self.workspace_configuration_async(types.ConfigurationParams(
                items=[types.ConfigurationItem(section=SECTION)]))
        except Exception as err:  # noqa: BLE001 - a client that cannot answer: defaults
            log.warning("workspace/configuration failed: %s", err)
            return None
        return answer[0] if answer else None

    def document(self, uri: str):
        """The open document (or the file on disk) -> pygls TextDocument with its text read."""
        document = self.workspace.get_text_document(uri)
        try:
            document.source
        except (OSError, ValueError) as err:
            raise DocumentNotFoundError(f"{uri} is not open in the editor and cannot be read "
                                        f"({err})") from None
        return document


server = AstdiffuseServer()


class _ExpectedErrors(logging.Filter):
    """pygls logs every JSON-RPC error a handler raises with its traceback; ours are expected
    (a user error, already logged with its reason) and only clutter the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, JsonRpcException)
                    and isinstance(error.data, dict) and "reason" in error.data)


logging.getLogger("pygls.protocol.json_rpc").addFilter(_ExpectedErrors())


def _set_log_level(level: str) -> None:
    logging.getLogger("lsp_server").setLevel(_LEVELS[level])
    logging.getLogger("engine").setLevel(_LEVELS[level])
    # pygls logs whole messages (initializationOptions, tokens included) below WARNING
    logging.getLogger("pygls").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


# -- lifecycle and settings -------------------------------------------------------------------

@server.feature(types.INITIALIZE)
def initialize(ls: AstdiffuseServer, params: types.InitializeParams) -> None:
    ls.client = ClientSupport.of(params.capabilities)
    ls.init_section = section_of(params.initialization_options)
    ls.settings = merge_layers(ls.init_section).settings  # problems are shown once initialized
    _set_log_level(ls.settings.log_level)


@server.feature(types.INITIALIZED)
async def initialized(ls: AstdiffuseServer, params: types.InitializedParams) -> None:
    if ls.client.configuration_registration:
        try:
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[
                types.Registration(id=str(uuid.uuid4()),
                                   method=types.WORKSPACE_DID_CHANGE_CONFIGURATION,
                                   register_options=types.DidChangeConfigurationRegistrationOptions(
                                       section=SECTION))]))
        except Exception as err:  # noqa: BLE001 - the client then pushes settings, or not
            log.warning("could not register for configuration changes: %s", err)
    pulled = await ls.pull_configuration() if ls.client.configuration else None
    ls.use_settings(merge_layers(ls.init_section, pulled))
    ls.settings_ready.set()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def configuration_changed(ls: AstdiffuseServer,
                                params: types.DidChangeConfigurationParams) -> None:
    if ls.client.configuration:
        pulled = await ls.pull_configuration()
    else:
        pulled = section_of(params.settings)
    ls.use_settings(merge_layers(ls.init_section, pulled))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def document_opened(ls: AstdiffuseServer, params: types.DidOpenTextDocumentParams) -> None:
    """Registered so the server asks for open/close notifications; pygls keeps the text."""


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def document_closed(ls: AstdiffuseServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.jobs.cancel_uri(params.text_document.uri, jobs.CLOSED)


@server.feature(types.SHUTDOWN)
def shutdown(ls: AstdiffuseServer, *args) -> None:
    ls.jobs.cancel_all(jobs.SHUTDOWN)


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def progress_cancelled(ls: AstdiffuseServer, params: types.WorkDoneProgressCancelParams) -> None:
    ls.jobs.cancel_token(params.token)


# -- code actions and the command -------------------------------------------------------------

@server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
    code_action_kinds=[ACTION_KIND], resolve_provider=True))
def code_actions(ls: AstdiffuseServer, params: types.CodeActionParams):
    """Offer the two actions where there is code to diffuse; no model work (resolve does it)."""
    if not arguments.offers_kind(params.context.only, ACTION_KIND.value):
        return []
    uri = params.text_document.uri
    try:
        document = ls.document(uri)
        language = selection.document_language(document.language_id, uri)
        index = TextIndex(document.source)
        ranges = [selection.byte_range(index, params.range, ls.encoding)]
        selection.plan_spans(document.source, language, ranges, "node")
    except AstdiffuseError as err:  # unsupported language, blank line...: nothing to offer
        log.debug("no code action at %s %s: %s", uri, params.range, err)
        return []
    actions = []
    for title, keep in ((ACTION_TITLE, False), (ACTION_TITLE_KEEP, True)):
        call = DiffuseCall(uri=uri, ranges=(params.range,), keep_anchors=keep)
        data = arguments.call_json(call)
        command = types.Command(title=title, command=COMMAND, arguments=[data])
        if not ls.client.code_action_literals:
            actions.append(command)
        elif ls.client.resolve_edit:
            actions.append(types.CodeAction(title=title, kind=ACTION_KIND, data=data))
        else:  # no resolve: the action runs the command, which applies the edit itself
            actions.append(types.CodeAction(title=title, kind=ACTION_KIND, command=command))
    return actions


@server.feature(types.CODE_ACTION_RESOLVE)
async def resolve_code_action(ls: AstdiffuseServer, action: types.CodeAction):
    async def run():
        outcome = await diffuse(ls, arguments.parse_call(action.data, "data"))
        action.edit = outcome.edits[0]
        return action

    return await _reported(ls, run)


@server.command(COMMAND)
async def diffuse_block(ls: AstdiffuseServer, *args: Any):
    token = _WORK_DONE_TOKEN.get()

    async def run():
        call = arguments.parse_command_arguments(args)
        if call.apply and not ls.client.apply_edit:
            raise InvalidArgumentsError("this editor cannot apply edits from the server (no "
                                        "workspace.applyEdit capability): call the command with "
                                        "apply: false and apply the edit it returns")
        outcome = await diffuse(ls, call, token)
        if not call.apply:
            return edits.preview_json(outcome.result, call.uri, outcome.version, outcome.edits)
        answer = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=outcome.edits[0], label=ACTION_TITLE))
        if not answer.applied:
            why = f": {answer.failure_reason}" if answer.failure_reason else ""
            raise EditRejectedError(f"the editor did not apply the edit{why}")
        return edits.applied_json(outcome.result, call.uri, outcome.version, outcome.edits[0])

    return await _reported(ls, run)


# -- one infill -------------------------------------------------------------------------------

@dataclass
class Outcome:
    result: Any  # engine.infill.InfillResult, valid
    edits: list[types.WorkspaceEdit]  # one per candidate, best first
    version: int | None


async def diffuse(ls: AstdiffuseServer, call: DiffuseCall, token: Any = None) -> Outcome:
    """Check the call cheaply, run the engine on its thread with progress, make the edits."""
    try:
        await asyncio.wait_for(ls.settings_ready.wait(), SETTINGS_WAIT_S)
    except asyncio.TimeoutError:
        log.warning("no configuration from the client after %.0f s; using what there is",
                    SETTINGS_WAIT_S)
    settings = ls.settings
    document = ls.document(call.uri)
    text, version, encoding = document.source, document.version, ls.encoding
    language = selection.document_language(document.language_id, call.uri)
    index = TextIndex(text)
    ranges = selection.byte_ranges(index, list(call.ranges), encoding)
    spans = selection.plan_spans(text, language, ranges, call.mode)
    job = ls.jobs.start(call.uri, version, ls.protocol.msg_id)
    progress = _Progress(ls, job)
    try:
        await progress.begin(token)
        on_event = _event_sink(ls, job, progress,
                               selection.span_ranges(index, spans, encoding)
                               if settings.trajectory else None)
        future = ls.host.submit(ls.host.infill, settings, text, language, ranges, call.mode,
                                arguments.infill_options(settings, call), on_event,
                                job.cancelled)
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # $/cancelRequest: pygls answers RequestCancelled
            job.cancel(jobs.USER_CANCELLED)
            progress.end("cancelled")
            raise
        except JobCancelledError:
            progress.end("cancelled")
            raise JobCancelledError(job.reason or "cancelled") from None
    except BaseException:
        progress.end("failed")
        raise
    finally:
        ls.jobs.finish(job)
    progress.end(result.message)
    ls.log_client(f"{ACTION_TITLE}: {result.message}; {result.steps} steps, "
                  f"{result.timings.total_ms:.0f} ms on {result.device}", "info")
    if ls.document(call.uri).source != text:
        raise DocumentChangedError("the document changed while the infill ran; run "
                                   f"\"{ACTION_TITLE}\" again")
    candidate_edits = [edits.candidate_edit(call.uri, version, index, candidate, encoding,
                                            ls.client.document_changes)
                       for candidate in result.candidates]
    if not result.valid:
        raise NoValidInfillError(
            f"{result.message} (try again, select a different block, or use \"keep "
            "structure\")",
            data={"candidates": [edits.candidate_json(edit, candidate)
                                 for edit, candidate in zip(candidate_edits,
                                                            result.candidates)]})
    return Outcome(result, candidate_edits, version)


class _Progress:
    """Work-done progress of one job: the client's token, or one the server creates."""

    def __init__(self, ls: AstdiffuseServer, job: jobs.Job):
        self.ls, self.job, self.token = ls, job, None
        self.tracker = jobs.ProgressTracker()
        self.ended = False

    async def begin(self, token: Any) -> None:
        if token is None and self.ls.client.work_done_progress:
            token = f"astdiffuse-{self.job.id}-{uuid.uuid4().hex[:8]}"
            try:
                await self.ls.work_done_progress.create_async(token)
            except Exception as err:  # noqa: BLE001 - no progress bar, the job still runs
                log.warning("window/workDoneProgress/create failed: %s", err)
                token = None
        if token is None:
            return
        self.token = token
        self.ls.jobs.attach_token(self.job, token)
        if self.ls.settings.engine.url is not None:
            message = "sending to the remote engine"
        else:
            message = "loading the model" if not self.ls.host.loaded else "starting"
        self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=ACTION_TITLE, cancellable=True, message=message, percentage=0))

    def report(self, event: Any) -> None:
        if self.token is not None and not self.ended:
            percent, message = self.tracker.report(event)
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(
                message=message, percentage=percent, cancellable=True))

    def end(self, message: str) -> None:
        if self.token is not None and not self.ended:
            self.ended = True
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(
                message=message))


def _event_sink(ls: AstdiffuseServer, job: jobs.Job, progress: _Progress,
                span_ranges: list[types.Range] | None) -> Callable[[Any], None]:
    """The engine's progress callback (on the engine thread): hands each event to the loop."""
    loop = asyncio.get_running_loop()
    ranges = [edits.to_json(r) for r in span_ranges] if span_ranges is not None else None

    def on_loop(event: Any) -> None:
        if job.cancelled():
            return
        progress.report(event)
        if ranges is not None:
            ls.protocol.notify(TRAJECTORY, jobs.trajectory_params(job, event, ranges))

    return lambda event: loop.call_soon_threadsafe(on_loop, event)


async def _reported(ls: AstdiffuseServer, run: Callable[[], Awaitable[Any]]) -> Any:
    """Run a request; a failure goes to the user (showMessage), its details to the log
    (logMessage), and back as a JSON-RPC error with `data.reason`."""
    try:
        return await run()
    except (asyncio.CancelledError, JsonRpcException):
        raise
    except Exception as err:  # noqa: BLE001 - every failure is answered, the server keeps on
        problem = user_error(err)
        if problem.code == INTERNAL_ERROR:
            log.exception("request failed")
        else:
            log.info("request failed: %s", problem.message)
        if problem.show:
            ls.show(problem.message, problem.severity)
        ls.log_client(f"{problem.reason}: {problem.message}",
                      "error" if problem.severity == "error" else "info")
        raise JsonRpcException(message=problem.message, code=problem.code,
                               data=problem.error_data()) from err
