/** Activation: the output channel, the server, the commands, the preview; everything that can be
 * disposed goes into `context.subscriptions`. */

import * as vscode from "vscode";
import { ServerManager } from "./client";
import { COMMANDS, PREVIEW_SCHEME } from "./constants";
import { DiffuseCommands } from "./diffuse";
import { Failure } from "./errors";
import { PreviewContentProvider, PreviewController } from "./preview";
import { isDiffuseArguments } from "./selections";
import { needsRestart } from "./settings";

let manager: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel("astdiffuse", { log: true });
  context.subscriptions.push(log);

  const showProblem = (failure: Failure): void => {
    void (async () => {
      const chosen = await vscode.window.showErrorMessage(failure.text, ...failure.actions.map((a) => a.title));
      const action = failure.actions.find((a) => a.title === chosen);
      if (action?.kind === "openSettings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", action.setting);
      } else if (action?.kind === "showLog") {
        log.show(true);
      } else if (action?.kind === "restart") {
        await manager?.restart();
      }
    })();
  };
  manager = new ServerManager(log, showProblem);
  context.subscriptions.push(manager);

  const provider = new PreviewContentProvider();
  const preview = new PreviewController(provider, log);
  const diffuse = new DiffuseCommands(manager, preview);
  context.subscriptions.push(
    provider, preview, diffuse,
    vscode.workspace.registerTextDocumentContentProvider(PREVIEW_SCHEME, provider),
    vscode.commands.registerCommand(COMMANDS.diffuseBlock, (arg?: unknown) =>
      diffuse.run({ keepAnchors: false }, isDiffuseArguments(arg) ? arg : undefined)),
    vscode.commands.registerCommand(COMMANDS.diffuseBlockKeepStructure, () => diffuse.run({ keepAnchors: true })),
    vscode.commands.registerCommand(COMMANDS.acceptPreview, () => preview.accept()),
    vscode.commands.registerCommand(COMMANDS.rejectPreview, () => preview.reject()),
    vscode.commands.registerCommand(COMMANDS.pickCandidate, () => preview.pickCandidate()),
    vscode.commands.registerCommand(COMMANDS.restartServer, () => manager?.restart()),
    vscode.commands.registerCommand(COMMANDS.showLog, () => log.show(true)),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration("astdiffuse")) {
        return;
      }
      manager?.refresh();
      if (needsRestart((section) => event.affectsConfiguration(section))) {
        log.info("server settings changed: restarting the server");
        void manager?.restart();
      }
    }),
  );
  await manager.start();
}

export async function deactivate(): Promise<void> {
  await manager?.stop();
  manager = undefined;
}
