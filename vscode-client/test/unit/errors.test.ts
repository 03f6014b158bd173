import * as assert from "assert";
import { describeFailure, describeServerProblem, unsupportedLanguageMessage } from "../../src/errors";

const error = (code: number, message: string, data?: Record<string, unknown>) => ({ code, message, data });

describe("error messages", () => {
  it("says nothing for a cancellation", () => {
    assert.strictEqual(describeFailure(error(-32800, "cancelled by the user", { reason: "cancelled" })).severity, "silent");
    assert.strictEqual(describeFailure(error(-32800, "Request cancelled")).severity, "silent");
  });

  const cases: [string, number, string, string, string[]][] = [
    ["unsupportedLanguage", -32803, "astdiffuse: unsupported language plaintext (supported: python, go)", "warning", []],
    ["nothingToInfill", -32803, "astdiffuse: nothing to infill here: select code", "info", []],
    ["noValidInfill", -32803, "astdiffuse: no valid infill", "warning", ["Try Again", "Keep Structure"]],
    ["modelLoadFailed", -32803, "astdiffuse: the model failed to load", "error", ["Set Model", "Set Device", "Show Log"]],
    ["remoteEngineUnavailable", -32803, "astdiffuse: the remote engine is not available", "error", ["Engine Settings", "Try Again", "Show Log"]],
    ["remoteEngineUnreachable", -32803, "astdiffuse: cannot reach gpu:7000", "error", ["Engine Settings", "Try Again", "Show Log"]],
    ["selectionTooLarge", -32803, "astdiffuse: the selection does not fit", "warning", ["Open Settings"]],
    ["documentChanged", -32801, "astdiffuse: the document changed", "warning", ["Try Again"]],
    ["editRejected", -32803, "astdiffuse: read-only buffer", "error", ["Show Log"]],
    ["invalidRange", -32602, "astdiffuse: ranges[0] is past line 999", "error", ["Show Log"]],
    ["invalidArguments", -32602, "astdiffuse: mode must be node or block", "error", ["Show Log"]],
    ["documentNotFound", -32602, "astdiffuse: no such document", "error", ["Show Log"]],
    ["internal", -32603, "astdiffuse: internal error", "error", ["Show Log"]],
  ];
  for (const [reason, code, message, severity, buttons] of cases) {
    it(`has a message for ${reason}`, () => {
      const failure = describeFailure(error(code, message, { reason }));
      assert.strictEqual(failure.reason, reason);
      assert.strictEqual(failure.severity, severity);
      assert.strictEqual(failure.text, message);  // one "astdiffuse: " prefix, the server's words
      assert.deepStrictEqual(failure.actions.map((a) => a.title), buttons);
    });
  }

  it("offers to preview the invalid candidates of a no-valid-infill answer", () => {
    const candidates = [{ edit: {}, score: -3, valid: false, spans: [] }];
    const failure = describeFailure(error(-32803, "astdiffuse: no valid infill", { reason: "noValidInfill", candidates }));
    assert.deepStrictEqual(failure.actions.map((a) => a.title), ["Try Again", "Keep Structure", "Preview Anyway"]);
    assert.strictEqual(failure.candidates, candidates);
  });

  it("opens the right setting", () => {
    const [model, device] = describeFailure(error(-32803, "x", { reason: "modelLoadFailed" })).actions;
    assert.deepStrictEqual(model, { kind: "openSettings", title: "Set Model", setting: "astdiffuse.model" });
    assert.deepStrictEqual(device, { kind: "openSettings", title: "Set Device", setting: "astdiffuse.device" });
  });

  it("tells the user when the server went away, and adds the prefix to a bare message", () => {
    const failure = describeFailure(error(-32097, "Pending response rejected since connection got disposed"));
    assert.strictEqual(failure.reason, "serverStopped");
    assert.deepStrictEqual(failure.actions.map((a) => a.kind), ["restart", "showLog"]);
    assert.strictEqual(describeFailure(new Error("Client is not running")).reason, "serverStopped");
    const odd = describeFailure(new Error("boom"));
    assert.strictEqual(odd.text, "astdiffuse: boom");
    assert.strictEqual(odd.severity, "error");
  });

  it("recognises remote-engine trouble with a reason it does not know", () => {
    const failure = describeFailure(error(-32803, "astdiffuse: the remote engine at gpu:7000 timed out", { reason: "engineTimeout" }));
    assert.strictEqual(failure.actions[0].title, "Engine Settings");
  });

  it("names the supported languages", () => {
    assert.strictEqual(unsupportedLanguageMessage("plaintext"), "astdiffuse: the language \"plaintext\" is not "
      + "supported (supported: python, javascript, javascriptreact, typescript, typescriptreact, go, rust, java).");
  });

  it("explains a server that cannot start and offers the settings", () => {
    const missing = describeServerProblem({ kind: "pythonNotFound", python: "/nope/python", detail: "ENOENT" });
    assert.match(missing.text, /Python interpreter "\/nope\/python" not found/);
    assert.deepStrictEqual(missing.actions[0], { kind: "openSettings", title: "Open Settings", setting: "astdiffuse.server.python" });
    const notInstalled = describeServerProblem({ kind: "serverNotInstalled", python: "python3", detail: "No module named 'lsp_server'" });
    assert.match(notInstalled.text, /cannot import the language server \(lsp_server\)/);
    const path = describeServerProblem({ kind: "serverPathMissing", path: "/x/serve", detail: "" });
    assert.strictEqual((path.actions[0] as { setting: string }).setting, "astdiffuse.server.path");
    assert.match(describeServerProblem({ kind: "startFailed", detail: "exit 1" }).text, /did not start: exit 1/);
  });
});
