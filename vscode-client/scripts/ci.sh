#!/usr/bin/env bash
# CI for the VS Code extension: install (npm registry only), compile, lint, unit tests with the
# `vscode` module stubbed, the integration test against the real Python server, and the .vsix.
# The integration test needs the project's virtual environment (<repo>/.venv, `make setup`) or
# ASTDIFFUSE_PYTHON pointing at a Python that can `import lsp_server`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
    local name=$1; shift
    local start=$SECONDS
    echo "== vscode-client: $name"
    "$@"
    echo "== vscode-client: $name done in $((SECONDS - start)) s"
}

step "npm ci" npm ci --no-audit --no-fund
step "compile" npm run compile
step "lint" npm run lint
step "unit tests" npm run test:unit
step "integration test" npm run test:integration
rm -f ./*.vsix
step "package" npx --no-install @vscode/vsce package --allow-missing-repository
ls -l ./*.vsix
