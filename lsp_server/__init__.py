"""astdiffuse Language Server (pygls): selection -> masked spans -> engine -> WorkspaceEdit.

`python -m lsp_server` runs it over stdio (or `--tcp HOST:PORT`); docs/lsp.md has the details.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astdiffuse")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0+unknown"
