"""docs/extending.md's "A new collector", run as written: the Nimbus kind is registered, is
one of ``obsloop collect``'s choices, and collects from its API (served here on loopback)
through a running ``obsloop serve``'s intake into chDB, priced and attributed, resuming from
its checkpoint."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from extending_doc import python_blocks

from obsloop.collectors import enrich, pricing, registry
from obsloop.collectors.config import CollectorsConfig
from obsloop.collectors.enrich import Enricher, load_manifests
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing
from obsloop.core import semconv

SECTION = "A new collector"
NOW_MS = 1_764_217_000_000

MANIFEST = """\
apiVersion: obsloop.io/v1
kind: ServerlessModelDeployment
metadata:
  name: fraud-scorer
spec:
  modelRef: {name: fraud-model, version: "3"}
  runtime: {platform: nimbus-functions, memory: 1024MB}
  finops: {costCenter: Payments}
"""


def _launcher(tmp_path: Path) -> Path:
    """The blocks as a launcher module: the kind registered, then obsloop's command line."""
    path = tmp_path / "nimbus_obsloop.py"
    path.write_text("\n".join(python_blocks(SECTION))
                    + "\nimport sys\nfrom obsloop.cli import main\nsys.exit(main())\n")
    return path


@pytest.fixture
def nimbus() -> Iterator[dict]:
    """The blocks executed in this process, the registry's tables restored afterwards."""
    tables = (registry._loaded, pricing.FORMULAS, enrich.MANIFEST_PLATFORMS)
    saved = [dict(table) for table in tables]
    namespace: dict = {"__name__": "nimbus"}
    try:
        for block in python_blocks(SECTION):
            exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102 - the doc's own code
        yield namespace
    finally:
        for table, before in zip(tables, saved, strict=True):
            table.clear()
            table.update(before)


class NimbusApi:
    """The made-up platform's invocations API, on a free loopback port."""

    def __init__(self) -> None:
        self.invocations: list[dict] = []
        self.requests: list[dict] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                query = {k: int(v) for k, v in urllib.parse.parse_qsl(url.query)}
                api.requests.append(query)
                if url.path != "/v1/invocations":
                    self.send_error(404)
                    return
                chosen = [i for i in api.invocations
                          if i["seq"] > query["after"]] if "after" in query else [
                    i for i in api.invocations if i["time_ms"] >= query["since_ms"]]
                body = json.dumps({"invocations": chosen[:query["limit"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, count: int) -> None:
        for _ in range(count):
            seq = len(self.invocations) + 1
            self.invocations.append({"seq": seq, "id": f"inv-{seq}", "function": "fraud-scorer",
                                     "time_ms": NOW_MS + seq, "duration_ms": 200.0,
                                     "memory_mb": 1024, "status": 500 if seq == 2 else 200})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[NimbusApi]:
    served = NimbusApi()
    yield served
    served.close()


def test_the_registered_kind_is_configured_priced_and_attributed_as_the_shipped_ones(nimbus, tmp_path):
    assert registry.kind("nimbus") is nimbus["KIND"] and "nimbus" in registry.names()
    section = CollectorsConfig.model_validate({"nimbus": {"enabled": True, "page_size": 2}}).nimbus
    assert isinstance(section, nimbus["NimbusConfig"]) and section.page_size == 2
    with pytest.raises(ValueError, match="page_size"):
        CollectorsConfig.model_validate({"nimbus": {"page_size": "many"}})

    (tmp_path / "fraud.yaml").write_text(MANIFEST)
    enricher = Enricher(Pricing.load(overrides={"nimbus_functions": {"gb_second": 0.00001}}),
                        load_manifests(tmp_path))
    scored = enricher.enrich(Invocation(platform="nimbus_functions", function="fraud-scorer",
                                        invocation_id="a", time_ns=1, source="t",
                                        duration_ms=500.0, memory_mb=2048))
    assert scored.cost_usd == pytest.approx(0.5 * 2 * 0.00001 + 0.0000003)
    assert (scored.model_name, scored.cost_center) == ("fraud-model", "Payments")
    # the manifest names a Nimbus function: a Lambda of the same name is not its model
    other = enricher.enrich(Invocation(platform=semconv.PLATFORM_AWS_LAMBDA, function="fraud-scorer",
                                       invocation_id="b", time_ns=1, source="t"))
    assert other.model_name is None


def test_collect_lists_the_kind_and_stores_its_invocations_once(obsloop, api, tmp_path):
    launcher = _launcher(tmp_path)
    shown = subprocess.run([sys.executable, str(launcher), "collect", "--help"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "{aws,gcp,azure,prometheus,nimbus}" in shown

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "fraud.yaml").write_text(MANIFEST)
    config = tmp_path / "collect.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "collect"),
        "collectors": {"manifests_dir": str(tmp_path / "manifests"),
                       "nimbus": {"endpoint": api.url, "page_size": 2,
                                  "backfill_seconds": 10**9}}}))

    def collect() -> None:
        subprocess.run([sys.executable, str(launcher), "-c", str(config), "collect", "nimbus",
                        "--once", "--endpoint", obsloop.http], capture_output=True, timeout=120, check=True)

    api.add(5)
    collect()
    assert [r.get("after") for r in api.requests[-3:]] == [None, 2, 4]  # three pages of two
    obsloop.wait_for("SELECT count() FROM faas_invocations_merged WHERE platform = 'nimbus_functions'", 5)
    row = obsloop.query("SELECT function, model_name, cost_center, cost_usd, status FROM faas_invocations_merged "
                        "WHERE invocation_id = 'inv-2'")[0]
    assert (row["function"], row["model_name"], row["cost_center"], row["status"]) == (
        "fraud-scorer", "fraud-model", "Payments", "error")
    assert row["cost_usd"] == pytest.approx(0.2 * 1 * 0.000015 + 0.0000003)

    api.add(1)
    collect()  # resumes after the checkpoint: only the new invocation
    assert api.requests[-1] == {"after": 5, "limit": 2}
    obsloop.wait_for("SELECT count() FROM otel_logs WHERE LogAttributes['faas.invocation_id'] LIKE 'inv-%'", 6)
