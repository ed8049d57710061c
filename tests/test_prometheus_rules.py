"""deploy/prometheus/ checked by the real promtool (Debian's ``prometheus`` package, see
tests/debian_tools.py): the rules load, each alert fires on a sick process and not on a
healthy one (``promtool test rules``), the scrape configuration loads them, and a real
``obsloop serve``'s /metrics passes ``promtool check metrics``."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from debian_tools import program

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
    from obsloop.loadgen import ServerlessTraffic

    body = ServerlessTraffic(seed=3).logs(5).SerializeToString()
    urllib.request.urlopen(urllib.request.Request(f"{obsloop.http}/v1/logs", data=body,
                                                  headers={"Content-Type": "application/x-protobuf"}))
    obsloop.wait_for("SELECT count() > 0 FROM otel_logs", 1)
    status, metrics = obsloop.get("/metrics")
    assert status == 200 and "obsloop_receiver_requests_total" in metrics
    result = promtool("check", "metrics", stdin=metrics)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
