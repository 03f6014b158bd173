import * as assert from "assert";
import { applyEdits, candidateItems, editsFor, editVersion, offsetAt, oneLine } from "../../src/candidates";
import { Candidate } from "../../src/protocol";

const uri = "file:///src/prices.py";
const range = (l: number, a: number, b: number) => ({ start: { line: l, character: a }, end: { line: l, character: b } });

export function candidate(newTexts: string[], extra: Partial<Candidate> = {}, line = 0): Candidate {
  const ranges = newTexts.map((_, i) => range(line + i, 4, 16));
  return {
    edit: { documentChanges: [{ textDocument: { uri, version: 3 },
      edits: newTexts.map((newText, i) => ({ range: ranges[i], newText })) }] },
    score: -0.0123, valid: true, parses: true, sameKind: true, repairRounds: 0,
    spans: newTexts.map((newText, i) => ({ range: ranges[i], oldText: "old", newText })),
    ...extra,
  };
}

describe("candidates", () => {
  it("labels the quick pick items, best first", () => {
    const items = candidateItems([
      candidate(["return price * count"]),
      candidate(["x = 1", "y  =\n  2"], { valid: false, parses: false, score: -1.5, repairRounds: 2 }),
      candidate(["if x:"], { valid: false, parses: true, sameKind: false, score: -2 }),
    ]);
    assert.deepStrictEqual(items.map((i) => i.label),
      ["$(pass) Candidate 1 (best)", "$(warning) Candidate 2", "$(warning) Candidate 3"]);
    assert.deepStrictEqual(items.map((i) => i.description), [
      "valid · score -0.012", "does not parse · score -1.500 · 2 spans · repaired ×2",
      "changes the node kinds · score -2.000"]);
    assert.strictEqual(items[0].detail, "return price * count");
    assert.strictEqual(items[1].detail, "x = 1  ⏐  y = 2");
    assert.deepStrictEqual(items.map((i) => i.index), [0, 1, 2]);
  });

  it("shortens long text to one line", () => {
    assert.strictEqual(oneLine("a\n   b\tc"), "a b c");
    assert.strictEqual(oneLine("x".repeat(200), 10), `${"x".repeat(9)}…`);
  });

  it("finds the edits of a document in either WorkspaceEdit form", () => {
    const versioned = candidate(["a"]).edit;
    assert.strictEqual(editsFor(versioned, uri).length, 1);
    assert.strictEqual(editsFor(versioned, "file:///other.py").length, 0);
    assert.strictEqual(editVersion(versioned, uri), 3);
    const plain = { changes: { [uri]: [{ range: range(0, 0, 1), newText: "b" }] } };
    assert.deepStrictEqual(editsFor(plain, uri), plain.changes[uri]);
    assert.strictEqual(editVersion(plain, uri), null);
  });

  it("applies edits by UTF-16 offsets, last first (as the editor would)", () => {
    const text = 'def f():\n    return "😀 " - name\n    x = 1\n';
    assert.strictEqual(offsetAt(text, { line: 1, character: 99 }), text.indexOf("\n", 9));
    const edits = [
      { range: range(1, 17, 18), newText: "+" },  // after the emoji: 2 UTF-16 units
      { range: range(2, 8, 9), newText: "2" },
    ];
    assert.strictEqual(applyEdits(text, edits), 'def f():\n    return "😀 " + name\n    x = 2\n');
  });
});
