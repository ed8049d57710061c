"""``obsloop demo`` (what ``make run`` starts): the server on the embedded engine, the
simulated serverless fleet sending it OTLP, and a live summary read back from ClickHouse.
"""

from __future__ import annotations

import argparse
import contextlib


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="serve + a simulated serverless fleet + a live summary")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--rate", type=float, default=20.0, help="OTLP requests per second")
    parser.set_defaults(func=run)


SUMMARY_SQL = """
SELECT
    ResourceAttributes['cloud.platform'] AS platform,
    ServiceName AS function,
    SpanAttributes['model.name'] || ' ' || SpanAttributes['model.version'] AS model,
    count() AS invocations,
    round(quantile(0.95)(Duration) / 1e6, 1) AS p95_ms,
    countIf(SpanAttributes['faas.coldstart'] = 'true') AS cold_starts,
    countIf(StatusCode = 'Error') AS errors
FROM otel_traces
WHERE SpanKind = 'Server'
GROUP BY platform, function, model
ORDER BY platform, function
"""


def _summary_table(server, elapsed: float):
    from rich.table import Table

    result = server.client.query(SUMMARY_SQL)
    logs = server.client.command("SELECT count() FROM otel_logs")
    points = server.client.command(
        "SELECT (SELECT count() FROM otel_metrics_sum) + (SELECT count() FROM otel_metrics_histogram)"
    )
    table = Table(title=f"obsloop — stored in ClickHouse after {elapsed:.0f}s "
                        f"({logs} log records, {points} metric points)")
    for column in result.column_names:
        table.add_column(column, justify="right" if column not in ("platform", "function", "model") else "left")
    for row in result.result_rows:
        table.add_row(*(str(value) for value in row))
    pending = server.wal.pending_bytes()
    table.caption = (f"OTLP/HTTP {server.endpoints.http}  OTLP/gRPC {server.endpoints.grpc}  "
                     f"admin {server.endpoints.admin}/metrics  write-ahead log: {pending} bytes pending")
    return table


async def _demo(config, duration: float | None, rate: float) -> None:
    import asyncio
    import time

    from rich.console import Console
    from rich.live import Live

    from obsloop.loadgen import ServerlessTraffic, send_forever
    from obsloop.server import ObsloopServer

    server = ObsloopServer(config)
    endpoints = await server.start()
    console = Console()
    if not console.is_terminal:
        console.width = 150  # piped output (logs, CI): do not squeeze the table to 80 columns
    console.print(f"[bold]obsloop[/] receiving OTLP on {endpoints.http} and {endpoints.grpc}; "
                  f"data in {config.storage_dsn}. Ctrl-C stops.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sender = asyncio.create_task(send_forever(endpoints.http, ServerlessTraffic(), requests_per_second=rate,
                                              stop=stop))
    started = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=1, transient=False) as live:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                live.update(await asyncio.to_thread(_summary_table, server, elapsed))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
        stop.set()
        sent = await sender
        await server.stop()
        console.print(_summary_table(server, time.monotonic() - started))
        console.print(f"requests accepted {sent['accepted']}, refused {sent['refused']}, failed {sent['failed']}")
    finally:
        stop.set()


def run(args: argparse.Namespace) -> int:
    import asyncio

    from obsloop import clickhouse
    from obsloop.commands._common import config_from

    config = config_from(args)
    try:
        asyncio.run(_demo(config, args.duration, args.rate))
    finally:
        clickhouse.close_all()
    return 0
