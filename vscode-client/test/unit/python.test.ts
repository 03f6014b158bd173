import * as assert from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { isServerCommandFeature } from "../../src/features";
import { checkServer, Exec, execFileResult, PROBE } from "../../src/python";

describe("checking the server before it starts", () => {
  const python = { command: "/venv/bin/python", args: ["-m", "lsp_server"], python: "/venv/bin/python" };

  it("runs the import probe with the configured interpreter", async () => {
    const calls: string[][] = [];
    const exec: Exec = async (file, args) => {
      calls.push([file, ...args]);
      return { stdout: "0.1.0", stderr: "" };
    };
    assert.deepStrictEqual(await checkServer(python, exec), { ok: true, version: "0.1.0" });
    assert.deepStrictEqual(calls, [["/venv/bin/python", "-c", PROBE]]);
  });

  it("reports a missing interpreter", async () => {
    const result = await checkServer({ ...python, command: "/no/such/python", python: "/no/such/python" }, execFileResult);
    assert.strictEqual(result.ok, false);
    assert.strictEqual(!result.ok && result.problem.kind, "pythonNotFound");
  });

  it("reports an interpreter without lsp_server (the last line of the traceback)", async () => {
    const exec: Exec = async () => ({ error: { message: "Command failed", code: 1 },
      stdout: "", stderr: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'lsp_server'\n" });
    const result = await checkServer(python, exec);
    assert.deepStrictEqual(result, { ok: false, problem: { kind: "serverNotInstalled", python: "/venv/bin/python",
      detail: "ModuleNotFoundError: No module named 'lsp_server'" } });
  });

  it("reports a probe that hangs", async () => {
    const exec: Exec = async () => ({ error: { message: "killed", killed: true, code: null }, stdout: "", stderr: "" });
    const result = await checkServer(python, exec, 1000);
    assert.strictEqual(!result.ok && result.problem.kind, "startFailed");
  });

  it("checks that a custom server path exists and is executable", async () => {
    const missing = await checkServer({ command: "/no/such/server", args: [] });
    assert.strictEqual(!missing.ok && missing.problem.kind, "serverPathMissing");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "astdiffuse-"));
    const script = path.join(dir, "serve");
    fs.writeFileSync(script, "#!/bin/sh\n", { mode: 0o755 });
    assert.deepStrictEqual(await checkServer({ command: script, args: [] }), { ok: true });
    assert.deepStrictEqual(await checkServer({ command: "astdiffuse-lsp-on-path", args: [] }), { ok: true });
    fs.rmSync(dir, { recursive: true });
  });
});

describe("the server's command id", () => {
  it("leaves out the feature that registers server commands as VS Code commands", async () => {
    // the method name vscode-languageclient's ExecuteCommandFeature registers for
    const { ExecuteCommandRequest } = await import("vscode-languageserver-protocol");
    assert.strictEqual(isServerCommandFeature({ registrationType: ExecuteCommandRequest.type }), true);
    assert.strictEqual(isServerCommandFeature({ registrationType: { method: "textDocument/codeAction" } }), false);
    assert.strictEqual(isServerCommandFeature({ fillClientCapabilities: () => undefined }), false);
  });

  it("matches vscode-languageclient's own ExecuteCommandFeature (and nothing else it registers)", async () => {
    const { ExecuteCommandFeature } = await import("vscode-languageclient/lib/common/executeCommand");
    const { CodeActionFeature } = await import("vscode-languageclient/lib/common/codeAction");
    const fakeClient = {} as ConstructorParameters<typeof ExecuteCommandFeature>[0];
    assert.strictEqual(isServerCommandFeature(new ExecuteCommandFeature(fakeClient)), true);
    assert.strictEqual(isServerCommandFeature(new CodeActionFeature(fakeClient as never)), false);
  });
});
