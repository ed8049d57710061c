"""``kill -9`` during load loses no acknowledged span and stores none twice."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from span_load import traces_request


def test_kill_9_during_load_then_replay_exactly_once(obsloop_factory) -> None:
    server = obsloop_factory(wal={"segment_max_age_seconds": 0.2, "fsync": "never"})
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        next_id = 1
        while not stop.is_set():
            body, ids = traces_request(next_id, 200)
            next_id += 200
            request = urllib.request.Request(f"{server.http}/v1/traces", data=body,
                                             headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        acknowledged.extend(ids)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # the server is gone

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(2.0)  # segments are being inserted while more are written
    server.kill()
    stop.set()
    sender.join(10)
    assert len(acknowledged) >= 2000, "the load did not run long enough to test anything"
    leftovers = list((server.data_dir / "wal" / "traces").iterdir())
    assert leftovers, "kill -9 left no segment to replay: the test did not hit the window it tests"

    restarted = obsloop_factory()  # same workdir and data directory
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and list((restarted.data_dir / "wal" / "traces").glob("*.seg")):
        time.sleep(0.2)
    stored = restarted.query("SELECT count() AS n, uniqExact(SpanId) AS distinct_ids FROM otel_traces")[0]
    assert stored["n"] == stored["distinct_ids"], "a span was stored twice"
    stored_ids = {row["SpanId"] for row in restarted.query("SELECT SpanId FROM otel_traces")}
    missing = set(acknowledged) - stored_ids
    assert not missing, f"{len(missing)} acknowledged spans lost, e.g. {sorted(missing)[:3]}"
