/** Editor selections (all cursors) -> the server command's arguments. */

import { DiffuseArguments, Position, Range } from "./protocol";

/** The server infills at most this many spans in one run (docs/lsp.md). */
export const MAX_RANGES = 64;

/** A selection as VS Code has it: anchor and active end, either order. */
export interface SelectionLike {
  anchor: Position;
  active: Position;
}

export interface DiffuseOptions {
  keepAnchors: boolean;
  apply: boolean;
  candidates?: number;
  mode?: "node" | "block";
}

function compare(a: Position, b: Position): number {
  return a.line - b.line || a.character - b.character;
}

function contains(outer: Range, inner: Range): boolean {
  return compare(outer.start, inner.start) <= 0 && compare(inner.end, outer.end) <= 0;
}

/** LSP ranges of the selections: start before end (a selection made backwards is reversed),
 * in document order, without duplicates or ranges inside another one (a cursor within a
 * selection adds nothing). An empty range is a cursor: the server grows it to the enclosing
 * statement. */
export function selectionRanges(selections: readonly SelectionLike[]): Range[] {
  const ranges = selections.map((s): Range => {
    const [start, end] = compare(s.anchor, s.active) <= 0 ? [s.anchor, s.active] : [s.active, s.anchor];
    return { start: { line: start.line, character: start.character },
      end: { line: end.line, character: end.character } };
  });
  ranges.sort((a, b) => compare(a.start, b.start) || compare(b.end, a.end));
  const kept: Range[] = [];
  for (const range of ranges) {
    if (!kept.some((other) => contains(other, range))) {
      kept.push(range);
    }
  }
  return kept;
}

/** The argument object of `workspace/executeCommand astdiffuse.diffuseBlock`. */
export function commandArguments(uri: string, selections: readonly SelectionLike[],
  options: DiffuseOptions): DiffuseArguments {
  const args: DiffuseArguments = {
    uri, ranges: selectionRanges(selections), keepAnchors: options.keepAnchors, apply: options.apply,
  };
  if (options.candidates !== undefined) {
    args.candidates = options.candidates;
  }
  if (options.mode !== undefined) {
    args.mode = options.mode;
  }
  return args;
}

/** Whether a value is already a server argument object (a code action's command passes one to
 * the VS Code command of the same id). */
export function isDiffuseArguments(value: unknown): value is DiffuseArguments {
  if (value === null || typeof value !== "object") {
    return false;
  }
  const v = value as Partial<DiffuseArguments>;
  return typeof v.uri === "string" && Array.isArray(v.ranges);
}
