"""Subscription-payload path end to end: gzip+base64 Firehose records -> decode ->
normalize (REPORT lines become priced invocation records) -> serialized OTLP handed to
a sink that keeps the bytes. Reports Lambda log events per second on one core.

Run: taskset -c 0 .venv/bin/python bench/collectors/bench_subscription.py
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import time
import uuid

from obsloop.collectors.aws_subscription import SubscriptionEncoder, decode_data
from obsloop.collectors.enrich import Enricher
from obsloop.collectors.pricing import Pricing
from obsloop.collectors.request_budget import Budget, Limits


def make_payload(events: int, seed: int) -> bytes:
    """One DATA_MESSAGE shaped like a busy function's stream: per invocation a START, a
    few runtime-formatted function lines, END and REPORT."""
    log_events = []
    ts = 1_700_000_000_000 + seed
    while len(log_events) < events:
        rid = str(uuid.UUID(int=seed * 1_000_003 + len(log_events)))
        lines = [
            f"START RequestId: {rid} Version: $LATEST",
            f"2024-01-01T00:00:00.000Z\t{rid}\tINFO\tloaded model fraud-detection v2.1.0",
            f"2024-01-01T00:00:00.010Z\t{rid}\tINFO\tprediction score=0.8731 label=ok",
            f"END RequestId: {rid}",
            f"REPORT RequestId: {rid}\tDuration: 102.25 ms\tBilled Duration: 103 ms\t"
            "Memory Size: 1024 MB\tMax Memory Used: 371 MB\t\n"
            "XRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: 6c4b0a8f1e2d3c4b\t"
            "Sampled: true\t",
        ]
        for line in lines:
            log_events.append({"id": str(len(log_events)), "timestamp": ts, "message": line})
            ts += 1
    message = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/lambda/fraud-detection-model-v2",
        "logStream": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "subscriptionFilters": ["obsloop"],
        "logEvents": log_events[:events],
    }
    return base64.b64encode(gzip.compress(json.dumps(message).encode()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payloads", type=int, default=200)
    parser.add_argument("--events", type=int, default=500, help="log events per payload")
    args = parser.parse_args()
    payloads = [make_payload(args.events, i) for i in range(args.payloads)]
    enricher = Enricher(Pricing.load())
    encoder = SubscriptionEncoder(enricher.enrich, "bench")
    stored: list[bytes] = []
    started = time.process_time()
    for data in payloads:
        budget = Budget(Limits.of())
        encoded = encoder.encode(decode_data(data, budget), "us-east-1", budget)
        stored.append(encoded.payload)
    elapsed = time.process_time() - started
    total = args.payloads * args.events
    print(
        f"{total} events in {elapsed:.2f} s CPU: {total / elapsed:,.0f} events/s per core "
        f"({sum(map(len, stored)) / total:.0f} OTLP bytes/event, "
        f"{encoder.decoder.invocations} invocation records)"
    )


if __name__ == "__main__":
    main()
