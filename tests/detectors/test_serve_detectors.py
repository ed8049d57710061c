"""``obsloop serve`` runs the detector host: OTLP spans in, a latency detection in the
``detections`` table, the checkpoint written at stop."""

from __future__ import annotations

import time
import urllib.request

from obsloop.demo.loadgen import ServerlessTraffic


def test_serve_detects_a_latency_regression(obsloop_factory) -> None:
    server = obsloop_factory(detectors={
        "window_seconds": 60, "allowed_lateness_seconds": 0, "poll_seconds": 0.2,
        "idle_flush_seconds": 1})  # the detector's own warmup (300 windows)
    traffic = ServerlessTraffic(seed=11)
    base = (int(time.time()) // 60 - 400) * 60
    for window in range(325):
        if window == 320:
            traffic.latency_factor["fraud-scorer"] = 4.0
        body = traffic.traces(320, (base + window * 60 + 30) * 1_000_000_000).SerializeToString()
        request = urllib.request.Request(f"{server.http}/v1/traces", data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    server.wait_for(  # one episode: its opening and its confirmation share the id
        "SELECT uniqExact(id) FROM detections WHERE kind = 'latency' "
        "AND series['faas.name'] = 'fraud-scorer' AND NOT cleared", 1, timeout=30)
    first = server.scalar(
        "SELECT toUnixTimestamp(min(time)) FROM detections WHERE kind = 'latency' "
        "AND series['faas.name'] = 'fraud-scorer'")
    assert first == base + 321 * 60  # the end of the first slow window
    assert server.stop() == 0
    assert (server.data_dir / "detectors" / "checkpoint.json").stat().st_size > 0
