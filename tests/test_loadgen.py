"""The built-in load generator keeps the rate it is asked for, whatever the receiver's latency:
the demo's detectors learn history sent at that rate, and a slower live rate looks like an
outage of every function."""

from __future__ import annotations

import asyncio

from aiohttp import web

from obsloop.demo.loadgen import ServerlessTraffic, send_forever
from obsloop.runtime import bound_port


def test_send_forever_keeps_its_rate_with_a_slow_receiver() -> None:
    async def scenario() -> tuple[int, dict[str, int]]:
        received = 0

        async def slow(request: web.Request) -> web.Response:
            nonlocal received
            await request.read()
            await asyncio.sleep(0.01)  # 10 ms per request: half of the 20 ms interval
            received += 1
            return web.Response()

        app = web.Application()
        app.router.add_post("/v1/{signal}", slow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        sender = asyncio.create_task(send_forever(f"http://127.0.0.1:{bound_port(site)}", ServerlessTraffic(seed=1),
                                                  requests_per_second=50, spans_per_request=4, stop=stop))
        await asyncio.sleep(3.0)
        stop.set()
        sent = await sender
        await runner.cleanup()
        return received, sent

    received, sent = asyncio.run(scenario())
    # 150 due in 3 s; pausing 20 ms after each 10 ms request would have sent about 100.
    assert sent["accepted"] == received
    assert received >= 135, received


def _labelled_run(flip: float) -> tuple[list[float], list[bool], list[int]]:
    """A hundred 10-second steps of a labelled model: its scores' confidence, whether each
    label agrees with its prediction, and each label's delay in ns."""
    from obsloop.core import semconv as sc
    from obsloop.demo.loadgen import Labelled

    traffic = ServerlessTraffic(seed=3)
    traffic.labelled["sentiment-bert"] = Labelled(delay_seconds=30.0, coverage=0.8, flip=flip)
    predictions: dict[str, tuple[int, int, float]] = {}
    confidence, agree, delays = [], [], []
    for step in range(100):
        request = traffic.logs(66 * len(traffic.fleet), 10**18 + step * 10**10, labelled_only=True)
        assert [r.resource.attributes[0].value.string_value for r in request.resource_logs] == ["sentiment"]
        for record in request.resource_logs[0].scope_logs[0].log_records:
            attributes = {kv.key: kv.value for kv in record.attributes}
            prediction_id = attributes[sc.PREDICTION_ID].string_value
            if record.event_name == sc.PREDICTION_EVENT:
                score = attributes[sc.PREDICTION_SCORE].double_value
                predictions[prediction_id] = (record.time_unix_nano, attributes[sc.PREDICTION_VALUE].int_value, score)
                confidence.append(max(score, 1 - score))
            else:
                assert record.event_name == sc.GROUND_TRUTH_EVENT
                at, predicted, _ = predictions[prediction_id]
                agree.append(attributes[sc.PREDICTION_LABEL].int_value == predicted)
                delays.append(record.time_unix_nano - at)
    return confidence, agree, delays


def test_labelled_model_is_calibrated_and_its_labels_follow_30_s_later() -> None:
    confidence, agree, delays = _labelled_run(flip=0.0)
    assert set(delays) == {30 * 10**9}
    assert 0.75 < len(agree) / len(confidence) < 0.85  # coverage, less the labels not due yet
    assert abs(sum(agree) / len(agree) - sum(confidence) / len(confidence)) < 0.02  # calibrated: CBPE holds


def test_concept_drift_changes_labels_not_scores() -> None:
    before, _, _ = _labelled_run(flip=0.0)
    after, agree, _ = _labelled_run(flip=0.38)
    assert after == before  # same seed, same inputs and scores
    assert 0.55 < sum(agree) / len(agree) < 0.65
