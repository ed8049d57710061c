"""``obsloop serve``: run the OTLP receivers and the ingest pipeline until stopped."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="receive OTLP on 4317/4318 and store it in ClickHouse")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from obsloop import clickhouse
    from obsloop.commands._common import config_from
    from obsloop.core.files import private_umask
    from obsloop.runtime import run_until_signal
    from obsloop.server import ObsloopServer

    config = config_from(args)
    private_umask()  # the embedded engine's and git's files under data_dir too
    try:
        asyncio.run(run_until_signal(ObsloopServer(config), duration=args.duration,
                                     stopping="obsloop stopping: draining the write-ahead log"))
    finally:
        clickhouse.close_all()  # the embedded engine must shut down before exit
    return 0
