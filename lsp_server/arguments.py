"""The `astdiffuse.diffuseBlock` command's arguments and a code action's data, checked, and the
engine options one call runs with (settings + call -> `InfillOptions` fields)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from lsprotocol import types

from .edits import to_json
from .errors import InvalidArgumentsError
from .selection import parse_range
from .settings import MAX_CANDIDATES, Settings

COMMAND = "astdiffuse.diffuseBlock"
MODES = ("node", "block")
MAX_RANGES = 64
LENGTH_CANDIDATES = 3  # the engine's default rows per sample (InfillOptions.length_candidates)
_KEYS = {"uri", "ranges", "mode", "keepAnchors", "candidates", "apply"}


@dataclass(frozen=True)
class DiffuseCall:
    """One "Diffuse this block": a document, its selections and how to infill them."""

    uri: str
    ranges: tuple[types.Range, ...]
    mode: str = "node"  # node: grow to whole nodes; block: the enclosing body
    keep_anchors: bool = False  # keep keywords and identifiers, regenerate the rest
    candidates: int | None = None  # None: the `candidates` setting
    apply: bool = True  # apply the best candidate (workspace/applyEdit) or return all


def parse_call(raw: Any, where: str = "arguments[0]") -> DiffuseCall:
    """A DiffuseCall from `{uri, ranges, mode?, keepAnchors?, candidates?, apply?}`."""
    if not isinstance(raw, dict):
        raise InvalidArgumentsError(
            f"{where} must be an object {{uri, ranges: [Range, ...], mode?, keepAnchors?, "
            "candidates?, apply?}")
    unknown = sorted(set(raw) - _KEYS, key=str)
    if unknown:
        raise InvalidArgumentsError(f"{where} has unknown key(s) {', '.join(map(str, unknown))}; "
                                    f"it takes {', '.join(sorted(_KEYS))}")
    uri = raw.get("uri")
    if not isinstance(uri, str) or not uri:
        raise InvalidArgumentsError(f"{where}.uri must be the document's URI")
    ranges = raw.get("ranges")
    if not isinstance(ranges, list) or not ranges:
        raise InvalidArgumentsError(f"{where}.ranges must be a non-empty list of LSP Ranges "
                                    "(a cursor is an empty range)")
    if len(ranges) > MAX_RANGES:
        raise InvalidArgumentsError(f"{where}.ranges has {len(ranges)} ranges; at most "
                                    f"{MAX_RANGES} are taken")
    parsed = tuple(parse_range(r, f"ranges[{i}]") for i, r in enumerate(ranges))
    mode = raw.get("mode", "node")
    if mode not in MODES:
        raise InvalidArgumentsError(f"{where}.mode must be one of {', '.join(MODES)}, "
                                    f"not {mode!r}")
    flags = {}
    for key in ("keepAnchors", "apply"):
        value = raw.get(key, key == "apply")
        if not isinstance(value, bool):
            raise InvalidArgumentsError(f"{where}.{key} must be true or false, not {value!r}")
        flags[key] = value
    candidates = raw.get("candidates")
    if candidates is not None and (not isinstance(candidates, int) or isinstance(candidates, bool)
                                   or not 1 <= candidates <= MAX_CANDIDATES):
        raise InvalidArgumentsError(f"{where}.candidates must be a whole number from 1 to "
                                    f"{MAX_CANDIDATES}, not {candidates!r}")
    return DiffuseCall(uri=uri, ranges=parsed, mode=mode, keep_anchors=flags["keepAnchors"],
                       candidates=candidates, apply=flags["apply"])


def parse_command_arguments(arguments: Sequence[Any] | None) -> DiffuseCall:
    """The command takes exactly one argument object."""
    if not arguments or len(arguments) != 1:
        raise InvalidArgumentsError(
            f"{COMMAND} takes one argument {{uri, ranges: [Range, ...], mode?, keepAnchors?, "
            f"candidates?, apply?}}, got {len(arguments or ())}")
    return parse_call(arguments[0])


def call_json(call: DiffuseCall) -> dict:
    """The call as command arguments / code action data (what `parse_call` reads back)."""
    out = {"uri": call.uri, "ranges": [to_json(r) for r in call.ranges], "mode": call.mode,
           "keepAnchors": call.keep_anchors, "apply": call.apply}
    if call.candidates is not None:
        out["candidates"] = call.candidates
    return out


def samples_needed(candidates: int, keep_anchors: bool,
                   length_candidates: int = LENGTH_CANDIDATES) -> int:
    """Samples per length row that give `candidates` distinct rows: keep-anchors has one row
    per sample, the length rule `length_candidates` (the model family's: DreamOn has 1)."""
    return max(1, math.ceil(candidates / (1 if keep_anchors else length_candidates)))


def infill_options(settings: Settings, call: DiffuseCall) -> dict:
    """`InfillOptions` fields for this call. Temperature and steps are left to the engine (the
    model family's defaults) unless set. Enough samples run to give `candidates` distinct rows:
    keep-anchors has one row per sample, the length rule `LENGTH_CANDIDATES`."""
    wanted = call.candidates or settings.candidates
    options: dict[str, Any] = {"candidates": wanted, "keep_anchors": call.keep_anchors,
                               "context_tokens": settings.context_tokens,
                               "samples": samples_needed(wanted, call.keep_anchors)}
    if settings.steps is not None:
        options["steps"] = settings.steps
    if settings.temperature is not None:
        options["temperature"] = settings.temperature
    return options


def offers_kind(only: Sequence[Any] | None, kind: str) -> bool:
    """Whether a code action of `kind` passes the client's `context.only` filter (a listed kind
    or one of its parents: `refactor` admits `refactor.rewrite`)."""
    if not only:
        return True
    for wanted in only:
        wanted = getattr(wanted, "value", wanted)
        if kind == wanted or kind.startswith(f"{wanted}."):
            return True
    return False
