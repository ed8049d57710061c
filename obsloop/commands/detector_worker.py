"""``obsloop detector-worker``: score closed windows for a share of the functions (scale-out).

Workers in one group (``kafka.detector_group``) split the functions by the partitions of
the traces topic they own; a partition's model state moves between them through its
checkpoint in ``kafka.detector_checkpoint_dir`` (a directory they all share). Run up to as
many as the topic has partitions; more stand by. The owner of partition 0 also scores model
drift and cost-center spend; with ``feedback.enabled`` every worker runs the feedback loop on
the detections it produces.
"""

from __future__ import annotations

import argparse

from obsloop.commands._common import add_worker_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detector-worker",
        help="score detection windows for the functions of the Kafka partitions this worker owns",
    )
    add_worker_arguments(parser, "kafka.detector_group")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from obsloop.commands._common import worker_config

    config = worker_config(args, "obsloop detector-worker")
    if config is None:
        return 2
    if not config.detectors.enabled:
        print(f"obsloop detector-worker: detectors.enabled is false in {config.source}", file=sys.stderr)
        return 2
    from obsloop.workers.detector import DetectorWorker
    from obsloop.workers.kafka_base import run_worker

    try:
        # Configuration errors (here and when the feedback loop is built at start) are
        # ValueErrors naming the key: a message, not a traceback.
        return run_worker(lambda: DetectorWorker(config, group_id=args.group), args.duration)
    except ValueError as exc:
        print(f"obsloop detector-worker: {exc} ({config.source})", file=sys.stderr)
        return 2
