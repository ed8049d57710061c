"""Fuzz the statement gate of the query surfaces: 0 crashes, 0 escapes, peak memory reported.

    python bench/fuzz/statement_gate.py --examples 100000 --seed 1

Hypothesis builds statements from two corpora, attacks (file / network / process table
functions, ``file()``, ``INTO OUTFILE``, ``FROM INFILE``, ``INSERT INTO FUNCTION``,
dictionaries, ``SYSTEM``, ``SET``, DDL) and every ClickHouse query of the shipped dashboards,
then mutates them: comments (nested ones, ``--``, ``#``), quotes, whitespace, case,
semicolons and second statements, wrapping in subqueries, ``view()`` and ``WITH``, attack
fragments spliced into dashboard SQL, random tokens. Each statement goes through
:func:`obsloop.query_gate.check` for a read-only surface and for one that allows writes,
on a scratch embedded engine holding obsloop's schema.

A crash is any exception other than a refusal or the engine's own error. An escape is a
statement the gate let through that (a) reads, in ClickHouse's rendering, as a call to a
refused function or an output/input file, or as a write on the read-only surface, or
(b) when run on the scratch engine (no ``readonly``, so the gate alone stands between) made
a connection to the local listener the attacks aim at, wrote into the canary directory, or
returned the canary file's secret (accepted statements run once per distinct rendering).
The summary line ends the output; exit status 1 on any.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "security"))

from query_attacks import Listener, listening  # noqa: E402

from obsloop import query_gate  # noqa: E402
from obsloop.dashboards.boards import all_dashboards  # noqa: E402
from obsloop.dashboards.grafana import Sql, Variable  # noqa: E402
from obsloop.dashboards.macros import TimeRange, expand  # noqa: E402
from obsloop.pipelines.schema import SchemaOptions  # noqa: E402
from obsloop.schema import ddl  # noqa: E402

LIMITS = {"max_execution_time": "2", "max_rows_to_read": "10000000", "max_memory_usage": str(512 << 20),
          "max_result_rows": "10000", "allow_python_table_function": "0"}


class EngineError(Exception):
    """The engine's own error (a syntax error, an unknown table): a clean refusal."""


@dataclass
class Canary:
    """What the attacks aim at: a secret file, a directory nothing may be written into, a
    listener nothing may connect to."""

    root: Path
    listener: Listener
    secret: str = field(default_factory=lambda: f"CANARY-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.secret_file.write_text(self.secret + "\n")
        self.out.mkdir()

    @property
    def secret_file(self) -> Path:
        return self.root / "secret.txt"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def attacks(self) -> list[str]:
        host, secret, out = self.listener.address, self.secret_file, self.out
        return [
            f"SELECT * FROM file('{secret}', 'LineAsString')",
            f"SELECT file('{secret}')",
            f"SELECT * FROM url('http://{host}/a', 'LineAsString')",
            f"SELECT * FROM urlCluster('default', 'http://{host}/a', 'LineAsString')",
            f"SELECT * FROM s3('http://{host}/b/k', 'CSV')",
            f"SELECT * FROM remote('{host}', system.one)",
            f"SELECT * FROM remoteSecure('{host}', system.one)",
            "SELECT * FROM cluster('default', system.one)",
            f"SELECT * FROM mysql('{host}', 'd', 't', 'u', 'p')",
            f"SELECT * FROM postgresql('{host}', 'd', 't', 'u', 'p')",
            f"SELECT * FROM mongodb('{host}', 'd', 'c', 'u', 'p', 'a String')",
            f"SELECT * FROM redis('{host}', 'k', 'k String')",
            f"SELECT * FROM sqlite('{secret}', 't')",
            f"SELECT * FROM executable('cat {secret}', 'TSV', 'a String')",
            "SELECT * FROM input('a String')",
            f"SELECT * FROM hdfs('hdfs://{host}/f', 'TSV')",
            f"SELECT * FROM azureBlobStorage('http://{host}/c', 'c', 'b')",
            f"SELECT * FROM iceberg('http://{host}/i')",
            f"SELECT * FROM deltaLake('http://{host}/d')",
            f"SELECT * FROM fileCluster('default', '{secret}')",
            f"SELECT * FROM filesystem('{self.root}')",
            "SELECT hasColumnInTable('127.0.0.1', 'system', 'one', 'dummy')",
            "SELECT dictGet('d', 'a', toUInt64(1))",
            "SELECT * FROM dictionary('d')",
            "SELECT * FROM Python(x)",
            f"SELECT 1 INTO OUTFILE '{out}/o1'",
            f"SELECT 1 INTO OUTFILE '{out}/o2' TRUNCATE",
            f"SHOW TABLES INTO OUTFILE '{out}/o3'",
            f"EXPLAIN SELECT 1 INTO OUTFILE '{out}/o4'",
            f"INSERT INTO FUNCTION file('{out}/o5', 'CSV') SELECT 1",
            f"INSERT INTO otel_logs (Body) FROM INFILE '{secret}' FORMAT LineAsString",
            f"DESCRIBE TABLE url('http://{host}/schema', 'CSV')",
            f"CREATE TABLE t_url (a String) ENGINE = URL('http://{host}/t', 'CSV')",
            f"CREATE TABLE t_file (a String) ENGINE = File(LineAsString, '{secret}')",
            f"CREATE DICTIONARY d (a UInt64) PRIMARY KEY a SOURCE(HTTP(URL 'http://{host}/d' FORMAT 'TSV')) "
            "LAYOUT(FLAT()) LIFETIME(0)",
            f"CREATE DATABASE d_fs ENGINE = Filesystem('{self.root}')",
            f"CREATE TABLE t_disk (a Int8) ENGINE = MergeTree ORDER BY a SETTINGS disk = disk(type = s3, "
            f"endpoint = 'http://{host}/b/', access_key_id = 'a', secret_access_key = 'b')",
            f"BACKUP TABLE otel_logs TO File('{out}/b')",
            "SYSTEM SHUTDOWN", "SYSTEM DROP DNS CACHE", "SET readonly = 0", "KILL QUERY WHERE 1",
            "DROP TABLE otel_logs", "TRUNCATE TABLE otel_traces", "CREATE USER intruder", "GRANT ALL ON *.* TO default",
            "ALTER TABLE otel_logs DELETE WHERE 1", "CREATE FUNCTION f AS x -> x", "USE system",
            "SELECT 1 SETTINGS readonly = 0", "SELECT 1 SETTINGS max_execution_time = 0",
        ]


def dashboard_sql() -> list[str]:
    """Every ClickHouse query of the shipped dashboards, macros expanded as Grafana would."""
    now = int(time.time())
    window = TimeRange(start=now - 6 * 3600, end=now, interval_seconds=300)
    queries = []
    for board in all_dashboards():
        values = {variable.name: ["fraud-scorer"] for variable in board.variables}
        sqls = [q.sql for panel in board.panels() for q in panel.queries if isinstance(q, Sql)]
        sqls += [v.sql for v in board.variables if isinstance(v, Variable)]
        sqls += [a.sql for a in board.annotations]
        queries += [expand(sql, values, window) for sql in sqls]
    return queries


FILLERS = ["/**/", "/* x */", "/* /* */ DROP TABLE otel_logs */", "/* /* */", "*/", "-- c\n", "# c\n", "\n", "\t",
           "\r\n", "\u00a0", "\u2028", " ", ";", "; ", "'", "\"", "`", "\\", "(", ")", "\0", "{x:String}", "$$"]
KEYWORDS = ["SELECT", "INSERT", "INTO", "OUTFILE", "INFILE", "FROM", "FORMAT", "SETTINGS", "SYSTEM", "DROP", "SET",
            "WITH", "UNION ALL", "EXPLAIN", "DESCRIBE", "SHOW", "EXISTS", "VALUES", "FUNCTION", "TABLE", "AS"]


@st.composite
def statements(draw: st.DrawFn, attacks: list[str], benign: list[str]) -> str:
    base = draw(st.sampled_from(attacks + benign))
    for _ in range(draw(st.integers(0, 4))):
        base = draw(st.sampled_from(_MUTATIONS))(draw, base, attacks)
    return base


def _insert(draw: st.DrawFn, text: str, fragment: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + fragment + text[at:]


_MUTATIONS: list[Any] = [
    lambda draw, s, a: _insert(draw, s, draw(st.sampled_from(FILLERS))),
    lambda draw, s, a: _insert(draw, s, f" {draw(st.sampled_from(KEYWORDS))} "),
    lambda draw, s, a: _insert(draw, s, draw(st.text(max_size=6))),
    lambda draw, s, a: draw(st.sampled_from(FILLERS)) + s,
    lambda draw, s, a: s + draw(st.sampled_from([";", "; DROP TABLE otel_logs", "; " + draw(st.sampled_from(a)),
                                                   " FORMAT JSON", " SETTINGS readonly = 0", "\n-- ;"])),
    lambda draw, s, a: s.swapcase() if draw(st.booleans()) else s.lower(),
    lambda draw, s, a: f"SELECT * FROM ({s})",
    lambda draw, s, a: f"SELECT * FROM view({s})",
    lambda draw, s, a: f"WITH q AS ({s}) SELECT * FROM q",
    lambda draw, s, a: f"SELECT ({s})",
    lambda draw, s, a: f"EXPLAIN {s}",
    lambda draw, s, a: f"/* /* */ SELECT 1 */ {s}",
    lambda draw, s, a: s.replace("FROM ", "FROM " + _table_function(draw, a) + ", ", 1),
    lambda draw, s, a: re.sub(r"\s+", draw(st.sampled_from([" ", "\n", "\t", "/**/", " /* ; */ "])), s),
    lambda draw, s, a: s.replace("'", draw(st.sampled_from(["''", "\\'", "\"", "`"])), 1),
    lambda draw, s, a: s[: draw(st.integers(0, len(s)))],
]


def _table_function(draw: st.DrawFn, attacks: list[str]) -> str:
    """A table function call taken from an attack (``url('http://...', 'CSV')``)."""
    calls = [m.group(0) for a in attacks for m in [re.search(r"FROM (\w+\([^)]*\))", a)] if m]
    return draw(st.sampled_from(calls))


_TOKEN = re.compile(r"(?:'(?:\\.|[^\\'])*'|`(?:\\.|[^\\`])*`|\"(?:\\.|[^\\\"])*\")|([A-Za-z_][A-Za-z0-9_]*)(\s*\()?",
                    re.S)


def static_escape(rendered: str, denied: frozenset[str], writes: bool) -> str | None:
    """Why ClickHouse's rendering of an accepted statement is not allowed, read from its
    text with a lexer of its own (quoted strings and identifiers skipped); ``None`` if fine."""
    keyword = rendered.split(None, 1)[0].upper()
    if not writes and keyword not in query_gate.READ_KEYWORDS:
        return f"a {keyword} on a read-only surface"
    previous = ""
    for match in _TOKEN.finditer(rendered):
        word = (match.group(1) or "").lower()
        if (previous, word) in (("into", "outfile"), ("from", "infile")):
            return "an output or input file"
        called = match.group(2) and previous != "as"  # ``t AS alias(a, b)`` names columns, calls nothing
        if called and (word in denied or word in query_gate.DENIED_FUNCTIONS or word.startswith("dict")):
            return f"a call to {word}"
        previous = word
    return None


@dataclass
class Report:
    inputs: int = 0
    checks: int = 0
    accepted: int = 0
    refusals: int = 0
    engine_errors: int = 0
    executed: int = 0
    crashes: list[str] = field(default_factory=list)
    escapes: list[str] = field(default_factory=list)

    def line(self, seconds: float) -> str:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return (f"statement gate fuzz: {self.inputs} inputs ({self.checks} checks, read-only and writable), "
                f"{self.accepted} accepted, {self.refusals} refusals, {self.engine_errors} engine errors, "
                f"{self.executed} distinct renderings executed, crashes {len(self.crashes)}, "
                f"escapes {len(self.escapes)}, peak RSS {peak_mb:.0f} MiB, {seconds:.0f} s")


DATABASE = "obsloop_gate_fuzz"


class Fuzz:
    """The scratch database, the canaries and the oracle; :meth:`one` takes one statement.
    ``engine``: the embedded engine's directory (a process opens one; the suite's, in tests)."""

    def __init__(self, root: Path, listener: Listener, engine: str) -> None:
        import chdb

        self.canary = Canary(root, listener)
        self.engine = engine
        self.connection = chdb.connect(engine)
        self.connection.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self.connection.query(f"USE {DATABASE}")
        self._answers: dict[tuple[str, tuple[tuple[str, str], ...]], list[str] | EngineError] = {}
        self.schema()
        self.denied = query_gate._denied_engine_names(self.run)
        self.report = Report()
        self.executed: set[str] = set()

    def schema(self) -> None:
        """obsloop's tables, created again after an accepted write dropped or changed them."""
        for statement in ddl(SchemaOptions(database=DATABASE)):
            self.connection.query(statement)

    def run(self, sql: str, params: Any) -> list[str]:
        """The gate's engine access; the read-only and the writable check of one input ask
        the same two questions, so the answers of the last input are kept."""
        key = (sql, tuple(sorted(params.items())))
        if key not in self._answers:
            try:
                result = self.connection.query(sql, "JSONCompact", params=dict(params))
                self._answers[key] = [str(row[0]) for row in json.loads(bytes(result.bytes()))["data"]]
            except Exception as exc:  # noqa: BLE001 - the engine's refusal, told apart from ours
                self._answers[key] = EngineError(str(exc))
        answer = self._answers[key]
        if isinstance(answer, EngineError):
            raise answer
        return answer

    def one(self, sql: str) -> None:
        self._answers.clear()
        self.report.inputs += 1
        if self.report.inputs % 10_000 == 0:
            print(f"{self.report.inputs} inputs", file=sys.stderr, flush=True)
        for writes in (False, True):
            self.report.checks += 1
            try:
                statement = query_gate.check(sql, self.run, writes=writes)
            except query_gate.Refused:
                self.report.refusals += 1
                continue
            except EngineError:
                self.report.engine_errors += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the crash being counted
                self.report.crashes.append(f"{type(exc).__name__}: {exc} <- {sql!r}")
                continue
            self.report.accepted += 1
            why = static_escape(statement.sql, self.denied, writes)
            if why is None and not statement.inserts_rows and statement.sql not in self.executed:
                # One run per rendering: the mutations differ mostly in what the rendering drops.
                self.executed.add(statement.sql)
                why = self._execute(statement.sql)
                if statement.writes:
                    self.schema()
            if why is not None:
                self.report.escapes.append(f"{why} (writes={writes}) <- {sql!r}")

    def _execute(self, sql: str) -> str | None:
        """Run an accepted statement without ``readonly`` and report any effect it had."""
        self.report.executed += 1
        connection = __import__("chdb").connect(self.engine)
        try:
            connection.query(f"USE {DATABASE}")
            for name, value in LIMITS.items():
                connection.query(f"SET {name} = {value}")
            output = bytes(connection.query(sql, "TabSeparated").bytes() or b"").decode(errors="replace")
        except Exception:  # noqa: BLE001 - an engine error is no effect
            output = ""
        finally:
            connection.close()
        if self.canary.secret in output:
            return "returned the canary secret"
        if self.canary.listener.connections:
            return "connected to the listener"
        if any(self.canary.out.iterdir()):
            return "wrote into the canary directory"
        return None


def fuzz(examples: int, seed: int, engine: str | None = None) -> Report:
    """Run ``examples`` statements; ``engine``: an embedded engine directory to use (default: a
    scratch one), whose ``obsloop_gate_fuzz`` database the fuzz creates and drops."""
    with tempfile.TemporaryDirectory(prefix="obsloop-gate-fuzz-") as directory, listening() as listener:
        state = Fuzz(Path(directory), listener, engine or str(Path(directory) / "engine"))
        attacks, benign = state.canary.attacks(), dashboard_sql()

        @hypothesis_seed(seed)
        @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(statements(attacks, benign))
        def case(sql: str) -> None:
            state.one(sql)

        case()
        state.connection.query(f"DROP DATABASE IF EXISTS {DATABASE}")
        state.connection.close()
        return state.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="statements to generate")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = fuzz(args.examples, args.seed)
    for problem in (report.crashes + report.escapes)[:20]:
        print(problem)
    print(report.line(time.monotonic() - started))
    return 1 if report.crashes or report.escapes else 0


if __name__ == "__main__":
    sys.exit(main())
