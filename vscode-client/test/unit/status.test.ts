import * as assert from "assert";
import { statusView } from "../../src/status";

const local = { kind: "local" as const, model: "astdiffuse-small", device: "cpu" };
const remote = { kind: "remote" as const, host: "gpu.example:7000", tls: true };

describe("status bar", () => {
  it("shows the local model and the state", () => {
    assert.strictEqual(statusView("ready", local).text, "$(sparkle) astdiffuse: astdiffuse-small");
    assert.strictEqual(statusView("starting", local).text, "$(loading~spin) astdiffuse: astdiffuse-small");
    assert.match(statusView("ready", local).tooltip, /Engine: local, model astdiffuse-small, device cpu/);
  });

  it("shows the remote host", () => {
    const view = statusView("ready", remote);
    assert.strictEqual(view.text, "$(sparkle) astdiffuse: gpu.example:7000");
    assert.match(view.tooltip, /Engine: remote, gpu.example:7000 over TLS/);
  });

  it("shows the step while busy and marks errors", () => {
    assert.strictEqual(statusView("busy", local, "denoising: step 3/8").text,
      "$(loading~spin) astdiffuse: astdiffuse-small denoising: step 3/8");
    const error = statusView("error", local, "Python not found");
    assert.strictEqual(error.error, true);
    assert.match(error.tooltip, /server error\n.*\nPython not found/);
    assert.strictEqual(statusView("stopped", local).text, "$(circle-slash) astdiffuse: astdiffuse-small");
  });
});
