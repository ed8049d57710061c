"""A recording HTTP server on 127.0.0.1 that answers like the real APIs the loop calls.

``script`` maps a raw path (percent-encoding kept, as GitLab project ids need) to a list of
(status, body, headers) answers used in order (the last one repeats); unscripted paths
answer 200 ``{}``. It runs its own event loop in a thread, so code under test may use
``asyncio.run`` or blocking clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def answer(self, path: str, *answers: tuple[int, Any] | tuple[int, Any, dict[str, str]]):
        self.script[path] = [(a[0], a[1], a[2] if len(a) > 2 else {}) for a in answers]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Recorded(request.method, request.raw_path, dict(request.headers), await request.read())
        )
        answers = self.script.get(request.raw_path) or [(200, {}, {})]
        status, body, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
