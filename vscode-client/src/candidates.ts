/** Candidates of a preview: their quick-pick labels, their edits, the text they produce. */

import { Candidate, Range, TextEdit, WorkspaceEdit } from "./protocol";

export interface CandidateItem {
  label: string;
  description: string;
  detail: string;
  index: number;
}

const MAX_DETAIL = 120;

/** One line of a span's new text, for a label: whitespace runs collapsed, cut at `max`. */
export function oneLine(text: string, max = MAX_DETAIL): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

function verdict(candidate: Candidate): string {
  if (candidate.valid) {
    return "valid";
  }
  if (candidate.parses === false) {
    return "does not parse";
  }
  if (candidate.sameKind === false) {
    return "changes the node kinds";
  }
  return "invalid";
}

/** Quick-pick items, best first as the server ranked them. */
export function candidateItems(candidates: readonly Candidate[]): CandidateItem[] {
  return candidates.map((candidate, index) => {
    const spans = candidate.spans.length;
    const parts = [verdict(candidate), `score ${candidate.score.toFixed(3)}`];
    if (spans > 1) {
      parts.push(`${spans} spans`);
    }
    if (candidate.repairRounds) {
      parts.push(`repaired ×${candidate.repairRounds}`);
    }
    const icon = candidate.valid ? "$(pass)" : "$(warning)";
    return {
      label: `${icon} Candidate ${index + 1}${index === 0 ? " (best)" : ""}`,
      description: parts.join(" · "),
      detail: candidate.spans.map((s) => oneLine(s.newText)).join("  ⏐  ") || "(no change)",
      index,
    };
  });
}

/** The TextEdits of `uri` in a WorkspaceEdit, either form. */
export function editsFor(edit: WorkspaceEdit, uri: string): TextEdit[] {
  if (edit.documentChanges && edit.documentChanges.length > 0) {
    const edits: TextEdit[] = [];
    for (const change of edit.documentChanges) {
      if ("textDocument" in change && change.textDocument.uri === uri) {
        edits.push(...change.edits);
      }
    }
    return edits;
  }
  return edit.changes?.[uri] ?? [];
}

/** The document version a WorkspaceEdit was made for (versioned documentChanges), if any. */
export function editVersion(edit: WorkspaceEdit, uri: string): number | null {
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change && change.textDocument.uri === uri) {
      return change.textDocument.version;
    }
  }
  return null;
}

/** UTF-16 offset of a position (what LSP positions count by default and JS strings index). */
export function offsetAt(text: string, position: { line: number; character: number }): number {
  let offset = 0;
  for (let line = 0; line < position.line; line++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) {
      return text.length;
    }
    offset = next + 1;
  }
  const end = text.indexOf("\n", offset);
  const lineEnd = end < 0 ? text.length : end;
  return Math.min(offset + position.character, lineEnd);
}

/** `text` with the edits applied (positions refer to the original text, as in LSP). */
export function applyEdits(text: string, edits: readonly TextEdit[]): string {
  const located = edits.map((e) => ({ start: offsetAt(text, e.range.start),
    end: offsetAt(text, e.range.end), newText: e.newText }));
  located.sort((a, b) => b.start - a.start || b.end - a.end);
  let result = text;
  for (const e of located) {
    result = result.slice(0, e.start) + e.newText + result.slice(e.end);
  }
  return result;
}

/** The ranges a candidate rewrites (for highlighting them in the editor). */
export function spanRanges(candidate: Candidate): Range[] {
  return candidate.spans.map((s) => s.range);
}
