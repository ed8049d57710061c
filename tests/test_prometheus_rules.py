"""deploy/prometheus/ checked by the real promtool and Prometheus (Debian's ``prometheus``
package, see tests/debian_tools.py): the rules load, each alert fires on a sick process and
not on a healthy one (``promtool test rules``), the scrape configuration loads them, a real
``obsloop serve``'s /metrics passes ``promtool check metrics``, and a real Prometheus
scrapes that serve and evaluates every rule without an error."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from debian_tools import Daemon, free_port, program

PROMETHEUS = Path(__file__).parent.parent / "deploy" / "prometheus"


def promtool(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program("promtool"), *arguments], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=PROMETHEUS)


def test_rules_are_valid_and_loaded_by_the_scrape_configuration():
    rules = promtool("check", "rules", "obsloop-rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout


def test_each_alert_fires_on_a_sick_process_only():
    result = promtool("test", "rules", "obsloop-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_metrics_of_a_real_serve_pass_promtool(obsloop):
    from obsloop.demo.loadgen import ServerlessTraffic

    body = ServerlessTraffic(seed=3).logs(5).SerializeToString()
    urllib.request.urlopen(urllib.request.Request(f"{obsloop.http}/v1/logs", data=body,
                                                  headers={"Content-Type": "application/x-protobuf"}))
    obsloop.wait_for("SELECT count() > 0 FROM otel_logs", 1)
    status, metrics = obsloop.get("/metrics")
    assert status == 200 and "obsloop_receiver_requests_total" in metrics
    result = promtool("check", "metrics", stdin=metrics)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _api(url: str, path: str, **query: str):
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(query)}", timeout=10) as reply:
        return json.loads(reply.read())["data"]


@pytest.mark.slow
def test_a_real_prometheus_scrapes_serve_and_evaluates_every_rule(obsloop, tmp_path):
    from obsloop.demo.loadgen import ServerlessTraffic

    admin = obsloop.admin.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS / "obsloop-rules.yml")],
        "scrape_configs": [{"job_name": "obsloop-receiver", "static_configs": [{"targets": [admin]}]}],
    }))
    url = f"http://127.0.0.1:{free_port()}"
    prometheus = Daemon([program("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address={url.removeprefix('http://')}"], f"{url}/-/ready",
                        tmp_path / "prometheus.log")
    try:
        body = ServerlessTraffic(seed=4).logs(5).SerializeToString()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:  # traffic while Prometheus scrapes, until it shows
            urllib.request.urlopen(urllib.request.Request(f"{obsloop.http}/v1/logs", data=body,
                                                          headers={"Content-Type": "application/x-protobuf"}))
            time.sleep(1)
            stored = _api(url, "query", query="obsloop:storage_items_stored:rate5m")["result"]
            rules = [r for g in _api(url, "rules")["groups"] for r in g["rules"]]
            if stored and float(stored[0]["value"][1]) > 0 and all(r["health"] == "ok" for r in rules):
                break
        [target] = _api(url, "targets")["activeTargets"]
        assert target["health"] == "up", target
        assert [(r["name"], r["health"], r.get("lastError", "")) for r in rules if r["health"] != "ok"] == []
        declared = yaml.safe_load((PROMETHEUS / "obsloop-rules.yml").read_text())["groups"]
        assert len(rules) == sum(len(group["rules"]) for group in declared)
        assert stored and stored[0]["metric"] == {
            "__name__": "obsloop:storage_items_stored:rate5m", "job": "obsloop-receiver", "signal": "logs"}
        assert float(stored[0]["value"][1]) > 0
        assert _api(url, "query", query='ALERTS{alertname=~"Obsloop.*"}')["result"] == []  # a healthy serve
    finally:
        prometheus.stop()
