"""The one typed configuration: a YAML file plus ``OBSLOOP_*`` environment overrides.

Environment variables name a path through the sections with double underscores, so
``OBSLOOP_STORAGE__DSN=http://ch:8123`` overrides ``storage.dsn``. Unknown keys are errors
that name the key and the file, because a silently ignored typo is a page at 3 a.m.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from obsloop.collectors.config import CollectorsConfig, ReceiverConfig
from obsloop.core.secret import Secret
from obsloop.core.settings import Section, deep_merge
from obsloop.detectors.config import DetectorsConfig
from obsloop.feedback.config import FeedbackConfig
from obsloop.pipelines.kafka_config import KafkaConfig

ENV_PREFIX = "OBSLOOP_"
DEFAULT_CONFIG_FILE = "obsloop.yaml"



class WalConfig(Section):
    """Write-ahead segments: the acknowledged bytes, and the unit ClickHouse inserts."""

    directory: Path | None = None
    """Defaults to ``<data_dir>/wal``."""
    segment_max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    segment_max_age_seconds: float = Field(2.0, gt=0)
    max_pending_bytes: int = Field(1024 * 1024 * 1024, gt=0)
    """Closed-but-not-inserted bytes past which receivers answer 503 (backpressure)."""
    fsync: Literal["never", "segment", "always"] = "segment"
    """``segment`` syncs a segment when it closes; ``always`` before every acknowledgement."""
    min_free_bytes: int | None = Field(None, ge=0)
    """Free space kept on the log's filesystem (and the embedded ClickHouse's): receivers
    answer 503 rather than take it. ClickHouse needs about twice a segment to insert it, and
    room to merge parts; ``None``: three segments (:attr:`free_space_reserve`)."""
    drain_timeout_seconds: float = Field(20.0, ge=0)
    """From SIGTERM to exit at most this long (plus a few seconds to stop the embedded engine):
    what is not stored by then stays in the log for the next start. Under Kubernetes'
    default ``terminationGracePeriodSeconds`` of 30; set the grace period about 10 s above it."""

    @property
    def free_space_reserve(self) -> int:
        return 3 * self.segment_max_bytes if self.min_free_bytes is None else self.min_free_bytes


class StorageConfig(Section):
    """Where ClickHouse lives: ``chdb:///path`` (embedded, default) or ``http(s)://host:8123``."""

    dsn: str | None = None
    """Defaults to ``chdb://<data_dir>/clickhouse``."""
    database: str = "default"
    cluster: str | None = None
    """With a cluster name, DDL runs ``ON CLUSTER`` with Replicated and Distributed tables."""
    ttl_days: int = Field(0, ge=0)
    """Rows older than this many days are dropped (0 keeps them forever)."""
    username: str | None = None
    password: Secret | None = None

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        if value is not None and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("must not hold credentials (set storage.username and storage.password)")
        return value


class AdminConfig(Section):
    """The admin HTTP server: /metrics, /healthz, /readyz (open, for scrapes and probes) and
    ``POST /query`` (behind ``token``)."""

    host: str = "127.0.0.1"
    port: int = Field(8888, ge=0, le=65535)
    token: Secret | None = None
    """``POST /query`` needs ``Authorization: Bearer <token>``; without a token it is refused."""
    allow_write_queries: bool = False
    """Let ``/query?write=1`` (``obsloop query --write``) run INSERT, CREATE, ALTER, DROP, ..."""
    allowed_hosts: list[str] = []
    """``Host`` names besides IP addresses and ``localhost`` this port answers to (the
    service name it is reached by); any other is refused, against DNS rebinding."""
    allowed_origins: list[str] = []
    """Browser origins (``https://host:port``) allowed to call this port; requests with
    any other ``Origin`` are refused, so a web page cannot drive it."""


class QueryLimitsConfig(Section):
    """Per-query limits of the query surfaces (8123, admin ``/query``, ``obsloop query``), so a
    dashboard query cannot exhaust the process that is ingesting. ``0`` means no limit; a
    request may lower a limit, never raise it."""

    max_execution_time: int = Field(60, ge=0)
    """Seconds."""
    max_memory_usage: int = Field(2 * 1024**3, ge=0)
    max_result_rows: int = Field(1_000_000, ge=0)
    max_result_bytes: int = Field(512 * 1024**2, ge=0)
    max_rows_to_read: int = Field(0, ge=0)

    def settings(self) -> dict[str, int]:
        """The limits as ClickHouse settings."""
        return self.model_dump()


class ClickHouseHttpConfig(Section):
    """ClickHouse's HTTP interface over the embedded engine (``obsloop.clickhouse_http``),
    for Grafana's ClickHouse datasource; served only when storage is embedded."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8123, ge=0, le=65535)
    username: str = "default"
    password: Secret | None = None
    """``None``: no password, like a fresh ClickHouse server's ``default`` user."""
    max_body_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """The largest request body, as sent and once inflated (gzip, deflate, zstd, lz4): 413 past it."""
    read_only: bool = True
    """Refuse statements that write (ClickHouse's code 164, READONLY). With ``false``, writes
    run, but still no file, network or process access (see ``obsloop.query_gate``)."""
    allowed_hosts: list[str] = []
    """``Host`` names besides IP addresses and ``localhost`` this port answers to (the
    service name Grafana dials); any other is refused, against DNS rebinding."""
    allowed_origins: list[str] = []
    """Browser origins allowed to call this port (Grafana's plugin calls from its server
    and sends none); requests with any other ``Origin`` are refused."""


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class Config(Section):
    data_dir: Path = Path(".obsloop")
    receiver: ReceiverConfig = ReceiverConfig()
    wal: WalConfig = WalConfig()
    storage: StorageConfig = StorageConfig()
    admin: AdminConfig = AdminConfig()
    query_limits: QueryLimitsConfig = QueryLimitsConfig()
    clickhouse_http: ClickHouseHttpConfig = ClickHouseHttpConfig()
    logging: LoggingConfig = LoggingConfig()
    collectors: CollectorsConfig = CollectorsConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    kafka: KafkaConfig | None = None
    """With a Kafka section, receivers publish to Kafka and ``obsloop ingest-worker``
    processes store; without one, the local write-ahead log feeds ClickHouse directly."""
    source: str = Field("<defaults>", exclude=True)
    """Where this configuration came from, for error messages."""

    @property
    def wal_directory(self) -> Path:
        return self.wal.directory or self.data_dir / "wal"

    @property
    def storage_dsn(self) -> str:
        return self.storage.dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and its source."""


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``OBSLOOP_SECTION__KEY`` and ``OBSLOOP_<top-level field>`` variables as a nested dict.

    A value for a string field (tokens, passwords, paths, names) is taken literally: parsed
    as YAML, ``null``, ``~`` or an empty token would unset it, and an unset bearer token is
    authentication off. Only other fields (numbers, booleans, lists, sections) are YAML.
    Other ``OBSLOOP_*`` names without ``__`` are left alone: they belong to the in-function
    library (``OBSLOOP_MODEL_NAME``, …), which may share an environment with the service.
    """
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "OBSLOOP_CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if len(path) == 1 and path[0] not in Config.model_fields:
            continue
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(name, value, _field_annotation(path))
    return overrides


def _env_value(name: str, value: str, annotation: Any) -> Any:
    """One variable's value for the field it names; errors never show the value, which may
    be a secret."""
    if _is_secret(annotation) and not value:
        raise ConfigError(f"{name} is empty: a secret cannot be empty (unset the variable instead)")
    if annotation is None or _is_text(annotation) or not value:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"{name}: not valid YAML (its value is not shown)") from None


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows, without ``None``, ``Optional`` and ``Annotated``."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _field_annotation(path: list[str]) -> Any:
    """The annotation of the field ``path`` names from :class:`Config` down (through
    sections and mapping values), or ``None`` when it names none (an unknown key)."""
    annotation: Any = Config
    for part in path:
        members = _members(annotation)
        model = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        mapping = next((m for m in members if get_origin(m) is dict), None)
        if model is not None:
            field = next((f for key, f in model.model_fields.items() if part in (key, f.alias)), None)
            if field is None:
                return None
            annotation = field.annotation
        elif mapping is not None:
            annotation = get_args(mapping)[1]
        else:
            return None
    return annotation


def _is_text(annotation: Any) -> bool:
    """Whether every type the field allows is text (``str``, a secret, a path, string literals)."""
    members = _members(annotation)
    return bool(members) and all(
        (isinstance(m, type) and issubclass(m, (str, SecretStr, PurePath)))
        or (get_origin(m) is Literal and all(isinstance(arg, str) for arg in get_args(m)))
        for m in members
    )


def _is_secret(annotation: Any) -> bool:
    return any(isinstance(m, type) and issubclass(m, SecretStr) for m in _members(annotation))


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: '{key}': {item['msg']}")
    return "\n".join(lines)


def _yaml_position(error: yaml.YAMLError) -> str:
    """Where a YAML error is and what it is, without PyYAML's snippet of the line (which
    may hold a secret)."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None)
    return f"{where}: {problem}" if problem else where


def load_config(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Load the YAML file (``path``, ``$OBSLOOP_CONFIG`` or ``./obsloop.yaml`` if present)
    and apply environment overrides."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("OBSLOOP_CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: file not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML{_yaml_position(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping")
        data = loaded or {}
    overrides = _env_overrides(environ)
    if overrides:
        source = f"{source} + {ENV_PREFIX}* environment"
        data = deep_merge(data, overrides)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    config.source = source
    return config
