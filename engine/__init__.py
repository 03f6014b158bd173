"""astdiffuse engine: syntax layer, tokenizer and model code, sampler and remote engine.

Nothing here imports `lsp_server` or `training`; both build on this package.
"""

__version__ = "0.1.0"
