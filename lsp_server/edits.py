"""Engine results -> LSP edits: each candidate's span edits as TextEdits in the client's position
encoding, one WorkspaceEdit per candidate, and the JSON the command returns (summary, preview)."""

from __future__ import annotations

from typing import Any, Iterable

from lsprotocol import types
from lsprotocol.converters import get_converter

from engine.offsets import TextIndex

from .errors import DocumentChangedError

_CONVERTER = get_converter()


def to_json(value: Any) -> Any:
    """An lsprotocol object as the plain camelCase JSON a client receives."""
    return _CONVERTER.unstructure(value)


def text_edits(index: TextIndex, spans: Iterable[Any], encoding: str) -> list[types.TextEdit]:
    """TextEdits for engine `SpanEdit`s (start_byte, end_byte, old_text, new_text) against the
    document `index` was built from. A span whose old text is not the document's bytes there
    means the result belongs to another version: DocumentChangedError."""
    edits = []
    for span in sorted(spans, key=lambda s: s.start_byte):
        if index.data[span.start_byte:span.end_byte] != span.old_text.encode("utf-8"):
            raise DocumentChangedError("the document changed while the infill ran; run "
                                       "\"Diffuse this block\" again")
        start = index.position_of_byte(span.start_byte, encoding)
        end = index.position_of_byte(span.end_byte, encoding)
        edits.append(types.TextEdit(range=types.Range(types.Position(*start),
                                                      types.Position(*end)),
                                    new_text=span.new_text))
    return edits


def workspace_edit(uri: str, version: int | None, edits: list[types.TextEdit],
                   document_changes: bool) -> types.WorkspaceEdit:
    """A WorkspaceEdit of one document: versioned `documentChanges` when the client supports
    them (the editor then refuses an edit for another version), plain `changes` otherwise."""
    if document_changes:
        document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
        return types.WorkspaceEdit(document_changes=[
            types.TextDocumentEdit(text_document=document, edits=list(edits))])
    return types.WorkspaceEdit(changes={uri: list(edits)})


def candidate_edit(uri: str, version: int | None, index: TextIndex, candidate: Any,
                   encoding: str, document_changes: bool) -> types.WorkspaceEdit:
    """The WorkspaceEdit that turns the document into `candidate.text`."""
    return workspace_edit(uri, version, text_edits(index, candidate.spans, encoding),
                          document_changes)


def _spans_json(edit: types.WorkspaceEdit, candidate: Any) -> list[dict]:
    if edit.changes is not None:
        edits = next(iter(edit.changes.values()))
    else:
        edits = edit.document_changes[0].edits
    ordered = sorted(candidate.spans, key=lambda s: s.start_byte)
    return [{"range": to_json(text_edit.range), "oldText": span.old_text,
             "newText": span.new_text, "kind": span.kind, "nodeTypes": list(span.node_types)}
            for text_edit, span in zip(edits, ordered)]


def candidate_json(edit: types.WorkspaceEdit, candidate: Any) -> dict:
    """One preview entry: the edit to apply, how the engine judged the candidate, its spans."""
    return {"edit": to_json(edit), "score": round(float(candidate.score), 4),
            "valid": bool(candidate.valid), "parses": bool(candidate.parses),
            "sameKind": bool(candidate.same_kind), "repairRounds": candidate.repair_rounds,
            "spans": _spans_json(edit, candidate)}


def result_json(result: Any, uri: str, version: int | None) -> dict:
    """What every command result carries about the run."""
    return {"uri": uri, "version": version, "valid": bool(result.valid),
            "message": result.message, "steps": result.steps, "model": result.model,
            "device": result.device, "totalMs": round(float(result.timings.total_ms), 1)}


def preview_json(result: Any, uri: str, version: int | None,
                 edits: list[types.WorkspaceEdit]) -> dict:
    """`apply: false`: every candidate as a WorkspaceEdit, best first, for the user to pick."""
    return {**result_json(result, uri, version), "applied": False,
            "candidates": [candidate_json(edit, candidate)
                           for edit, candidate in zip(edits, result.candidates)]}


def applied_json(result: Any, uri: str, version: int | None, edit: types.WorkspaceEdit) -> dict:
    """`apply: true`: the best candidate was applied; what it was."""
    return {**result_json(result, uri, version), "applied": True,
            "candidates": [candidate_json(edit, result.candidates[0])]}
