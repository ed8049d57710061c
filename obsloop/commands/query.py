"""``obsloop query "SQL"``: run SQL and print a table (or CSV / JSON).

With the embedded engine, a running ``obsloop serve`` holds the data directory; the
query then goes through that server's admin endpoint (with ``admin.token`` from the same
configuration) instead of failing on the lock. Either way the statement passes
:mod:`obsloop.query_gate` and a read runs with ``readonly=1`` and ``query_limits``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obsloop.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query", help="run SQL against obsloop's ClickHouse")
    parser.add_argument("sql", help="the SQL statement ('-' reads it from standard input)")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.add_argument("--write", action="store_true", help="allow statements that modify data")
    parser.set_defaults(func=run)


def _running_server(state_file: Path) -> str | None:
    try:
        state = json.loads(state_file.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state["admin"]


def _via_server(admin_url: str, token: str, sql: str, write: bool) -> tuple[list[str], list[list]]:
    url = f"{admin_url}/query?format=json" + ("&write=1" if write else "")
    request = urllib.request.Request(url, data=sql.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            body = response.read()
        document = json.loads(body) if body.strip() else {}  # an INSERT answers nothing
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"obsloop query: {json.load(exc).get('error', exc)}") from None
    return [column["name"] for column in document.get("meta", [])], document.get("data", [])


def _direct(config: Config, sql: str, write: bool) -> tuple[list[str], list[list]]:
    from obsloop import clickhouse
    from obsloop.admin import run_checked
    from obsloop.query_gate import Refused
    from obsloop.runtime import storage_client

    try:
        result = run_checked(config, lambda: storage_client(config), sql, writes=write, fmt="JSONCompact")
        document = json.loads(result)
        return [column["name"] for column in document.get("meta", [])], document.get("data", [])
    except Refused as refused:
        hint = "; pass --write to run it" if refused.code == 164 and not write else ""
        raise SystemExit(f"obsloop query: {refused}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - show ClickHouse's message, not a traceback
        raise SystemExit(f"obsloop query: {exc}") from None
    finally:
        clickhouse.close_all()


def _print(columns: list[str], rows: list[list], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*(str(value) for value in row))
        Console().print(table)


def execute(config: Config, sql: str, write: bool) -> tuple[list[str], list[list]]:
    """``sql`` through the running server holding the embedded data directory (its
    ``/query``, with ``admin.token``), else on the storage directly; the one way the
    commands that run SQL (``query``, ``labels load``) reach ClickHouse."""
    from obsloop import clickhouse
    from obsloop.runtime import SERVE_STATE_FILE

    admin = None
    if clickhouse.is_embedded(config.storage_dsn):
        admin = _running_server(config.data_dir / SERVE_STATE_FILE)
    if admin is None:
        return _direct(config, sql, write)
    if config.admin.token is None:
        raise SystemExit("obsloop query: a server holds the data directory and its /query needs admin.token; "
                         "set admin.token in the configuration")
    return _via_server(admin, config.admin.token.get_secret_value(), sql, write)


def run(args: argparse.Namespace) -> int:
    from obsloop.commands._common import config_from

    config = config_from(args)
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    columns, rows = execute(config, sql, args.write)
    _print(columns, rows, args.format)
    return 0
