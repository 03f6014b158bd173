/** Identifiers shared by the extension's modules (no `vscode` import: unit-testable). */

export const SECTION = "astdiffuse";
/** The server's LSP command (workspace/executeCommand); the VS Code command has the same id. */
export const SERVER_COMMAND = "astdiffuse.diffuseBlock";
export const TRAJECTORY_NOTIFICATION = "astdiffuse/trajectory";
export const PREVIEW_SCHEME = "astdiffuse-preview";
export const PREVIEW_CONTEXT = "astdiffuse.previewActive";

export const COMMANDS = {
  diffuseBlock: "astdiffuse.diffuseBlock",
  diffuseBlockKeepStructure: "astdiffuse.diffuseBlockKeepStructure",
  acceptPreview: "astdiffuse.acceptPreview",
  rejectPreview: "astdiffuse.rejectPreview",
  pickCandidate: "astdiffuse.pickCandidate",
  restartServer: "astdiffuse.restartServer",
  showLog: "astdiffuse.showLog",
} as const;

/** VS Code languageIds the engine has grammars for (engine/syntax/languages.py, `lsp_ids`). */
export const SUPPORTED_LANGUAGES: readonly string[] = [
  "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java",
];

export function isSupportedLanguage(languageId: string): boolean {
  return SUPPORTED_LANGUAGES.includes(languageId);
}
