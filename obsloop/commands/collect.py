"""``obsloop collect <kind> [--once]``: run one collector kind's pullers (aws, gcp, azure, …).

The records go to the running server's OTLP/HTTP receiver (the same ingest path as any
OTLP client). A first run backfills ``backfill_seconds`` and shows a progress bar.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from obsloop.collectors import registry

    parser = subparsers.add_parser("collect", help="pull a serverless platform's logs and metrics")
    parser.add_argument("platform", choices=registry.names(), help="the collector kind (collectors.<kind>)")
    parser.add_argument("--once", action="store_true", help="catch up once, then exit")
    parser.add_argument("--endpoint", help="OTLP/HTTP receiver (default: the configured one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from obsloop.collectors import scheduler
    from obsloop.collectors.forward import http_submit
    from obsloop.collectors.registry import Scheduled
    from obsloop.commands._common import config_from
    from obsloop.core.secret import reveal

    config = config_from(args)
    collectors = config.collectors
    receiver = config.receiver
    endpoint = args.endpoint or f"http://{receiver.host}:{receiver.http_port}"
    checkpoint_dir = collectors.checkpoint_dir or config.data_dir / "checkpoints"
    scheduled = scheduler.build(args.platform, collectors, http_submit(endpoint, reveal(receiver.bearer_token)),
                             checkpoint_dir)
    if not scheduled:
        print(f"obsloop: nothing configured for collectors.{args.platform}")
        return 2
    stop = threading.Event()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]}"),
                  TimeRemainingColumn(), transient=args.once is False) as progress:
        tasks = {s.name: progress.add_task(s.name, total=1.0, n=0) for s in scheduled}
        counts = dict.fromkeys(tasks, 0)

        def refresh() -> None:
            while not stop.wait(0.5):
                for item in scheduled:
                    if hasattr(item.puller, "progress"):
                        done, total = item.puller.progress()
                        progress.update(tasks[item.name], completed=done, total=total or 1.0)

        def on_poll(item: Scheduled, handed: int) -> None:
            counts[item.name] += handed
            progress.update(tasks[item.name], n=f"{counts[item.name]} records")

        watcher = threading.Thread(target=refresh, daemon=True)
        watcher.start()
        try:
            scheduler.run(scheduled, once=args.once, stop=stop, on_poll=on_poll)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            watcher.join()
    return 0
