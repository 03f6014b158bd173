"""Infill of masked spans with a masked-diffusion model: request and result types, the canvas,
the sampler, parse-guided repair and the engine that ties them together."""

from .canvas import (Canvas, SpanOutsideCanvasError, SpansOverlapError, build_canvas,
                     length_candidates)
from .engine import (DEFAULT_MODEL_DIR, DeviceUnavailableError, InfillEngine, ProgressEvent,
                     default_dtype, resolve_device)
from .exact import EXACT_MODE, exact_spans
from .request import (ORDERS, REQUEST_MODES, ByteRange, Candidate, InfillOptions, InfillRequest,
                      InfillResult, InvalidRequestError, SpanEdit, Timings, from_dict,
                      from_msgpack, to_dict, to_msgpack)
from .sampler import DiffusionSampler, InfillCancelled, SamplerState
from .vocab import InfillTokenizer, MissingMaskTokenError

__all__ = [
    "DEFAULT_MODEL_DIR", "EXACT_MODE", "ORDERS", "REQUEST_MODES", "ByteRange", "Candidate",
    "Canvas", "DeviceUnavailableError", "DiffusionSampler", "InfillCancelled", "InfillEngine",
    "InfillOptions", "InfillRequest", "InfillResult", "InfillTokenizer", "InvalidRequestError",
    "MissingMaskTokenError", "ProgressEvent", "SamplerState", "SpanEdit",
    "SpanOutsideCanvasError", "SpansOverlapError", "Timings", "build_canvas", "default_dtype",
    "exact_spans", "from_dict", "from_msgpack", "length_candidates", "resolve_device", "to_dict",
    "to_msgpack",
]
