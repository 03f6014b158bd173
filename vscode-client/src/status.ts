/** The status bar item's text and tooltip: the engine (local model / remote host) and the
 * server's state. No `vscode` import. */

import { EngineKind } from "./settings";

export type ServerState = "stopped" | "starting" | "ready" | "busy" | "error";

export interface StatusView { text: string; tooltip: string; error: boolean }

const ICONS: Record<ServerState, string> = {
  stopped: "$(circle-slash)",
  starting: "$(loading~spin)",
  ready: "$(sparkle)",
  busy: "$(loading~spin)",
  error: "$(error)",
};

const STATES: Record<ServerState, string> = {
  stopped: "server stopped",
  starting: "server starting",
  ready: "ready",
  busy: "diffusing",
  error: "server error",
};

export function engineLabel(engine: EngineKind): string {
  return engine.kind === "remote" ? `remote ${engine.host}${engine.tls ? " (TLS)" : ""}`
    : `${engine.model} · ${engine.device}`;
}

/** `detail`: a step message while busy, or the error while in error. */
export function statusView(state: ServerState, engine: EngineKind, detail?: string): StatusView {
  const label = engine.kind === "remote" ? engine.host : engine.model;
  const busy = state === "busy" && detail ? ` ${detail}` : "";
  const text = `${ICONS[state]} astdiffuse: ${label}${busy}`;
  const lines = [
    `astdiffuse — ${STATES[state]}`,
    engine.kind === "remote" ? `Engine: remote, ${engine.host}${engine.tls ? " over TLS" : ""}`
      : `Engine: local, model ${engine.model}, device ${engine.device}`,
  ];
  if (detail) {
    lines.push(detail);
  }
  lines.push("Click to show the log");
  return { text, tooltip: lines.join("\n"), error: state === "error" };
}
