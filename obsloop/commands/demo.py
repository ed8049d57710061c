"""``obsloop demo`` (what ``make run`` starts): the whole loop on the embedded engine.

A simulated serverless fleet sends OTLP to a real server; a live table shows what ClickHouse
stored; a third of the way in, a concept drift (seen only by labels arriving 30 s late), a
latency regression and a model drift are injected, and the detectors, the feedback loop, a
local GitOps repository and a local on-call receiver do the rest (see :mod:`obsloop.demo.scenario`).
At the end it prints the story of what happened and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Group

    from obsloop.config import Config
    from obsloop.detectors.detection import Detection
    from obsloop.server import Endpoints, ObsloopServer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole loop: simulated fleet, detections, alerts, Git commits")
    parser.add_argument("--duration", type=float, default=200.0,
                        help="seconds the scenario runs (default 200; Ctrl-C ends it early)")
    parser.add_argument("--workdir", type=Path, default=Path("obsloop-demo"),
                        help="where gitops/, alerts.jsonl and data/ are kept (default ./obsloop-demo)")
    parser.add_argument("--rate", type=float, default=20.0, help="OTLP requests per second")
    parser.add_argument("--window", type=int, default=10, help="detection window in seconds (multiple of 10)")
    parser.add_argument("--history", type=float, default=1800.0,
                        help="seconds of normal past traffic replayed first, so detectors start trained")
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
WHERE SpanKind = 'Server' AND Timestamp > now() - INTERVAL 30 SECOND
GROUP BY platform, function, model
ORDER BY platform, function
"""


def _summary(server: ObsloopServer, endpoints: Endpoints, elapsed: float, events: list[str]) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    client = server.client
    result = client.query(SUMMARY_SQL)
    logs = client.command("SELECT count() FROM otel_logs")
    detections = client.command("SELECT count() FROM detections")
    table = Table(title=f"obsloop demo, {elapsed:.0f}s — last 30 s of invocations stored in ClickHouse "
                        f"({logs} log records, {detections} detections so far)")
    for column in result.column_names:
        table.add_column(column, justify="left" if column in ("platform", "function", "model") else "right")
    for row in result.result_rows:
        table.add_row(*(str(value) for value in row))
    table.caption = f"OTLP/HTTP {endpoints.http}  OTLP/gRPC {endpoints.grpc}  metrics {endpoints.admin}/metrics"
    return Group(table, *(Text(event) for event in events[-8:]))


async def _demo(args: argparse.Namespace, base_config: Config) -> None:
    import asyncio
    import contextlib
    import signal
    import time
    from datetime import UTC, datetime, timedelta

    from rich.console import Console
    from rich.live import Live

    from obsloop.demo.loadgen import Canary, Labelled, ServerlessTraffic, send_forever, send_history
    from obsloop.demo.scenario import (
        CANARY_FUNCTION,
        CANARY_SHARE,
        CANARY_VERSION,
        LABEL_DELAY_SECONDS,
        LABELLED_MODEL,
        REGRESSED_FUNCTION,
        OnCallReceiver,
        Scenario,
        demo_config,
        prepare_gitops,
        story,
        told_key,
    )
    from obsloop.server import ObsloopServer

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:
        console.width = 150  # piped output (logs, CI): do not squeeze the table to 80 columns
    prepare_gitops(workdir / "gitops")
    receiver = OnCallReceiver(workdir / "alerts.jsonl")
    receiver_url = await receiver.start()
    config = demo_config(base_config, workdir, receiver_url, window_seconds=args.window)
    server = ObsloopServer(config)
    endpoints = await server.start(feedback=False)
    detectors = server.detectors
    assert detectors is not None, "demo_config enables the detectors"
    console.print(f"[bold]obsloop demo[/] in {workdir}: OTLP on {endpoints.http} and {endpoints.grpc}, "
                  f"on-call receiver {receiver_url}, GitOps repository {workdir / 'gitops'}. Ctrl-C ends it early.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    traffic = ServerlessTraffic()
    traffic.canary[CANARY_FUNCTION] = Canary(CANARY_VERSION, CANARY_SHARE)
    traffic.labelled[LABELLED_MODEL] = Labelled(delay_seconds=LABEL_DELAY_SECONDS)
    replayed_until = None
    if args.history > 0:
        with console.status(f"replaying {args.history:.0f} s of normal traffic so the detectors start trained…"):
            # The live sender cycles traces, logs, metrics: a third of the requests each.
            per_step = args.rate * args.window / 3
            # Invocations, and the labelled model's predictions with their ground truth (the
            # quality detector's baseline); the drift detectors of the other models take their
            # reference from live predictions. A live logs request holds one prediction per model.
            replayed = await send_history(endpoints.http, traffic, seconds=args.history, step_seconds=args.window,
                                          spans_per_step=int(per_step * 50), records_per_step=0,
                                          labelled_per_step=int(per_step))
            replayed_until = datetime.now(UTC)
    # Live traffic follows the history without a gap (a gap would itself look like an outage).
    sender = asyncio.create_task(send_forever(endpoints.http, traffic, requests_per_second=args.rate, stop=stop))
    if replayed_until is not None:
        # Up to the window after the one where replay and live traffic meet: that one holds
        # part of a window's traffic, which looks like a throughput drop everywhere.
        learned_until = replayed_until + timedelta(seconds=2 * args.window)
        with console.status("the detectors are learning the replayed history…"):
            while not stop.is_set() and (detectors.closed_until or replayed_until) <= learned_until:
                await asyncio.sleep(0.5)
        detectors.forget_open_episodes()
        console.print(f"replayed {replayed} requests of history; the detectors have learned it. "
                      "From now on, detections reach the feedback loop.")
    server.start_feedback()
    scenario = Scenario(duration=args.duration)
    events: list[str] = []
    regression_open: set[str] = set()
    """Fingerprints of the regressed function's open latency detections: the run ends after they clear."""

    told_at: dict[str, float] = {}
    """When each detection was made (wall clock): a quality one is about predictions made a label delay earlier."""

    def follow(detection: Detection) -> None:
        told_at[told_key(detection.id, detection.severity, detection.cleared)] = time.time()
        events.append(f"detection: {detection.describe()}" if not detection.cleared
                      else f"cleared: {detection.describe()}")
        if detection.kind == "latency" and detection.function == REGRESSED_FUNCTION:
            (regression_open.discard if detection.cleared else regression_open.add)(detection.fingerprint)

    detectors.subscribe(follow)
    wind_down = 12 * args.window
    started = time.monotonic()
    wall_started = time.time()
    try:
        with Live(console=console, refresh_per_second=1) as live:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                # A slow machine may not have seen the fixed regression clear yet: the story
                # should end with the resolution, so wait a bounded while for it.
                if elapsed >= args.duration and (not regression_open or elapsed >= args.duration + wind_down):
                    break
                happened = scenario.apply(elapsed, traffic)
                if happened:
                    events.append(f"+{elapsed:.0f}s {happened}")
                live.update(await asyncio.to_thread(_summary, server, endpoints, elapsed, events))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        stop.set()
        sent = await sender
        await server.stop()
        await receiver.stop()
    console.rule("what happened, and why")
    for line in story(workdir, server.client, scenario, wall_started, told_at):
        console.print(line, markup=False, highlight=False)
    console.print(f"\nrequests accepted {sent['accepted']}, refused {sent['refused']}, failed {sent['failed']}. "
                  f"Look around: git -C {workdir / 'gitops'} log -p; {workdir / 'alerts.jsonl'}; "
                  f"obsloop --config <(echo 'data_dir: {workdir / 'data'}') query 'SELECT * FROM detections'")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from obsloop import clickhouse
    from obsloop.commands._common import config_from

    config = config_from(args)
    try:
        asyncio.run(_demo(args, config))
    finally:
        clickhouse.close_all()
    return 0
