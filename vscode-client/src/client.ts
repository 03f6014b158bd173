/** The language client: starting the server (after checking it can run), a guarded
 * restart, the status bar, and what the "Diffuse This Block" command needs from it. */

import * as vscode from "vscode";
import {
  DynamicFeature, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions,
  ShowMessageNotification, State, StaticFeature, WorkDoneProgress,
} from "vscode-languageclient/node";
import { SECTION, SERVER_COMMAND, SUPPORTED_LANGUAGES, TRAJECTORY_NOTIFICATION } from "./constants";
import { DiffuseBackend } from "./diffuse";
import { isServerCommandFeature } from "./features";
import { describeServerProblem, Failure, ServerProblem } from "./errors";
import { MESSAGE_TYPE, MessageGate } from "./messageGate";
import { WorkDoneValue } from "./progress";
import { DiffuseArguments, DiffuseResult, TrajectoryParams } from "./protocol";
import { checkServer } from "./python";
import { engineOf, initializationOptions, readSettings, serverCommand, serverConfiguration, Settings } from "./settings";
import { ServerState, statusView } from "./status";

/** A LanguageClient without the automatic registration of server commands: the extension calls
 * the server's command itself, with `sendRequest(ExecuteCommandRequest.type, ...)`. */
class AstdiffuseLanguageClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if (!isServerCommandFeature(feature)) {
      super.registerFeature(feature);
    }
  }
}

export function currentSettings(): Settings {
  const config = vscode.workspace.getConfiguration(SECTION);
  return readSettings((key) => config.get(key));
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

export class ServerManager implements DiffuseBackend, vscode.Disposable {
  readonly gate = new MessageGate();
  private client: AstdiffuseLanguageClient | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private state: ServerState = "stopped";
  private detail: string | undefined;
  private readonly trajectory = new vscode.EventEmitter<TrajectoryParams>();
  private readonly item: vscode.StatusBarItem;

  constructor(private readonly log: vscode.LogOutputChannel,
    private readonly showProblem: (failure: Failure) => void) {
    this.item = vscode.window.createStatusBarItem("astdiffuse.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "astdiffuse";
    this.item.command = "astdiffuse.showLog";
    this.render();
    this.item.show();
  }

  settings(): Settings {
    return currentSettings();
  }

  /** Operations run one after the other: a restart never overlaps a start or a stop. */
  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const next = this.queue.then(operation, operation);
    this.queue = next.catch(() => undefined);
    return next;
  }

  start(): Promise<boolean> {
    return this.enqueue(() => this.doStart());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  async ensureRunning(): Promise<boolean> {
    if (this.client?.isRunning()) {
      return true;
    }
    return this.start();
  }

  private async doStart(): Promise<boolean> {
    if (this.client?.isRunning()) {
      return true;
    }
    const settings = currentSettings();
    const command = serverCommand(settings, workspaceFolder());
    this.setState("starting");
    this.log.info(`starting the server: ${[command.command, ...command.args].join(" ")}`);
    const check = await checkServer(command);
    if (!check.ok) {
      this.fail(check.problem);
      return false;
    }
    if (check.version) {
      this.log.info(`lsp_server ${check.version}`);
    }
    const serverOptions: ServerOptions = {
      command: command.command, args: command.args,
      options: { cwd: workspaceFolder(), env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: SUPPORTED_LANGUAGES.flatMap((language) => [
        { scheme: "file", language }, { scheme: "untitled", language }]),
      outputChannel: this.log,
      traceOutputChannel: this.log,
      initializationOptions: initializationOptions(settings),
      middleware: {
        workspace: {
          // the server pulls its section; leave out the extension's own keys
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            if (!Array.isArray(result)) {
              return result;
            }
            return result.map((value: unknown, i) => params.items[i]?.section === SECTION
              ? serverConfiguration(value) : value);
          },
          // the server has configuration support: tell it to pull, push nothing
          didChangeConfiguration: (_sections, next) => next(undefined),
        },
      },
    };
    const client = new AstdiffuseLanguageClient("astdiffuse", "astdiffuse", serverOptions, clientOptions);
    client.onNotification(ShowMessageNotification.type, (params) => this.serverMessage(params.type, params.message));
    client.onNotification(TRAJECTORY_NOTIFICATION, (params: TrajectoryParams) => this.trajectory.fire(params));
    client.onDidChangeState((event) => {
      if (this.client !== client) {
        return;
      }
      if (event.newState === State.Stopped && this.state !== "error") {
        this.setState("stopped");
      } else if (event.newState === State.Running) {
        this.setState("ready");
      }
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.log.error(`the server did not start: ${String(error)}`);
      this.client = undefined;
      await client.dispose().catch(() => undefined);
      this.fail({ kind: "startFailed", detail: error instanceof Error ? error.message : String(error) });
      return false;
    }
    const commands = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    if (!commands.includes(SERVER_COMMAND)) {
      this.log.warn(`the server does not advertise ${SERVER_COMMAND} (it has: ${commands.join(", ") || "none"})`);
    }
    this.setState("ready");
    return true;
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) {
      return;
    }
    try {
      await client.stop(5000);
    } catch (error) {
      this.log.warn(`stopping the server: ${String(error)}`);
    }
    this.setState("stopped");
  }

  private fail(problem: ServerProblem): void {
    const failure = describeServerProblem(problem);
    this.log.error(`${failure.text} (${problem.detail})`);
    this.setState("error", failure.text);
    this.showProblem(failure);
  }

  private serverMessage(type: number, message: string): void {
    this.log.info(`server message: ${message}`);
    if (!this.gate.shouldShow(type, message)) {
      return;
    }
    const show = type === MESSAGE_TYPE.error ? vscode.window.showErrorMessage
      : type === MESSAGE_TYPE.warning ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
    void show(message);
  }

  async executeCommand(args: DiffuseArguments, workDoneToken: string,
    token: vscode.CancellationToken): Promise<DiffuseResult> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) {
      throw new Error("Client is not running");
    }
    return client.sendRequest(ExecuteCommandRequest.type,
      { command: SERVER_COMMAND, arguments: [args], workDoneToken }, token) as Promise<DiffuseResult>;
  }

  onProgress(workDoneToken: string, handler: (value: WorkDoneValue) => void): vscode.Disposable {
    const client = this.client;
    if (client === undefined) {
      return new vscode.Disposable(() => undefined);
    }
    return client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => handler(value as WorkDoneValue));
  }

  onTrajectory(handler: (params: TrajectoryParams) => void): vscode.Disposable {
    return this.trajectory.event(handler);
  }

  busy(detail?: string): void {
    this.setState("busy", detail);
  }

  idle(result?: DiffuseResult): void {
    if (this.state === "busy") {
      const last = result ? `last run: ${result.message ?? ""}${result.device ? ` on ${result.device}` : ""}`
        + `${result.totalMs !== undefined ? `, ${Math.round(result.totalMs)} ms` : ""}` : undefined;
      this.setState(this.client?.isRunning() ? "ready" : "stopped", last);
    }
  }

  showLog(): void {
    this.log.show(true);
  }

  /** Re-render the status bar (settings changed). */
  refresh(): void {
    this.render();
  }

  private setState(state: ServerState, detail?: string): void {
    this.state = state;
    this.detail = detail;
    this.render();
  }

  private render(): void {
    const view = statusView(this.state, engineOf(currentSettings().server), this.detail);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  dispose(): void {
    void this.stop();
    this.trajectory.dispose();
    this.item.dispose();
  }
}
