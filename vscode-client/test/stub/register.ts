/* mocha --require: `require("vscode")` resolves to the fake in ./vscode. */
import * as nodeModule from "module";
import * as path from "path";

const stub = path.join(__dirname, "vscode.js");
type Resolve = (request: string, ...rest: unknown[]) => string;
const moduleWithResolve = nodeModule.Module as unknown as { _resolveFilename: Resolve };
const original = moduleWithResolve._resolveFilename;
moduleWithResolve._resolveFilename = function (request: string, ...rest: unknown[]): string {
  return request === "vscode" ? stub : original.call(this, request, ...rest);
};
