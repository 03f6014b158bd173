/** The preview: a diff of the document against the chosen candidate, a quick pick that cycles
 * through the candidates (the diff follows the highlighted one), Accept as one
 * `workspace.applyEdit` (one undo step) and Reject. */

import * as vscode from "vscode";
import { applyEdits, candidateItems, CandidateItem, editsFor, editVersion } from "./candidates";
import { PREVIEW_CONTEXT, PREVIEW_SCHEME } from "./constants";
import { Candidate, WorkspaceEdit } from "./protocol";

/** The proposed texts, served as read-only documents of the `astdiffuse-preview` scheme. */
export class PreviewContentProvider implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  private readonly texts = new Map<string, string>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? "";
  }

  set(uri: vscode.Uri, text: string): void {
    this.texts.set(uri.toString(), text);
    this.changed.fire(uri);
  }

  delete(uri: vscode.Uri): void {
    this.texts.delete(uri.toString());
  }

  dispose(): void {
    this.changed.dispose();
    this.texts.clear();
  }
}

/** A VS Code WorkspaceEdit with every TextEdit of a protocol WorkspaceEdit. */
export function toWorkspaceEdit(edit: WorkspaceEdit): vscode.WorkspaceEdit {
  const result = new vscode.WorkspaceEdit();
  const uris = new Set<string>();
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change) {
      uris.add(change.textDocument.uri);
    }
  }
  for (const uri of Object.keys(edit.changes ?? {})) {
    uris.add(uri);
  }
  for (const uri of uris) {
    const target = vscode.Uri.parse(uri, true);
    for (const e of editsFor(edit, uri)) {
      result.replace(target, new vscode.Range(e.range.start.line, e.range.start.character,
        e.range.end.line, e.range.end.character), e.newText);
    }
  }
  return result;
}

interface Session {
  document: vscode.TextDocument;
  version: number;
  baseText: string;
  candidates: Candidate[];
  index: number;
  previewUri: vscode.Uri;
  pick?: vscode.QuickPick<CandidateItem & vscode.QuickPickItem>;
  done: (accepted: boolean) => void;
}

let serial = 0;

export class PreviewController implements vscode.Disposable {
  private session: Session | undefined;

  constructor(private readonly provider: PreviewContentProvider,
    private readonly log: vscode.LogOutputChannel) {}

  get active(): boolean {
    return this.session !== undefined;
  }

  /** Show the candidates of `document` (best first); resolves when accepted (true) or
   * rejected (false). `note`: what the quick pick's title adds (e.g. "invalid candidates"). */
  async show(document: vscode.TextDocument, candidates: Candidate[], note?: string): Promise<boolean> {
    await this.end(false);
    const uri = document.uri;
    const name = uri.path.split("/").pop() ?? "document";
    const previewUri = vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: uri.path,
      query: `n=${++serial}` });
    const finished = new Promise<boolean>((resolve) => {
      this.session = { document, version: document.version, baseText: document.getText(), candidates,
        index: 0, previewUri, done: resolve };
    });
    this.render();
    await vscode.commands.executeCommand("setContext", PREVIEW_CONTEXT, true);
    await vscode.commands.executeCommand("vscode.diff", uri, previewUri,
      `${name} ↔ astdiffuse candidate${note ? ` (${note})` : ""}`, { preview: true, preserveFocus: true });
    this.pickCandidate(note);
    return finished;
  }

  /** Show the candidate quick pick again (or focus it). */
  pickCandidate(note?: string): void {
    const session = this.session;
    if (!session) {
      return;
    }
    if (session.pick) {
      session.pick.show();
      return;
    }
    const pick = vscode.window.createQuickPick<CandidateItem & vscode.QuickPickItem>();
    const items = candidateItems(session.candidates);
    pick.items = items;
    pick.activeItems = [items[session.index]];
    pick.title = `astdiffuse: ${items.length} candidate${items.length === 1 ? "" : "s"}${note ? ` (${note})` : ""}`;
    pick.placeholder = "Arrows: show a candidate in the diff · Enter: accept it · Esc: reject all";
    pick.ignoreFocusOut = true;
    pick.matchOnDescription = true;
    pick.matchOnDetail = true;
    let accepting = false;
    pick.onDidChangeActive((active) => {
      const [item] = active;
      if (item && this.session === session && item.index !== session.index) {
        session.index = item.index;
        this.render();
      }
    });
    pick.onDidAccept(() => {
      const [item] = pick.activeItems;
      accepting = true;
      if (item) {
        session.index = item.index;
      }
      void this.accept();
    });
    pick.onDidHide(() => {
      if (!accepting && this.session === session) {
        void this.end(false);
      }
    });
    session.pick = pick;
    pick.show();
  }

  /** Apply the shown candidate: one `workspace.applyEdit`, one undo step. */
  async accept(): Promise<boolean> {
    const session = this.session;
    if (!session) {
      return false;
    }
    const candidate = session.candidates[session.index];
    const uri = session.document.uri.toString();
    const madeFor = editVersion(candidate.edit, uri) ?? session.version;
    if (session.document.isClosed || session.document.version !== madeFor) {
      await this.end(false);
      void vscode.window.showWarningMessage(
        "astdiffuse: the document changed since the preview; run Diffuse This Block again.");
      return false;
    }
    const applied = await vscode.workspace.applyEdit(toWorkspaceEdit(candidate.edit));
    if (!applied) {
      this.log.warn(`the editor refused the edit for ${uri}`);
      void vscode.window.showErrorMessage("astdiffuse: the editor refused the edit (read-only document?).");
    }
    await this.end(applied);
    if (applied) {
      await vscode.window.showTextDocument(session.document, { preview: false });
    }
    return applied;
  }

  async reject(): Promise<void> {
    await this.end(false);
  }

  /** Close the preview (diff tab, quick pick, context key). */
  async end(accepted: boolean): Promise<void> {
    const session = this.session;
    if (!session) {
      return;
    }
    this.session = undefined;
    session.pick?.dispose();
    const tabs = vscode.window.tabGroups.all.flatMap((group) => group.tabs).filter((tab) =>
      tab.input instanceof vscode.TabInputTextDiff
        && tab.input.modified.toString() === session.previewUri.toString());
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs);
    }
    this.provider.delete(session.previewUri);
    await vscode.commands.executeCommand("setContext", PREVIEW_CONTEXT, false);
    session.done(accepted);
  }

  private render(): void {
    const session = this.session;
    if (!session) {
      return;
    }
    const candidate = session.candidates[session.index];
    const edits = editsFor(candidate.edit, session.document.uri.toString());
    this.provider.set(session.previewUri, applyEdits(session.baseText, edits));
  }

  dispose(): void {
    void this.end(false);
  }
}
