"""What a failed request tells the user: a reason, a JSON-RPC error code and a message that says
what to do. `user_error` maps the engine's typed errors onto these (no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import (AstdiffuseError, EmptySourceError, InvalidRangeError,
                           NothingToInfillError, SourceDecodeError, SourceTooLargeError,
                           UnsupportedLanguageError)

# JSON-RPC / LSP error codes (LSP 3.17: RequestFailed, ContentModified, RequestCancelled).
INVALID_PARAMS = -32602
REQUEST_FAILED = -32803
CONTENT_MODIFIED = -32801
REQUEST_CANCELLED = -32800
INTERNAL_ERROR = -32603

# Reasons, sent as `data.reason` of the JSON-RPC error (docs/lsp.md lists them).
UNSUPPORTED_LANGUAGE = "unsupportedLanguage"
NOTHING_TO_INFILL = "nothingToInfill"
NO_VALID_INFILL = "noValidInfill"
MODEL_LOAD_FAILED = "modelLoadFailed"
INVALID_RANGE = "invalidRange"
INVALID_ARGUMENTS = "invalidArguments"
DOCUMENT_NOT_FOUND = "documentNotFound"
DOCUMENT_CHANGED = "documentChanged"
SELECTION_TOO_LARGE = "selectionTooLarge"
REMOTE_ENGINE_UNAVAILABLE = "remoteEngineUnavailable"
EDIT_REJECTED = "editRejected"
CANCELLED = "cancelled"
INTERNAL = "internal"


class LspRequestError(AstdiffuseError):
    """A request the server cannot complete, with the reason a client can switch on."""

    reason = INTERNAL
    code = REQUEST_FAILED

    def __init__(self, message: str, data: dict | None = None):
        super().__init__(message)
        self.data = data or {}


class InvalidArgumentsError(LspRequestError):
    """The command's arguments or a code action's data are malformed."""

    reason = INVALID_ARGUMENTS
    code = INVALID_PARAMS


class DocumentNotFoundError(LspRequestError):
    """The document is neither open in the editor nor readable from disk."""

    reason = DOCUMENT_NOT_FOUND
    code = INVALID_PARAMS


class DocumentChangedError(LspRequestError):
    """The document was edited while its infill ran; the result no longer fits it."""

    reason = DOCUMENT_CHANGED
    code = CONTENT_MODIFIED


class NoValidInfillError(LspRequestError):
    """No candidate parses and keeps the node kinds; `data` carries them for inspection."""

    reason = NO_VALID_INFILL


class ModelLoadFailedError(LspRequestError):
    """The model (or the device it was asked for) could not be loaded."""

    reason = MODEL_LOAD_FAILED


class RemoteEngineUnavailableError(LspRequestError):
    """`engine.url` is set and the remote engine cannot be used: unreachable, the token refused,
    the connection lost mid-request, or the server refused the request (a limit)."""

    reason = REMOTE_ENGINE_UNAVAILABLE


class SelectionTooLargeError(LspRequestError):
    """The spans do not fit the model's context window."""

    reason = SELECTION_TOO_LARGE


class EditRejectedError(LspRequestError):
    """The editor refused to apply the edit (workspace/applyEdit answered applied=false)."""

    reason = EDIT_REJECTED


class JobCancelledError(LspRequestError):
    """The run was cancelled: by the user, by a newer request for the document, by shutdown."""

    reason = CANCELLED
    code = REQUEST_CANCELLED


@dataclass(frozen=True)
class UserError:
    """How a failure reaches the user: `window/showMessage` (when `show`) and a JSON-RPC error."""

    reason: str
    code: int
    message: str
    show: bool = True
    severity: str = "warning"  # warning | error (the showMessage type)
    data: dict | None = None

    def error_data(self) -> dict:
        return {"reason": self.reason, **(self.data or {})}


# Engine errors (torch-free classes) -> reason and code.
_ENGINE_ERRORS: tuple[tuple[type, str, int], ...] = (
    (UnsupportedLanguageError, UNSUPPORTED_LANGUAGE, REQUEST_FAILED),
    (NothingToInfillError, NOTHING_TO_INFILL, REQUEST_FAILED),
    (EmptySourceError, NOTHING_TO_INFILL, REQUEST_FAILED),
    (InvalidRangeError, INVALID_RANGE, INVALID_PARAMS),
    (SourceTooLargeError, INVALID_ARGUMENTS, REQUEST_FAILED),
    (SourceDecodeError, INVALID_ARGUMENTS, REQUEST_FAILED),
)


def user_error(err: BaseException) -> UserError:
    """The reason, code and message for any exception a request can end with."""
    if isinstance(err, LspRequestError):
        quiet = isinstance(err, JobCancelledError)
        severity = "error" if isinstance(err, (ModelLoadFailedError,
                                                RemoteEngineUnavailableError)) else "warning"
        return UserError(err.reason, err.code, f"astdiffuse: {err}", show=not quiet,
                         severity=severity, data=err.data)
    if isinstance(err, UnsupportedLanguageError):  # its own message gives CLI advice
        return UserError(UNSUPPORTED_LANGUAGE, REQUEST_FAILED,
                         f"astdiffuse: unsupported language {err.requested!r} (the document's "
                         f"languageId or file extension); supported languages: "
                         f"{', '.join(err.supported)}")
    for cls, reason, code in _ENGINE_ERRORS:
        if isinstance(err, cls):
            return UserError(reason, code, f"astdiffuse: {err}")
    if isinstance(err, AstdiffuseError):
        return UserError(INTERNAL, REQUEST_FAILED, f"astdiffuse: {err}", severity="error")
    return UserError(INTERNAL, INTERNAL_ERROR,
                     f"astdiffuse: internal error ({type(err).__name__}: {err}); the server "
                     "log has the details", severity="error")
