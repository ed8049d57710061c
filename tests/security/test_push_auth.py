"""Every route on the OTLP/HTTP port needs the bearer token, Firehose its access key, and
odd header bytes are a 401, never a 500: tried against a real ``obsloop serve``."""

from __future__ import annotations

import gzip
import json

import pytest
from push_attacks import FIREHOSE_KEY, TOKEN, bearer, data_message, envelope, firehose_headers, post, record, serve

FORGED = {"Authorization": "Bearer wrong"}
NOT_UTF8 = {"Authorization": b"Bearer \xff\xfe" + TOKEN.encode()}
NOT_ASCII = {"Authorization": ("Bearer " + TOKEN.replace("t", "ţ")).encode()}  # valid UTF-8, not ASCII


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = serve(tmp_path_factory.mktemp("push-auth"))
    yield process
    process.stop()


def _stored(server, function: str) -> int:
    return server.scalar(f"SELECT count() FROM otel_logs WHERE ServiceName = '{function}'")


def test_subscription_and_telemetry_pushes_need_the_bearer_token(server) -> None:
    subscription = gzip.compress(json.dumps(data_message("forged-sub", ["forged"])).encode())
    telemetry = json.dumps([{"time": "2026-11-27T10:00:00.000Z", "type": "function", "record": "forged"}]).encode()
    routes = [("/aws/cloudwatch-logs", subscription), ("/aws/telemetry?function=forged-tel", telemetry)]
    for path, body in routes:
        for headers in ({}, FORGED, NOT_UTF8, NOT_ASCII, {"Authorization": TOKEN}):
            status, reply = post(server.http + path, body, headers)
            assert status == 401 and json.loads(reply) == {"error": "missing or invalid bearer token"}, (path, headers)
    # the same requests with the token are stored, so the refusals above stored nothing
    for path, body in routes:
        assert post(server.http + path, body, bearer())[0] == 200
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName IN ('forged-sub', 'forged-tel')", 2)
    assert _stored(server, "forged-sub") == _stored(server, "forged-tel") == 1


def test_firehose_needs_its_access_key_not_the_bearer_token(server) -> None:
    body = envelope("req-auth-1", [record(data_message("firehose-auth", ["hello"]))])
    attempts = [{}, bearer(), firehose_headers("req-auth-1", "wrong"),
                firehose_headers("req-auth-1", FIREHOSE_KEY.encode() + b"\xff"),
                firehose_headers("req-auth-1", ("clé-" + FIREHOSE_KEY).encode())]
    for headers in attempts:
        status, reply = post(f"{server.http}/aws/firehose", body, headers)
        answer = json.loads(reply)
        assert status == 401 and answer["errorMessage"] == "missing or invalid Firehose access key", headers
        assert FIREHOSE_KEY not in reply.decode()
    status, reply = post(f"{server.http}/aws/firehose", body, firehose_headers("req-auth-1"))
    assert status == 200 and json.loads(reply)["requestId"] == "req-auth-1"
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'firehose-auth'", 1)


def test_otlp_and_unknown_routes_refuse_odd_authorization_bytes_with_401(server) -> None:
    for headers in (NOT_UTF8, NOT_ASCII):
        status, _ = post(f"{server.http}/v1/logs", b"", headers, "application/x-protobuf")
        assert status == 401
        status, reply = post(f"{server.http}/aws/not-a-route", b"{}", headers)
        assert status == 401 and b"bearer token" in reply
    assert post(f"{server.http}/aws/not-a-route", b"{}", bearer())[0] == 404


def test_without_an_access_key_there_is_no_firehose_route(obsloop_factory) -> None:
    """An open Firehose endpoint is not served: without ``firehose_access_key`` the route
    does not exist, and nothing posted to it is stored."""
    server = obsloop_factory()
    body = envelope("req-open", [record(data_message("firehose-open", ["hello"]))])
    for headers in ({}, firehose_headers("req-open", "")):
        assert post(f"{server.http}/aws/firehose", body, headers)[0] == 404
    assert post(f"{server.http}/aws/cloudwatch-logs", gzip.compress(json.dumps(
        data_message("after-open", ["x"])).encode()))[0] == 200  # no bearer token configured: open
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'after-open'", 1)
    assert _stored(server, "firehose-open") == 0
