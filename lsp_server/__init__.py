"""astdiffuse Language Server (pygls): selection -> masked spans -> engine -> WorkspaceEdit."""
