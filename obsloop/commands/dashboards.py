"""``obsloop dashboards build|push``: write the Grafana dashboards and provisioning files, or
upload the dashboards to a running Grafana with grafana-client (``obsloop[grafana]``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboards", help="build or push the Grafana dashboards")
    parser.add_argument("action", choices=["build", "push"])
    parser.add_argument("--output", type=Path, help="build: directory for json/ and provisioning/ "
                        "(default: the obsloop.dashboards package)")
    parser.add_argument("--clickhouse-url", default="http://127.0.0.1:8123",
                        help="build: the ClickHouse HTTP interface Grafana queries (obsloop's own or a server)")
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090",
                        help="build: the Prometheus that scrapes obsloop's /metrics")
    parser.add_argument("--url", default=os.environ.get("GRAFANA_URL", "http://127.0.0.1:3000"),
                        help="push: Grafana's URL (default: $GRAFANA_URL or http://127.0.0.1:3000)")
    parser.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                        help="push: a service-account token (default: $GRAFANA_TOKEN)")
    parser.add_argument("--clickhouse-datasource", default=os.environ.get("GRAFANA_CLICKHOUSE_DATASOURCE"),
                        help="push: the name of Grafana's ClickHouse datasource to use (default: "
                        "$GRAFANA_CLICKHOUSE_DATASOURCE, else the only or default one of its type)")
    parser.add_argument("--prometheus-datasource", default=os.environ.get("GRAFANA_PROMETHEUS_DATASOURCE"),
                        help="push: the name of Grafana's Prometheus datasource to use (default: "
                        "$GRAFANA_PROMETHEUS_DATASOURCE, else the only or default one of its type)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from obsloop.dashboards.build import PACKAGE_DIRECTORY, Provisioning, write

        settings = Provisioning(clickhouse_url=args.clickhouse_url, prometheus_url=args.prometheus_url)
        for path in write(args.output or PACKAGE_DIRECTORY, settings):
            print(path)
        return 0
    from obsloop.dashboards.datasources import DatasourceError
    from obsloop.dashboards.push import push

    try:
        answers = push(args.url, args.token, args.clickhouse_datasource, args.prometheus_datasource)
    except DatasourceError as exc:
        print(f"obsloop dashboards push: {exc}", file=sys.stderr)
        return 2
    for answer in answers:
        print(f"{answer.get('uid')}: {answer.get('status')} version {answer.get('version')} {answer.get('url')}")
    return 0
