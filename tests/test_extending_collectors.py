"""docs/extending.md's "A new collector", run as written: the Nimbus kind is registered, is
one of ``obsloop collect``'s choices, and collects from its API (served here on loopback)
through a running ``obsloop serve``'s intake into chDB, priced and attributed, resuming from
its checkpoint."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from collector_kinds import registrations_undone
from extending_doc import python_blocks
from stub_api import StubServer

from obsloop.collectors import registry
from obsloop.collectors.config import CollectorsConfig
from obsloop.collectors.enrich import Enricher
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing
from obsloop.core import semconv
from obsloop.core.manifests import valid_manifests

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
    """The blocks executed in this process; the registration is undone afterwards."""
    namespace: dict = {"__name__": "nimbus"}
    with registrations_undone():
        for block in python_blocks(SECTION):
            exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102 - the doc's own code
        yield namespace


class NimbusApi(StubServer):
    """The made-up platform's invocations API, on a free loopback port."""

    def __init__(self) -> None:
        super().__init__()
        self.invocations: list[dict] = []
        self.respond = self._invocations

    def _invocations(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(path)
        if (method, url.path) != ("GET", "/v1/invocations"):
            return 404, {}
        query = self.query(path)
        chosen = [i for i in self.invocations if (
            i["seq"] > query["after"] if "after" in query else i["time_ms"] >= query["since_ms"])]
        return 200, {"invocations": chosen[:query["limit"]]}

    @staticmethod
    def query(path: str) -> dict[str, int]:
        return {k: int(v) for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query)}

    def add(self, count: int) -> None:
        for _ in range(count):
            seq = len(self.invocations) + 1
            self.invocations.append({"seq": seq, "id": f"inv-{seq}", "function": "fraud-scorer",
                                     "time_ms": NOW_MS + seq, "duration_ms": 200.0,
                                     "memory_mb": 1024, "status": 500 if seq == 2 else 200})


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
                        valid_manifests(tmp_path))
    scored = enricher.enrich(Invocation(platform="nimbus_functions", function="fraud-scorer",
                                        invocation_id="a", time_ns=1, source="t",
                                        duration_ms=500.0, memory_mb=2048))
    assert scored.cost_usd == pytest.approx(0.5 * 2 * 0.00001 + 0.0000003)
    assert (scored.model_name, scored.cost_center) == ("fraud-model", "Payments")
    # the manifest names a Nimbus function: a Lambda of the same name is not its model
    other = enricher.enrich(Invocation(platform=semconv.PLATFORM_AWS_LAMBDA, function="fraud-scorer",
                                       invocation_id="b", time_ns=1, source="t"))
    assert other.model_name is None


def test_in_the_tree_the_registration_is_a_line_in_builtin(tmp_path, monkeypatch):
    """The module as ``collectors/nimbus.py`` would be, listed in ``registry.BUILTIN``: known
    by name without being imported, imported when first used."""
    (tmp_path / "nimbus_in_tree.py").write_text(python_blocks(SECTION)[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BUILTIN, "nimbus", "nimbus_in_tree")
    with registrations_undone():
        assert registry.names()[-1] == "nimbus" and "nimbus_in_tree" not in sys.modules
        section = CollectorsConfig.model_validate({"nimbus": {"endpoint": "http://127.0.0.1:9"}}).nimbus
        assert registry.kind("nimbus") is sys.modules["nimbus_in_tree"].KIND
        assert type(section) is registry.kind("nimbus").config and not section.enabled


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
    assert [api.query(path).get("after") for _, path, _ in api.requests] == [None, 2, 4]  # pages of two
    obsloop.wait_for("SELECT count() FROM faas_invocations_merged WHERE platform = 'nimbus_functions'", 5)
    row = obsloop.query("SELECT function, model_name, cost_center, cost_usd, status FROM faas_invocations_merged "
                        "WHERE invocation_id = 'inv-2'")[0]
    assert (row["function"], row["model_name"], row["cost_center"], row["status"]) == (
        "fraud-scorer", "fraud-model", "Payments", "error")
    assert row["cost_usd"] == pytest.approx(0.2 * 1 * 0.000015 + 0.0000003)

    api.add(1)
    collect()  # resumes after the checkpoint: only the new invocation
    assert api.query(api.requests[-1][1]) == {"after": 5, "limit": 2}
    obsloop.wait_for("SELECT count() FROM otel_logs WHERE LogAttributes['faas.invocation_id'] LIKE 'inv-%'", 6)
