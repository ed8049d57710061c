"""ClickHouse's HTTP interface over the embedded engine, so Grafana works with no server.

Grafana's ClickHouse datasource and clickhouse-connect only speak to a ClickHouse server;
with the embedded default (chDB) there is none. This app answers the part of ClickHouse's
HTTP interface those clients use: the query in the body or the ``query`` parameter,
``param_*`` bindings, ``database``, ``default_format`` / ``FORMAT``, settings as URL
parameters, HTTP compression both ways, ``X-ClickHouse-*`` headers, and errors with
ClickHouse's exception text, code and HTTP status.

The engine renders every format itself (Native, RowBinary, JSON, ...): the bytes pass
through untouched. Each request opens its own engine connection, because the engine keeps
a ``SET`` (and ``USE``) for the rest of a connection's session: a per-request connection
keeps one client's settings out of everyone else's queries. For the same reason writes
are refused by statement kind (:func:`obsloop.clickhouse.is_read_only`) with code 164
``READONLY`` rather than with the ``readonly`` setting.

Not served: ClickHouse's own block compression (``compress=1`` / ``decompress=1``, which
needs CityHash128 checksums), external data tables, sessions (``session_id`` is accepted
and ignored: every request stands alone) and ``client_protocol_version`` (clients fall
back to protocol 0, which is what the engine's Native output is).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hmac
import json
import logging
import re
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from obsloop.clickhouse import embedded_path, is_embedded, is_read_only
from obsloop.secret import reveal

if TYPE_CHECKING:
    from obsloop.server import ObsloopServer

log = logging.getLogger(__name__)

#: URL parameters the HTTP layer consumes; every other parameter is a setting.
TRANSPORT_PARAMETERS = frozenset({
    "query", "database", "default_format", "user", "password", "query_id", "session_id",
    "session_timeout", "session_check", "compress", "decompress", "enable_http_compression",
    "http_zlib_compression_level", "buffer_size", "wait_end_of_query", "client_protocol_version",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "quota_key", "role",
    "readonly", "add_http_cors_header",
})

#: ClickHouse's mapping of exception names to HTTP statuses (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp).
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(["UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
                     "ACCESS_DENIED", "READONLY"], 403),
    **dict.fromkeys([
        "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
        "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
        "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST",
        "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"], 400),
    **dict.fromkeys([
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"], 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_CONTENT_TYPES = (
    (re.compile(r"^(TabSeparated|TSV)", re.I), "text/tab-separated-values; charset=UTF-8"),
    (re.compile(r"^CSV", re.I), "text/csv; charset=UTF-8; header=absent"),
    (re.compile(r"^(JSON|NDJSON)", re.I), "application/json; charset=UTF-8"),
    (re.compile(r"^(Native|RowBinary|Parquet|Arrow|ORC|Avro|Protobuf|MsgPack)", re.I), "application/octet-stream"),
)
_EXCEPTION = re.compile(r"Code: (\d+)\. DB::Exception: .*?\((\w+)\)(?: \(version [^)]*\))?\s*$", re.S)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*(?:SETTINGS\b[^;]*)?;?\s*$", re.I)
_FORMAT_QUERY_SCOPE = re.compile(r": In scope SELECT formatQuery\(.*\)\. \((\w+)\)$", re.S)
_BODY_INSERT = re.compile(rb"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)[ \t]*\r?\n?", re.I | re.S)
_INSERT_WITH_FORMAT = re.compile(r"^(\s*INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*$", re.I | re.S)


@dataclass(frozen=True)
class HttpSettings:
    """What :func:`app` needs: who may query, and whether writes are allowed."""

    username: str = "default"
    password: str | None = None
    """``None``: the user needs no password (ClickHouse's ``default`` user out of the box)."""
    read_only: bool = True


class ClickHouseError(Exception):
    """An error to answer the way ClickHouse does: ``Code: N. DB::Exception: ... (NAME)``."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name})")
        self.code = code
        self.name = name

    @classmethod
    def from_engine(cls, exc: Exception) -> ClickHouseError:
        """The engine's own exception, innermost message first as ClickHouse's server prints it."""
        text = str(exc).strip()
        start = text.find("Code: ")
        text = text[start:] if start >= 0 else text
        match = _EXCEPTION.match(text)
        if match is None:
            return cls(1001, "STD_EXCEPTION", text or type(exc).__name__)
        error = cls.__new__(cls)
        Exception.__init__(error, text)
        error.code, error.name = int(match.group(1)), match.group(2)
        return error

    def response(self, query_id: str) -> web.Response:
        return web.Response(
            status=_STATUS_BY_NAME.get(self.name, 500), text=f"{self}\n", content_type="text/plain",
            headers={"X-ClickHouse-Exception-Code": str(self.code), "X-ClickHouse-Query-Id": query_id},
        )


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        from backports import zstd  # type: ignore[import-not-found]  # clickhouse-connect's own zstd

        return zstd.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    raise ClickHouseError(415, "UNSUPPORTED_MEDIA_TYPE", f"Unknown Content-Encoding: {encoding}")


def _compressors() -> dict[str, Callable[[bytes], bytes]]:
    """Response encodings ClickHouse offers that this interpreter can produce."""
    available: dict[str, Callable[[bytes], bytes]] = {
        "gzip": lambda data: gzip.compress(data, compresslevel=3),
        "deflate": lambda data: zlib.compress(data, 3),
    }
    try:
        import lz4.frame

        available["lz4"] = lz4.frame.compress
    except ImportError:
        pass
    try:
        from backports import zstd  # type: ignore[import-not-found]

        available["zstd"] = zstd.compress
    except ImportError:
        pass
    return available


_COMPRESSORS = _compressors()


def _content_type(fmt: str) -> str:
    for pattern, content_type in _CONTENT_TYPES:
        if pattern.match(fmt):
            return content_type
    return "text/plain; charset=UTF-8"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class _Query:
    sql: str
    data: bytes | None
    """Rows for an ``INSERT ... FORMAT x`` whose data came in the body."""
    params: dict[str, str]
    settings: dict[str, str]
    database: str | None
    default_format: str
    read_only: bool
    user: str


class EmbeddedEngine:
    """Runs one request on its own connection to the process's embedded engine."""

    def __init__(self, path: str, scratch: Path) -> None:
        self.path = path
        self.scratch = scratch

    def run(self, query: _Query) -> tuple[bytes, dict[str, str]]:
        import chdb

        connection = chdb.connect(self.path)
        try:
            if query.read_only and not is_read_only(query.sql):
                self._refuse(connection, query)
            if query.database:
                connection.query(f"USE {_identifier(query.database)}", "TabSeparated")
            for name, value in query.settings.items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
                connection.query(f"SET {name} = {_quote(value)}", "TabSeparated")
            started = time.perf_counter_ns()
            if query.data is None:
                result = connection.query(query.sql, query.default_format, params=query.params)
            else:
                result = self._insert_file(connection, query)
            elapsed = time.perf_counter_ns() - started
            body = bytes(result.bytes() or b"")
            summary = {
                "read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written()),
                "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(body)),
                "elapsed_ns": str(elapsed),
            }
            return body, summary
        except ClickHouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine's exception becomes ClickHouse's answer
            raise ClickHouseError.from_engine(exc) from None
        finally:
            connection.close()

    @staticmethod
    def _refuse(connection: Any, query: _Query) -> None:
        """Code 164 for a write; but a statement that does not parse gets the engine's own
        syntax error (with positions in the user's text), as ClickHouse answers."""
        try:
            connection.query(f"SELECT formatQuery({_quote(query.sql)})", "TabSeparated")
        except Exception as exc:  # noqa: BLE001 - the parser's message is the answer
            error = ClickHouseError.from_engine(exc)
            text = _FORMAT_QUERY_SCOPE.sub(r". (\1)", str(error))
            error.args = (text,)
            raise error from None
        raise ClickHouseError(164, "READONLY", f"{query.user}: Cannot execute query in readonly mode")

    def _insert_file(self, connection: Any, query: _Query) -> Any:
        """The engine reads no request body: rows sent after ``INSERT ... FORMAT x`` go
        through a scratch file and ``FROM INFILE``."""
        match = _INSERT_WITH_FORMAT.match(query.sql)
        assert match is not None and query.data is not None
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.scratch, suffix=".rows") as rows:
            rows.write(query.data)
            rows.flush()
            sql = f"{match.group(1)} FROM INFILE {_quote(rows.name)} FORMAT {match.group(2)}"
            return connection.query(sql, "TabSeparated", params=query.params)


class ClickHouseHttp:
    """The aiohttp handlers; :meth:`app` mounts them like ClickHouse's port 8123."""

    def __init__(self, engine: EmbeddedEngine, settings: HttpSettings, timezone: str = "UTC") -> None:
        self.engine = engine
        self.settings = settings
        self.timezone = timezone

    def app(self) -> web.Application:
        # ClickHouse answers large bodies (inserts) too; the engine bounds what it accepts.
        app = web.Application(client_max_size=1024**3)
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/replicas_status", self._ping)
        app.router.add_route("GET", "/", self._query)
        app.router.add_route("POST", "/", self._query)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _authenticate(self, request: web.Request) -> str:
        user = request.headers.get("X-ClickHouse-User") or request.query.get("user")
        password = request.headers.get("X-ClickHouse-Key") or request.query.get("password")
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
        user = user or "default"
        expected = self.settings.password or ""
        valid_user = hmac.compare_digest(user.encode(), self.settings.username.encode())
        valid_password = hmac.compare_digest((password or "").encode(), expected.encode())
        if not (valid_user and valid_password):
            raise ClickHouseError(
                516, "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        return user

    async def _parse(self, request: web.Request, user: str) -> _Query:
        query = request.query
        if query.get("compress") == "1" or query.get("decompress") == "1":
            raise ClickHouseError(48, "NOT_IMPLEMENTED", "ClickHouse block compression (compress/decompress=1) "
                                  "is not served by obsloop; use HTTP compression (enable_http_compression)")
        params = {name[6:]: value for name, value in query.items() if name.startswith("param_")}
        text = query.get("query", "")
        body = b""
        if request.method == "POST":
            if request.content_type == "multipart/form-data":
                async for part in await request.multipart():
                    if part.filename is not None:
                        raise ClickHouseError(48, "NOT_IMPLEMENTED", "external data tables are not served by obsloop")
                    value = await part.text()
                    if part.name == "query":
                        text = value
                    elif part.name and part.name.startswith("param_"):
                        params[part.name[6:]] = value
            else:
                body = _decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        data: bytes | None = None
        inline = _BODY_INSERT.match(body) if body and not text else None
        if text and body and _INSERT_WITH_FORMAT.match(text):
            data = body
        elif inline is not None:
            # ``INSERT ... FORMAT x`` then the rows, all in the body (clickhouse-connect's inserts).
            text = f"{inline.group(1).decode()} FORMAT {inline.group(2).decode()}"
            data = body[inline.end():]
        elif body:
            decoded = body.decode(errors="replace")
            text = f"{text}\n{decoded}" if text else decoded
        if not text.strip():
            raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
        read_only = self.settings.read_only or request.method == "GET" or query.get("readonly", "0") != "0"
        settings = {name: value for name, value in query.items()
                    if name not in TRANSPORT_PARAMETERS and not name.startswith("param_")}
        return _Query(sql=text, data=data, params=params, settings=settings, database=query.get("database"),
                      default_format=query.get("default_format", "TabSeparated"), read_only=read_only,
                      user=user)

    def _encoding(self, request: web.Request) -> str | None:
        if request.query.get("enable_http_compression") != "1":
            return None
        for offered in request.headers.get("Accept-Encoding", "").split(","):
            name = offered.split(";")[0].strip().lower()
            if name in _COMPRESSORS:
                return name
        return None

    async def _query(self, request: web.Request) -> web.Response:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        try:
            user = self._authenticate(request)
            parsed = await self._parse(request, user)
            body, summary = await asyncio.to_thread(self.engine.run, parsed)
        except ClickHouseError as error:
            return error.response(query_id)
        trailing = _TRAILING_FORMAT.search(parsed.sql) if parsed.data is None else None
        fmt = trailing.group(1) if trailing else parsed.default_format
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": self.timezone,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
            "Content-Type": _content_type(fmt),
        }
        encoding = self._encoding(request)
        if encoding is not None:
            body = _COMPRESSORS[encoding](body)
            headers["Content-Encoding"] = encoding
        return web.Response(body=body, headers=headers)


def build(path: str, scratch: Path, settings: HttpSettings) -> ClickHouseHttp:
    """The interface over the embedded engine at ``path`` (a ``chdb://`` DSN's directory)."""
    import chdb

    connection = chdb.connect(path)
    try:
        timezone = bytes(connection.query("SELECT timezone()", "TabSeparated").bytes()).decode().strip()
    finally:
        connection.close()
    return ClickHouseHttp(EmbeddedEngine(path, scratch), settings, timezone)


async def serve(server: ObsloopServer) -> str | None:
    """Mount the interface on its own port (``clickhouse_http`` in the configuration) and
    return its URL; ``None`` when disabled or when storage is a ClickHouse server, which
    Grafana should query directly."""
    config = server.config
    section = config.clickhouse_http
    if not section.enabled:
        return None
    if not is_embedded(config.storage_dsn):
        log.info("ClickHouse HTTP interface not served: storage is a ClickHouse server")
        return None
    interface = await asyncio.to_thread(
        build, embedded_path(config.storage_dsn), config.data_dir / "tmp" / "clickhouse_http",
        HttpSettings(username=section.username, password=reveal(section.password), read_only=section.read_only),
    )
    # Bodies may be lz4 or zstd, which aiohttp cannot inflate: the handler does it.
    port = await server._serve(interface.app(), section.host, section.port, auto_decompress=False)
    return f"http://{section.host}:{port}"
