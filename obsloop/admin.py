"""The admin port's shared part: the browser guard and ``POST /query`` through the statement gate.

``serve`` and the workers each add ``/metrics``, ``/healthz`` and ``/readyz``, which stay
open for scrapes and probes; ``/query`` needs ``admin.token``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from clickhouse_connect.driver.client import Client

from obsloop import clickhouse
from obsloop.clickhouse_http import ClickHouseError, embedded_query
from obsloop.config import Config
from obsloop.http_guard import bearer_matches, browser_guard
from obsloop.query_gate import Refused

QUERY_FORMATS = {"json": "JSONCompact", "csv": "CSVWithNames", "tsv": "TSVWithNames"}


def admin_app(config: Config, client: Callable[[], Client]) -> web.Application:
    """The admin app's shared part: the browser guard and ``POST /query``; the caller adds
    ``/metrics``, ``/healthz`` and ``/readyz``, which stay open for scrapes and probes."""
    admin = config.admin
    app = web.Application(middlewares=[browser_guard("admin", admin.allowed_hosts, admin.allowed_origins)])

    async def query(request: web.Request) -> web.Response:
        return await query_response(request, client, config)

    app.router.add_post("/query", query)
    return app


async def query_response(request: web.Request, client: Callable[[], Client], config: Config) -> web.Response:
    """``POST /query``: the SQL in the body, answered in ``?format=``; needs ``admin.token``
    as a bearer token, read-only unless ``write=1`` and ``admin.allow_write_queries``.
    Shared by ``serve`` and the workers: with the embedded engine, the process holding the
    data directory is the one that can answer."""
    admin = config.admin
    if admin.token is None:
        return web.json_response({"error": "/query is off: set admin.token to use it"}, status=403)
    if not bearer_matches(request, admin.token):
        return web.json_response({"error": "/query needs Authorization: Bearer <admin.token>"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    write = request.query.get("write") == "1"
    if write and not admin.allow_write_queries:
        return web.json_response({"error": "writes are off: set admin.allow_write_queries to allow write=1"},
                                 status=403)
    try:
        sql = await request.text()
    except UnicodeDecodeError:
        return web.json_response({"error": "the SQL must be UTF-8"}, status=400)
    fmt = QUERY_FORMATS.get(request.query.get("format", "json"))
    if not sql.strip() or fmt is None:
        return web.json_response({"error": "POST the SQL as the body; format=json|csv|tsv"}, status=400)
    try:
        result = await asyncio.to_thread(run_checked, config, client, sql, writes=write, fmt=fmt)
    except Refused as refused:
        hint = "" if write or refused.code != 164 else " (write=1 runs writes)"
        return web.json_response({"error": f"{refused}{hint}"}, status=403 if refused.code in (164, 497) else 400)
    except Exception as exc:  # noqa: BLE001 - ClickHouse's own message goes back to the user
        return web.json_response({"error": str(exc)}, status=400)
    return web.Response(body=result, content_type="text/plain" if fmt != "JSONCompact" else "application/json")


def run_checked(config: Config, client: Callable[[], Client], sql: str, *, writes: bool, fmt: str) -> bytes:
    """``sql`` through the statement gate, with the query limits (and ``readonly=1`` for a
    read): on a connection of its own with the embedded engine, through ``client`` with a
    server. Raises :class:`Refused` for a statement the gate refuses, else the engine's error."""
    if not clickhouse.is_embedded(config.storage_dsn):
        return clickhouse.checked_query(client(), sql, writes=writes, limits=config.query_limits.settings(), fmt=fmt)
    try:
        return embedded_query(config, sql, writes=writes, fmt=fmt)
    except ClickHouseError as error:
        if error.name in ("READONLY", "ACCESS_DENIED"):
            raise Refused(error.code, error.name, str(error)) from None
        raise
