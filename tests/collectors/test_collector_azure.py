"""azure-monitor-query's LogsQueryClient against a local server shaped like the Logs API."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from azure.core.credentials import AccessToken

from obsloop.collectors.azure import CLASSIC, WORKSPACE, AppInsightsPuller, make_client
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.core import semconv

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
OP = "5759e988bd862e3fe1be46a994272793"


class StaticCredential:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("test-token", int(time.time()) + 3600)


def columns(schema) -> list[dict]:
    names = [schema.time, schema.id, schema.name, schema.success, schema.result_code,
             schema.duration, schema.operation_id, schema.role, schema.instance,
             schema.properties]
    types = ["datetime", "string", "string", "bool", "string", "real", "string", "string",
             "string", "dynamic"]
    return [{"name": n, "type": t} for n, t in zip(names, types, strict=True)]


def row(i: int, ok: bool = True, duration: float = 42.0) -> list:
    return [f"2024-05-01T10:00:0{i}.000Z", f"53995c3f42cd8a{i:02d}", "Predict", ok,
            "200" if ok else "500", duration, OP, "fraud-app", "inst-1",
            f'{{"InvocationId": "inv-{i}", "Category": "Function.Predict"}}']


@pytest.mark.parametrize("schema", [WORKSPACE, CLASSIC])
def test_query_batches_checkpoint_and_throttling(stub, tmp_path, sink, enrich, schema):
    table = [row(0), row(1, duration=1234.5), row(2, ok=False), row(3)]
    throttled = {"left": 1}

    def respond(method, path, body):
        if throttled["left"]:
            throttled["left"] -= 1
            return 429, {"error": {"code": "ThrottledError", "message": "slow down"}}
        query = body["query"]
        assert query.startswith(schema.table + "\n")
        since = datetime.fromisoformat(re.search(r"> datetime\(([^)]+)\)", query).group(1))
        excluded = re.findall(r'"([0-9a-f]{16})"', query)
        taken = [r for r in table if datetime.fromisoformat(r[0]) > since
                 or (datetime.fromisoformat(r[0]) == since and r[1] not in excluded)]
        return 200, {"tables": [{"name": "PrimaryResult", "columns": columns(schema),
                                 "rows": taken[:2]}]}

    stub.respond = respond
    target = "ws-1" if schema is WORKSPACE else (
        "/subscriptions/sub/resourceGroups/rg/providers/microsoft.insights/components/fraud")
    client = make_client(f"{stub.url}", StaticCredential(), retry_total=0)
    checkpoints = CheckpointStore(tmp_path, "azure")
    pull = AppInsightsPuller(client, checkpoints, sink, enrich, target=target, schema=schema,
                             region="westeurope", subscription="sub",
                             initial_start=START, sleep=lambda s: None,
                             clock=lambda: START.timestamp() + 3600, batch=2)
    assert pull.poll_once() == 4
    expected_path = ("/v1/workspaces/ws-1/query" if schema is WORKSPACE
                     else f"/v1{target}/query")
    assert {p.split("?")[0] for _, p, _ in stub.requests} == {expected_path}
    rows = sink.logs()
    assert [r["attributes"][semconv.FAAS_INVOCATION_ID] for r in rows] == [
        "inv-0", "inv-1", "inv-2", "inv-3"]
    first = rows[0]
    assert first["resource"][semconv.FAAS_NAME] == "fraud-app/Predict"
    assert first["trace_id"] == OP and first["span_id"] == "53995c3f42cd8a00"
    # 42 ms -> 100 ms minimum at 128 MB: 0.1 x 0.125 x 0.000016 + 0.0000002
    assert first["attributes"][semconv.COST_USD] == pytest.approx(4e-7)
    # 1234.5 ms -> 1235 ms at 128 MB
    assert rows[1]["attributes"][semconv.COST_USD] == pytest.approx(
        1.235 * 0.125 * 0.000016 + 0.0000002)
    assert rows[2]["attributes"][semconv.FAAS_STATUS] == "error"
    assert rows[2]["attributes"][semconv.FAAS_ERROR_TYPE] == "500"
    saved = CheckpointStore(tmp_path, "azure").get(target)
    assert saved["time"].startswith("2024-05-01T10:00:03")
    # restart: the checkpointed ids are excluded in the query itself
    stub.requests.clear()
    restarted = AppInsightsPuller(client, CheckpointStore(tmp_path, "azure"), sink, enrich,
                                  target=target, schema=schema, initial_start=START,
                                  clock=lambda: START.timestamp() + 3600, batch=2)
    table.append(row(4))
    assert restarted.poll_once() == 1
    assert '!in ("53995c3f42cd8a03")' in stub.requests[0][2]["query"]
