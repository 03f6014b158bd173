"""What the Language Server's end-to-end tests share: a tiny model that knows one file, and a
pygls `LanguageClient` driving the real `python -m lsp_server` process from synchronous tests.

The model: a `tiny` AnchoredDiffusionModel overfitted (a few hundred steps of the
masked-diffusion loss, seconds on a CPU) to `TRAINED`, a small file with non-ASCII text. The
documents the tests edit (`BUFFER`) are that file with operators changed; with keep-anchors
(only non-keyword, non-identifier tokens masked, the old length kept) the model puts the
trained operators back, so an edit is valid and its text known. Anything else it infills
(a plain node-mode span, code it never saw) is as random as an untrained model's, and the
tests accept "no valid infill" there. The model is cached in pytest's cache directory, keyed
by everything that shapes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.lsp.client import LanguageClient

from .paths import ROOT

RECIPE = 1  # bump when the training recipe below changes
TRAIN_STEPS = 320
TRAINED = '''"""Prices in \u20ac for the language-server tests \U0001F600."""


def total(price, count):
    return price * count


def discount(price, rate):
    reduced = price - price * rate
    return reduced


def label(name):
    return "\U0001F600 " + name
'''
# What the tests open: TRAINED with three operators changed.
BUFFER = (TRAINED.replace("price * count", "price + count")
          .replace("price - price", "price + price")
          .replace('" + name', '" - name'))
TOTAL_LINE, DISCOUNT_LINE, LABEL_LINE = 4, 8, 13  # 0-based lines of the changed statements
# Code the model never saw, for long runs (cancellation) and "no valid infill".
UNSEEN = '''

def histogram(values, bins):
    lowest, highest = min(values), max(values)
    width = (highest - lowest) / bins or 1.0
    counts = [0] * bins
    for value in values:
        slot = min(int((value - lowest) / width), bins - 1)
        counts[slot] += 1
    scale = max(counts) or 1
    lines = []
    for slot, count in enumerate(counts):
        left = lowest + slot * width
        bar = "#" * round(40 * count / scale)
        lines.append(f"{left:10.3f} | {bar} {count}")
    for index in range(len(lines)):
        if index % 2:
            lines[index] = lines[index].replace("#", "=")
    summary = {"bins": bins, "width": width, "total": sum(counts)}
    lines.append(str(summary))
    return "\\n".join(lines)
'''
LONG = BUFFER + UNSEEN
# The loop `for slot, count in ...` (four lines): a few hundred masked tokens the model is
# unsure of, so a plain infill runs for hundreds of steps (seconds) - for cancellation.
LOOP_LINES = (LONG.split("\n").index("    for slot, count in enumerate(counts):"),
              LONG.split("\n").index("    for index in range(len(lines)):"))
CONVERTER = get_converter()


def _key() -> str:
    import torch

    digest = hashlib.sha256()
    for part in (str(RECIPE), str(TRAIN_STEPS), TRAINED, torch.__version__):
        digest.update(part.encode("utf-8"))
    for source in ("engine/model/modeling.py", "engine/model/configuration.py",
                   "engine/model/presets.py", "engine/tokens.py", "training/tokenizer.py"):
        path = ROOT / source
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def trained_model(cache_dir: Path) -> Path:
    """The overfitted tiny model's directory (trained once, then taken from `cache_dir`)."""
    target = cache_dir / f"lsp-model-{_key()}"
    if (target / "config.json").is_file() and (target / "done").is_file():
        return target
    import torch

    import engine.model as em
    from engine.model.adapter import save_model_and_tokenizer
    from training.tokenizer import TokenizerConfig, train_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = train_tokenizer([TRAINED, BUFFER], TokenizerConfig(vocab_size=300))
        torch.manual_seed(0)
        model = em.AnchoredDiffusionModel(em.config_from_preset("tiny",
                                                                tokenizer.get_vocab_size()))
        mask_id = model.config.mask_token_id
        ids = torch.tensor(tokenizer.encode(TRAINED).ids)[None].repeat(8, 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(TRAIN_STEPS):
            t = torch.rand(ids.shape[0], generator=generator) * 0.3 + 0.02
            masked = torch.rand(ids.shape, generator=generator) < t[:, None]
            out = model(ids.masked_fill(masked, mask_id), labels=ids, masked=masked, t=t,
                        loss_weighting="mean", return_dict=True)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        model.eval()
        staging = cache_dir / f"lsp-model-{_key()}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        save_model_and_tokenizer(model, tokenizer, staging)
        (staging / "done").write_text(f"final loss {float(out.loss.detach()):.4f}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        torch.set_num_threads(threads)
    return target


def model_directory(request, tmp_path_factory) -> Path:
    """`trained_model` in pytest's cache directory (a temporary one without the cache plugin)."""
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("astdiffuse-lsp") if cache is not None else tmp_path_factory.mktemp("m")
    return trained_model(root)


def capabilities(encodings=("utf-16",), *, progress=True, configuration=True,
                 document_changes=True, resolve=True) -> types.ClientCapabilities:
    """Client capabilities as an editor sends them (camelCase JSON, structured by lsprotocol)."""
    code_action: dict[str, Any] = {"codeActionLiteralSupport": {
        "codeActionKind": {"valueSet": ["refactor", "refactor.rewrite", "quickfix"]}}}
    if resolve:
        code_action["resolveSupport"] = {"properties": ["edit"]}
    raw = {
        "general": {"positionEncodings": list(encodings)},
        "window": {"workDoneProgress": progress},
        "workspace": {"applyEdit": True, "configuration": configuration,
                      "workspaceEdit": {"documentChanges": document_changes},
                      "didChangeConfiguration": {"dynamicRegistration": configuration}},
        "textDocument": {"codeAction": code_action,
                         "synchronization": {"dynamicRegistration": False}},
    }
    return CONVERTER.structure(raw, types.ClientCapabilities)


def units(text: str, encoding: str) -> int:
    """Length of `text` in code units of an encoding (an oracle independent of the server)."""
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return len(text)


def position(text: str, line: int, needle: str, encoding: str = "utf-16") -> dict:
    """The LSP position of `needle` on 0-based `line` of `text`."""
    line_text = text.split("\n")[line]
    return {"line": line, "character": units(line_text[:line_text.index(needle)], encoding)}


def cursor(text: str, line: int, needle: str, encoding: str = "utf-16") -> dict:
    point = position(text, line, needle, encoding)
    return {"start": point, "end": point}


def apply_text_edits(text: str, edits: list[dict], encoding: str) -> str:
    """Apply LSP TextEdits (JSON) as an editor does: by code units, last edit first."""
    lines = text.split("\n")

    def offset(point: dict) -> int:
        line = lines[point["line"]]
        count = i = 0
        while i < len(line) and count < point["character"]:
            count += units(line[i], encoding)
            i += 1
        return sum(len(earlier) + 1 for earlier in lines[:point["line"]]) + i

    ordered = sorted(edits, key=lambda e: (e["range"]["start"]["line"],
                                           e["range"]["start"]["character"]), reverse=True)
    for edit in ordered:
        text = (text[:offset(edit["range"]["start"])] + edit["newText"]
                + text[offset(edit["range"]["end"]):])
    return text


def edits_of(workspace_edit: dict, uri: str) -> list[dict]:
    """The TextEdits of `uri` in a WorkspaceEdit (JSON), either form."""
    if workspace_edit.get("documentChanges"):
        return [edit for change in workspace_edit["documentChanges"]
                if change["textDocument"]["uri"] == uri for edit in change["edits"]]
    return workspace_edit.get("changes", {}).get(uri, [])


class Session:
    """One server process and a pygls LanguageClient that plays the editor: it keeps the
    documents it opened, applies `workspace/applyEdit` to them (and sends didChange), answers
    `workspace/configuration` with `self.configuration`, and records every notification.

    The client runs on an event loop in a background thread; the test calls block."""

    def __init__(self, log_file: Path, *, encodings=("utf-16",), progress=True,
                 configuration: Any = None, answers_configuration=True,
                 document_changes=True, resolve=True, init_options: Any = None,
                 server_args: tuple[str, ...] = ()):
        self.log_file = log_file
        self.encoding = encodings[0] if encodings else "utf-16"
        self.configuration = configuration  # what workspace/configuration answers (or None)
        self.capabilities = capabilities(encodings, progress=progress,
                                         configuration=answers_configuration,
                                         document_changes=document_changes, resolve=resolve)
        self.init_options = init_options
        self.server_args = server_args
        self.documents: dict[str, list] = {}  # uri -> [text, version]
        self.messages: list[types.ShowMessageParams] = []
        self.logs: list[types.LogMessageParams] = []
        self.progress: list[tuple[Any, dict]] = []  # (token, value as JSON)
        self.created_tokens: list[Any] = []
        self.trajectory: list[dict] = []
        self.applied: list[dict] = []  # WorkspaceEdits applied (JSON)
        self.configuration_requests = 0
        self.reject_edits = False
        self.initialize_result: types.InitializeResult | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = LanguageClient("astdiffuse-tests", "1")
        self._register()

    # -- the editor's side -------------------------------------------------------------------

    def _register(self) -> None:
        client = self.client

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params):
            self.messages.append(params)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params):
            self.logs.append(params)

        @client.feature(types.PROGRESS)
        def progress(params):
            self.progress.append((params.token, CONVERTER.unstructure(params.value)))

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create_progress(params):
            self.created_tokens.append(params.token)

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def configuration(params):
            self.configuration_requests += 1
            return [self.configuration for _ in params.items]

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(params):
            return None

        @client.feature("astdiffuse/trajectory")
        def trajectory(params):
            self.trajectory.append(plain(params))

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params):
            if self.reject_edits:
                return types.ApplyWorkspaceEditResult(applied=False,
                                                      failure_reason="read-only buffer")
            edit = CONVERTER.unstructure(params.edit)
            for uri in list(self.documents):
                changes = edits_of(edit, uri)
                if changes:
                    text = apply_text_edits(self.documents[uri][0], changes, self.encoding)
                    self._change(uri, text)
            self.applied.append(edit)
            return types.ApplyWorkspaceEditResult(applied=True)

    def _change(self, uri: str, text: str) -> None:
        """On the loop: the document's new full text, as an editor reports an edit."""
        self.documents[uri][0] = text
        self.documents[uri][1] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                version=self.documents[uri][1]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    # -- driving it from a test --------------------------------------------------------------

    def call(self, coroutine, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def on_loop(self, fn, *args) -> None:
        async def run():
            fn(*args)
        self.call(run())

    def start(self, env: dict | None = None) -> types.InitializeResult:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                       **(env or {})}
        self.call(self.client.start_io(sys.executable, "-m", "lsp_server", "--log-file",
                                       str(self.log_file), *self.server_args,
                                       env=environment, cwd=str(ROOT)))
        self.initialize_result = self.call(self.client.initialize_async(types.InitializeParams(
            capabilities=self.capabilities, process_id=os.getpid(),
            initialization_options=self.init_options, root_uri=ROOT.as_uri())), 60)
        self.on_loop(self.client.initialized, types.InitializedParams())
        return self.initialize_result

    def open(self, uri: str, text: str, language_id: str = "python") -> None:
        self.documents[uri] = [text, 1]
        self.on_loop(self.client.text_document_did_open, types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=1,
                                                 text=text)))

    def text(self, uri: str) -> str:
        return self.documents[uri][0]

    def edit(self, uri: str, text: str) -> None:
        self.on_loop(self._change, uri, text)

    def edit_range(self, uri: str, rng: dict, new_text: str) -> None:
        """An incremental change: `new_text` replaces `rng` (in the session's encoding)."""
        def change():
            document = self.documents[uri]
            document[0] = apply_text_edits(document[0], [{"range": rng, "newText": new_text}],
                                           self.encoding)
            document[1] += 1
            self.client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                    version=document[1]),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=CONVERTER.structure(rng, types.Range), text=new_text)]))
        self.on_loop(change)

    def execute(self, arguments: dict, token: Any = None, timeout: float = 120.0) -> Any:
        """workspace/executeCommand astdiffuse.diffuseBlock; a JSON-RPC error raises
        pygls' JsonRpcException (with .code, .message, .data)."""
        return self.call(self.execute_async(arguments, token), timeout)

    def execute_async(self, arguments: dict, token: Any = None):
        return self.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="astdiffuse.diffuseBlock", arguments=[arguments], work_done_token=token))

    def raw_request(self, method: str, params: Any, timeout: float = 120.0) -> Any:
        """A request whose result comes back as plain JSON, not structured by lsprotocol
        (which reads a CodeAction carrying a command back as a mangled Command)."""
        async def run():
            msg_id = f"raw-{os.urandom(4).hex()}"
            future = self.client.protocol.send_request(method, params, msg_id=msg_id)
            self.client.protocol._result_types[msg_id] = None
            return plain(await asyncio.wrap_future(future))
        return self.call(run(), timeout)

    def execute_later(self, arguments: dict, msg_id: str, token: Any = None):
        """Start the command as request `msg_id` without waiting (a concurrent Future)."""
        async def run():
            return await self.client.protocol.send_request_async(
                types.WORKSPACE_EXECUTE_COMMAND,
                types.ExecuteCommandParams(command="astdiffuse.diffuseBlock",
                                           arguments=[arguments], work_done_token=token),
                msg_id=msg_id)
        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def cancel_request(self, msg_id: str) -> None:
        """`$/cancelRequest` for request `msg_id`."""
        self.on_loop(self.client.cancel_request, types.CancelParams(id=msg_id))

    def cancel_progress(self, token: Any) -> None:
        """The user pressed "cancel" on the progress notification."""
        self.on_loop(self.client.window_work_done_progress_cancel,
                     types.WorkDoneProgressCancelParams(token=token))

    def change_configuration(self, configuration: Any, push: Any = None) -> None:
        self.configuration = configuration
        self.on_loop(self.client.workspace_did_change_configuration,
                     types.DidChangeConfigurationParams(settings=push))

    def wait_for(self, condition, timeout: float = 60.0, what: str = "condition") -> None:
        async def poll():
            while not condition():
                await asyncio.sleep(0.02)
        try:
            self.call(asyncio.wait_for(poll(), timeout), timeout + 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"timed out waiting for {what}; server log:\n"
                                 f"{self.server_log()[-3000:]}") from None

    def server_log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        """shutdown + exit; the server's exit status."""
        process = self.client._server
        try:
            if process is not None and process.returncode is None:
                self.call(self.client.shutdown_async(None), 30)
                self.on_loop(self.client.exit, None)
                self.call(asyncio.wait_for(process.wait(), 30), 40)
            self.call(self.client.stop(), 30)
        finally:
            if process is not None and process.returncode is None:
                process.kill()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        return process.returncode if process is not None else None


def plain(value: Any) -> Any:
    """pygls hands an unknown notification's params over as namedtuples: back to JSON."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def progress_values(session: Session, token: Any) -> list[dict]:
    return [value for t, value in session.progress if t == token]


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1)[:4000]
