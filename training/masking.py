"""Masking strategies for masked-diffusion training: random, ast-tier, ast-span (TreeDiff) and
infill (whole nodes plus pads); `python -m training.masking FILE` shows one on a source file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import AstdiffuseError
from engine.syntax import TIERS, SourceDocument, annotate_tokens, get_grammar, grammar_for_path
from engine.syntax.annotate import NODE_ROLES
from engine.syntax.node_tables import ANCHOR_INDEX
from engine.tokens import PAD_TOKEN, SPECIAL_TOKENS, load_source_encoder

from .anchors import AnchorWeights
from .example import TokenizedExample

DEFAULT_TIER_WEIGHT = 0.05  # TreeDiff's "low default" for tokens outside the four tiers
_ROLE = {name: i for i, name in enumerate(NODE_ROLES)}
_OTHER_ANCHOR = ANCHOR_INDEX["other"]


class MaskingError(ValueError):
    """Masking was asked for something it cannot do; the message says what to change."""


class InvalidRateError(MaskingError):
    """A corruption rate outside [0, 1] (or not a number)."""


class UnknownStrategyError(MaskingError):
    """A strategy name that is not in STRATEGIES."""


@dataclass(frozen=True)
class TierWeights:
    """TreeDiff's sampling weight of a token (ast-tier) or a node span (ast-span) by its tier."""

    skeleton: float = 0.15  # imports, constants, punctuation
    data: float = 0.42  # assignments, calls
    cond: float = 0.58  # if / elif / else, match, assert
    ctrl: float = 0.60  # for, while, return, try, raise
    default: float = DEFAULT_TIER_WEIGHT  # everything else (definitions' headers, comments)

    def __post_init__(self) -> None:
        if not all(0.0 <= getattr(self, name) < math.inf for name in TIERS):
            raise MaskingError(f"tier weights must be finite and >= 0, not {self}")

    def array(self) -> np.ndarray:
        """float64 [len(TIERS)] in TIERS order."""
        return np.array([getattr(self, name) for name in TIERS], dtype=np.float64)


@dataclass(frozen=True)
class InfillConfig:
    """How `infill` picks whole nodes and pads them (see `mask_infill`)."""

    max_pad: int = 8  # pads appended inside each masked span: uniform in 0..max_pad
    max_run: int = 3  # a statement selection is a run of 1..max_run sibling statements
    statement_weight: float = 0.5  # share of first picks that are statements or runs of them
    body_weight: float = 0.2  # ... that are bodies (a block's whole statement list)
    expression_weight: float = 0.3  # ... that are expressions
    max_spans: int | None = None  # stop after this many selections (None: fill the budget)

    def __post_init__(self) -> None:
        weights = (self.statement_weight, self.body_weight, self.expression_weight)
        if self.max_pad < 0 or self.max_run < 1 or (self.max_spans or 0) < 0:
            raise MaskingError("infill needs max_pad >= 0, max_run >= 1 and max_spans >= 0")
        if min(weights) < 0 or sum(weights) <= 0:
            raise MaskingError("infill role weights must be >= 0 with a positive sum")


@dataclass(frozen=True)
class MaskingConfig:
    """Parameters every strategy accepts; each reads the fields it needs."""

    tier_weights: TierWeights = field(default_factory=TierWeights)  # ast-tier, ast-span
    infill: InfillConfig = field(default_factory=InfillConfig)  # infill
    pad_id: int | None = None  # the tokenizer's id of PAD_TOKEN; required by infill


@dataclass
class MaskedExample:
    """A strategy's result; arrays have the length L' of `example` (L' = L except for infill)."""

    example: TokenizedExample  # the input unchanged, or for infill a copy with pads inserted
    mask: np.ndarray  # bool [L']: tokens to replace by the mask token; targets are input_ids
    budget: int  # N: the number of tokens the strategy aimed at (floor(rate * L))
    spans: np.ndarray  # int32 [K, 2]: masked whole-node regions [start, end) in `example`'s
    #   coordinates (ast-span: accepted node spans; infill: selections incl. their pads)
    fallback: np.ndarray  # bool [L']: tokens masked by the uniform fallback (ast-tier, ast-span)
    inserted: np.ndarray  # bool [L']: pad tokens inserted by infill (all masked)

    @property
    def masked_share(self) -> float:
        """Masked original tokens (pads not counted) over the original length L: the share of
        the input hidden, which infill only approaches (a 1/t loss weight may use it there)."""
        original = len(self.mask) - int(self.inserted.sum())
        return int((self.mask & ~self.inserted).sum()) / original if original else 0.0


def mask_budget(rate: float, length: int) -> int:
    """N = floor(rate * length), with a 1e-9 tolerance so that 0.29 * 100 gives 29, not 28."""
    check_rate(rate)
    return min(length, max(0, math.floor(rate * length + 1e-9)))


def check_rate(rate: float) -> float:
    number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not number or not 0.0 <= float(rate) <= 1.0:
        raise InvalidRateError(f"the corruption rate must be a number in [0, 1], not {rate!r}")
    return float(rate)


def _result(example: TokenizedExample, mask: np.ndarray, budget: int, *,
            spans: np.ndarray | None = None, fallback: np.ndarray | None = None,
            inserted: np.ndarray | None = None) -> MaskedExample:
    length = len(mask)
    return MaskedExample(
        example, mask, budget,
        spans if spans is not None else np.zeros((0, 2), dtype=np.int32),
        fallback if fallback is not None else np.zeros(length, dtype=bool),
        inserted if inserted is not None else np.zeros(length, dtype=bool))


def _uniform_fill(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Mask `count` more tokens, uniformly among the unmasked ones; returns those positions."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    free = np.flatnonzero(~mask)
    picked = free[rng.permutation(len(free))[:count]]
    mask[picked] = True
    return picked


def _sampling_keys(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Efraimidis–Spirakis keys log(u) / w (the log of u ** (1/w)): the n largest keys are a
    weighted sample of n without replacement; weight 0 gives -inf (never drawn by weight)."""
    u = 1.0 - rng.random(len(weights))  # in (0, 1]: log is finite
    with np.errstate(divide="ignore"):
        return np.where(weights > 0, np.log(u) / np.where(weights > 0, weights, 1.0), -np.inf)


def mask_random(example: TokenizedExample, rate: float, rng: np.random.Generator,
                config: MaskingConfig = MaskingConfig()) -> MaskedExample:
    """MDLM / LLaDA baseline: exactly N = floor(rate * L) positions, uniformly without
    replacement (not Bernoulli(rate): TreeDiff compares strategies at an equal budget)."""
    length = len(example)
    budget = mask_budget(rate, length)
    mask = np.zeros(length, dtype=bool)
    mask[rng.permutation(length)[:budget]] = True
    return _result(example, mask, budget)


def mask_ast_tier(example: TokenizedExample, rate: float, rng: np.random.Generator,
                  config: MaskingConfig = MaskingConfig()) -> MaskedExample:
    """TreeDiff Algorithm 1: N = floor(rate * L) tokens drawn by weighted sampling without
    replacement, a token's weight that of its tier; when fewer than N tokens have a positive
    weight, the rest is drawn uniformly among the unmasked tokens. O(L) (argpartition)."""
    length = len(example)
    budget = mask_budget(rate, length)
    weights = config.tier_weights.array()[example.tiers.astype(np.int64)]
    keys = _sampling_keys(weights, rng)
    mask = np.zeros(length, dtype=bool)
    fallback = np.zeros(length, dtype=bool)
    drawable = int((weights > 0).sum())
    by_weight = min(budget, drawable)
    if by_weight > 0:
        mask[np.argpartition(-keys, by_weight - 1)[:by_weight]] = True
    fallback[_uniform_fill(mask, budget - by_weight, rng)] = True
    return _result(example, mask, budget, fallback=fallback)


def mask_ast_span(example: TokenizedExample, rate: float, rng: np.random.Generator,
                  config: MaskingConfig = MaskingConfig()) -> MaskedExample:
    """TreeDiff Algorithm 2: visit the node spans in random order, accept each whole span with
    its tier's weight as probability if it shares no token with an accepted span and fits the
    remaining budget; stop at N = floor(rate * L); then a uniform fallback up to exactly N."""
    length = len(example)
    budget = mask_budget(rate, length)
    spans = example.node_spans.reshape(-1, 5)
    order = rng.permutation(len(spans))
    coins = rng.random(len(spans))  # drawn for every span so the stream does not depend on N
    spans = spans[order]
    starts, ends = spans[:, 0].astype(np.int64), spans[:, 1].astype(np.int64)
    accept = coins < config.tier_weights.array()[spans[:, 2]]
    accept &= (ends - starts <= budget) & (ends > starts)
    masked = bytearray(length)  # find() on a bytearray checks a range without copying it
    accepted: list[tuple[int, int]] = []
    remaining = budget
    for start, end in zip(starts[accept].tolist(), ends[accept].tolist()):
        if remaining == 0:
            break
        if end - start <= remaining and masked.find(1, start, end) < 0:
            masked[start:end] = b"\x01" * (end - start)
            accepted.append((start, end))
            remaining -= end - start
    mask = np.frombuffer(bytes(masked), dtype=np.uint8).astype(bool)
    fallback = np.zeros(length, dtype=bool)
    fallback[_uniform_fill(mask, remaining, rng)] = True
    chosen = np.array(sorted(accepted), dtype=np.int32).reshape(-1, 2)
    return _result(example, mask, budget, spans=chosen, fallback=fallback)


def infill_candidates(node_spans: np.ndarray, config: InfillConfig = InfillConfig()
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What an editor user selects: statements, bodies, expressions and runs of 2..max_run
    sibling statements. Returns int64 [C, 2] token ranges, the row of node_spans of the first
    node of each, and each one's pick weight (role weight shared evenly inside its role).

    Siblings are statements of the same depth whose parent (the nearest earlier span one level
    up: node_spans are in document pre-order) is the same, next to each other in that order."""
    spans = node_spans.reshape(-1, 5).astype(np.int64)
    roles, depths = spans[:, 3], spans[:, 4]
    statements = np.flatnonzero(roles == _ROLE["statement"])
    parents = np.full(len(statements), -1, dtype=np.int64)
    for depth in np.unique(depths[statements]).tolist():
        here = depths[statements] == depth
        above = np.flatnonzero(depths == depth - 1)
        if len(above):
            before = np.searchsorted(above, statements[here]) - 1
            parents[here] = np.where(before >= 0, above[np.maximum(before, 0)], -1)
    order = np.lexsort((statements, parents, depths[statements]))
    sibling_rows, sibling_keys = statements[order], np.stack(
        [depths[statements][order], parents[order]], axis=1)
    same_group = (sibling_keys[1:] == sibling_keys[:-1]).all(axis=1)
    rows = [statements, np.flatnonzero(roles == _ROLE["body"]),
            np.flatnonzero(roles == _ROLE["expression"])]
    ranges = [spans[r, :2] for r in rows]
    groups = [np.zeros(len(r), dtype=np.int64) + g for g, r in enumerate(rows)]
    run_ok = same_group  # run_ok[i]: siblings i .. i + extra all share one parent
    for extra in range(1, config.max_run):
        if extra > 1:
            run_ok = run_ok[:-1] & same_group[extra - 1:]
        firsts = np.flatnonzero(run_ok)
        first_rows, last_rows = sibling_rows[firsts], sibling_rows[firsts + extra]
        ranges.append(np.stack([spans[first_rows, 0], spans[last_rows, 1]], axis=1))
        rows.append(first_rows)
        groups.append(np.zeros(len(firsts), dtype=np.int64))
    ranges_all = np.concatenate(ranges).reshape(-1, 2)
    rows_all = np.concatenate(rows)
    group_all = np.concatenate(groups)
    role_weight = np.array([config.statement_weight, config.body_weight,
                            config.expression_weight], dtype=np.float64)
    counts = np.bincount(group_all, minlength=3).astype(np.float64)
    weights = role_weight[group_all] / np.maximum(counts[group_all], 1.0)
    return ranges_all, rows_all, weights


def mask_infill(example: TokenizedExample, rate: float, rng: np.random.Generator,
                config: MaskingConfig = MaskingConfig()) -> MaskedExample:
    """Mask whole nodes the way an editor user selects them and let the model learn lengths.

    Rate: a target of N = floor(rate * L) original tokens. Candidates (`infill_candidates`) are
    visited in a weighted random order (role weights); one is taken when it fits what is left
    of N and neither overlaps nor touches a taken one (an unmasked token separates two holes),
    until N is reached or `max_spans` are taken. If none fits, the shortest candidate is taken
    (rate > 0 always gives a hole). So the masked share is at most the rate, close to it at the
    low rates of the infill task, and short of it at high rates (use ast-span there).

    Then 0..max_pad pad tokens (uniform) go right after each selection, inside its masked
    region: pads are masked, their target is pad_id, their tier and depth are the selection's
    first node's, their anchor class `other`. node_spans are kept, shifted: a span ending at a
    selection's end (the selection's own nodes, its ancestors) grows over the pads, a later one
    moves; removing the pads gives back the input exactly.
    """
    infill = config.infill
    if config.pad_id is None:
        raise MaskingError("infill inserts pad tokens: pass pad_id (the tokenizer's id of "
                           f"{PAD_TOKEN}) in MaskingConfig")
    length = len(example)
    budget = mask_budget(rate, length)
    ranges, rows, weights = infill_candidates(example.node_spans, infill)
    order = np.argsort(-_sampling_keys(weights, rng), kind="stable")
    ranges, rows = ranges[order], rows[order]
    selected: list[int] = []
    if budget > 0 and len(ranges):
        sizes = ranges[:, 1] - ranges[:, 0]
        fits = np.flatnonzero(sizes <= budget)
        masked = bytearray(length + 2)  # shifted by one: the guard tokens around a hole
        remaining = budget
        limit = infill.max_spans if infill.max_spans is not None else len(ranges)
        for i, start, end in zip(fits.tolist(), ranges[fits, 0].tolist(),
                                 ranges[fits, 1].tolist()):
            if remaining == 0 or len(selected) >= limit:
                break
            if end - start <= remaining and masked.find(1, start, end + 2) < 0:
                masked[start + 1:end + 1] = b"\x01" * (end - start)
                selected.append(i)
                remaining -= end - start
        if not selected and limit > 0:
            selected.append(int(np.argmin(sizes)))
    chosen = sorted(selected, key=lambda i: int(ranges[i, 0]))
    starts = ranges[chosen, 0].astype(np.int64)
    ends = ranges[chosen, 1].astype(np.int64)
    pads = rng.integers(0, infill.max_pad + 1, size=len(chosen))
    return _insert_pads(example, budget, starts, ends, rows[chosen], pads, config.pad_id)


def _insert_pads(example: TokenizedExample, budget: int, starts: np.ndarray, ends: np.ndarray,
                 rows: np.ndarray, pads: np.ndarray, pad_id: int) -> MaskedExample:
    """Insert pads[i] pad tokens before token ends[i] of each selection [starts[i], ends[i])."""
    spans = example.node_spans.reshape(-1, 5)
    at = np.repeat(ends, pads)
    owner = np.repeat(np.arange(len(ends)), pads)
    node = spans[rows[owner]] if len(owner) else np.zeros((0, 5), dtype=np.int32)
    grown = replace(
        example,
        input_ids=np.insert(example.input_ids, at, pad_id).astype(example.input_ids.dtype),
        tiers=np.insert(example.tiers, at, node[:, 2]).astype(example.tiers.dtype),
        depths=np.insert(example.depths, at, node[:, 4]).astype(example.depths.dtype),
        anchors=np.insert(example.anchors, at, _OTHER_ANCHOR).astype(example.anchors.dtype),
        node_spans=_shift_spans(spans, ends, pads))
    before = np.concatenate([[0], np.cumsum(pads)]).astype(np.int64)  # pads before selection i
    new_starts = starts + before[:-1]
    new_ends = ends + before[1:]
    mask = np.zeros(len(grown), dtype=bool)
    inserted = np.zeros(len(grown), dtype=bool)
    for start, pad_start, end in zip(new_starts.tolist(), (ends + before[:-1]).tolist(),
                                     new_ends.tolist()):
        mask[start:end] = True
        inserted[pad_start:end] = True
    regions = np.stack([new_starts, new_ends], axis=1).astype(np.int32).reshape(-1, 2)
    return _result(grown, mask, budget, spans=regions, inserted=inserted)


def _shift_spans(spans: np.ndarray, ends: np.ndarray, pads: np.ndarray) -> np.ndarray:
    """Move span boundaries x by the pads inserted at positions <= x (ends sorted)."""
    cumulative = np.concatenate([[0], np.cumsum(pads)]).astype(np.int64)
    shifted = spans.astype(np.int64).copy()
    for column in (0, 1):
        shifted[:, column] += cumulative[np.searchsorted(ends, shifted[:, column], side="right")]
    return shifted.astype(spans.dtype)


Strategy = Callable[[TokenizedExample, float, np.random.Generator, MaskingConfig], MaskedExample]
STRATEGIES: dict[str, Strategy] = {
    "random": mask_random,
    "ast-tier": mask_ast_tier,
    "ast-span": mask_ast_span,
    "infill": mask_infill,
}


def mask_example(strategy: str, example: TokenizedExample, rate: float,
                 rng: np.random.Generator, config: MaskingConfig = MaskingConfig()
                 ) -> MaskedExample:
    """Apply the named strategy; the same generator state always gives the same result."""
    if strategy not in STRATEGIES:
        raise UnknownStrategyError(f"unknown masking strategy {strategy!r}; choose one of "
                                   f"{', '.join(STRATEGIES)}")
    return STRATEGIES[strategy](example, check_rate(rate), rng, config)


# --- building an example from a file (CLI, benchmark) ----------------------------------------

FALLBACK_VOCAB = 1 << 20  # id space of the fallback pieces (collisions do not matter here)


def fallback_piece_id(piece: str) -> int:
    """A deterministic id for a pre-tokenizer piece (crc32, after the special tokens' ids)."""
    return len(SPECIAL_TOKENS) + zlib.crc32(piece.encode("utf-8")) % FALLBACK_VOCAB


def build_example(doc: SourceDocument, tokenizer: str | Path | None = None, path: str = ""
                  ) -> tuple[TokenizedExample, list[str], int]:
    """Tokenize and annotate a whole document: the example, each token's text and the pad id.

    With no tokenizer, tokens are the byte-level pre-tokenizer pieces of `tokenizers` with ids
    from `fallback_piece_id` (pad id 0, as in a trained tokenizer)."""
    if tokenizer is None:
        from tokenizers.pre_tokenizers import ByteLevel

        pieces = ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(doc.text)
        offsets = [span for _, span in pieces]
        ids = [fallback_piece_id(doc.text[s:e]) for s, e in offsets]
        texts = [doc.text[s:e] for s, e in offsets]
        pad_id = SPECIAL_TOKENS.index(PAD_TOKEN)
    else:
        try:
            loaded = load_source_encoder(tokenizer)
        except FileNotFoundError:
            raise MaskingError(f"no tokenizer.json at {tokenizer}; pass a tokenizer directory "
                               "or file, or leave --tokenizer out") from None
        pad = loaded.token_to_id(PAD_TOKEN)
        if pad is None:
            raise MaskingError(f"the tokenizer at {tokenizer} has no {PAD_TOKEN} token")
        encoding = loaded.encode(doc.text, add_special_tokens=False)
        ids, offsets, pad_id = encoding.ids, encoding.offsets, pad
        texts = [loaded.decode([i], skip_special_tokens=False) for i in ids]
    structure = annotate_tokens(doc, offsets, unit="char", node_spans=True)
    return TokenizedExample.from_structure(ids, structure, path, doc.language), texts, pad_id


# --- CLI --------------------------------------------------------------------------------------

def _rate(text: str) -> float:
    try:
        return check_rate(float(text))
    except (ValueError, MaskingError):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], not {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.masking",
        description="Tokenize and annotate a source file, mask it with one strategy and print "
                    "every token with its tier, depth, anchor weight and whether it is masked.")
    parser.add_argument("file", type=Path, help="source file (language from its extension)")
    parser.add_argument("--strategy", default="ast-tier", choices=list(STRATEGIES),
                        help="masking strategy (default: ast-tier)")
    parser.add_argument("--rate", type=_rate, default=0.15,
                        help="corruption rate in [0, 1]; budget N = floor(rate * L)")
    parser.add_argument("--seed", type=int, default=0, help="seed of numpy's default_rng")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory or tokenizer.json; without it the tokens are "
                             "the byte-level pre-tokenizer pieces of `tokenizers` with "
                             "deterministic ids (crc32), so this works before any tokenizer "
                             "is trained")
    parser.add_argument("--language", default=None, help="language name (default: from the "
                        "file extension)")
    defaults = AnchorWeights()
    parser.add_argument("--gamma", type=float, default=defaults.gamma,
                        help=f"anchor weight of shallow anchors (default {defaults.gamma})")
    parser.add_argument("--decay", type=float, default=defaults.decay,
                        help=f"anchor weight factor per level below d0 (default {defaults.decay})")
    parser.add_argument("--d0", type=int, default=defaults.d0,
                        help=f"depth down to which anchors keep gamma (default {defaults.d0})")
    parser.add_argument("--max-pad", type=int, default=InfillConfig().max_pad,
                        help="infill: at most this many pads after each masked span "
                             f"(default {InfillConfig().max_pad})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if not args.file.is_file():
            raise MaskingError(f"no such file: {args.file}")
        grammar = get_grammar(args.language) if args.language else grammar_for_path(args.file)
        params = AnchorWeights(args.gamma, args.decay, args.d0)
        doc = SourceDocument.from_path(args.file, grammar.name)
        example, texts, pad_id = build_example(doc, args.tokenizer, str(args.file))
        config = MaskingConfig(pad_id=pad_id, infill=InfillConfig(max_pad=args.max_pad))
        result = mask_example(args.strategy, example, args.rate,
                              np.random.default_rng(args.seed), config)
    except (AstdiffuseError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        print(_render(args, result, texts))
    except BrokenPipeError:  # piped into `head`: stop quietly
        sys.stdout = open(os.devnull, "w")
    return 0


def _render(args: argparse.Namespace, result: MaskedExample, texts: list[str]) -> str:
    example = result.example
    weights = AnchorWeights(args.gamma, args.decay, args.d0).weights(example.anchors,
                                                                     example.depths)
    original = iter(texts)
    texts = [PAD_TOKEN if pad else next(original) for pad in result.inserted.tolist()]
    rows = [{"text": text, "tier": TIERS[tier], "depth": depth,
             "anchor_weight": round(weight, 6), "masked": masked}
            for text, tier, depth, weight, masked in zip(
                texts, example.tiers.tolist(), example.depths.tolist(), weights.tolist(),
                result.mask.tolist())]
    pads = int(result.inserted.sum())
    summary = {"strategy": args.strategy, "rate": args.rate, "seed": args.seed,
               "length": len(example) - pads, "pads": pads, "budget": result.budget,
               "masked": int(result.mask.sum())}
    if args.json:
        return json.dumps({"tokens": rows, **summary}, ensure_ascii=False)
    lines = [" ".join(f"{k}={v}" for k, v in summary.items()),
             f"{'index':>6} {'mask':4} {'tier':8} {'depth':>5} {'anchor':>6}  text"]
    for i, row in enumerate(rows):
        lines.append(f"{i:>6} {'####' if row['masked'] else '':4} {row['tier']:8} "
                     f"{row['depth']:>5} {row['anchor_weight']:>6.3f}  {row['text']!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
