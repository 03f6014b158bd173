"""The syntax layer: languages, parsing, selection -> masked spans, per-token structure, validity.

Everything speaks UTF-8 byte offsets into `SourceDocument.source`; `engine.offsets` converts.
"""

from .annotate import TokenStructure, annotate_tokens
from .document import DEFAULT_MAX_BYTES, SourceDocument, decode_source
from .languages import (Grammar, get_grammar, grammar_for_lsp_id, grammar_for_path,
                        supported_languages)
from .node_tables import ANCHOR_CLASSES, TIERS
from .selection import MODES, MaskedSpan, masked_spans, span_for_range
from .validity import ErrorRegion, ReplacementCheck, check_replacement, error_regions, parses

__all__ = [
    "ANCHOR_CLASSES", "DEFAULT_MAX_BYTES", "MODES", "TIERS", "ErrorRegion", "Grammar",
    "MaskedSpan", "ReplacementCheck", "SourceDocument", "TokenStructure", "annotate_tokens",
    "check_replacement", "decode_source", "error_regions", "get_grammar", "grammar_for_lsp_id",
    "grammar_for_path", "masked_spans", "parses", "span_for_range", "supported_languages",
]
