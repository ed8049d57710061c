"""``OBSLOOP_*`` overrides of string fields are taken literally: a YAML reading of ``null``,
``~`` or an empty value must not unset a bearer token (authentication off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsloop.config import ConfigError, load_config


@pytest.fixture
def with_token(tmp_path: Path) -> Path:
    path = tmp_path / "obsloop.yaml"
    path.write_text("receiver:\n  bearer_token: from-the-file\n")
    return path


@pytest.mark.parametrize("value", ["null", "~", "Null", "NULL", "false", "0", "123", "[a, b]",
                                   "{a: 1}", "yes", "'quoted'", "!!binary aGk="])
def test_string_fields_take_the_value_literally(with_token: Path, value: str) -> None:
    config = load_config(with_token, environ={"OBSLOOP_RECEIVER__BEARER_TOKEN": value,
                                              "OBSLOOP_STORAGE__USERNAME": value,
                                              "OBSLOOP_CLICKHOUSE_HTTP__PASSWORD": value})
    assert config.receiver.bearer_token is not None
    assert config.receiver.bearer_token.get_secret_value() == value
    assert config.storage.username == value
    assert config.clickhouse_http.password.get_secret_value() == value


def test_literal_strings_in_sections_below_the_top(tmp_path: Path) -> None:
    environ = {"OBSLOOP_COLLECTORS__AWS__FIREHOSE_ACCESS_KEY": "~",
               "OBSLOOP_COLLECTORS__AZURE__SCHEMA": "classic",  # a field with an alias
               "OBSLOOP_COLLECTORS__FUNCTIONS__SCORER__ARCH": "arm64",  # through a mapping
               "OBSLOOP_DATA_DIR": "null"}
    config = load_config(None, environ=environ)
    assert config.collectors.aws.firehose_access_key.get_secret_value() == "~"
    assert config.collectors.azure.schema_ == "classic"
    assert config.collectors.functions["scorer"].arch == "arm64"
    assert str(config.data_dir) == "null"


def test_other_fields_are_still_yaml() -> None:
    config = load_config(None, environ={"OBSLOOP_RECEIVER__HTTP_PORT": "14318",
                                        "OBSLOOP_RECEIVER__GRPC_ENABLED": "false",
                                        "OBSLOOP_COLLECTORS__AWS__LOG_GROUPS": "[/aws/lambda/a, /aws/lambda/b]",
                                        "OBSLOOP_COLLECTORS__FUNCTIONS__SCORER__MEMORY_MB": "1024",
                                        "OBSLOOP_DETECTORS__WARMUP_WINDOWS": "null"})
    assert config.receiver.http_port == 14318 and config.receiver.grpc_enabled is False
    assert config.collectors.aws.log_groups == ["/aws/lambda/a", "/aws/lambda/b"]
    assert config.collectors.functions["scorer"].memory_mb == 1024
    assert config.detectors.warmup_windows is None


@pytest.mark.parametrize("name", ["OBSLOOP_RECEIVER__BEARER_TOKEN", "OBSLOOP_CLICKHOUSE_HTTP__PASSWORD",
                                  "OBSLOOP_STORAGE__PASSWORD", "OBSLOOP_COLLECTORS__AWS__FIREHOSE_ACCESS_KEY"])
def test_an_empty_secret_is_a_configuration_error(with_token: Path, name: str) -> None:
    error = pytest.raises(ConfigError, load_config, with_token, environ={name: ""}).value
    assert name in str(error) and "empty" in str(error)


def test_an_empty_secret_in_the_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "obsloop.yaml"
    path.write_text("receiver:\n  bearer_token: ''\n")
    error = str(pytest.raises(ConfigError, load_config, path, environ={}).value)
    assert "'receiver.bearer_token'" in error and "must not be empty" in error


def test_a_parse_error_names_the_variable_but_not_the_value() -> None:
    value = "[unclosed, s3cret-in-a-list"
    error = pytest.raises(ConfigError, load_config, None,
                          environ={"OBSLOOP_COLLECTORS__AWS__LOG_GROUPS": value}).value
    assert "OBSLOOP_COLLECTORS__AWS__LOG_GROUPS" in str(error) and "not valid YAML" in str(error)
    assert "s3cret" not in str(error) and error.__cause__ is None and error.__suppress_context__
