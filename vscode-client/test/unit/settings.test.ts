import * as assert from "assert";
import * as os from "os";
import * as path from "path";
import {
  affectsServerSettings, DEFAULTS, engineOf, expandPath, initializationOptions, needsRestart, readSettings,
  serverCommand, serverConfiguration,
} from "../../src/settings";

const from = (values: Record<string, unknown>) => readSettings((key) => values[key]);

describe("settings", () => {
  it("reads the defaults when nothing is set", () => {
    const settings = from({});
    assert.deepStrictEqual(settings.server, DEFAULTS);
    assert.deepStrictEqual(settings.client, { python: "python3", serverPath: "", serverArgs: [], applyDirectly: false });
  });

  it("maps the settings onto initializationOptions (server keys only, nested engine)", () => {
    const settings = from({
      "model": "~/models/small", "allowDownload": true, "device": "cuda:1", "steps": 4, "temperature": 0, "candidates": 2,
      "contextTokens": 512, "engine.url": "astdiffuse+tls://gpu.example:7000", "engine.token": "",
      "engine.tokenFile": "/run/token", "engine.connectTimeout": 2, "logLevel": "debug", "loadModel": "start", "trajectory": true,
      "server.python": "/venv/bin/python", "applyDirectly": true,
    });
    assert.deepStrictEqual(initializationOptions(settings), { astdiffuse: {
      model: "~/models/small", allowDownload: true, device: "cuda:1", steps: 4, temperature: 0, candidates: 2, contextTokens: 512,
      engine: { url: "astdiffuse+tls://gpu.example:7000", token: null, tokenFile: "/run/token",
                tlsCaFile: null, connectTimeout: 2 },
      logLevel: "debug", loadModel: "start", trajectory: true,
    } });
    assert.strictEqual(settings.client.applyDirectly, true);
    assert.strictEqual(settings.client.python, "/venv/bin/python");
  });

  it("treats empty strings and values of the wrong type as unset", () => {
    const settings = from({ model: "  ", steps: "many", candidates: "3", device: "", "server.args": ["-v", 3] });
    assert.strictEqual(settings.server.model, null);
    assert.strictEqual(settings.server.steps, null);
    assert.strictEqual(settings.server.candidates, 3);
    assert.strictEqual(settings.server.device, "auto");
    assert.deepStrictEqual(settings.client.serverArgs, ["-v"]);
  });

  it("answers workspace/configuration without the extension's own keys", () => {
    const raw = {
      model: "", device: "cpu", steps: null, engine: { url: null, token: "secret", tokenFile: "" },
      server: { python: "python3", path: "", args: [] }, applyDirectly: false, trace: { server: "off" },
      has: () => true, trajectory: true,
    };
    assert.deepStrictEqual(serverConfiguration(raw), {
      model: null, device: "cpu", steps: null, engine: { url: null, token: "secret", tokenFile: null }, trajectory: true,
    });
    assert.strictEqual(serverConfiguration(null), null);
  });

  it("restarts the server only for the settings that start it", () => {
    const affects = (...changed: string[]) => (section: string) =>
      changed.some((c) => c === section || c.startsWith(`${section}.`));
    assert.strictEqual(needsRestart(affects("astdiffuse.server.python")), true);
    assert.strictEqual(needsRestart(affects("astdiffuse.server.args")), true);
    assert.strictEqual(needsRestart(affects("astdiffuse.model")), true);
    assert.strictEqual(needsRestart(affects("astdiffuse.allowDownload")), true);
    assert.strictEqual(needsRestart(affects("astdiffuse.engine.url")), true);
    assert.strictEqual(needsRestart(affects("astdiffuse.steps")), false);
    assert.strictEqual(needsRestart(affects("editor.fontSize")), false);
    assert.strictEqual(affectsServerSettings(affects("astdiffuse.steps")), true);
    assert.strictEqual(affectsServerSettings(affects("astdiffuse.applyDirectly")), false);
    assert.strictEqual(affectsServerSettings(affects("astdiffuse.server.path")), false);
  });

  it("starts `python -m lsp_server`, or the custom server path", () => {
    assert.deepStrictEqual(serverCommand(from({ "server.python": "${workspaceFolder}/.venv/bin/python",
      "server.args": ["--log-file", "/tmp/l.log"] }), "/src/astdiffuse"), {
      command: "/src/astdiffuse/.venv/bin/python", args: ["-m", "lsp_server", "--log-file", "/tmp/l.log"],
      python: "/src/astdiffuse/.venv/bin/python",
    });
    assert.deepStrictEqual(serverCommand(from({ "server.path": "~/bin/astdiffuse-lsp" })), {
      command: path.join(os.homedir(), "bin/astdiffuse-lsp"), args: [],
    });
    assert.strictEqual(expandPath("~"), os.homedir());
    assert.strictEqual(expandPath("a~/b"), "a~/b");
  });

  it("names the engine: local model and device, or the remote host", () => {
    assert.deepStrictEqual(engineOf(from({}).server), { kind: "local", model: "default model", device: "auto" });
    assert.deepStrictEqual(engineOf(from({ model: "/models/astdiffuse-small/", device: "cpu" }).server),
      { kind: "local", model: "astdiffuse-small", device: "cpu" });
    assert.deepStrictEqual(engineOf(from({ "engine.url": "astdiffuse://10.0.0.5:7000" }).server),
      { kind: "remote", host: "10.0.0.5:7000", tls: false });
    assert.deepStrictEqual(engineOf(from({ "engine.url": "astdiffuse+tls://gpu.example:443" }).server),
      { kind: "remote", host: "gpu.example:443", tls: true });
  });
});
