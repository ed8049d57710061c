"""``obsloop ingest-worker``: store the OTLP topics of Kafka in ClickHouse (scale-out).

Run as many as the topics have partitions; they share the work as one consumer group.
"""

from __future__ import annotations

import argparse

from obsloop.commands._common import add_worker_arguments

SIGNAL_CHOICES = ("traces", "logs", "metrics")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest-worker", help="consume the Kafka OTLP topics as a group and insert into ClickHouse"
    )
    add_worker_arguments(parser, "kafka.ingest_group")
    parser.add_argument("--signals", nargs="+", choices=SIGNAL_CHOICES, default=list(SIGNAL_CHOICES),
                        help="topics to consume (default: all three)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obsloop.commands._common import worker_config

    config = worker_config(args, "obsloop ingest-worker")
    if config is None:
        return 2
    from obsloop.workers.ingest import IngestWorker
    from obsloop.workers.kafka_base import run_worker

    return run_worker(lambda: IngestWorker(config, group_id=args.group, signals=args.signals), args.duration)
