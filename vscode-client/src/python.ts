/** Checks, before starting it, that the server can run: the interpreter exists and imports
 * `lsp_server` (or a custom server executable exists). No `vscode` import. */

import { execFile } from "child_process";
import * as fs from "fs";
import { ServerProblem } from "./errors";
import { ServerCommand } from "./settings";

export interface ExecError { message: string; code?: string | number | null; killed?: boolean }
export interface ExecResult { error?: ExecError; stdout: string; stderr: string }
export type Exec = (file: string, args: string[], timeoutMs: number) => Promise<ExecResult>;

export const PROBE = "import lsp_server, sys; sys.stdout.write(lsp_server.__version__)";

export const execFileResult: Exec = (file, args, timeoutMs) => new Promise((resolve) => {
  execFile(file, args, { timeout: timeoutMs, windowsHide: true }, (error, stdout, stderr) => {
    resolve({ error: error ?? undefined, stdout: String(stdout), stderr: String(stderr) });
  });
});

export type CheckResult = { ok: true; version?: string } | { ok: false; problem: ServerProblem };

function lastLine(text: string): string {
  const lines = text.trim().split(/\r?\n/);
  return lines[lines.length - 1] ?? "";
}

/** Whether `command` can run the server; `exec` runs the probe (injectable for tests). */
export async function checkServer(command: ServerCommand, exec: Exec = execFileResult,
  timeoutMs = 30000): Promise<CheckResult> {
  if (command.python === undefined) {
    const file = command.command;
    const looksLikePath = file.includes("/") || file.includes("\\");
    if (looksLikePath) {
      try {
        fs.accessSync(file, fs.constants.X_OK);
      } catch (err) {
        return { ok: false, problem: { kind: "serverPathMissing", path: file, detail: String(err) } };
      }
    }
    return { ok: true };
  }
  const python = command.python;
  const result = await exec(python, ["-c", PROBE], timeoutMs);
  if (!result.error) {
    return { ok: true, version: result.stdout.trim() || undefined };
  }
  if (result.error.code === "ENOENT" || result.error.code === "EACCES") {
    return { ok: false, problem: { kind: "pythonNotFound", python, detail: result.error.message } };
  }
  if (result.error.killed) {
    return { ok: false, problem: { kind: "startFailed",
      detail: `"${python} -c 'import lsp_server'" did not finish in ${timeoutMs / 1000} s` } };
  }
  return { ok: false, problem: { kind: "serverNotInstalled", python,
    detail: lastLine(result.stderr) || result.error.message } };
}
