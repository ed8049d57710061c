"""8123's request bodies against a real ``obsloop serve``: a compression bomb in any of the
encodings ClickHouse's HTTP interface takes is refused at ``clickhouse_http.max_body_bytes``
without inflating into memory, and a corrupt body is a 400, never a 500."""

from __future__ import annotations

import gzip
import sys
import zlib
from base64 import b64encode
from pathlib import Path

import lz4.frame
import pytest
from backports import zstd
from obsloop_process import ObsloopProcess
from push_attacks import memory_kib

sys.path.insert(0, str(Path(__file__).parent))

from query_attacks import send  # noqa: E402

PASSWORD = "grafana-pw"
BASIC = {"Authorization": "Basic " + b64encode(f"default:{PASSWORD}".encode()).decode()}
LIMIT = 4 * 1024 * 1024
#: 512 MiB of one repeated statement-sized line: a few hundred KiB compressed.
BOMB = b"SELECT 1 -- " + b"x" * (512 * 1024 * 1024 - 12)
ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstd.compress,
    "lz4": lz4.frame.compress,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ObsloopProcess(tmp_path_factory.mktemp("clickhouse_http_bodies"),
                             clickhouse_http={"port": 0, "password": PASSWORD, "max_body_bytes": LIMIT}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {name: encode(BOMB) for name, encode in ENCODERS.items()}


def post(server: ObsloopProcess, body: bytes, encoding: str) -> tuple[int, bytes]:
    return send(server.endpoints["clickhouse_http"], body=body,
                headers={**BASIC, "Content-Encoding": encoding})


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_compressed_query_within_the_limit_runs(server, encoding):
    status, body = post(server, ENCODERS[encoding](b"SELECT 40 + 2"), encoding)
    assert (status, body) == (200, b"42\n")


def test_compression_bombs_are_refused_without_inflating_them(server, bombs):
    before = memory_kib(server.process.pid)
    for encoding, bomb in bombs.items():
        assert len(bomb) < LIMIT, encoding  # the compressed body itself is allowed
        status, body = post(server, bomb, encoding)
        assert status == 413, (encoding, status, body[:200])
        assert b"QUERY_IS_TOO_LARGE" in body and b"max_body_bytes" in body
    growth = memory_kib(server.process.pid)["VmHWM"] - max(before["VmHWM"], before["VmRSS"])
    assert growth < 64 * 1024, f"the server's peak RSS grew by {growth} KiB"  # 512 MiB each unbounded


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_corrupt_or_truncated_body_is_a_400(server, encoding):
    whole = ENCODERS[encoding](b"SELECT 1")
    for body in (b"not compressed at all", whole[: len(whole) // 2]):
        status, answer = post(server, body, encoding)
        assert status == 400, (encoding, status, answer[:200])
        assert b"INCORRECT_DATA" in answer


def test_a_body_larger_than_the_limit_is_refused_as_sent(server):
    status, _ = send(server.endpoints["clickhouse_http"], body=b"SELECT 1 -- " + b"x" * LIMIT, headers=BASIC)
    assert status == 413


def multipart(*parts: bytes, boundary: str = "outer") -> tuple[bytes, dict[str, str]]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", {
        **BASIC, "Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_multipart_form_query_runs(server):
    body, headers = multipart(b'Content-Disposition: form-data; name="query"\r\n\r\nSELECT 40 + 2')
    assert send(server.endpoints["clickhouse_http"], body=body, headers=headers) == (200, b"42\n")


def test_nested_multipart_and_external_tables_are_refused_by_name(server):
    inner, _ = multipart(b'Content-Disposition: form-data; name="query"\r\n\r\nSELECT 1', boundary="inner")
    nested, headers = multipart(b'Content-Disposition: form-data; name="query"\r\n'
                                b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n" + inner)
    status, answer = send(server.endpoints["clickhouse_http"], body=nested, headers=headers)
    assert (status, b"NOT_IMPLEMENTED" in answer, b"nested multipart" in answer) == (501, True, True), answer[:300]
    table, headers = multipart(b'Content-Disposition: form-data; name="t"; filename="t.tsv"\r\n\r\n1\n')
    status, answer = send(server.endpoints["clickhouse_http"], body=table, headers=headers)
    assert (status, b"external data tables" in answer) == (501, True), answer[:300]
