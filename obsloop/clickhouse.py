"""One way to reach ClickHouse, whichever deployment: ``clickhouse-connect`` everywhere.

``chdb:///path`` runs the embedded engine in this process (the default: nothing to
install); ``http(s)://host:8123`` talks to a server or a cluster. The embedded engine lets
only one process open a data directory, so a process keeps a single client per DSN.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

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


_READ_ONLY_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})


def is_read_only(sql: str) -> bool:
    """Whether ``sql`` is a single statement that only reads.

    Checked on the text rather than with ClickHouse's ``readonly`` setting, because the
    embedded engine keeps a setting for the rest of the session once a query used it.
    """
    text = sql.strip()
    while text.startswith(("--", "/*")):
        text = text.partition("\n")[2].lstrip() if text.startswith("--") else text.partition("*/")[2].lstrip()
    body = text.rstrip().rstrip(";")
    if ";" in body.replace("';'", ""):
        return False  # several statements: refuse rather than guess
    first = body.split(None, 1)[0].upper() if body else ""
    return first.lstrip("(") in _READ_ONLY_STATEMENTS
