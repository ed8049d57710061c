"""ClickHouse's HTTP interface over the embedded engine, so Grafana works with no server.

Grafana's ClickHouse datasource and clickhouse-connect only speak to a ClickHouse server;
with the embedded default (chDB) there is none. This app answers the part of the interface
those clients use; the engine renders every format itself. Each request gets its own engine
connection (a ``SET`` must not leak into other clients' queries), every statement passes
:func:`obsloop.query_gate.check`, request settings may only lower the limits, and
``readonly=1`` applies on top. Design: docs/design/clickhouse-http-interface.md.
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
from typing import Any

from aiohttp import BodyPartReader, web

from obsloop import query_gate
from obsloop.clickhouse import embedded_path, is_embedded
from obsloop.config import Config, ConfigError
from obsloop.core.secret import reveal
from obsloop.core.sql import quote
from obsloop.http_guard import browser_guard, header_bytes

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
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        # obsloop's own: what a request asked for beyond its limits or the interface's rules
        "SUPPORT_IS_DISABLED", "TOO_MANY_ROWS_OR_BYTES", "TOO_MANY_ROWS", "TOO_MANY_BYTES"], 400),
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
_INSERT_VALUES = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+VALUES\b\s*", re.I | re.S)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Request settings that change only how results look or how limits behave.
OUTPUT_SETTINGS = frozenset({
    "result_overflow_mode", "timeout_overflow_mode", "read_overflow_mode", "limit", "offset", "extremes",
    "max_block_size", "session_timezone", "date_time_output_format", "date_time_input_format", "join_use_nulls",
    "output_format_json_quote_64bit_integers", "output_format_json_quote_denormals",
    "output_format_json_quote_decimals", "output_format_decimal_trailing_zeros",
    "output_format_json_named_tuples_as_objects",
    "output_format_arrow_string_as_string", "output_format_parquet_string_as_string", "log_comment",
    "http_write_exception_in_output_format", "cancel_http_readonly_queries_on_client_close",
    "input_format_null_as_default", "input_format_skip_unknown_fields", "input_format_defaults_for_omitted_fields",
    "insert_deduplicate",
})
#: Set on every request: the embedded engine's Python() reads the caller's variables.
ALWAYS_SETTINGS = {"allow_python_table_function": "0"}
#: Set on every write request: Values rows are data, never expressions (``file(...)`` in a row).
WRITE_SETTINGS = {"input_format_values_interpret_expressions": "0",
                  "input_format_values_deduce_templates_of_expressions": "0"}
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class HttpSettings:
    """What :func:`app` needs: who may query, and whether writes are allowed."""

    username: str = "default"
    password: str | None = None
    """``None``: the user needs no password (ClickHouse's ``default`` user out of the box)."""
    read_only: bool = True
    limits: tuple[tuple[str, int], ...] = ()
    """The most a request may ask for: ``(setting, value)``, 0 meaning no limit."""
    max_body_bytes: int = 256 * 1024 * 1024
    """The largest request body, as sent and once inflated (413 past it)."""


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


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` inflated to at most ``limit`` bytes: every decoder stops at the limit instead
    of inflating a small bomb into all of memory. Corrupt data is ClickHouse's 400."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "deflate"):
            inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            data, finished = inflater.decompress(body, limit + 1), inflater.eof
        elif encoding == "zstd":
            from backports import zstd  # clickhouse-connect's own zstd

            zstd_inflater = zstd.ZstdDecompressor()
            data, finished = zstd_inflater.decompress(body, max_length=limit + 1), zstd_inflater.eof
        elif encoding == "lz4":
            import lz4.frame

            lz4_inflater = lz4.frame.LZ4FrameDecompressor()
            data, finished = lz4_inflater.decompress(body, max_length=limit + 1), lz4_inflater.eof
        else:
            raise ClickHouseError(415, "UNSUPPORTED_MEDIA_TYPE", f"Unknown Content-Encoding: {encoding}")
    except ClickHouseError:
        raise
    except Exception as exc:  # noqa: BLE001 - each library has its own error for corrupt input
        raise ClickHouseError(117, "INCORRECT_DATA", f"Cannot decompress the {encoding} body: {exc}") from None
    if len(data) > limit:
        raise ClickHouseError(62, "QUERY_IS_TOO_LARGE",
                              f"The {encoding} body inflates past {limit} bytes (clickhouse_http.max_body_bytes)")
    if not finished:
        raise ClickHouseError(117, "INCORRECT_DATA", f"Cannot decompress the {encoding} body: truncated stream")
    return data


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
        from backports import zstd

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

    def run(self, query: _Query, limits: dict[str, int]) -> tuple[bytes, dict[str, str]]:
        import chdb

        connection = chdb.connect(self.path)
        try:
            if query.database:
                connection.query(f"USE {_identifier(query.database)}", "TabSeparated")
            statement = self._check(connection, query)
            for name, value in self._settings(connection, query, statement, limits).items():
                connection.query(f"SET {name} = {quote(value)}", "TabSeparated")
            started = time.perf_counter_ns()
            if query.data is None:
                result = connection.query(statement.sql, query.default_format, params=query.params)
            else:
                result = self._insert_file(connection, statement, query)
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
    def _check(connection: Any, query: _Query) -> query_gate.Statement:
        """The statement as the gate lets it run; a statement that does not parse gets the
        engine's own syntax error (with positions in the user's text), as ClickHouse answers."""
        def run(sql: str, params: Any) -> list[str]:
            result = connection.query(sql, "JSONCompact", params=dict(params))
            return [str(row[0]) for row in json.loads(bytes(result.bytes()))["data"]]

        try:
            statement = query_gate.check(query.sql, run, writes=not query.read_only, params=query.params)
        except query_gate.Refused as refused:
            raise ClickHouseError(refused.code, refused.name, f"{query.user}: {refused}") from None
        except Exception as exc:  # noqa: BLE001 - the parser's message is the answer
            error = ClickHouseError.from_engine(exc)
            error.args = (_FORMAT_QUERY_SCOPE.sub(r". (\1)", str(error)),)
            raise error from None
        if statement.inserts_rows and query.data is None:
            raise ClickHouseError(62, "SYNTAX_ERROR", "INSERT without rows: send them in the body after "
                                  "INSERT ... FORMAT <format>, or after VALUES")
        return statement

    @staticmethod
    def _settings(connection: Any, query: _Query, statement: query_gate.Statement,
                  limits: dict[str, int]) -> dict[str, str]:
        """The settings to apply, in order: the request's (limits lowered only, output
        settings, any other only if unchanged), the limits, then ``readonly=1`` for a read."""
        applied: dict[str, str] = {}
        effective = dict(limits)
        for name, value in query.settings.items():
            if not _SETTING_NAME.fullmatch(name):
                raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            if name in limits:
                try:
                    requested = int(float(value))
                except ValueError:
                    raise ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                                          f"Cannot parse '{value}' as the value of {name}") from None
                if requested > 0 and (limits[name] == 0 or requested < limits[name]):
                    effective[name] = requested
            elif name in OUTPUT_SETTINGS:
                applied[name] = value
            else:
                result = connection.query(f"SELECT value FROM system.settings WHERE name = {quote(name)}",
                                          "JSONCompact")
                rows = json.loads(bytes(result.bytes()))["data"]
                if not rows:
                    raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
                if rows[0][0] != value:
                    raise ClickHouseError(164, "READONLY", f"Cannot modify '{name}' setting: this interface "
                                          "lets a request lower the limits and set output settings only")
        applied.update({name: str(value) for name, value in effective.items()})
        applied.update(ALWAYS_SETTINGS)
        if statement.writes:
            applied.update(WRITE_SETTINGS)
        else:
            applied["readonly"] = "1"
        return applied

    def _insert_file(self, connection: Any, statement: query_gate.Statement, query: _Query) -> Any:
        """The engine reads no request body: rows sent after ``INSERT ... FORMAT x`` go
        through a scratch file and ``FROM INFILE``."""
        match = _INSERT_WITH_FORMAT.match(statement.sql)
        if match is None or query.data is None or not statement.inserts_rows:
            raise ClickHouseError(62, "SYNTAX_ERROR", "rows in the body need INSERT ... FORMAT <format>")
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.scratch, suffix=".rows") as rows:
            rows.write(query.data)
            rows.flush()
            sql = f"{match.group(1)} FROM INFILE {quote(rows.name)} FORMAT {match.group(2)}"
            return connection.query(sql, "TabSeparated", params=query.params)


class ClickHouseHttp:
    """The aiohttp handlers; :meth:`app` mounts them like ClickHouse's port 8123."""

    def __init__(self, engine: EmbeddedEngine, settings: HttpSettings, timezone: str = "UTC") -> None:
        self.engine = engine
        self.settings = settings
        self.timezone = timezone

    def app(self, allowed_hosts: tuple[str, ...] = (), allowed_origins: tuple[str, ...] = ()) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[
            browser_guard("clickhouse_http", allowed_hosts, allowed_origins)])
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/replicas_status", self._ping)
        app.router.add_route("GET", "/", self._query)
        app.router.add_route("POST", "/", self._query)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _authenticate(self, request: web.Request) -> str:
        """The user, after a constant-time compare on bytes; odd header bytes (non-UTF-8,
        non-ASCII, bad base64) are a failed authentication, never an error."""
        user = header_bytes(request.headers.get("X-ClickHouse-User") or request.query.get("user") or "")
        password = header_bytes(request.headers.get("X-ClickHouse-Key") or request.query.get("password") or "")
        authorization = header_bytes(request.headers.get("Authorization", ""))
        if authorization.startswith(b"Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:], validate=True).partition(b":")
            except ValueError:
                user, password = b"\0", b""
        user = user or b"default"
        valid_user = hmac.compare_digest(user, self.settings.username.encode())
        valid_password = hmac.compare_digest(password, (self.settings.password or "").encode())
        name = user.decode(errors="replace")
        if not (valid_user and valid_password):
            raise ClickHouseError(
                516, "AUTHENTICATION_FAILED",
                f"{name}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        return name

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
                    if not isinstance(part, BodyPartReader):
                        raise ClickHouseError(48, "NOT_IMPLEMENTED", "nested multipart is not served by obsloop")
                    if part.filename is not None:
                        raise ClickHouseError(48, "NOT_IMPLEMENTED", "external data tables are not served by obsloop")
                    value = await part.text()
                    if part.name == "query":
                        text = value
                    elif part.name and part.name.startswith("param_"):
                        params[part.name[6:]] = value
            else:
                body = _decompress(await request.read(), request.headers.get("Content-Encoding", ""),
                                   self.settings.max_body_bytes)
        data: bytes | None = None
        inline = _BODY_INSERT.match(body) if body and not text else None
        if text and body and _INSERT_WITH_FORMAT.match(text):
            data = body
        elif inline is not None:
            # ``INSERT ... FORMAT x`` then the rows, all in the body (clickhouse-connect's inserts).
            text = f"{inline.group(1).decode(errors='replace')} FORMAT {inline.group(2).decode()}"
            data = body[inline.end():]
        elif body:
            decoded = body.decode(errors="replace")
            text = f"{text}\n{decoded}" if text else decoded
        values = _INSERT_VALUES.match(text) if data is None else None
        if values is not None:
            # The rows after VALUES are data, run from a file: never part of the statement text.
            text, data = f"{values.group(1)} FORMAT Values", text[values.end():].encode()
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
            body, summary = await asyncio.to_thread(self.engine.run, parsed, dict(self.settings.limits))
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


def embedded_query(config: Config, sql: str, *, writes: bool, fmt: str) -> bytes:
    """``sql`` on the embedded engine as this interface runs it (gate, limits, ``readonly``),
    on a connection of its own: settings given to the process's shared client would stay
    on its session and refuse the inserter's writes. For admin ``/query`` and ``obsloop query``."""
    engine = EmbeddedEngine(embedded_path(config.storage_dsn), config.data_dir / "tmp" / "clickhouse_http")
    query = _Query(sql=sql, data=None, params={}, settings={}, database=config.storage.database,
                   default_format=fmt, read_only=not writes, user="obsloop")
    body, _ = engine.run(query, config.query_limits.settings())
    return body


def refuse_unprotected(config: Config) -> None:
    """A :class:`ConfigError` when the interface would be served beyond loopback without a password."""
    section = config.clickhouse_http
    if (section.enabled and is_embedded(config.storage_dsn) and section.host not in LOOPBACK
            and not section.password):
        raise ConfigError(f"{config.source}: 'clickhouse_http.host' is {section.host}, beyond this machine, "
                          "and 'clickhouse_http.password' is not set: set a password, or serve on 127.0.0.1")


async def interface_app(config: Config) -> web.Application | None:
    """The interface's application (``clickhouse_http`` in the configuration), for the caller
    to serve on its port; ``None`` when disabled or when storage is a ClickHouse server,
    which Grafana should query directly."""
    section = config.clickhouse_http
    if not section.enabled:
        return None
    if not is_embedded(config.storage_dsn):
        log.info("ClickHouse HTTP interface not served: storage is a ClickHouse server")
        return None
    interface = await asyncio.to_thread(
        build, embedded_path(config.storage_dsn), config.data_dir / "tmp" / "clickhouse_http",
        HttpSettings(username=section.username, password=reveal(section.password), read_only=section.read_only,
                     limits=tuple(config.query_limits.settings().items()), max_body_bytes=section.max_body_bytes),
    )
    return interface.app(tuple(section.allowed_hosts), tuple(section.allowed_origins))
