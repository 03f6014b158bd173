/* The command's flow with the `vscode` module stubbed (test/stub/vscode.ts) and a fake backend
 * in place of the language client. */
import * as assert from "assert";
import * as vscode from "vscode";
import { DiffuseBackend, DiffuseCommands } from "../../src/diffuse";
import { MessageGate } from "../../src/messageGate";
import { PreviewContentProvider, PreviewController } from "../../src/preview";
import { WorkDoneValue } from "../../src/progress";
import { DiffuseArguments, DiffuseResult, TrajectoryParams } from "../../src/protocol";
import { readSettings } from "../../src/settings";
import * as stub from "../stub/vscode";
import { candidate as make } from "./candidates.test";

const candidate = (texts: string[], extra = {}) => make(texts, extra, 1);

const uri = "file:///src/prices.py";
const TEXT = "def f(a, b):\n    return a + b\n";

function fakeDocument(languageId = "python", version = 3) {
  return { uri: vscode.Uri.parse(uri), languageId, version, isClosed: false, getText: () => TEXT };
}

function fakeEditor(document = fakeDocument()) {
  const selections = [new vscode.Selection(new vscode.Position(1, 11), new vscode.Position(1, 16)),
    new vscode.Selection(new vscode.Position(0, 4), new vscode.Position(0, 4))];
  const decorations: unknown[][] = [];
  return { document, selections, viewColumn: 1, decorations,
    setDecorations: (_type: unknown, ranges: unknown[]) => decorations.push(ranges) };
}

class FakeBackend implements DiffuseBackend {
  readonly gate = new MessageGate();
  calls: { args: DiffuseArguments; workDoneToken: string }[] = [];
  progress = new Map<string, (value: WorkDoneValue) => void>();
  trajectory: ((p: TrajectoryParams) => void)[] = [];
  states: string[] = [];
  running = true;
  config: Record<string, unknown> = {};
  answer: (args: DiffuseArguments, token: vscode.CancellationToken, backend: FakeBackend) => Promise<DiffuseResult>
    = async () => { throw new Error("no answer"); };

  settings() {
    return readSettings((key) => this.config[key]);
  }
  async ensureRunning() {
    return this.running;
  }
  executeCommand(args: DiffuseArguments, workDoneToken: string, token: vscode.CancellationToken) {
    this.calls.push({ args, workDoneToken });
    return this.answer(args, token, this);
  }
  onProgress(token: string, handler: (value: WorkDoneValue) => void) {
    this.progress.set(token, handler);
    return new vscode.Disposable(() => this.progress.delete(token));
  }
  onTrajectory(handler: (p: TrajectoryParams) => void) {
    this.trajectory.push(handler);
    return new vscode.Disposable(() => { this.trajectory = this.trajectory.filter((h) => h !== handler); });
  }
  busy(detail?: string) {
    this.states.push(`busy${detail ? `:${detail}` : ""}`);
  }
  idle() {
    this.states.push("idle");
  }
  showLog() {
    this.states.push("log");
  }
  async restart() {
    this.states.push("restart");
  }
}

function result(candidates = [candidate(["return a * b"]), candidate(["return a - b"])]): DiffuseResult {
  return { uri, version: 3, applied: false, valid: true, message: `${candidates.length} valid candidates`,
    steps: 4, model: "/m", device: "cpu", totalMs: 12, candidates };
}

function setup(config: Record<string, unknown> = {}) {
  stub.reset();
  const backend = new FakeBackend();
  backend.config = config;
  const provider = new PreviewContentProvider();
  const preview = new PreviewController(provider, stub.fakeLog() as unknown as vscode.LogOutputChannel);
  const commands = new DiffuseCommands(backend, preview);
  const editor = fakeEditor();
  (stub.window as { activeTextEditor: unknown }).activeTextEditor = editor;
  stub.workspace.textDocuments = [editor.document];
  return { backend, provider, preview, commands, editor };
}

describe("Diffuse This Block", () => {
  it("sends every selection with apply: false, shows progress and previews the candidates", async () => {
    const { backend, commands, provider } = setup();
    backend.answer = async (_args, _token, b) => {
      const report = b.progress.get(b.calls[0].workDoneToken)!;
      report({ kind: "begin", title: "Diffuse this block", cancellable: true });
      report({ kind: "report", message: "denoising: step 1/2", percentage: 40 });
      report({ kind: "report", message: "denoising: step 2/2", percentage: 90 });
      report({ kind: "end", message: "2 valid candidates" });
      return result();
    };
    let shownText = "";
    stub.answers.onQuickPick = (pick) => {
      shownText = provider.provideTextDocumentContent(vscode.Uri.parse(
        (stub.recorded.commands.find((c) => c.id === "vscode.diff")!.args[1] as vscode.Uri).toString()));
      setImmediate(() => {
        (pick as stub.FakeQuickPick<unknown>).setActive(1);
        pick.accept();
      });
    };
    await commands.run({ keepAnchors: false });

    const [{ args, workDoneToken }] = backend.calls;
    assert.deepStrictEqual(args, { uri, keepAnchors: false, apply: false, ranges: [
      { start: { line: 0, character: 4 }, end: { line: 0, character: 4 } },
      { start: { line: 1, character: 11 }, end: { line: 1, character: 16 } }] });
    assert.match(workDoneToken, /^astdiffuse-[0-9a-f-]{36}$/);
    const [progress] = stub.recorded.progress;
    assert.strictEqual(progress.cancellable, true);
    assert.deepStrictEqual(progress.reports, [{ message: "denoising: step 1/2", increment: 40 },
      { message: "denoising: step 2/2", increment: 50 }]);
    assert.deepStrictEqual(backend.states, ["busy", "busy:denoising: step 1/2", "busy:denoising: step 2/2", "idle"]);
    assert.strictEqual(backend.progress.size, 0, "the progress listener is disposed");

    // the diff showed the best candidate first; the user moved to the second and accepted it
    assert.strictEqual(shownText, "def f(a, b):\n    return a * b\n");
    const [edit] = stub.recorded.appliedEdits;
    assert.strictEqual(stub.recorded.appliedEdits.length, 1, "one applyEdit: one undo step");
    assert.deepStrictEqual((edit as unknown as stub.WorkspaceEdit).entries.map((e) => e.newText), ["return a - b"]);
    const contexts = stub.recorded.commands.filter((c) => c.id === "setContext").map((c) => c.args);
    assert.deepStrictEqual(contexts, [["astdiffuse.previewActive", true], ["astdiffuse.previewActive", false]]);
    assert.strictEqual(stub.recorded.quickPicks[0].title, "astdiffuse: 2 candidates");
  });

  it("rejects with Esc: nothing is applied", async () => {
    const { backend, commands } = setup();
    backend.answer = async () => result();
    stub.answers.onQuickPick = (pick) => setImmediate(() => pick.hide());
    await commands.run({ keepAnchors: true });
    assert.strictEqual(backend.calls[0].args.keepAnchors, true);
    assert.strictEqual(stub.recorded.progress[0].title, "astdiffuse: Diffuse This Block (Keep Structure)");
    assert.strictEqual(stub.recorded.appliedEdits.length, 0);
  });

  it("applies directly with the setting: apply: true, no preview", async () => {
    const { backend, commands } = setup({ applyDirectly: true });
    backend.answer = async () => ({ ...result([candidate(["return a * b"])]), applied: true, message: "1 valid candidate" });
    await commands.run({ keepAnchors: false });
    assert.strictEqual(backend.calls[0].args.apply, true);
    assert.strictEqual(stub.recorded.quickPicks.length, 0);
    assert.deepStrictEqual(stub.recorded.statusMessages, ["astdiffuse: 1 valid candidate"]);
  });

  it("refuses an unsupported language before asking the server", async () => {
    const { backend, commands, editor } = setup();
    (editor.document as { languageId: string }).languageId = "plaintext";
    await commands.run({ keepAnchors: false });
    assert.strictEqual(backend.calls.length, 0);
    assert.strictEqual(stub.recorded.messages[0].severity, "warning");
    assert.match(stub.recorded.messages[0].text, /language "plaintext" is not supported/);
  });

  it("does nothing more when the server cannot start (it said why)", async () => {
    const { backend, commands } = setup();
    backend.running = false;
    await commands.run({ keepAnchors: false });
    assert.strictEqual(backend.calls.length, 0);
    assert.strictEqual(stub.recorded.messages.length, 0);
  });

  it("cancels through the progress notification's token, silently", async () => {
    const { backend, commands } = setup();
    stub.answers.onProgress = (source) => setImmediate(() => source.cancel());
    backend.answer = (_args, token) => new Promise((_resolve, reject) => {
      token.onCancellationRequested(() => reject(Object.assign(new Error("cancelled by the user"),
        { code: -32800, data: { reason: "cancelled" } })));
    });
    await commands.run({ keepAnchors: false });
    assert.strictEqual(backend.calls.length, 1);
    assert.deepStrictEqual(stub.recorded.messages, []);
    assert.deepStrictEqual(backend.states, ["busy", "idle"]);
  });

  it("shows a failure with its buttons; Keep Structure runs again with keepAnchors", async () => {
    const { backend, commands } = setup();
    let calls = 0;
    backend.answer = async () => {
      calls++;
      if (calls === 1) {
        throw Object.assign(new Error("astdiffuse: no valid infill (tried 3 candidates)"),
          { code: -32803, data: { reason: "noValidInfill", candidates: [candidate(["retur a b"], { valid: false })] } });
      }
      return result();
    };
    stub.answers.next = "Keep Structure";
    stub.answers.onQuickPick = (pick) => setImmediate(() => pick.hide());
    await commands.run({ keepAnchors: false });
    const [message] = stub.recorded.messages;
    assert.deepStrictEqual(message, { severity: "warning", text: "astdiffuse: no valid infill (tried 3 candidates)",
      items: ["Try Again", "Keep Structure", "Preview Anyway"] });
    assert.strictEqual(backend.calls.length, 2);
    assert.strictEqual(backend.calls[1].args.keepAnchors, true);
    // the server's own copy of the message is held back
    assert.strictEqual(backend.gate.shouldShow(1, "astdiffuse: no valid infill (tried 3 candidates)"), false);
  });

  it("opens the setting a failure names", async () => {
    const { backend, commands } = setup();
    backend.answer = async () => {
      throw Object.assign(new Error("astdiffuse: the model failed to load: no such directory /m"),
        { code: -32803, data: { reason: "modelLoadFailed" } });
    };
    stub.answers.next = "Set Model";
    await commands.run({ keepAnchors: false });
    assert.deepStrictEqual(stub.recorded.commands.find((c) => c.id === "workbench.action.openSettings")?.args,
      ["astdiffuse.model"]);
  });

  it("shows the trajectory live when the setting is on", async () => {
    const { backend, commands, editor } = setup({ trajectory: true });
    const range = { start: { line: 1, character: 4 }, end: { line: 1, character: 16 } };
    backend.answer = async (_args, _token, b) => {
      assert.strictEqual(b.trajectory.length, 1);
      b.trajectory[0]({ uri: "file:///elsewhere.py", step: 1, total: 2, spans: [{ range, text: "x" }] });
      b.trajectory[0]({ uri, step: 1, total: 2, phase: "denoise", spans: [{ range, text: "return a ░ b" }] });
      return result();
    };
    stub.answers.onQuickPick = (pick) => setImmediate(() => pick.hide());
    await commands.run({ keepAnchors: false });
    assert.deepStrictEqual(stub.recorded.progress[0].reports, [{ message: "denoise 1/2: return a ░ b" }]);
    assert.strictEqual(editor.decorations.length, 2);  // the partial text, then cleared
    assert.deepStrictEqual(editor.decorations[1], []);
    assert.strictEqual(backend.trajectory.length, 0);
  });

  it("refuses to accept a candidate for an older version of the document", async () => {
    const { backend, commands, editor } = setup();
    backend.answer = async () => result();
    stub.answers.onQuickPick = (pick) => setImmediate(() => {
      (editor.document as { version: number }).version = 4;  // the user typed meanwhile
      pick.accept();
    });
    await commands.run({ keepAnchors: false });
    assert.strictEqual(stub.recorded.appliedEdits.length, 0);
    assert.match(stub.recorded.messages[0].text, /document changed since the preview/);
  });

  it("runs a code action's command (the server's arguments) as given", async () => {
    const { backend, commands } = setup();
    backend.answer = async () => ({ ...result([candidate(["return a * b"])]), applied: true });
    const serverArgs = { uri, ranges: [{ start: { line: 1, character: 4 }, end: { line: 1, character: 4 } }], keepAnchors: true };
    await commands.run({ keepAnchors: false }, serverArgs);
    assert.strictEqual(backend.calls[0].args, serverArgs);
    assert.strictEqual(stub.recorded.quickPicks.length, 0);
  });
});
