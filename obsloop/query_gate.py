"""Which SQL the query surfaces (8123, admin ``/query``, ``obsloop query``) may run, decided
on ClickHouse's own parse of it.

The engine parses the text twice (``formatQuery``, then ``EXPLAIN AST`` of that rendering),
the rules read the AST's node lines, and what runs is the rendering, never the caller's
text, so the statement checked is the statement executed. Reads always; writes where a
surface allows them; never files, network, other servers or processes (refused engine names
come from the engine's own ``system`` tables). Design: docs/design/query-gate.md.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from obsloop.core.sql import quote

Run = Callable[[str, Mapping[str, str]], list[str]]
"""Runs one engine-generated statement with bound parameters; returns each row's first column."""

ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "generaterandom",
    "values", "null", "view", "format",
})
ALLOWED_TABLE_ENGINES = frozenset(name.lower() for name in (
    "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree",
    "VersionedCollapsingMergeTree", "GraphiteMergeTree", "CoalescingMergeTree", "ReplicatedMergeTree",
    "ReplicatedReplacingMergeTree", "ReplicatedSummingMergeTree", "ReplicatedAggregatingMergeTree",
    "ReplicatedCollapsingMergeTree", "ReplicatedVersionedCollapsingMergeTree", "ReplicatedGraphiteMergeTree",
    "ReplicatedCoalescingMergeTree", "Distributed", "Memory", "Log", "TinyLog", "StripeLog", "Null", "Set",
    "Join", "Buffer", "View", "MaterializedView", "Merge", "GenerateRandom",
))
"""Replicated and Distributed reach only the servers and keepers the ClickHouse operator configured."""
ALLOWED_DATABASE_ENGINES = frozenset({"atomic", "memory", "ordinary", "lazy", "replicated"})
DENIED_FUNCTIONS = frozenset({"file", "hascolumnintable", "catboostevaluate", "naivebayesclassifier"})
"""Scalar functions that read files or connect elsewhere; ``dict*`` (dictionary sources) too."""

READ_ROOTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain", "DescribeQuery")
READ_ROOT_PREFIXES = ("Show", "SHOW", "Exists")
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
WRITE_ROOTS = frozenset({
    "InsertQuery", "CreateQuery", "AlterQuery", "DropQuery", "TruncateQuery", "Rename", "OptimizeQuery",
    "DeleteQuery",
})
WRITE_KEYWORDS = frozenset({"INSERT", "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "EXCHANGE", "OPTIMIZE",
                            "DELETE"})

_FUNCTION = re.compile(r"^\s*Function (\S+)")
_CUSTOM_DISK = re.compile(r"\bdisk\s*[(=]", re.I)


class Refused(Exception):
    """A statement the surface does not run; ``code`` / ``name`` are ClickHouse's."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


def _read_only(message: str) -> Refused:
    return Refused(164, "READONLY", message)


def _denied(message: str) -> Refused:
    return Refused(497, "ACCESS_DENIED", message)


@dataclass(frozen=True)
class Statement:
    sql: str
    """ClickHouse's rendering of the statement: the text to execute."""
    kind: str
    """The root node of its syntax tree (``SelectWithUnionQuery``, ``InsertQuery``, ...)."""

    inserts_rows: bool = False
    """An INSERT whose rows come with the request rather than from a SELECT."""

    @property
    def writes(self) -> bool:
        return self.kind in WRITE_ROOTS


_denied_names: frozenset[str] | None = None
_denied_lock = threading.Lock()


def _denied_engine_names(run: Run) -> frozenset[str]:
    """Every table function and engine the engine knows, minus the allowed ones (lower case)."""
    global _denied_names
    with _denied_lock:
        if _denied_names is None:
            functions = run("SELECT name FROM system.table_functions", {})
            tables = run("SELECT name FROM system.table_engines", {})
            databases = run("SELECT name FROM system.database_engines", {})
            _denied_names = frozenset(
                {n.lower() for n in functions} - ALLOWED_TABLE_FUNCTIONS
                | {n.lower() for n in tables} - ALLOWED_TABLE_ENGINES
                | {n.lower() for n in databases} - ALLOWED_DATABASE_ENGINES
            )
        return _denied_names


def check(sql: str, run: Run, *, writes: bool, params: Mapping[str, str] | None = None) -> Statement:
    """The statement ``sql`` as it may run on a surface (``writes``: a surface that allows
    writes), or :class:`Refused`. A syntax error is the engine's own exception, raised by ``run``."""
    [rendered] = run(f"SELECT formatQuery({quote(sql)})", {})
    tree = run(f"EXPLAIN AST {rendered}", params or {})
    root = tree[0].split(None, 1)[0] if tree and tree[0].strip() else ""
    keyword = rendered.split(None, 1)[0].upper() if rendered.strip() else ""
    is_read = keyword in READ_KEYWORDS and (root in READ_ROOTS or root.startswith(READ_ROOT_PREFIXES))
    is_write = keyword in WRITE_KEYWORDS and root in WRITE_ROOTS
    if not is_read:
        if not is_write:
            raise (_denied if writes else _read_only)(
                f"{keyword or 'this'} statements are not run here (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN"
                + (", INSERT, CREATE, ALTER, DROP, TRUNCATE, RENAME, OPTIMIZE, DELETE" if writes else "") + ")")
        if not writes:
            raise _read_only("Cannot execute query in readonly mode")
    _check_tree(tree, rendered, root, read=is_read, denied=_denied_engine_names(run))
    selects = any(line.startswith(" SelectWithUnionQuery") for line in tree[1:])
    return Statement(sql=rendered, kind=root, inserts_rows=root == "InsertQuery" and not selects)


def _check_tree(tree: list[str], rendered: str, root: str, *, read: bool, denied: frozenset[str]) -> None:
    upper = rendered.upper()
    if "INTO OUTFILE" in upper or "FROM INFILE" in upper:
        raise _denied("INTO OUTFILE and FROM INFILE are not allowed: results go back in the response")
    for line in tree[1:]:
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        # A direct child literal of a query (of EXPLAIN's query too) is its output or input file.
        if node.startswith("Literal") and (depth == 1 and (read or root == "InsertQuery")
                                           or depth == 2 and root == "Explain"):
            raise _denied("INTO OUTFILE and FROM INFILE are not allowed: results go back in the response")
        if node == "Set" or node.startswith("Set "):
            if read:
                raise _read_only("SETTINGS clauses are not allowed here: the limits and readonly are the server's")
            if root != "CreateQuery":
                raise _denied("SETTINGS clauses are not allowed here: the limits are the server's")
        if node.startswith(("Dictionary definition", "FunctionWithKeyValueArguments")):
            raise _denied("dictionaries are not allowed: their sources read files or reach other servers")
        match = _FUNCTION.match(line)
        if match is None:
            continue
        name = match.group(1).lower()
        if name in denied:
            raise _denied(f"{match.group(1)} reads files or reaches other servers or processes; "
                          "allowed table functions: " + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS)))
        if name in DENIED_FUNCTIONS or name.startswith("dict"):
            raise _denied(f"function {match.group(1)} reads files, dictionaries or other servers")
    if root == "CreateQuery" and _CUSTOM_DISK.search(rendered):
        raise _denied("custom disks are not allowed: they read files or reach other servers")
