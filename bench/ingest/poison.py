"""Poison input among valid requests: acknowledged vs stored vs duplicated.

    .venv/bin/python bench/ingest/poison.py                       # 40 valid, 10 poison
    .venv/bin/python bench/ingest/poison.py --valid 400 --poison 4  # 1 % poison

Posts ``--valid`` traces requests of ``--items`` spans to ``obsloop serve`` over OTLP/HTTP,
with ``--poison`` bodies spread among them, cycling through bodies protobuf accepts and
ClickHouse's reader refuses as received (a known field with the wrong wire type, a
``fixed32`` on a message field, an attribute value whose oneof is set twice) and one
neither can read. Then waits up to ``--wait`` seconds for every acknowledged span to be
stored and reports what was acknowledged, stored, stored twice, refused and set aside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from run import _query, running_server  # noqa: E402

from obsloop.demo.loadgen import ServerlessTraffic  # noqa: E402
from obsloop.pipelines.otlp_decode import REQUEST_TYPES  # noqa: E402


def _field(number: int, payload: bytes) -> bytes:
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def poison(n: int) -> bytes:
    """The ``n``-th poison body (each span its own ids, so that stored twice is seen)."""
    kind = n % 4
    if kind == 0:
        return b"\x08\x01"
    if kind == 1:
        return b"\x0d\x01\x02\x03\x04"
    if kind == 2:
        twice = _field(1, b"first") + _VarintBytes(3 << 3) + _VarintBytes(5)
        span = _field(1, n.to_bytes(16, "big")) + _field(2, n.to_bytes(8, "big")) + _field(5, b"poison")
        return _field(1, _field(2, _field(2, span + _field(9, _field(1, b"k") + _field(2, twice)))))
    return _field(1, b"\x12\x05ab")


def spans(body: bytes) -> int:
    try:
        request = REQUEST_TYPES["traces"].FromString(body)
    except Exception:  # noqa: BLE001 - refused anyway
        return 0
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=40)
    parser.add_argument("--poison", type=int, default=10)
    parser.add_argument("--items", type=int, default=1000, help="spans per valid request")
    parser.add_argument("--wait", type=float, default=90.0)
    args = parser.parse_args()

    traffic = ServerlessTraffic(seed=5)
    valid = [traffic.traces(args.items).SerializeToString() for _ in range(args.valid)]
    every = max(1, args.valid // max(args.poison, 1))
    wal = {"segment_max_age_seconds": 0.5}
    with running_server(wal, None, None) as (_, endpoints, data_dir):
        url = f"{endpoints['http']}/v1/traces"
        acknowledged, statuses, sent_poison = 0, {}, 0
        for n, body in enumerate(valid):
            for candidate in [body] + ([poison(sent_poison)] if n % every == 0 and sent_poison < args.poison
                                       else []):
                status = post(url, candidate)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    acknowledged += spans(candidate)
                sent_poison += candidate is not body
        load_end = time.monotonic()
        stored = 0
        while time.monotonic() - load_end < args.wait:
            stored = int(_query(endpoints["admin"], "SELECT count() FROM otel_traces"))
            if stored >= acknowledged:
                break
            time.sleep(0.2)
        waited = time.monotonic() - load_end
        unique = int(_query(endpoints["admin"], "SELECT uniqExact(TraceId, SpanId) FROM otel_traces"))
        set_aside = sorted(p.name for p in (data_dir / "wal" / "quarantine").rglob("*.seg"))
        print(json.dumps({
            "requests": {"valid": len(valid), "poison": sent_poison},
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "spans_acknowledged": acknowledged,
            "spans_stored": stored,
            "spans_duplicated": stored - unique,
            "seconds_to_store_after_load": round(waited, 1),
            "files_set_aside": len(set_aside),
        }, indent=2))


if __name__ == "__main__":
    main()
