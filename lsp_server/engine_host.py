"""The model side of the server: one daemon thread that loads the model once (lazily or at
start) and runs infills, so the event loop keeps answering; torch is imported only there.
With `engine.url` set the same thread talks to a remote engine (`engine.serve.RemoteEngine`,
same `infill` interface) instead, and no model is loaded here.

Engine errors that need torch to name (model loading, cancellation, canvas budget) are turned
into `lsp_server.errors` types here, so the rest of the server never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from engine.errors import AstdiffuseError

from .errors import (InvalidArgumentsError, JobCancelledError, ModelLoadFailedError,
                     RemoteEngineUnavailableError, SelectionTooLargeError)
from .settings import Settings, engine_token, model_key

log = logging.getLogger(__name__)


class EngineHost:
    """Runs callables on one engine thread, in order; holds the loaded `InfillEngine`."""

    def __init__(self, name: str = "astdiffuse-engine"):
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._engine = None
        self._key: tuple | None = None

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        """Queue `fn(*args, **kwargs)` on the engine thread; its Future resolves with the result.
        The thread is a daemon: exiting the server never waits for a model load to finish."""
        future: Future = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put((fn, args, kwargs, future))
        return future

    def _work(self) -> None:
        while True:
            fn, args, kwargs, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:  # noqa: BLE001 - handed to the waiting request
                future.set_exception(err)

    # -- on the engine thread ------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def remote(self) -> bool:
        return bool(self._key) and self._key[0] == "remote"

    def engine(self, settings: Settings):
        """The engine for `settings` (model and device), loading it on first use or after they
        changed; ModelLoadFailedError when it cannot load."""
        key = model_key(settings)
        if self._engine is not None and self._key == key:
            return self._engine
        self.forget()
        if settings.engine.url is not None:
            return self._connect(settings, key)
        began = time.perf_counter()
        log.info("loading model %s on %s", settings.model or "(default)", settings.device)
        try:
            from engine.infill import InfillEngine

            model = settings.model
            if model is not None:
                path = Path(model).expanduser()
                if path.is_file():
                    raise ModelLoadFailedError(
                        f"the model failed to load: {model} is a file; set astdiffuse.model to "
                        "the directory it was saved to (config.json, model.safetensors, "
                        "tokenizer.json)")
                if path.exists():
                    model = str(path)
                else:  # a pulled model's name; downloaded now only with allowDownload
                    from engine.hub import locate

                    model = locate(model, download=settings.allow_download, progress=False)
            with _quiet_transformers():
                engine = InfillEngine.load(model, device=settings.device)
        except ModelLoadFailedError:
            raise
        except (AstdiffuseError, OSError, ValueError, RuntimeError, ImportError) as err:
            raise ModelLoadFailedError(
                f"the model failed to load: {err} (set astdiffuse.model to a saved model "
                "directory or a pulled published model, and astdiffuse.device to a device this "
                "machine has)") from err
        self._engine, self._key = engine, key
        log.info("model %s loaded on %s in %.1f s", engine.name or "(default)", engine.device,
                 time.perf_counter() - began)
        return engine

    def _connect(self, settings: Settings, key: tuple):
        """A `RemoteEngine` for `engine.url`, connected (so a wrong URL or token shows now)."""
        from engine.serve import RemoteEngine, RemoteEngineError

        url = settings.engine.url
        try:
            token = engine_token(settings.engine)
        except OSError as err:
            raise RemoteEngineUnavailableError(
                f"cannot read astdiffuse.engine.tokenFile {settings.engine.token_file}: "
                f"{err.strerror or err}") from err
        remote = RemoteEngine(url, token, connect_timeout=settings.engine.connect_timeout,
                              ca_file=settings.engine.tls_ca_file, client="astdiffuse-lsp")
        try:
            welcome = remote.connect()
        except RemoteEngineError as err:
            raise RemoteEngineUnavailableError(_remote_advice(err, url)) from err
        log.info("connected to the remote engine %s: model %s on %s", url,
                 welcome.get("model"), welcome.get("device"))
        self._engine, self._key = remote, key
        return remote

    def forget(self) -> None:
        """Drop the loaded model or the remote connection (settings changed); the next request
        loads (connects) again."""
        if self._engine is None:
            return
        if hasattr(self._engine, "close"):
            self._engine.close()
        device = getattr(self._engine, "device", None)
        self._engine, self._key = None, None
        if getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.empty_cache()

    def infill(self, settings: Settings, text: str, language: str,
               ranges: list[tuple[int, int]], mode: str, options: dict[str, Any],
               progress: Callable[[Any], None] | None,
               cancelled: Callable[[], bool]):
        """Load (if needed) and run one infill -> `engine.infill.InfillResult`. `options` are
        `InfillOptions` fields over the model family's defaults."""
        if cancelled():
            raise JobCancelledError("cancelled before it started")
        engine = self.engine(settings)
        if cancelled():
            raise JobCancelledError("cancelled while the model loaded")
        from engine.infill import (ByteRange, InfillCancelled, InfillRequest,
                                   InvalidRequestError, SpanOutsideCanvasError)
        from engine.serve import RemoteEngineError

        from .arguments import samples_needed

        try:
            merged = engine.default_options(**options)
            # as many samples as the model family's length rule needs for the candidates
            merged.samples = samples_needed(merged.candidates, merged.keep_anchors,
                                            merged.length_candidates)
            request = InfillRequest(text=text, language=language,
                                    ranges=[ByteRange(start, end) for start, end in ranges],
                                    mode=mode, options=merged)
            result = engine.infill(request, progress=progress, cancelled=cancelled)
            if self.remote:  # say where it ran: "cuda:0 at gpu-box:7341"
                result.device = f"{result.device} at {engine.host}:{engine.port}"
            return result
        except InfillCancelled as err:
            raise JobCancelledError(str(err) or "cancelled") from err
        except SpanOutsideCanvasError as err:
            raise SelectionTooLargeError(f"{err} (raise astdiffuse.contextTokens or select "
                                         "less code)") from err
        except InvalidRequestError as err:
            raise InvalidArgumentsError(str(err)) from err
        except RemoteEngineError as err:
            raise RemoteEngineUnavailableError(
                _remote_advice(err, settings.engine.url)) from err


def _remote_advice(err: Exception, url: str | None) -> str:
    """What the user reads when the remote engine fails: its error and what to check."""
    from engine.serve import AuthenticationError, EngineUnreachableError

    if isinstance(err, AuthenticationError):
        hint = ("set astdiffuse.engine.token (or engine.tokenFile, or $ASTDIFFUSE_TOKEN) to "
                "the server's token")
    elif isinstance(err, EngineUnreachableError):
        hint = (f"check astdiffuse.engine.url ({url}), that `python -m engine.serve` runs "
                "there, and your SSH tunnel if you use one; or remove engine.url to run the "
                "model locally")
    else:
        hint = "the remote engine refused the request"
    return f"{err} ({hint})"


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" progress bar on stderr (an editor shows stderr as errors)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
