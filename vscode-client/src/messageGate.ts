/** The server shows every failed request's message itself (window/showMessage). While one of
 * the extension's own commands is in flight its error comes back as the response too, and the
 * extension shows that with buttons (Open Settings, Try Again, ...): the gate keeps the user from
 * seeing it twice. Warnings and messages outside a command (bad settings, a code action that
 * failed) pass through. No `vscode` import. */

export const MESSAGE_TYPE = { error: 1, warning: 2, info: 3, log: 4 } as const;

export class MessageGate {
  private inFlight = 0;
  private recent = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now, private readonly graceMs = 3000) {}

  /** Call when a command request starts; the returned function when it has settled. */
  begin(): () => void {
    this.inFlight++;
    let done = false;
    return () => {
      if (!done) {
        done = true;
        this.inFlight--;
      }
    };
  }

  /** Remember a message the extension has shown (the server's copy may arrive later). */
  shown(text: string): void {
    this.recent.set(normalize(text), this.now());
  }

  /** Whether a server `window/showMessage` should be shown (false: only logged). */
  shouldShow(type: number, message: string): boolean {
    const at = this.recent.get(normalize(message));
    if (at !== undefined && this.now() - at < this.graceMs) {
      return false;
    }
    return !(type === MESSAGE_TYPE.error && this.inFlight > 0);
  }
}

function normalize(text: string): string {
  return text.replace(/^astdiffuse:\s*/, "").trim();
}
