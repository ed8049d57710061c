from __future__ import annotations

from pathlib import Path

import pytest

from obsloop.config import ConfigError, load_config


def test_defaults_without_a_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.receiver.http_port == 4318 and config.receiver.grpc_port == 4317
    assert config.storage_dsn == f"chdb://{(tmp_path / '.obsloop' / 'clickhouse').resolve()}"
    assert config.wal_directory == Path(".obsloop") / "wal"


def test_yaml_file_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "obsloop.yaml"
    path.write_text("receiver:\n  http_port: 14318\nstorage:\n  dsn: http://ch:8123\n  ttl_days: 7\n")
    config = load_config(path, environ={"OBSLOOP_RECEIVER__HTTP_PORT": "24318",
                                        "OBSLOOP_WAL__FSYNC": "always", "OTHER": "x",
                                        "OBSLOOP_DATA_DIR": "/var/lib/obsloop",
                                        "OBSLOOP_MODEL_NAME": "the in-function library's, not ours"})
    assert str(config.data_dir) == "/var/lib/obsloop"
    assert config.receiver.http_port == 24318  # the environment wins over the file
    assert config.storage.dsn == "http://ch:8123" and config.storage.ttl_days == 7
    assert config.wal.fsync == "always"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("receiver:\n  http_prot: 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert f"{path}: unknown key 'receiver.http_prot'" in str(error.value)


def test_bad_values_and_bad_files_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("storage:\n  dsn: mysql://x\nreceiver:\n  http_port: 99999\n")
    message = str(pytest.raises(ConfigError, load_config, path, environ={}).value)
    assert "'storage.dsn': Value error, must start with chdb://, http:// or https://" in message
    assert "'receiver.http_port'" in message
    path.write_text("receiver: [1, 2\n")
    assert "not valid YAML" in str(pytest.raises(ConfigError, load_config, path, environ={}).value)
    assert "file not found" in str(pytest.raises(ConfigError, load_config, tmp_path / "none.yaml",
                                                 environ={}).value)
    env_error = pytest.raises(ConfigError, load_config, None, environ={"OBSLOOP_WAL__FSYNC": "sometimes"}).value
    typo = pytest.raises(ConfigError, load_config, None, environ={"OBSLOOP_RECIEVER__HTTP_PORT": "1"}).value
    assert "unknown key 'reciever'" in str(typo)
    assert "OBSLOOP_* environment" in str(env_error) and "'wal.fsync'" in str(env_error)
