"""The built-in load generator keeps the rate it is asked for, whatever the receiver's latency:
the demo's detectors learn history sent at that rate, and a slower live rate looks like an
outage of every function."""

from __future__ import annotations

import asyncio

from aiohttp import web

from obsloop.loadgen import ServerlessTraffic, send_forever
from obsloop.server import bound_port


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
