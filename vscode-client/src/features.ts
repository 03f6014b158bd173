/** Which of vscode-languageclient's features the extension leaves out. No `vscode` import. */

/** `ExecuteCommandRequest.method`. */
export const EXECUTE_COMMAND_METHOD = "workspace/executeCommand";

/** Whether a client feature is the one that turns the server's advertised commands into VS Code
 * commands (`ExecuteCommandFeature`). The server advertises `astdiffuse.diffuseBlock`, which is
 * also the id of the extension's own command, and VS Code throws on a second registration of an
 * id, so that feature is left out: the extension sends workspace/executeCommand itself
 * (docs/vscode.md, "The command id"). */
export function isServerCommandFeature(feature: object): boolean {
  const registration = (feature as { registrationType?: { method?: unknown } }).registrationType;
  return registration?.method === EXECUTE_COMMAND_METHOD;
}
