/* The real Python server (`python -m lsp_server`) over stdio, driven with
 * vscode-languageserver-protocol (the library vscode-languageclient is built on), sending what the
 * extension sends: its initializationOptions, its filtered workspace/configuration answers, and
 * workspace/executeCommand astdiffuse.diffuseBlock with the arguments built from two selections.
 *
 * The model is the engine's shipped default (engine/default_model): too small to write valid code
 * most of the time, so an infill either returns candidates or fails with noValidInfill carrying
 * the invalid ones; both are checked for their structure. ASTDIFFUSE_PYTHON overrides the
 * interpreter (default: <repo>/.venv/bin/python). */
import * as assert from "assert";
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  CancellationTokenSource, ClientCapabilities, ConfigurationRequest, createProtocolConnection, DidChangeConfigurationNotification,
  DidOpenTextDocumentNotification, ExecuteCommandRequest, ExitNotification, InitializedNotification,
  InitializeRequest, InitializeResult, LogMessageNotification, ProtocolConnection, RegistrationRequest,
  ResourceOperationKind, ResponseError, ShowMessageNotification, ShutdownRequest, StreamMessageReader, StreamMessageWriter,
  WorkDoneProgress, WorkDoneProgressCreateRequest, ApplyWorkspaceEditRequest,
} from "vscode-languageserver-protocol/node";
import { SERVER_COMMAND, TRAJECTORY_NOTIFICATION } from "../../src/constants";
import { Candidate, DiffuseResult, TrajectoryParams } from "../../src/protocol";
import { commandArguments } from "../../src/selections";
import { initializationOptions, readSettings, serverConfiguration } from "../../src/settings";

const ROOT = path.resolve(__dirname, "..", "..", "..", "..");
const PYTHON = process.env.ASTDIFFUSE_PYTHON ?? path.join(ROOT, ".venv", "bin", "python");
const SAMPLE = fs.readFileSync(path.join(ROOT, "examples", "sample.py"), "utf-8");
const LINES = SAMPLE.split("\n");
const DOC = "file:///astdiffuse-vscode-test/sample.py";

/** What VS Code's settings hold (the extension's own keys too: the filter must drop them). */
const config: Record<string, unknown> = {
  "device": "cpu", "steps": 4, "candidates": 1, "trajectory": true, "server.python": PYTHON,
  "server.args": [], "applyDirectly": false,
};

function rawSection(): Record<string, unknown> {
  const settings = readSettings((key) => config[key]);
  return { ...settings.server, server: { python: PYTHON, path: "", args: [] }, applyDirectly: false,
    trace: { server: "off" } };
}

const at = (line: number, needle: string) => ({ line, character: LINES[line].indexOf(needle) });
const lineOf = (text: string) => LINES.findIndex((l) => l.includes(text));

function selection(line: number, from: string, to?: string) {
  const anchor = at(line, from);
  const active = to === undefined ? anchor : { line, character: LINES[line].indexOf(to) + to.length };
  return { anchor, active };
}

/** VS Code 1.82's client capabilities, as far as this server reads them. */
const capabilities: ClientCapabilities = {
  general: { positionEncodings: ["utf-16"] },
  window: { workDoneProgress: true, showMessage: { messageActionItem: { additionalPropertiesSupport: true } } },
  workspace: {
    applyEdit: true, configuration: true, workspaceFolders: true,
    workspaceEdit: { documentChanges: true, resourceOperations: [ResourceOperationKind.Create,
      ResourceOperationKind.Rename, ResourceOperationKind.Delete] },
    didChangeConfiguration: { dynamicRegistration: true },
  },
  textDocument: {
    synchronization: { dynamicRegistration: true, didSave: true, willSave: true },
    codeAction: {
      dynamicRegistration: true, isPreferredSupport: true, dataSupport: true, disabledSupport: true,
      resolveSupport: { properties: ["edit"] },
      codeActionLiteralSupport: { codeActionKind: { valueSet: ["", "quickfix", "refactor", "refactor.extract",
        "refactor.inline", "refactor.rewrite", "source", "source.organizeImports"] } },
    },
  },
};

interface Session {
  child: ChildProcess;
  connection: ProtocolConnection;
  messages: { type: number; message: string }[];
  progress: Map<string, unknown[]>;
  trajectory: TrajectoryParams[];
  configurationPulls: number;
  exited: Promise<number | null>;
  logFile: string;
  init?: InitializeResult;
}

function watchProgress(session: Session, token: string): void {
  session.progress.set(token, []);
  session.connection.onProgress(WorkDoneProgress.type, token, (value) => session.progress.get(token)?.push(value));
}

function start(): Session {
  assert.ok(fs.existsSync(PYTHON), `no Python at ${PYTHON}: run \`make setup\` or set ASTDIFFUSE_PYTHON`);
  const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "astdiffuse-it-")), "server.log");
  const child = spawn(PYTHON, ["-m", "lsp_server", "--log-file", logFile], {
    cwd: ROOT, stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, OMP_NUM_THREADS: "1", TOKENIZERS_PARALLELISM: "false" },
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const connection = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const session: Session = { child, connection, messages: [], progress: new Map(), trajectory: [],
    configurationPulls: 0, exited, logFile };
  connection.onNotification(ShowMessageNotification.type, (p) => session.messages.push(p));
  connection.onNotification(LogMessageNotification.type, () => undefined);
  connection.onNotification(TRAJECTORY_NOTIFICATION, (p: TrajectoryParams) => session.trajectory.push(p));
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => null);
  connection.onRequest(RegistrationRequest.type, () => null);
  connection.onRequest(ApplyWorkspaceEditRequest.type, () => ({ applied: true }));
  // what the extension's configuration middleware answers
  connection.onRequest(ConfigurationRequest.type, (params) => {
    session.configurationPulls++;
    return params.items.map((item) => item.section === "astdiffuse" ? serverConfiguration(rawSection()) : null);
  });
  connection.listen();
  return session;
}

function serverLog(session: Session): string {
  try {
    return fs.readFileSync(session.logFile, "utf-8").slice(-3000);
  } catch {
    return "";
  }
}

async function until(condition: () => boolean, what: string, session: Session, timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; server log:\n${serverLog(session)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function checkCandidate(candidate: Candidate, uri: string): void {
  assert.strictEqual(typeof candidate.score, "number");
  assert.strictEqual(typeof candidate.valid, "boolean");
  const changes = candidate.edit.documentChanges ?? [];
  assert.ok(changes.length > 0, "versioned documentChanges (the client supports them)");
  const [change] = changes;
  assert.ok("textDocument" in change);
  assert.deepStrictEqual(change.textDocument, { uri, version: 1 });
  assert.ok(change.edits.length >= 1);
  for (const edit of change.edits) {
    assert.strictEqual(typeof edit.newText, "string");
    assert.strictEqual(typeof edit.range.start.line, "number");
  }
  assert.ok(candidate.spans.length >= 1);
}

describe("the extension's requests against the real server (stdio)", function () {
  this.timeout(120000);
  let session: Session;

  before(async function () {
    session = start();
    const options = initializationOptions(readSettings((key) => config[key]));
    session.init = await session.connection.sendRequest(InitializeRequest.type, {
      processId: process.pid, rootUri: `file://${ROOT}`, capabilities, initializationOptions: options,
      clientInfo: { name: "Visual Studio Code", version: "1.82.0" }, workspaceFolders: null,
    });
    await session.connection.sendNotification(InitializedNotification.type, {});
    await until(() => session.configurationPulls > 0, "workspace/configuration", session);
    await session.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri: DOC, languageId: "python", version: 1, text: SAMPLE } });
  });

  after(async function () {
    if (session.child.exitCode === null) {
      session.child.kill();
    }
    session.connection.dispose();
  });

  it("advertises the command, resolvable code actions and UTF-16 positions", () => {
    const caps = session.init!.capabilities;
    assert.deepStrictEqual(caps.executeCommandProvider?.commands, [SERVER_COMMAND]);
    assert.strictEqual(typeof caps.codeActionProvider === "object" && caps.codeActionProvider.resolveProvider, true);
    assert.strictEqual(caps.positionEncoding, "utf-16");
    assert.strictEqual(session.init!.serverInfo?.name, "astdiffuse-lsp");
  });

  it("takes the extension's settings without complaint (its own keys are left out)", () => {
    assert.deepStrictEqual(session.messages, []);
  });

  it("previews two selections: candidates as WorkspaceEdits (or noValidInfill with them), with progress", async () => {
    const args = commandArguments(DOC, [
      selection(lineOf("restocked += 1"), "restocked"),
      selection(lineOf("best = item"), "best", "item"),
    ], { keepAnchors: false, apply: false });
    assert.strictEqual(args.ranges.length, 2);
    const token = "astdiffuse-it-preview";
    watchProgress(session, token);
    let candidates: Candidate[];
    try {
      const result = await session.connection.sendRequest(ExecuteCommandRequest.type,
        { command: SERVER_COMMAND, arguments: [args], workDoneToken: token }) as DiffuseResult;
      assert.strictEqual(result.applied, false);
      assert.strictEqual(result.uri, DOC);
      candidates = result.candidates;
      assert.ok(candidates.length >= 1 && candidates.every((c) => c.valid));
    } catch (error) {
      assert.ok(error instanceof ResponseError, String(error));
      assert.strictEqual(error.code, -32803, error.message);
      const data = error.data as { reason: string; candidates: Candidate[] };
      assert.strictEqual(data.reason, "noValidInfill", error.message);
      candidates = data.candidates;
      assert.ok(candidates.length >= 1);
    }
    for (const candidate of candidates) {
      checkCandidate(candidate, DOC);
      assert.strictEqual(candidate.spans.length, 2, "both selections are infilled in one run");
    }
    await until(() => (session.progress.get(token) as { kind: string }[]).some((v) => v.kind === "end"),
      "the progress end", session);
    const values = session.progress.get(token) as { kind: string; message?: string; percentage?: number }[];
    assert.strictEqual(values[0].kind, "begin");
    const reports = values.filter((v) => v.kind === "report");
    assert.ok(reports.length >= 1 && reports.every((r) => typeof r.percentage === "number"));
    assert.match(reports[0].message ?? "", /step/);
    assert.ok(session.trajectory.length >= 1 && session.trajectory.every((t) => t.uri === DOC), "trajectory");
  });

  it("cancels a running request with $/cancelRequest (the token of sendRequest): -32800", async () => {
    config.steps = null;  // as many steps as the engine wants: a longer run to cancel
    config.trajectory = false;
    const pulls = session.configurationPulls;
    await session.connection.sendNotification(DidChangeConfigurationNotification.type, { settings: null });
    await until(() => session.configurationPulls > pulls, "the new settings", session);
    const first = lineOf("def restock");
    const last = lineOf("return restocked");
    const args = commandArguments(DOC, [{ anchor: { line: first + 2, character: 0 },
      active: { line: last, character: 0 } }], { keepAnchors: false, apply: false });
    const token = "astdiffuse-it-cancel";
    watchProgress(session, token);
    const source = new CancellationTokenSource();
    const request = session.connection.sendRequest(ExecuteCommandRequest.type,
      { command: SERVER_COMMAND, arguments: [args], workDoneToken: token }, source.token);
    await until(() => (session.progress.get(token) as { kind: string }[]).some((v) => v.kind === "report"),
      "the first progress report", session);
    source.cancel();
    await assert.rejects(request, (error: unknown) => {
      assert.ok(error instanceof ResponseError, String(error));
      assert.strictEqual(error.code, -32800, error.message);
      return true;
    });
    await until(() => (session.progress.get(token) as { kind: string }[]).some((v) => v.kind === "end"),
      "the progress end", session);
    const end = (session.progress.get(token) as { kind: string; message?: string }[]).find((v) => v.kind === "end");
    assert.strictEqual(end?.message, "cancelled");
  });

  it("answers unsupportedLanguage for a language without a grammar", async () => {
    const uri = "file:///astdiffuse-vscode-test/notes.txt";
    await session.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: "plaintext", version: 1, text: "buy milk\n" } });
    const args = commandArguments(uri, [{ anchor: { line: 0, character: 4 }, active: { line: 0, character: 4 } }],
      { keepAnchors: false, apply: false });
    await assert.rejects(session.connection.sendRequest(ExecuteCommandRequest.type,
      { command: SERVER_COMMAND, arguments: [args] }), (error: unknown) => {
      assert.ok(error instanceof ResponseError);
      assert.strictEqual(error.code, -32803);
      assert.strictEqual((error.data as { reason: string }).reason, "unsupportedLanguage");
      return true;
    });
  });

  it("shuts down and exits with status 0", async () => {
    await session.connection.sendRequest(ShutdownRequest.type);
    await session.connection.sendNotification(ExitNotification.type);
    assert.strictEqual(await session.exited, 0);
  });
});
