"""``obsloop labels load FILE|--table T``: ground truth from a warehouse, in bulk.

With the embedded engine and ``obsloop serve`` running, the rows go through the server's
admin endpoint (it holds the data directory), as ``obsloop query`` does.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("labels", help="load ground truth for model quality")
    actions = parser.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    load = actions.add_parser("load", help="load prediction_id,label[,time] rows")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="a .csv (with a header) or .parquet file")
    source.add_argument("--table", help="a ClickHouse table (or database.table) with the same columns")
    load.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obsloop.commands._common import config_from
    from obsloop.commands.query import execute
    from obsloop.detectors.labels_load import (
        LabelFileError,
        from_table_statement,
        insert_statements,
        read_labels,
    )

    config = config_from(args)
    database = config.storage.database
    try:
        if args.table:
            statements, count = [from_table_statement(args.table, database)], None
        else:
            labels = read_labels(args.file)
            statements, count = list(insert_statements(labels, database, datetime.now(UTC))), len(labels)
    except LabelFileError as exc:
        print(f"obsloop labels load: {exc}", file=sys.stderr)
        return 2
    for statement in statements:  # through a running server, that server needs admin.allow_write_queries
        execute(config, statement, True)
    print(f"loaded {'the table' if count is None else f'{count} labels'} into quality_labels")
    return 0
