/** The "Diffuse This Block" commands: selections -> the server's command (with a work-done
 * token, cancellable), progress and trajectory while it runs, then the preview or the applied
 * edit, and a message with buttons when it fails. */

import { randomUUID } from "crypto";
import * as vscode from "vscode";
import { isSupportedLanguage } from "./constants";
import { Action, describeFailure, Failure, unsupportedLanguageMessage } from "./errors";
import { MessageGate } from "./messageGate";
import { PreviewController } from "./preview";
import { ProgressTracker, trajectoryMessage, WorkDoneValue } from "./progress";
import { DiffuseArguments, DiffuseResult, TrajectoryParams } from "./protocol";
import { commandArguments } from "./selections";
import { Settings } from "./settings";

/** What the command needs from the language client (ServerManager implements it). */
export interface DiffuseBackend {
  readonly gate: MessageGate;
  settings(): Settings;
  /** Start the server if it is not running; false (the user has been told why) if it cannot. */
  ensureRunning(): Promise<boolean>;
  /** workspace/executeCommand astdiffuse.diffuseBlock; rejects with the server's error. */
  executeCommand(args: DiffuseArguments, workDoneToken: string,
    token: vscode.CancellationToken): Promise<DiffuseResult>;
  onProgress(workDoneToken: string, handler: (value: WorkDoneValue) => void): vscode.Disposable;
  onTrajectory(handler: (params: TrajectoryParams) => void): vscode.Disposable;
  busy(detail?: string): void;
  idle(result?: DiffuseResult): void;
  showLog(): void;
  restart(): Promise<void>;
}

export interface RunOptions { keepAnchors: boolean }

export class DiffuseCommands implements vscode.Disposable {
  private readonly partial = vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
    after: { color: new vscode.ThemeColor("editorCodeLens.foreground"), margin: "0 0 0 1em",
      fontStyle: "italic" },
  });

  constructor(private readonly backend: DiffuseBackend, private readonly preview: PreviewController) {}

  /** The command palette / menu / keybinding entry point. `serverArgs`: a code action's
   * command carries the server's argument object, which is run as it is (the server applies). */
  async run(options: RunOptions, serverArgs?: DiffuseArguments): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (serverArgs === undefined && editor === undefined) {
      void vscode.window.showInformationMessage("astdiffuse: open a file and select the code to diffuse.");
      return;
    }
    const document = serverArgs !== undefined
      ? vscode.workspace.textDocuments.find((d) => d.uri.toString() === serverArgs.uri) ?? editor?.document
      : editor?.document;
    if (document !== undefined && !isSupportedLanguage(document.languageId)) {
      void vscode.window.showWarningMessage(unsupportedLanguageMessage(document.languageId));
      return;
    }
    if (!(await this.backend.ensureRunning())) {
      return;
    }
    const settings = this.backend.settings();
    let args: DiffuseArguments;
    if (serverArgs !== undefined) {
      args = serverArgs;
    } else if (editor !== undefined) {
      args = commandArguments(editor.document.uri.toString(), editor.selections,
        { keepAnchors: options.keepAnchors, apply: settings.client.applyDirectly });
    } else {
      return;
    }
    await this.preview.end(false);  // a new run replaces an open preview
    const result = await this.execute(args, settings, editor, options);
    if (result === undefined) {
      return;
    }
    if (args.apply !== false) {
      vscode.window.setStatusBarMessage(`astdiffuse: ${result.message ?? "applied"}`, 5000);
      return;
    }
    if (result.candidates.length === 0) {
      void vscode.window.showInformationMessage(`astdiffuse: ${result.message ?? "no candidates"}`);
      return;
    }
    if (document !== undefined) {
      await this.preview.show(document, result.candidates);
    }
  }

  /** Send the command under a progress notification; undefined when it failed (shown). */
  async execute(args: DiffuseArguments, settings: Settings, editor: vscode.TextEditor | undefined,
    options: RunOptions): Promise<DiffuseResult | undefined> {
    const workDoneToken = `astdiffuse-${randomUUID()}`;
    const settled = this.backend.gate.begin();
    let result: DiffuseResult | undefined;
    try {
      result = await vscode.window.withProgress({
        location: vscode.ProgressLocation.Notification,
        title: args.keepAnchors ? "astdiffuse: Diffuse This Block (Keep Structure)" : "astdiffuse: Diffuse This Block",
        cancellable: true,
      }, async (progress, cancel) => {
        const tracker = new ProgressTracker();
        const listeners: vscode.Disposable[] = [this.backend.onProgress(workDoneToken, (value) => {
          const report = tracker.update(value);
          if (report) {
            progress.report(report);
            this.backend.busy(tracker.message);
          }
        })];
        if (settings.server.trajectory) {
          listeners.push(this.backend.onTrajectory((params) => {
            if (params.uri !== args.uri) {
              return;
            }
            progress.report({ message: trajectoryMessage(params) });
            this.showPartial(editor, params);
          }));
        }
        this.backend.busy();
        try {
          return await this.backend.executeCommand(args, workDoneToken, cancel);
        } finally {
          listeners.forEach((l) => l.dispose());
          editor?.setDecorations(this.partial, []);
        }
      });
    } catch (error) {
      this.backend.idle();
      settled();
      await this.report(describeFailure(error), args, editor, options);
      return undefined;
    }
    settled();
    this.backend.idle(result);
    return result;
  }

  /** The message for a failure, and what its buttons do. */
  async report(failure: Failure, args: DiffuseArguments, editor: vscode.TextEditor | undefined,
    options: RunOptions): Promise<void> {
    if (failure.severity === "silent") {
      return;
    }
    this.backend.gate.shown(failure.text);
    const show = failure.severity === "error" ? vscode.window.showErrorMessage
      : failure.severity === "warning" ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
    const titles = failure.actions.map((a) => a.title);
    const chosen = await show(failure.text, ...titles);
    const action = failure.actions.find((a) => a.title === chosen);
    if (action !== undefined) {
      await this.perform(action, failure, args, editor, options);
    }
  }

  private async perform(action: Action, failure: Failure, args: DiffuseArguments,
    editor: vscode.TextEditor | undefined, options: RunOptions): Promise<void> {
    switch (action.kind) {
      case "openSettings":
        await vscode.commands.executeCommand("workbench.action.openSettings", action.setting);
        return;
      case "showLog":
        this.backend.showLog();
        return;
      case "restart":
        await this.backend.restart();
        return;
      case "retry":
        await this.rerun(args, editor, options);
        return;
      case "keepStructure":
        await this.rerun({ ...args, keepAnchors: true }, editor, { keepAnchors: true });
        return;
      case "previewInvalid":
        if (editor !== undefined && failure.candidates !== undefined) {
          await this.preview.show(editor.document, failure.candidates, "invalid candidates");
        }
        return;
    }
  }

  private async rerun(args: DiffuseArguments, editor: vscode.TextEditor | undefined,
    options: RunOptions): Promise<void> {
    if (editor !== undefined && vscode.window.activeTextEditor !== editor) {
      await vscode.window.showTextDocument(editor.document, editor.viewColumn);
    }
    const result = await this.execute(args, this.backend.settings(), editor, options);
    if (result !== undefined && args.apply === false && editor !== undefined && result.candidates.length > 0) {
      await this.preview.show(editor.document, result.candidates);
    }
  }

  private showPartial(editor: vscode.TextEditor | undefined, params: TrajectoryParams): void {
    if (editor === undefined || editor.document.uri.toString() !== params.uri) {
      return;
    }
    editor.setDecorations(this.partial, params.spans.map((span) => ({
      range: new vscode.Range(span.range.start.line, span.range.start.character,
        span.range.end.line, span.range.end.character),
      renderOptions: { after: { contentText: `⟶ ${span.text.replace(/\s+/g, " ").slice(0, 120)}` } },
    })));
  }

  dispose(): void {
    this.partial.dispose();
  }
}
