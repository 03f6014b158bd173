/** The `astdiffuse.*` settings: reading them, what the server gets, how the server is started,
 * and which changes need a restart. No `vscode` import: `read` takes a getter. */

import * as os from "os";
import * as path from "path";

export interface EngineSettings {
  url: string | null;
  token: string | null;
  tokenFile: string | null;
  tlsCaFile: string | null;
  connectTimeout: number | null;
}

/** The section as the server reads it (docs/lsp.md, "Settings"); null keeps its default. */
export interface ServerSection {
  model: string | null;
  allowDownload: boolean;
  device: string;
  steps: number | null;
  temperature: number | null;
  candidates: number;
  contextTokens: number;
  engine: EngineSettings;
  logLevel: string;
  loadModel: string;
  trajectory: boolean;
}

/** The client's own settings: how to start the server and how to show results. */
export interface ClientOnly {
  python: string;
  serverPath: string;
  serverArgs: string[];
  applyDirectly: boolean;
}

export interface Settings { server: ServerSection; client: ClientOnly }

/** Keys (below `astdiffuse.`) that only the extension reads: never sent to the server. */
export const CLIENT_KEYS = ["server", "applyDirectly", "trace"] as const;
/** Changing these restarts the server: how it is started, and what its engine is built
 * around (the model, the device, the remote engine). The per-request settings (steps,
 * temperature, candidates, ...) reach the running server through didChangeConfiguration. */
export const RESTART_SECTIONS = [
  "astdiffuse.server", "astdiffuse.model", "astdiffuse.allowDownload", "astdiffuse.device",
  "astdiffuse.engine",
] as const;

export const DEFAULTS: ServerSection = {
  model: null, allowDownload: false, device: "auto", steps: null, temperature: null, candidates: 3,
  contextTokens: 1024, engine: { url: null, token: null, tokenFile: null, tlsCaFile: null, connectTimeout: null },
  logLevel: "info", loadModel: "lazy", trajectory: false,
};

type Getter = (key: string) => unknown;

function text(value: unknown): string | null {
  if (typeof value !== "string") {
    return null;
  }
  const trimmed = value.trim();
  return trimmed === "" ? null : trimmed;
}

function numberOr<T>(value: unknown, fallback: T): number | T {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

/** The settings from a getter of dotted keys below `astdiffuse.` (e.g. `engine.url`). Empty
 * strings count as unset; values of the wrong type fall back to the defaults (VS Code has
 * already warned about them in the settings editor). */
export function readSettings(get: Getter): Settings {
  const args = get("server.args");
  return {
    server: {
      model: text(get("model")),
      allowDownload: get("allowDownload") === true,
      device: text(get("device")) ?? DEFAULTS.device,
      steps: numberOr(get("steps"), null),
      temperature: numberOr(get("temperature"), null),
      candidates: numberOr(get("candidates"), DEFAULTS.candidates),
      contextTokens: numberOr(get("contextTokens"), DEFAULTS.contextTokens),
      engine: {
        url: text(get("engine.url")),
        token: text(get("engine.token")),
        tokenFile: text(get("engine.tokenFile")),
        tlsCaFile: text(get("engine.tlsCaFile")),
        connectTimeout: numberOr(get("engine.connectTimeout"), null),
      },
      logLevel: text(get("logLevel")) ?? DEFAULTS.logLevel,
      loadModel: text(get("loadModel")) ?? DEFAULTS.loadModel,
      trajectory: get("trajectory") === true,
    },
    client: {
      python: text(get("server.python")) ?? "python3",
      serverPath: text(get("server.path")) ?? "",
      serverArgs: Array.isArray(args) ? args.filter((a): a is string => typeof a === "string") : [],
      applyDirectly: get("applyDirectly") === true,
    },
  };
}

/** `initializationOptions` of `initialize`: `{"astdiffuse": {...}}`, server keys only. */
export function initializationOptions(settings: Settings): { astdiffuse: ServerSection } {
  return { astdiffuse: settings.server };
}

/** What `workspace/configuration` answers for the section: the server's keys of the raw
 * configuration object, without the extension's own (`server`, `applyDirectly`, `trace`), which
 * the server would report as unknown settings. Empty strings become null (unset). */
export function serverConfiguration(raw: unknown): Record<string, unknown> | null {
  if (raw === null || typeof raw !== "object") {
    return null;
  }
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if ((CLIENT_KEYS as readonly string[]).includes(key) || typeof value === "function") {
      continue;
    }
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      result[key] = serverConfiguration(value);
    } else {
      result[key] = typeof value === "string" && value.trim() === "" ? null : value;
    }
  }
  return result;
}

/** Whether a configuration change needs a new server process (`affects` is
 * `ConfigurationChangeEvent.affectsConfiguration`). Other `astdiffuse.*` changes reach the
 * running server through workspace/didChangeConfiguration, which keeps a loaded model. */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return RESTART_SECTIONS.some((section) => affects(section));
}

/** Whether the change concerns the server's own settings (sent as didChangeConfiguration). */
export function affectsServerSettings(affects: (section: string) => boolean): boolean {
  return affects("astdiffuse") && !needsRestart(affects)
    && !affects("astdiffuse.applyDirectly") && !affects("astdiffuse.trace");
}

/** `~` and `${workspaceFolder}` expanded. */
export function expandPath(value: string, workspaceFolder?: string): string {
  let result = value;
  if (workspaceFolder !== undefined) {
    result = result.split("${workspaceFolder}").join(workspaceFolder);
  }
  if (result === "~" || result.startsWith("~/")) {
    result = path.join(os.homedir(), result.slice(1));
  }
  return result;
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** The Python interpreter to check (`import lsp_server`); absent for a custom server path. */
  python?: string;
}

/** How the server process is started. */
export function serverCommand(settings: Settings, workspaceFolder?: string): ServerCommand {
  const { python, serverPath, serverArgs } = settings.client;
  if (serverPath !== "") {
    return { command: expandPath(serverPath, workspaceFolder), args: [...serverArgs] };
  }
  const interpreter = expandPath(python, workspaceFolder);
  return { command: interpreter, args: ["-m", "lsp_server", ...serverArgs], python: interpreter };
}

export type EngineKind = { kind: "local"; model: string; device: string }
  | { kind: "remote"; host: string; tls: boolean };

/** What runs the model: the local model (its directory's name) or the remote host. */
export function engineOf(server: ServerSection): EngineKind {
  const url = server.engine.url;
  if (url !== null) {
    const match = /^([a-z+]+):\/\/([^/\s]+)/i.exec(url);
    const scheme = match?.[1]?.toLowerCase() ?? "";
    return { kind: "remote", host: match?.[2] ?? url, tls: scheme.endsWith("tls") };
  }
  const model = server.model === null ? "default model"
    : path.basename(server.model.replace(/[/\\]+$/, "")) || server.model;
  return { kind: "local", model, device: server.device };
}
