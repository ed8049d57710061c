"""Secrets in the configuration never show: not in repr, dumps, configuration errors, the
log of a real ``obsloop serve`` start-up, its state file, ``/metrics`` or query results."""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from obsloop.config import Config, ConfigError, load_config

SECRETS = {
    "receiver.bearer_token": "tok-RECEIVER-7f3a",
    "storage.password": "pw-STORAGE-91c2",
    "clickhouse_http.password": "pw-CHHTTP-4d1e",
    "collectors.aws.firehose_access_key": "key-FIREHOSE-a0b9",
    "kafka.sasl_password": "pw-SASL-5e77",
    "kafka.ssl_password": "pw-SSL-c3d8",
    "feedback.git.token": "tok-GIT-2b6f",
    "feedback.notifiers.0.url": "https://hooks.slack.invalid/SLACK-URL-8a1c",
    "feedback.notifiers.1.routing_key": "key-PAGERDUTY-e4f0",
    "feedback.notifiers.2.hmac_key": "key-HMAC-6c5b",
    "feedback.retrain.0.token": "tok-RETRAIN-0d9e",
}
SECRET_NAME = re.compile(r"(token|password|secret)|(^|_)key$")


def document() -> dict[str, Any]:
    """A configuration with every secret set."""
    return {
        "receiver": {"bearer_token": SECRETS["receiver.bearer_token"]},
        "storage": {"password": SECRETS["storage.password"]},
        "clickhouse_http": {"password": SECRETS["clickhouse_http.password"]},
        "collectors": {"aws": {"firehose_access_key": SECRETS["collectors.aws.firehose_access_key"]}},
        "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                  "sasl_password": SECRETS["kafka.sasl_password"],
                  "ssl_password": SECRETS["kafka.ssl_password"]},
        "feedback": {
            "git": {"remote": "/srv/gitops", "token": SECRETS["feedback.git.token"]},
            "notifiers": [
                {"name": "s", "type": "slack", "url": SECRETS["feedback.notifiers.0.url"]},
                {"name": "p", "type": "pagerduty", "routing_key": SECRETS["feedback.notifiers.1.routing_key"]},
                {"name": "w", "type": "webhook", "url": "http://127.0.0.1:9/hook",
                 "hmac_key": SECRETS["feedback.notifiers.2.hmac_key"]},
            ],
            "retrain": [{"name": "r", "type": "webhook", "url": "http://127.0.0.1:9/retrain",
                         "token": SECRETS["feedback.retrain.0.token"]}],
        },
    }


def assert_hidden(text: str) -> None:
    shown = [name for name, value in SECRETS.items() if value in text]
    assert not shown, f"secrets shown: {shown}"


def secret_like_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """Every field of ``model`` (recursively) whose name says it holds a secret."""
    found = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if SECRET_NAME.search(name):
            found.append((path, field.annotation))
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += secret_like_fields(annotation, f"{path}.")
            elif get_origin(annotation) is not None:
                stack.extend(get_args(annotation))
    return found


def test_every_secret_field_is_a_secret_str() -> None:
    fields = secret_like_fields(Config)
    assert {path for path, _ in fields} >= {"receiver.bearer_token", "storage.password",
                                            "clickhouse_http.password", "collectors.aws.firehose_access_key"}
    plain = [path for path, annotation in fields if SecretStr not in _flatten(annotation)]
    assert not plain, f"secrets typed as plain strings: {plain}"


def _flatten(annotation: Any) -> set[Any]:
    members = {annotation}
    for arg in get_args(annotation):
        members |= _flatten(arg)
    return members


def test_repr_str_and_dumps_mask_every_secret(tmp_path: Path) -> None:
    path = tmp_path / "obsloop.yaml"
    path.write_text(yaml.safe_dump(document()))
    config = load_config(path, environ={})
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump()),
                 repr(config.receiver), repr(config.feedback.notifiers)):
        assert_hidden(text)
        assert "**********" in text
    # ... and each one is still there for the code that uses it
    assert config.receiver.bearer_token.get_secret_value() == SECRETS["receiver.bearer_token"]
    assert config.collectors.aws.firehose_access_key.get_secret_value() == SECRETS[
        "collectors.aws.firehose_access_key"]


def test_configuration_errors_do_not_show_secrets(tmp_path: Path) -> None:
    path = tmp_path / "obsloop.yaml"
    bad = document()
    bad["receiver"]["http_port"] = "not a port"
    bad["clickhouse_http"]["read_only"] = "maybe"
    path.write_text(yaml.safe_dump(bad))
    error = str(pytest.raises(ConfigError, load_config, path, environ={}).value)
    assert "'receiver.http_port'" in error and "'clickhouse_http.read_only'" in error
    assert_hidden(error)
    # a YAML syntax error on the line that holds a secret: PyYAML's message quotes the line
    path.write_text(f'receiver:\n  bearer_token: "{SECRETS["receiver.bearer_token"]}\n  http_port: [1\n')
    error = str(pytest.raises(ConfigError, load_config, path, environ={}).value)
    assert "not valid YAML at line" in error
    assert_hidden(error)
    # a password inside the storage DSN would be a plain string: refused, without echoing it
    environ = {"OBSLOOP_STORAGE__DSN": f"https://reader:{SECRETS['storage.password']}@ch.internal:8443"}
    error = str(pytest.raises(ConfigError, load_config, None, environ=environ).value)
    assert "'storage.dsn'" in error and "credentials" in error
    assert_hidden(error)
    # a secret in the environment, with an error elsewhere
    environ = {"OBSLOOP_RECEIVER__BEARER_TOKEN": SECRETS["receiver.bearer_token"],
               "OBSLOOP_RECEIVER__GRPC_PORT": "-5"}
    error = str(pytest.raises(ConfigError, load_config, None, environ=environ).value)
    assert "'receiver.grpc_port'" in error
    assert_hidden(error)


def test_a_served_process_shows_no_secret(obsloop_factory) -> None:
    """Start-up log (at DEBUG), state file, ``/metrics`` and the settings and logs a query
    can read: none holds a secret, with every one of them set."""
    served = document()
    del served["kafka"]  # serve would publish to Kafka
    served["feedback"]["enabled"] = False
    served["logging"] = {"format": "json", "level": "DEBUG"}
    server = obsloop_factory(**served)
    token = SECRETS["receiver.bearer_token"]
    wrong = urllib.request.Request(f"{server.http}/v1/traces", data=b"", method="POST",
                                   headers={"Authorization": f"Bearer {token}x",
                                            "Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code == 401
    assert_hidden(refused.value.read().decode(errors="replace"))
    status, metrics = server.get("/metrics")
    assert status == 200 and "obsloop_" in metrics
    assert_hidden(metrics)
    assert_hidden((server.data_dir / "serve.json").read_text())
    # ClickHouse HTTP, authenticated with its password: nothing it can read shows a secret
    password = SECRETS["clickhouse_http.password"]
    auth = base64.b64encode(f"default:{password}".encode()).decode()
    for sql in ("SELECT name, value FROM system.settings WHERE changed FORMAT TSV",
                "SELECT * FROM system.processes FORMAT TSV"):
        request = urllib.request.Request(server.endpoints["clickhouse_http"], data=sql.encode(),
                                         headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert_hidden(response.read().decode())
    in_url = urllib.parse.urlencode({"user": "default", "password": password,
                                     "query": "SELECT * FROM system.settings WHERE changed FORMAT TSV"})
    with urllib.request.urlopen(f"{server.endpoints['clickhouse_http']}/?{in_url}", timeout=30) as response:
        assert_hidden(response.read().decode())
    wrong = urllib.parse.urlencode({"user": "default", "password": password + "x", "query": "SELECT 1"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.endpoints['clickhouse_http']}/?{wrong}", timeout=30)
    assert refused.value.code in (401, 403, 516)
    assert_hidden(refused.value.read().decode(errors="replace"))
    server.stop()
    log = server.log_path.read_text()
    assert "obsloop serving" in log
    assert_hidden(log)
