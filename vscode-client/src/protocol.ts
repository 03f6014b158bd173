/** The JSON the server's `astdiffuse.diffuseBlock` command takes and returns (docs/lsp.md).
 * Plain LSP shapes, so that this module needs neither `vscode` nor the protocol library. */

export interface Position { line: number; character: number }
export interface Range { start: Position; end: Position }
export interface TextEdit { range: Range; newText: string }

export interface TextDocumentEdit {
  textDocument: { uri: string; version: number | null };
  edits: TextEdit[];
}

export interface WorkspaceEdit {
  changes?: Record<string, TextEdit[]>;
  documentChanges?: (TextDocumentEdit | { kind: string })[];
}

export interface DiffuseArguments {
  uri: string;
  ranges: Range[];
  mode?: "node" | "block";
  keepAnchors?: boolean;
  candidates?: number;
  apply?: boolean;
}

export interface CandidateSpan {
  range: Range;
  oldText: string;
  newText: string;
  kind?: string;
  nodeTypes?: string[];
}

export interface Candidate {
  edit: WorkspaceEdit;
  score: number;
  valid: boolean;
  parses?: boolean;
  sameKind?: boolean;
  repairRounds?: number;
  spans: CandidateSpan[];
}

export interface DiffuseResult {
  uri: string;
  version?: number | null;
  applied: boolean;
  valid: boolean;
  message?: string;
  steps?: number;
  model?: string | null;
  device?: string | null;
  totalMs?: number;
  candidates: Candidate[];
}

/** `data` of the server's JSON-RPC errors: `reason` and, for noValidInfill, the candidates. */
export interface ErrorData {
  reason?: string;
  candidates?: Candidate[];
  [key: string]: unknown;
}

export interface TrajectorySpan { range: Range; text: string }

export interface TrajectoryParams {
  uri: string;
  version?: number;
  job?: number;
  step: number;
  total: number;
  phase?: "denoise" | "repair" | string;
  spans: TrajectorySpan[];
}

/** JSON-RPC codes the extension switches on. */
export const ErrorCode = {
  requestCancelled: -32800,
  contentModified: -32801,
  requestFailed: -32803,
  invalidParams: -32602,
  internalError: -32603,
  /** vscode-jsonrpc: the connection went away with the request pending. */
  pendingResponseRejected: -32097,
  connectionInactive: -32096,
} as const;
