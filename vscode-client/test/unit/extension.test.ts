/* Activation with the `vscode` module stubbed: the commands, the disposables, the clear message
 * when Python is missing, and the restart when the server settings change. */
import * as assert from "assert";
import * as vscode from "vscode";
import { activate, deactivate } from "../../src/extension";
import * as stub from "../stub/vscode";

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("activation", () => {
  afterEach(async () => {
    await deactivate();
    stub.commands.registered.clear();
  });

  it("registers the commands and tells the user Python is missing", async () => {
    stub.reset({ "server.python": "/no/such/python3" });
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    await activate(context as unknown as vscode.ExtensionContext);
    await settle();
    assert.deepStrictEqual([...stub.commands.registered.keys()].sort(), [
      "astdiffuse.acceptPreview", "astdiffuse.diffuseBlock", "astdiffuse.diffuseBlockKeepStructure",
      "astdiffuse.pickCandidate", "astdiffuse.rejectPreview", "astdiffuse.restartServer", "astdiffuse.showLog"]);
    assert.ok(context.subscriptions.length >= 12, "every disposable goes into context.subscriptions");
    const [message] = stub.recorded.messages;
    assert.strictEqual(message.severity, "error");
    assert.match(message.text, /Python interpreter "\/no\/such\/python3" not found/);
    assert.deepStrictEqual(message.items, ["Open Settings", "Show Log"]);

    // changing a setting the server is started around restarts it; a per-request one does not
    stub.workspace.changeConfiguration({ steps: 4 }, "astdiffuse.steps");
    await settle();
    assert.strictEqual(stub.recorded.messages.length, 1);
    stub.workspace.changeConfiguration({ "server.python": "/still/missing/python" }, "astdiffuse.server.python");
    await settle();
    assert.strictEqual(stub.recorded.messages.length, 2);
    assert.match(stub.recorded.messages[1].text, /\/still\/missing\/python/);
    context.subscriptions.forEach((d) => d.dispose());
  });

  it("explains an interpreter that cannot import lsp_server", async () => {
    stub.reset({ "server.python": process.execPath });  // node: `-c` is no Python
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    await activate(context as unknown as vscode.ExtensionContext);
    await settle();
    assert.match(stub.recorded.messages[0]?.text ?? "", /cannot import the language server \(lsp_server\)/);
    context.subscriptions.forEach((d) => d.dispose());
  });
});
