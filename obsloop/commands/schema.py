"""``obsloop schema apply|show``: create (idempotently) or print the ClickHouse schema."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="create or print the ClickHouse tables")
    parser.add_argument("action", choices=["apply", "show"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obsloop.commands._common import config_from
    from obsloop.runtime import apply_schema, schema_options
    from obsloop.schema import ddl

    config = config_from(args)
    if args.action == "show":
        print(";\n\n".join(ddl(schema_options(config))) + ";")
        return 0
    from obsloop import clickhouse

    try:
        count = apply_schema(config)
    finally:
        clickhouse.close_all()
    print(f"schema applied: {count} statements")
    return 0
