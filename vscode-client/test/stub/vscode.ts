/* A small fake of the `vscode` module for unit tests: the classes and functions the extension's
 * glue uses, recording what was called. `reset()` between tests. */

type Listener<T> = (value: T) => unknown;

export class Disposable {
  constructor(private readonly fn: () => unknown = () => undefined) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners: Listener<T>[] = [];
  readonly event = (listener: Listener<T>): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(value: T): void {
    [...this.listeners].forEach((l) => l(value));
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Position {
  constructor(readonly line: number, readonly character: number) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: number | Position, b: number | Position, c?: number, d?: number) {
    if (typeof a === "number" && typeof b === "number") {
      this.start = new Position(a, b);
      this.end = new Position(c ?? a, d ?? b);
    } else {
      this.start = a as Position;
      this.end = b as Position;
    }
  }
}

export class Selection extends Range {
  constructor(readonly anchor: Position, readonly active: Position) {
    super(anchor, active);
  }
}

export class Uri {
  private constructor(readonly scheme: string, readonly path: string, readonly query = "") {}
  static parse(value: string): Uri {
    const match = /^([a-z][a-z0-9+.-]*):(?:\/\/)?([^?]*)(?:\?(.*))?$/i.exec(value);
    if (!match) {
      throw new Error(`bad uri ${value}`);
    }
    return new Uri(match[1], match[2].startsWith("/") ? match[2] : `/${match[2]}`, match[3] ?? "");
  }
  static file(path: string): Uri {
    return new Uri("file", path);
  }
  static from(parts: { scheme: string; path?: string; query?: string }): Uri {
    return new Uri(parts.scheme, parts.path ?? "", parts.query ?? "");
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}://${this.path}${this.query ? `?${this.query}` : ""}`;
  }
}

export class WorkspaceEdit {
  readonly entries: { uri: Uri; range: Range; newText: string }[] = [];
  replace(uri: Uri, range: Range, newText: string): void {
    this.entries.push({ uri, range, newText });
  }
  get size(): number {
    return new Set(this.entries.map((e) => e.uri.toString())).size;
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class TabInputTextDiff {
  constructor(readonly original: Uri, readonly modified: Uri) {}
}

export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }
export enum StatusBarAlignment { Left = 1, Right = 2 }

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<void>();
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

/** A fake QuickPick: tests drive it with `accept()` / `hide()` / `setActive()`. */
export class FakeQuickPick<T> {
  items: T[] = [];
  activeItems: T[] = [];
  title = "";
  placeholder = "";
  ignoreFocusOut = false;
  matchOnDescription = false;
  matchOnDetail = false;
  visible = false;
  disposed = false;
  private readonly activeEmitter = new EventEmitter<T[]>();
  private readonly acceptEmitter = new EventEmitter<void>();
  private readonly hideEmitter = new EventEmitter<void>();
  readonly onDidChangeActive = this.activeEmitter.event;
  readonly onDidAccept = this.acceptEmitter.event;
  readonly onDidHide = this.hideEmitter.event;
  show(): void {
    this.visible = true;
  }
  setActive(index: number): void {
    this.activeItems = [this.items[index]];
    this.activeEmitter.fire(this.activeItems);
  }
  accept(): void {
    this.acceptEmitter.fire();
  }
  hide(): void {
    this.visible = false;
    this.hideEmitter.fire();
  }
  dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      if (this.visible) {
        this.hide();
      }
    }
  }
}

export interface Recorded {
  messages: { severity: "error" | "warning" | "info"; text: string; items: string[] }[];
  commands: { id: string; args: unknown[] }[];
  appliedEdits: WorkspaceEdit[];
  progress: { title?: string; cancellable?: boolean; reports: { message?: string; increment?: number }[] }[];
  quickPicks: FakeQuickPick<unknown>[];
  statusMessages: string[];
  decorations: { ranges: unknown[] }[];
  closedTabs: unknown[];
}

export const recorded: Recorded = {
  messages: [], commands: [], appliedEdits: [], progress: [], quickPicks: [], statusMessages: [],
  decorations: [], closedTabs: [],
};

/** What the next message box answers (its button title), per severity; undefined = dismissed. */
export const answers: { next?: string; applyEdit: boolean; onQuickPick?: (pick: FakeQuickPick<unknown>) => void;
  onProgress?: (token: CancellationTokenSource) => void } = { applyEdit: true };

let configuration: Record<string, unknown> = {};

export function reset(config: Record<string, unknown> = {}): void {
  recorded.messages = [];
  recorded.commands = [];
  recorded.appliedEdits = [];
  recorded.progress = [];
  recorded.quickPicks = [];
  recorded.statusMessages = [];
  recorded.decorations = [];
  recorded.closedTabs = [];
  answers.next = undefined;
  answers.applyEdit = true;
  answers.onQuickPick = undefined;
  answers.onProgress = undefined;
  configuration = config;
  window.activeTextEditor = undefined;
  workspace.textDocuments = [];
  window.tabGroups.all = [];
}

function message(severity: "error" | "warning" | "info") {
  return (text: string, ...items: unknown[]): Promise<string | undefined> => {
    const titles = items.filter((i): i is string => typeof i === "string");
    recorded.messages.push({ severity, text, items: titles });
    const answer = answers.next !== undefined && titles.includes(answers.next) ? answers.next : undefined;
    answers.next = undefined;
    return Promise.resolve(answer);
  };
}

export const window = {
  activeTextEditor: undefined as unknown,
  showErrorMessage: message("error"),
  showWarningMessage: message("warning"),
  showInformationMessage: message("info"),
  setStatusBarMessage(text: string): Disposable {
    recorded.statusMessages.push(text);
    return new Disposable();
  },
  createTextEditorDecorationType(_options: unknown): { key: string; dispose(): void } {
    return { key: "decoration", dispose: () => undefined };
  },
  createQuickPick<T>(): FakeQuickPick<T> {
    const pick = new FakeQuickPick<T>();
    recorded.quickPicks.push(pick as FakeQuickPick<unknown>);
    const show = pick.show.bind(pick);
    pick.show = () => {
      show();
      answers.onQuickPick?.(pick as FakeQuickPick<unknown>);
    };
    return pick;
  },
  async withProgress<R>(options: { title?: string; cancellable?: boolean },
    task: (progress: { report(value: { message?: string; increment?: number }): void },
      token: CancellationTokenSource["token"]) => Promise<R>): Promise<R> {
    const entry = { title: options.title, cancellable: options.cancellable,
      reports: [] as { message?: string; increment?: number }[] };
    recorded.progress.push(entry);
    const source = new CancellationTokenSource();
    answers.onProgress?.(source);
    return task({ report: (value) => entry.reports.push(value) }, source.token);
  },
  async showTextDocument(document: unknown): Promise<unknown> {
    return { document };
  },
  tabGroups: {
    all: [] as { tabs: { input: unknown }[] }[],
    async close(tabs: unknown): Promise<boolean> {
      recorded.closedTabs.push(tabs);
      return true;
    },
  },
  createStatusBarItem(): Record<string, unknown> {
    return { show: () => undefined, dispose: () => undefined };
  },
  createOutputChannel(): Record<string, unknown> {
    return fakeLog();
  },
};

export function fakeLog(): Record<string, unknown> & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (text: string) => lines.push(`${level}: ${text}`);
  return { lines, info: add("info"), warn: add("warn"), error: add("error"), debug: add("debug"),
    trace: add("trace"), appendLine: add("line"), show: () => undefined, dispose: () => undefined };
}

export const workspace = {
  textDocuments: [] as unknown[],
  async applyEdit(edit: WorkspaceEdit): Promise<boolean> {
    recorded.appliedEdits.push(edit);
    return answers.applyEdit;
  },
  getConfiguration(_section?: string): { get(key: string): unknown } {
    return { get: (key: string) => configuration[key] };
  },
  registerTextDocumentContentProvider(): Disposable {
    return new Disposable();
  },
  configurationListeners: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
  onDidChangeConfiguration(listener: (e: { affectsConfiguration(section: string): boolean }) => unknown): Disposable {
    return workspace.configurationListeners.event(listener);
  },
  /** Fire a configuration change of `changed` (full keys, e.g. `astdiffuse.server.python`). */
  changeConfiguration(values: Record<string, unknown>, ...changed: string[]): void {
    configuration = { ...configuration, ...values };
    workspace.configurationListeners.fire({ affectsConfiguration: (section: string) =>
      changed.some((key) => key === section || key.startsWith(`${section}.`)) });
  },
  workspaceFolders: undefined as unknown,
};

export const commands = {
  async executeCommand(id: string, ...args: unknown[]): Promise<unknown> {
    recorded.commands.push({ id, args });
    return undefined;
  },
  registered: new Map<string, (...args: unknown[]) => unknown>(),
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable {
    if (commands.registered.has(id)) {
      throw new Error(`command '${id}' already exists`);  // as VS Code does
    }
    commands.registered.set(id, handler);
    return new Disposable(() => commands.registered.delete(id));
  },
};

export class CancellationError extends Error {}

/** Classes vscode-languageclient extends when it loads (only their existence matters here). */
class Placeholder {
  readonly args: unknown[];
  constructor(...args: unknown[]) {
    this.args = args;
  }
}
export class CompletionItem extends Placeholder {}
export class CodeLens extends Placeholder {}
export class DocumentLink extends Placeholder {}
export class CodeAction extends Placeholder {}
export class Diagnostic extends Placeholder {}
export class CallHierarchyItem extends Placeholder {}
export class TypeHierarchyItem extends Placeholder {}
export class SymbolInformation extends Placeholder {}
export class InlayHint extends Placeholder {}
