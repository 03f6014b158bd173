/** Work-done progress from the server -> VS Code progress reports; trajectory text. */

import { oneLine } from "./candidates";
import { TrajectoryParams } from "./protocol";

export interface WorkDoneValue {
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
  cancellable?: boolean;
}

/** `progress.report` of `window.withProgress` takes increments; the server sends absolute
 * percentages (never going back). This turns one into the other. */
export class ProgressTracker {
  private done = 0;
  message = "";

  /** The report for one `$/progress` value, or undefined when there is nothing to show. */
  update(value: WorkDoneValue): { message?: string; increment?: number } | undefined {
    if (value.kind === "end") {
      return undefined;
    }
    const report: { message?: string; increment?: number } = {};
    if (value.message !== undefined && value.message !== this.message) {
      this.message = value.message;
      report.message = value.message;
    }
    if (typeof value.percentage === "number") {
      const target = Math.max(0, Math.min(100, value.percentage));
      if (target > this.done) {
        report.increment = target - this.done;
        this.done = target;
      }
    }
    return report.message === undefined && report.increment === undefined ? undefined : report;
  }
}

/** A progress message with the live partial text: `denoise 4/24: return price ░░░ count`. */
export function trajectoryMessage(params: TrajectoryParams, max = 80): string {
  const text = params.spans.map((s) => oneLine(s.text, max)).join(" ⏐ ");
  return `${params.phase ?? "denoise"} ${params.step}/${params.total}: ${oneLine(text, max)}`;
}
