import * as assert from "assert";
import { commandArguments, isDiffuseArguments, selectionRanges } from "../../src/selections";

const pos = (line: number, character: number) => ({ line, character });
const sel = (al: number, ac: number, bl: number, bc: number) => ({ anchor: pos(al, ac), active: pos(bl, bc) });

describe("selections -> command arguments", () => {
  it("sends every cursor of a multi-cursor selection, in document order", () => {
    const args = commandArguments("file:///src/a.py", [sel(8, 4, 8, 20), sel(4, 11, 4, 11)],
      { keepAnchors: false, apply: false });
    assert.deepStrictEqual(args, {
      uri: "file:///src/a.py", keepAnchors: false, apply: false,
      ranges: [{ start: pos(4, 11), end: pos(4, 11) }, { start: pos(8, 4), end: pos(8, 20) }],
    });
  });

  it("puts the start first for a selection made backwards", () => {
    assert.deepStrictEqual(selectionRanges([sel(5, 3, 2, 0)]), [{ start: pos(2, 0), end: pos(5, 3) }]);
  });

  it("drops duplicates and cursors inside another selection", () => {
    const ranges = selectionRanges([sel(1, 0, 3, 0), sel(2, 4, 2, 4), sel(1, 0, 3, 0), sel(7, 1, 7, 1)]);
    assert.deepStrictEqual(ranges, [{ start: pos(1, 0), end: pos(3, 0) }, { start: pos(7, 1), end: pos(7, 1) }]);
  });

  it("passes keep-structure, candidates and mode", () => {
    const args = commandArguments("file:///a.go", [sel(0, 0, 0, 0)], { keepAnchors: true, apply: true, candidates: 2, mode: "block" });
    assert.strictEqual(args.keepAnchors, true);
    assert.strictEqual(args.apply, true);
    assert.strictEqual(args.candidates, 2);
    assert.strictEqual(args.mode, "block");
  });

  it("recognises the server's argument object (a code action's command)", () => {
    assert.strictEqual(isDiffuseArguments({ uri: "file:///a.py", ranges: [] }), true);
    assert.strictEqual(isDiffuseArguments(undefined), false);
    assert.strictEqual(isDiffuseArguments({ uri: "file:///a.py" }), false);
  });
});
