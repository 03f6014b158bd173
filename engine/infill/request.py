"""What an infill asks for and what it gives back: plain dataclasses of str / int / float /
bool / list / None only, so the remote server sends exactly these as msgpack (`to_msgpack`,
`from_msgpack`).

Byte offsets index the UTF-8 bytes of `InfillRequest.text`; lines are 1-based and inclusive.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

from ..errors import AstdiffuseError
from ..syntax.selection import MODES
from .exact import EXACT_MODE

ORDERS = ("confidence", "margin", "entropy")  # how the sampler ranks masked positions
# How ranges become spans: the syntax layer's selection modes, or verbatim byte ranges.
REQUEST_MODES: tuple[str, ...] = MODES + (EXACT_MODE,)


class InvalidRequestError(AstdiffuseError, ValueError):
    """A request or its options are malformed; the message names the field and what it takes."""


@dataclass
class ByteRange:
    """A selection [start, end) in UTF-8 bytes; start == end is a cursor."""

    start: int
    end: int


@dataclass
class InfillOptions:
    """How to sample. The defaults are what the editor uses."""

    steps: int | None = None  # denoising steps per span set; None: half the masked tokens
    temperature: float = 0.3  # 0: greedy; AnCoder samples at 0.8, lower is steadier for edits
    top_p: float = 0.95  # nucleus sampling over the temperature-scaled distribution
    order: str = "confidence"  # which masked positions go first: confidence | margin | entropy
    anchored: bool = True  # keywords / identifiers (and shallow positions) before the rest
    threshold: float = 0.9  # parallel decoding: unmask every position above this probability
    remask: float = 0.0  # ReMDM-style: share of newly decoded tokens remasked per step (0: off)
    cache_refresh: int = 16  # steps between full passes that refresh the context's keys/values
    use_cache: bool = True  # False: a full forward every step (for comparison)
    repair_rounds: int = 2  # parse-guided repair rounds after decoding (0: off)
    context_tokens: int = 1024  # canvas budget: context + masked tokens, all spans together
    length_hint: bool = True  # seed length candidates from the replaced text's length (editor);
    #   evaluation must pass False: the reference length is not known there
    lengths: list[int] | None = None  # explicit mask lengths (tokens per span) to try instead
    length_candidates: int = 3  # how many mask lengths run as one batch
    samples: int = 1  # samples per length (more need temperature > 0)
    candidates: int = 3  # how many ranked candidates to return
    keep_anchors: bool = False  # keep the span's keywords and identifiers, regenerate the rest
    expand_budget: int = 64  # DreamOn-style models: tokens a span may grow by while decoding
    #   (<|expand|> turns a mask into two); 0 keeps the length; others ignore it
    seed: int = 0  # one seed replays a run exactly

    def check(self) -> "InfillOptions":
        """Raise InvalidRequestError on a value the sampler cannot use; returns self."""
        def bad(name: str, what: str) -> InvalidRequestError:
            return InvalidRequestError(f"option {name}={getattr(self, name)!r}: {what}")

        _check_types(self, "option ")

        if self.steps is not None and self.steps < 1:
            raise bad("steps", "must be a positive number of steps (or null for automatic)")
        if not (0.0 <= self.temperature < math.inf):
            raise bad("temperature", "must be >= 0")
        if not (0.0 < self.top_p <= 1.0):
            raise bad("top_p", "must be in (0, 1]")
        if self.order not in ORDERS:
            raise bad("order", f"must be one of {', '.join(ORDERS)}")
        if not (0.0 < self.threshold <= 1.0):
            raise bad("threshold", "must be in (0, 1]; 1 decodes only the scheduled tokens")
        if not (0.0 <= self.remask < 1.0):
            raise bad("remask", "must be in [0, 1)")
        if self.cache_refresh < 1:
            raise bad("cache_refresh", "must be >= 1 (1 refreshes every step)")
        if self.expand_budget < 0:
            raise bad("expand_budget", "must be >= 0 (0 keeps each span's length)")
        if self.repair_rounds < 0:
            raise bad("repair_rounds", "must be >= 0")
        if self.context_tokens < 16:
            raise bad("context_tokens", "must be at least 16 tokens")
        if self.lengths is not None and (not self.lengths or min(self.lengths) < 1):
            raise bad("lengths", "must be a non-empty list of positive token counts")
        for name in ("length_candidates", "samples", "candidates"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        return self


@dataclass
class InfillRequest:
    """Infill the code selected by `ranges` in one document, all spans in one diffusion run.

    Each range is mapped to whole syntax-tree nodes by `engine.syntax.masked_spans` with `mode`
    ("node" or "block"); a cursor (empty range) takes the enclosing statement. Mode "exact"
    takes each range verbatim as a byte range (an empty one is an insertion point) and judges a
    candidate by whether the whole file parses only (`engine.infill.exact`; evaluation).
    """

    text: str
    language: str  # a name from `python -m engine languages` (the LSP languageId also works)
    ranges: list[ByteRange]
    mode: str = "node"
    options: InfillOptions = field(default_factory=InfillOptions)

    def check(self) -> "InfillRequest":
        _check_types(self, "")
        if not self.ranges:
            raise InvalidRequestError("ranges is empty: select code or place the cursor in it")
        if self.mode not in REQUEST_MODES:
            raise InvalidRequestError(
                f"mode {self.mode!r}: must be one of {', '.join(REQUEST_MODES)}")
        self.options.check()
        if self.mode == EXACT_MODE and self.options.keep_anchors \
                and any(r.start == r.end for r in self.ranges):
            raise InvalidRequestError("option keep_anchors=True: an insertion point (an empty "
                                      "range in exact mode) has no code whose anchors to keep")
        return self


@dataclass
class SpanEdit:
    """One span's replacement in the original document."""

    start_byte: int  # replaced bytes [start_byte, end_byte) of the request's text
    end_byte: int
    start_line: int
    end_line: int
    kind: str  # statements | expression | body, as the syntax layer named the span
    node_types: list[str]  # types of the nodes the span held
    old_text: str
    new_text: str
    mask_tokens: int  # mask positions the canvas gave this span
    tokens: int  # tokens generated (pads removed)


@dataclass
class Candidate:
    """One infill of all spans, with how it was judged."""

    text: str  # the whole new document
    spans: list[SpanEdit]
    score: float  # mean log-probability of the generated tokens under the model (higher: better)
    parses: bool  # the new document parses with no ERROR or MISSING node
    same_kind: bool  # every span re-forms nodes of the same kind it replaced (exact mode has
    #   no kind rule: there it is False only for a span holding a NUL or undecodable bytes)
    repair_rounds: int  # parse-guided repair rounds this candidate went through

    @property
    def valid(self) -> bool:
        return self.parses and self.same_kind


@dataclass
class Timings:
    """Where the time of one request went, in milliseconds, and how much work it was."""

    total_ms: float = 0.0
    canvas_ms: float = 0.0  # tokenizing and building the canvas
    sampling_ms: float = 0.0  # the denoising loop (model forwards included)
    repair_ms: float = 0.0  # parse checks and repair rounds
    forward_passes: int = 0  # model calls (full and cached)
    full_passes: int = 0  # of which over the whole canvas
    canvas_tokens: int = 0  # canvas length (the longest row)
    masked_tokens: int = 0  # mask positions decoded, all rows together (repairs not counted)
    batch: int = 0  # canvases run together (length candidates x samples)
    batch_requests: int = 1  # requests whose canvases shared the model calls (engine.serve)


@dataclass
class InfillResult:
    """Ranked candidates (valid ones first, then by score) and what the run cost.

    `valid` is False when no candidate parses and keeps the node kinds; the candidates are
    still there for inspection, but an editor must not apply them without saying so.
    """

    candidates: list[Candidate]
    valid: bool
    message: str  # for the user: what was found, or why nothing valid was
    steps: int  # denoising steps run, repair included
    timings: Timings
    model: str = ""
    device: str = ""

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_types(obj: Any, prefix: str) -> None:
    """InvalidRequestError when a field holds a value of another type than its annotation (a
    remote client's request arrives as plain msgpack values, unchecked)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        annotation = str(f.type)
        optional = annotation.endswith(" | None")
        base = annotation.removesuffix(" | None")
        if value is None and optional:
            continue
        if base in _TYPES:
            ok = isinstance(value, _TYPES[base]) and (base == "bool" or not isinstance(value, bool))
            if base == "float" and ok and not math.isfinite(value):
                ok = False
        elif base == "list[int]":
            ok = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif base == "list[ByteRange]":
            ok = isinstance(value, list) and all(isinstance(v, ByteRange) for v in value)
            for r in value if ok else ():
                _check_types(r, "range ")
        elif base == "InfillOptions":
            ok = isinstance(value, InfillOptions)
        else:
            continue
        if not ok:
            raise InvalidRequestError(f"{prefix}{f.name}={value!r}: expected {annotation}")


# -- msgpack ---------------------------------------------------------------------------------

_NESTED = {
    InfillRequest: {"ranges": [ByteRange], "options": InfillOptions},
    Candidate: {"spans": [SpanEdit]},
    InfillResult: {"candidates": [Candidate], "timings": Timings},
}


def to_dict(obj: Any) -> dict:
    """A dataclass as plain dicts and lists (what msgpack and JSON carry)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: Any):
    """Rebuild `cls` from `to_dict`'s output; unknown or missing fields raise
    InvalidRequestError naming them (a newer client's extra fields are refused, not dropped)."""
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{cls.__name__} must be a map, not {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise InvalidRequestError(f"{cls.__name__} has no field(s) {', '.join(map(str, unknown))}")
    nested = _NESTED.get(cls, {})
    values = {}
    for name, value in data.items():
        kind = nested.get(name)
        if isinstance(kind, list):
            if not isinstance(value, list):
                raise InvalidRequestError(f"{cls.__name__}.{name} must be a list")
            value = [from_dict(kind[0], item) for item in value]
        elif kind is not None:
            value = from_dict(kind, value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise InvalidRequestError(f"{cls.__name__}: {err}") from None


def to_msgpack(obj: Any) -> bytes:
    return msgpack.packb(to_dict(obj), use_bin_type=True)


def from_msgpack(cls: type, data: bytes, max_bytes: int = 64 * 1024 * 1024):
    """Unpack with strict limits (no pickle, no ext types, bounded sizes) into `cls`."""
    if len(data) > max_bytes:
        raise InvalidRequestError(f"message of {len(data):,} bytes is over {max_bytes:,}")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0)
    except (ValueError, msgpack.UnpackException, TypeError) as err:
        raise InvalidRequestError(f"malformed msgpack: {err}") from None
    return from_dict(cls, raw)
