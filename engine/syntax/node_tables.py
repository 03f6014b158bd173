"""Per-language node-type tables: TreeDiff tier, anchor class and selection role of each node type.

The tables are data (`tables/<name>.json`, one per grammar); this module loads, validates and
compiles them into arrays indexed by tree-sitter kind id, so annotation is a lookup per node.

Table format (every key required, every value a list of node-type names):

    tiers.skeleton|data|cond|ctrl|default   node types that set a tier for their subtree
    inherit      node types that take the tier of their nearest ancestor that sets one
    keyword      leaf types (anonymous tokens, or named leaves like Python's `true`) that are keywords
    identifier   leaf types that are identifiers
    statement    node types that are statements or members: selections grow to runs of them
    expression   node types that are expressions: a selection inside one grows to the smallest
    body         node types holding a sequence of statements (a block, a class body): the containers
                 in which a selection becomes a run of siblings, and what `block` mode picks
    nonempty     (optional) node types the language rejects without a named child other than a
                 comment, though the grammar accepts them empty (Python's indented `block`)

A node type in none of the tier lists is *unknown*: its tier is `default` and it is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import tree_sitter

TIERS: tuple[str, ...] = ("skeleton", "data", "cond", "ctrl", "default")
TIER_INDEX = {name: i for i, name in enumerate(TIERS)}
DEFAULT_TIER = TIER_INDEX["default"]
INHERIT = -1
UNKNOWN = -2
ERROR_KIND_ID = 0xFFFF  # tree-sitter's builtin ERROR symbol

ANCHOR_CLASSES: tuple[str, ...] = ("keyword", "identifier", "other")
ANCHOR_INDEX = {name: i for i, name in enumerate(ANCHOR_CLASSES)}

_LIST_KEYS = ("inherit", "keyword", "identifier", "statement", "expression", "body")


class TableError(ValueError):
    """A node table file is malformed (a bug in the shipped data, not user input)."""


@dataclass(frozen=True)
class NodeTable:
    """One language's table as loaded from JSON, keyed by node-type name."""

    name: str
    tier_of: dict[str, int]  # node type -> tier index, or INHERIT
    keywords: frozenset[str]
    identifiers: frozenset[str]
    statements: frozenset[str]
    expressions: frozenset[str]
    bodies: frozenset[str]
    nonempty: frozenset[str] = frozenset()

    def tier_name(self, node_type: str) -> str:
        """Tier a node type sets by itself: a tier name, 'inherit' or 'unknown'."""
        code = self.tier_of.get(node_type, UNKNOWN)
        if code == INHERIT:
            return "inherit"
        if code == UNKNOWN:
            return "unknown"
        return TIERS[code]

    def covered(self) -> frozenset[str]:
        return frozenset(self.tier_of)


@dataclass(frozen=True)
class CompiledTable:
    """A table resolved against one grammar: numpy arrays indexed by kind id."""

    table: NodeTable
    tier: np.ndarray  # int8 [kind_count]: tier index, INHERIT or UNKNOWN
    anchor: np.ndarray  # int8 [kind_count]: anchor class index for leaves
    is_statement: np.ndarray  # bool [kind_count]
    is_expression: np.ndarray  # bool [kind_count]
    is_body: np.ndarray  # bool [kind_count]


def parse_table(name: str, raw: dict) -> NodeTable:
    """Validate a decoded JSON table; every node type may set at most one tier."""
    missing = [k for k in ("tiers", *_LIST_KEYS) if k not in raw]
    if missing:
        raise TableError(f"table {name!r} lacks keys {missing}")
    tiers = raw["tiers"]
    if set(tiers) != set(TIERS):
        raise TableError(f"table {name!r}: tiers must be exactly {TIERS}, got {sorted(tiers)}")
    tier_of: dict[str, int] = {}
    groups = [(tier, TIER_INDEX[tier], tiers[tier]) for tier in TIERS]
    groups.append(("inherit", INHERIT, raw["inherit"]))
    for group, code, names in groups:
        _check_names(name, group, names)
        for node_type in names:
            if node_type in tier_of:
                raise TableError(f"table {name!r}: {node_type!r} is listed under two tiers")
            tier_of[node_type] = code
    for key in _LIST_KEYS[1:]:
        _check_names(name, key, raw[key])
    _check_names(name, "nonempty", raw.get("nonempty", []))
    return NodeTable(
        name=name,
        tier_of=tier_of,
        keywords=frozenset(raw["keyword"]),
        identifiers=frozenset(raw["identifier"]),
        statements=frozenset(raw["statement"]),
        expressions=frozenset(raw["expression"]),
        bodies=frozenset(raw["body"]),
        nonempty=frozenset(raw.get("nonempty", [])),
    )


def _check_names(table: str, key: str, names: object) -> None:
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise TableError(f"table {table!r}: {key!r} must be a list of node-type names")
    if len(set(names)) != len(names):
        raise TableError(f"table {table!r}: {key!r} lists a node type twice")


@lru_cache(maxsize=None)
def load_table(name: str) -> NodeTable:
    """Load the shipped table `tables/<name>.json`."""
    path = resources.files("engine.syntax") / "tables" / f"{name}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TableError(f"no node table named {name!r}") from err
    return parse_table(name, raw)


def compile_table(table: NodeTable, language: tree_sitter.Language) -> CompiledTable:
    """Resolve names to kind ids; several ids can share a name (aliases), all get the entry."""
    count = ERROR_KIND_ID + 1  # arrays cover every possible kind id, ERROR included
    tier = np.full(count, UNKNOWN, dtype=np.int8)
    anchor = np.full(count, ANCHOR_INDEX["other"], dtype=np.int8)
    is_statement = np.zeros(count, dtype=bool)
    is_expression = np.zeros(count, dtype=bool)
    is_body = np.zeros(count, dtype=bool)
    for kind_id in range(language.node_kind_count):
        node_type = language.node_kind_for_id(kind_id)
        if node_type is None:
            continue
        tier[kind_id] = table.tier_of.get(node_type, UNKNOWN)
        if node_type in table.keywords:
            anchor[kind_id] = ANCHOR_INDEX["keyword"]
        elif node_type in table.identifiers:
            anchor[kind_id] = ANCHOR_INDEX["identifier"]
        is_statement[kind_id] = node_type in table.statements
        is_expression[kind_id] = node_type in table.expressions
        is_body[kind_id] = node_type in table.bodies
    # tree-sitter's ERROR node has kind id 0xFFFF, past the grammar's own kinds: it is known
    # (default tier, no selection role) rather than counted as unknown.
    tier[ERROR_KIND_ID] = DEFAULT_TIER
    return CompiledTable(table, tier, anchor, is_statement, is_expression, is_body)


def grammar_node_types(language: tree_sitter.Language) -> tuple[set[str], set[str]]:
    """Visible (named, anonymous) node-type names a grammar can produce."""
    named, anonymous = set(), set()
    # Language.supertypes, not node_kind_is_supertype: the latter answers True for every kind
    # in py-tree-sitter 0.26.1.
    supertypes = set(language.supertypes)
    for kind_id in range(language.node_kind_count):
        if not language.node_kind_is_visible(kind_id) or kind_id in supertypes:
            continue
        node_type = language.node_kind_for_id(kind_id)
        if not node_type:  # Go has a nameless token for NUL bytes, which documents never hold
            continue
        (named if language.node_kind_is_named(kind_id) else anonymous).add(node_type)
    return named, anonymous
