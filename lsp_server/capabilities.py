"""What the client can do, read once from its `initialize` capabilities, so the server picks
versioned edits, work-done progress, pulled configuration and resolved code actions only where
the client supports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types


def _get(obj: Any, path: str) -> Any:
    for name in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


@dataclass(frozen=True)
class ClientSupport:
    document_changes: bool = False  # WorkspaceEdit.documentChanges (versioned edits)
    work_done_progress: bool = False  # window/workDoneProgress/create
    configuration: bool = False  # workspace/configuration
    configuration_registration: bool = False  # dynamic workspace/didChangeConfiguration
    resolve_edit: bool = False  # codeAction/resolve may fill in `edit`
    code_action_literals: bool = False  # CodeAction objects (not bare Commands) in the result
    apply_edit: bool = False  # workspace/applyEdit

    @classmethod
    def of(cls, capabilities: types.ClientCapabilities | None) -> "ClientSupport":
        resolve = _get(capabilities, "text_document.code_action.resolve_support.properties")
        return cls(
            document_changes=bool(_get(capabilities,
                                       "workspace.workspace_edit.document_changes")),
            work_done_progress=bool(_get(capabilities, "window.work_done_progress")),
            configuration=bool(_get(capabilities, "workspace.configuration")),
            configuration_registration=bool(_get(
                capabilities, "workspace.did_change_configuration.dynamic_registration")),
            resolve_edit="edit" in (resolve or ()),
            code_action_literals=_get(
                capabilities, "text_document.code_action.code_action_literal_support") is not None,
            apply_edit=bool(_get(capabilities, "workspace.apply_edit")),
        )
