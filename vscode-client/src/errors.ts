/** What the user is told when a request fails: one message per `data.reason` (docs/lsp.md,
 * "Errors"), with the buttons that help. No `vscode` import. */

import { SUPPORTED_LANGUAGES } from "./constants";
import { Candidate, ErrorCode, ErrorData } from "./protocol";

export type Action =
  | { kind: "openSettings"; title: string; setting: string }
  | { kind: "retry"; title: string }
  | { kind: "keepStructure"; title: string }
  | { kind: "previewInvalid"; title: string }
  | { kind: "showLog"; title: string }
  | { kind: "restart"; title: string };

export interface Failure {
  /** `silent`: a cancellation, nothing to show. */
  severity: "silent" | "error" | "warning" | "info";
  reason: string;
  text: string;
  actions: Action[];
  /** noValidInfill: the invalid candidates, for "Preview Anyway". */
  candidates?: Candidate[];
}

export interface RequestError { code?: number; message: string; data?: ErrorData }

const openSettings = (setting: string, title = "Open Settings"): Action =>
  ({ kind: "openSettings", title, setting });
const showLog: Action = { kind: "showLog", title: "Show Log" };
const retry: Action = { kind: "retry", title: "Try Again" };

/** The parts of whatever a request rejected with (a vscode-jsonrpc ResponseError, an Error). */
export function asRequestError(error: unknown): RequestError {
  if (error !== null && typeof error === "object") {
    const e = error as { code?: unknown; message?: unknown; data?: unknown };
    const data = e.data !== null && typeof e.data === "object" ? e.data as ErrorData : undefined;
    return {
      code: typeof e.code === "number" ? e.code : undefined,
      message: typeof e.message === "string" ? e.message : String(error),
      data,
    };
  }
  return { message: String(error) };
}

/** The server's message without its `astdiffuse: ` prefix (the extension adds its own). */
function bare(message: string): string {
  return message.replace(/^astdiffuse:\s*/, "");
}

export function describeFailure(error: unknown): Failure {
  const err = asRequestError(error);
  const reason = err.data?.reason ?? (err.code === ErrorCode.requestCancelled ? "cancelled" : "");
  const text = `astdiffuse: ${bare(err.message)}`;
  const failure = (severity: Failure["severity"], actions: Action[], message = text): Failure =>
    ({ severity, reason: reason || "unknown", text: message, actions });

  switch (reason) {
    case "cancelled":
      return failure("silent", []);
    case "unsupportedLanguage":
      return failure("warning", []);
    case "nothingToInfill":
      return failure("info", []);
    case "noValidInfill": {
      const actions: Action[] = [retry, { kind: "keepStructure", title: "Keep Structure" }];
      const candidates = err.data?.candidates;
      if (candidates !== undefined && candidates.length > 0) {
        actions.push({ kind: "previewInvalid", title: "Preview Anyway" });
        return { ...failure("warning", actions), candidates };
      }
      return failure("warning", actions);
    }
    case "modelLoadFailed":
      return failure("error", [openSettings("astdiffuse.model", "Set Model"),
        openSettings("astdiffuse.device", "Set Device"), showLog]);
    case "remoteEngineUnavailable":
    case "remoteEngineUnreachable":
    case "engineUnreachable":
    case "engineUnavailable":
    case "remoteEngineFailed":
    case "authenticationFailed":
      return failure("error", [openSettings("astdiffuse.engine.url", "Engine Settings"), retry, showLog]);
    case "selectionTooLarge":
      return failure("warning", [openSettings("astdiffuse.contextTokens")]);
    case "documentChanged":
      return failure("warning", [retry]);
    case "editRejected":
    case "invalidRange":
    case "invalidArguments":
    case "documentNotFound":
      return failure("error", [showLog]);
    case "internal":
      return failure("error", [showLog]);
    default:
      break;
  }
  if (/remote engine|engine\.url/i.test(err.message)) {  // a reason this version does not know
    return failure("error", [openSettings("astdiffuse.engine.url", "Engine Settings"), retry, showLog]);
  }
  if (err.code === ErrorCode.pendingResponseRejected || err.code === ErrorCode.connectionInactive
    || /connection (got disposed|is closed|is disposed)|not running|Client is not running/i.test(err.message)) {
    return { severity: "error", reason: "serverStopped",
      text: "astdiffuse: the language server stopped. See the log for why, then restart it.",
      actions: [{ kind: "restart", title: "Restart Server" }, showLog] };
  }
  return failure("error", [showLog]);
}

/** Said before any request when the editor's language has no grammar. */
export function unsupportedLanguageMessage(languageId: string): string {
  return `astdiffuse: the language "${languageId}" is not supported (supported: `
    + `${SUPPORTED_LANGUAGES.join(", ")}).`;
}

export type ServerProblem =
  | { kind: "pythonNotFound"; python: string; detail: string }
  | { kind: "serverNotInstalled"; python: string; detail: string }
  | { kind: "serverPathMissing"; path: string; detail: string }
  | { kind: "startFailed"; detail: string };

/** The message and buttons for a server that cannot start. */
export function describeServerProblem(problem: ServerProblem): Failure {
  const log = showLog;
  switch (problem.kind) {
    case "pythonNotFound":
      return { severity: "error", reason: problem.kind, actions: [openSettings("astdiffuse.server.python"), log],
        text: `astdiffuse: Python interpreter "${problem.python}" not found. Set astdiffuse.server.python `
          + "to the Python of the astdiffuse environment (e.g. ~/src/astdiffuse/.venv/bin/python)." };
    case "serverNotInstalled":
      return { severity: "error", reason: problem.kind, actions: [openSettings("astdiffuse.server.python"), log],
        text: `astdiffuse: "${problem.python}" cannot import the language server (lsp_server). Point `
          + "astdiffuse.server.python at the astdiffuse virtual environment's Python, or install astdiffuse "
          + "into this one (pip install -e . in the checkout)." };
    case "serverPathMissing":
      return { severity: "error", reason: problem.kind, actions: [openSettings("astdiffuse.server.path"), log],
        text: `astdiffuse: the server executable "${problem.path}" (astdiffuse.server.path) does not exist `
          + "or is not executable." };
    case "startFailed":
      return { severity: "error", reason: problem.kind,
        actions: [{ kind: "restart", title: "Restart Server" }, openSettings("astdiffuse.server.python"), log],
        text: `astdiffuse: the language server did not start: ${problem.detail}` };
  }
}
