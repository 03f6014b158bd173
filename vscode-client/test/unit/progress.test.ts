import * as assert from "assert";
import { MessageGate, MESSAGE_TYPE } from "../../src/messageGate";
import { ProgressTracker, trajectoryMessage } from "../../src/progress";

describe("progress", () => {
  it("turns the server's percentages into increments", () => {
    const tracker = new ProgressTracker();
    assert.strictEqual(tracker.update({ kind: "begin", title: "Diffuse this block", cancellable: true }), undefined);
    assert.deepStrictEqual(tracker.update({ kind: "report", message: "denoising: step 1/4", percentage: 20 }),
      { message: "denoising: step 1/4", increment: 20 });
    assert.deepStrictEqual(tracker.update({ kind: "report", message: "denoising: step 2/4", percentage: 45 }),
      { message: "denoising: step 2/4", increment: 25 });
    assert.deepStrictEqual(tracker.update({ kind: "report", message: "denoising: step 2/4", percentage: 45 }), undefined);
    assert.deepStrictEqual(tracker.update({ kind: "report", percentage: 30 }), undefined);  // never back
    assert.strictEqual(tracker.update({ kind: "end", message: "1 valid candidate" }), undefined);
    assert.strictEqual(tracker.message, "denoising: step 2/4");
  });

  it("shows the trajectory's partial text", () => {
    const range = { start: { line: 4, character: 4 }, end: { line: 4, character: 24 } };
    assert.strictEqual(trajectoryMessage({ uri: "file:///a.py", step: 4, total: 24, phase: "denoise",
      spans: [{ range, text: "return price ░░░\n count" }, { range, text: "x = ░" }] }),
      "denoise 4/24: return price ░░░ count ⏐ x = ░");
  });
});

describe("server messages while a command runs", () => {
  it("holds back the server's copy of an error the extension shows itself", () => {
    let now = 1000;
    const gate = new MessageGate(() => now, 3000);
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.error, "astdiffuse: bad"), true);
    const done = gate.begin();
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.error, "astdiffuse: no valid infill"), false);
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.warning, "astdiffuse: invalid settings"), true);
    done();
    done();  // twice is once
    gate.shown("astdiffuse: the model failed to load");
    now += 1000;
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.error, "astdiffuse: the model failed to load"), false);
    now += 5000;
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.error, "astdiffuse: the model failed to load"), true);
    assert.strictEqual(gate.shouldShow(MESSAGE_TYPE.error, "another"), true);
  });
});
