"""Server CPU per span: ``obsloop serve``'s own CPU time (all its threads, embedded
ClickHouse included) while it receives ``--requests`` traces requests posted one after the
other, and until every span is stored. Less sensitive to a busy machine than a throughput
figure: it counts CPU time, not wall time.

    .venv/bin/python bench/ingest/server_cpu.py --requests 150
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from run import _query, payloads, running_server  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--items", type=int, default=1000, help="spans per request")
    args = parser.parse_args()
    bodies = payloads("traces", args.items)
    with running_server({"segment_max_age_seconds": 2}, None, None) as (server, endpoints, _):
        url = f"{endpoints['http']}/v1/traces"
        time.sleep(2)  # start-up work done
        start, spans = cpu_seconds(server.pid), 0
        for n in range(args.requests):
            body, items = bodies[n % len(bodies)]
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            spans += items
        received = cpu_seconds(server.pid)
        while int(_query(endpoints["admin"], "SELECT count() FROM otel_traces")) < spans:
            time.sleep(0.2)
        stored = cpu_seconds(server.pid)
    print(f"{spans} spans: {1e6 * (received - start) / spans:.2f} us/span while receiving (inserts "
          f"included as they happen), {1e6 * (stored - start) / spans:.2f} us/span until stored")


if __name__ == "__main__":
    main()
