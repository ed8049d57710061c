"""One way to reach ClickHouse, whichever deployment: ``clickhouse-connect`` everywhere.

``chdb:///path`` runs the embedded engine in this process (the default: nothing to
install); ``http(s)://host:8123`` talks to a server or a cluster. The embedded engine lets
only one process open a data directory, so a process keeps a single client per DSN.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from obsloop import query_gate

_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def embedded_path(dsn: str) -> str:
    """The data directory of a ``chdb://`` DSN."""
    return urlsplit(dsn).path


def connect(
    dsn: str, *, database: str = "default", username: str | None = None, password: str | None = None
) -> Client:
    """Return this process's client for ``dsn`` (one per DSN, shared between threads)."""
    key = f"{dsn}|{database}|{username}"
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            kwargs: dict[str, Any] = {"dsn": dsn}
            if not is_embedded(dsn):
                # The client is shared between threads (the inserter, the detectors, the
                # feedback audit), and a server refuses concurrent queries in one session:
                # clickhouse-connect's default session id made them fail now and then.
                kwargs["autogenerate_session_id"] = False
                kwargs["database"] = database
                if username:
                    kwargs["username"] = username
                if password:
                    kwargs["password"] = password
            client = clickhouse_connect.get_client(**kwargs)
            _clients[key] = client
        return client


def close_all() -> None:
    """Close every client; the embedded engine must shut down before the process exits."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def runner(client: Client) -> query_gate.Run:
    """The statement gate's access to the engine, through ``client``."""
    return lambda sql, params: [str(row[0]) for row in client.query(sql, parameters=dict(params) or None).result_rows]


def checked_query(client: Client, sql: str, *, writes: bool, limits: Mapping[str, int], fmt: str) -> bytes:
    """Run ``sql`` on a ClickHouse server if :func:`obsloop.query_gate.check` lets it
    (``writes``: writes allowed); a read runs with ``readonly=1`` and ``limits`` as this
    request's settings, which the statement cannot lift. Not for the embedded engine, which
    would keep the settings on the shared client's session
    (:func:`obsloop.clickhouse_http.embedded_query` is its way).
    Raises :class:`obsloop.query_gate.Refused`, or the engine's error."""
    statement = query_gate.check(sql, runner(client), writes=writes)
    if statement.inserts_rows:
        raise query_gate.Refused(62, "SYNTAX_ERROR", "INSERT with rows is not run here: use INSERT ... SELECT, "
                                 "or send the rows to the ClickHouse HTTP interface")
    settings = {} if statement.writes else {**limits, "readonly": 1}
    return client.raw_query(statement.sql, fmt=fmt, settings=settings)
