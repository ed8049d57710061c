"""Helpers shared by command modules: loading the configuration the same way everywhere."""

from __future__ import annotations

import argparse

from obsloop.config import Config, load_config
from obsloop.core.files import private_umask
from obsloop.logsetup import configure


def config_from(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    configure(config.logging.level, config.logging.format)
    return config


def add_worker_arguments(parser: argparse.ArgumentParser, group_setting: str) -> None:
    """The options every Kafka worker command takes (checked by :func:`worker_config`)."""
    parser.add_argument("--group", help=f"consumer group (default: {group_setting})")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")


def worker_config(args: argparse.Namespace, command: str) -> Config | None:
    """The configuration of a Kafka worker command, or ``None`` after printing why it cannot
    run (no ``kafka:`` section, a non-positive ``--duration``, an empty ``--group``)."""
    import sys

    config = config_from(args)
    problem = None
    if config.kafka is None:
        problem = f"{config.source} has no kafka: section"
    elif args.duration is not None and args.duration <= 0:
        problem = "--duration must be positive"
    elif args.group is not None and not args.group.strip():
        problem = "--group must name a consumer group"
    if problem is not None:
        print(f"{command}: {problem}", file=sys.stderr)
        return None
    private_umask()  # a worker's files under data_dir are its user's only, like serve's
    return config
