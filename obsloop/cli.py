"""The ``obsloop`` command line: one sub-command per module in :mod:`obsloop.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func``; modules import their heavy dependencies inside ``func`` so that ``obsloop --help``
and the light commands start fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from obsloop.config import ConfigError

COMMAND_MODULES = (
    "obsloop.commands.serve",
    "obsloop.commands.demo",
    "obsloop.commands.query",
    "obsloop.commands.schema",
    "obsloop.commands.collect",
    "obsloop.commands.score_series",
    "obsloop.commands.dashboards",
    "obsloop.commands.ingest_worker",
    "obsloop.commands.detector_worker",
    "obsloop.commands.feedback",
    "obsloop.commands.labels",
)


CONFIG_HELP = "YAML configuration file (default: $OBSLOOP_CONFIG or ./obsloop.yaml)"


def _accept_config_after(parser: argparse.ArgumentParser) -> None:
    """Let ``--config`` follow a sub-command too (``obsloop serve --config F``), as users type
    it. ``SUPPRESS`` keeps a sub-command that was not given the option from overwriting the
    value given before it."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for command in {id(p): p for p in action.choices.values()}.values():  # aliases share a parser
            command.add_argument("-c", "--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
            _accept_config_after(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obsloop",
        description="Observability and feedback loop for AI models on serverless platforms.",
    )
    parser.add_argument("-c", "--config", help=CONFIG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    _accept_config_after(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"obsloop: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE or "cannot listen" in str(exc):
            print(f"obsloop: {exc}\nAnother process holds the port: stop it, or choose other ports "
                  "(receiver.http_port, receiver.grpc_port, admin.port, clickhouse_http.port; "
                  "0 picks a free one).", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
