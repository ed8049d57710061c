"""docker-compose.yml, deploy/Dockerfile and deploy/kubernetes agree with the code: real
commands and flags, configuration keys and ports that exist, pinned images, probes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsloop.cli import COMMAND_MODULES, build_parser
from obsloop.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
PINNED = re.compile(r"^[\w./-]+:v?(\d+\.\d+(\.\d+)*)([\w.-]*)$")  # name:1.2.3, name:v1.2.3, name:1.2.3-suffix


def _command_module(argv: list[str]) -> str:
    """The command module that would run ``obsloop <argv>``; fails on unknown flags."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`obsloop {' '.join(argv)}` is not a valid command line")
    return args.func.__module__


def _config(config_file: Path, environment: dict[str, str]) -> Config:
    """The configuration a container sees: its file plus its OBSLOOP_* variables (an
    unknown key in either is a ConfigError)."""
    return load_config(config_file, environ={k: v for k, v in environment.items() if k != "OBSLOOP_CONFIG"})


INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _compose_environment(service: dict[str, Any], shell: dict[str, str] | None = None) -> dict[str, str]:
    """A compose service's environment as its container gets it, for the shell ``shell``:
    ``${NAME:-default}`` substituted, and a variable without a value passed through from the
    shell, or not set at all."""
    shell = shell or {}
    environment = {}
    for name, value in service["environment"].items():
        if value is None:
            if name in shell:
                environment[name] = shell[name]
            continue
        environment[name] = INTERPOLATION.sub(lambda match: _substitute(match, shell), str(value))
    return environment


def _substitute(match: re.Match[str], shell: dict[str, str]) -> str:
    if match[1] in shell:
        return shell[match[1]]
    assert match[2] is not None, f"${{{match[1]}}} has no default: compose would leave it empty"
    return match[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _obsloop_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _compose()["services"].items() if s["image"].startswith("obsloop:")}


def test_compose_images_are_pinned_by_version() -> None:
    services = _compose()["services"]
    assert {"clickhouse", "kafka", "grafana", "prometheus", "receiver", "ingest-worker-1", "ingest-worker-2",
            "detector-worker"} <= set(services)
    for name, service in services.items():
        assert PINNED.match(service["image"]), f"{name}: image {service['image']!r} is not pinned"
    plugin = services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", plugin)


def test_compose_commands_environment_and_ports_match_the_configuration() -> None:
    commands = {}
    for name, service in _obsloop_services().items():
        module = _command_module(service["command"])
        assert module in COMMAND_MODULES
        commands[name] = module
        environment = _compose_environment(service)
        mounts = dict(reversed(volume.split(":")[:2]) for volume in service["volumes"])
        config_file = ROOT / mounts[environment["OBSLOOP_CONFIG"]]
        config = _config(config_file, environment)
        assert config.kafka is not None, f"{name}: scale-out services need the kafka section"
        assert config.storage.dsn == "http://clickhouse:8123"
        assert config.kafka.bootstrap_servers == ["kafka:9092"]
        health = " ".join(service["healthcheck"]["test"])
        assert f":{config.admin.port}/readyz" in health
        published = {int(port.split(":")[-1]) for port in service.get("ports", [])}
        # The admin port is for Prometheus on the compose network, never published; its
        # /query needs a token from the shell, and is off without one.
        assert config.admin.port not in published
        assert config.admin.host == "0.0.0.0" and name in config.admin.allowed_hosts
        assert config.admin.token is None and not config.admin.allow_write_queries
        with_token = _config(config_file, _compose_environment(service, {"OBSLOOP_ADMIN__TOKEN": "admin-s3cret"}))
        assert with_token.admin.token is not None and with_token.admin.token.get_secret_value() == "admin-s3cret"
        if module == "obsloop.commands.serve":
            assert published == {config.receiver.http_port, config.receiver.grpc_port}
            assert config.receiver.host == "0.0.0.0"
            assert not config.detectors.enabled, "the detector workers score; serve's loop would double it"
        else:
            assert not published
        if module == "obsloop.commands.detector_worker":
            assert config.detectors.enabled
            volume = mounts.get(str(config.kafka.detector_checkpoint_dir))
            assert volume in _compose()["volumes"], f"{name}: checkpoints are not on a shared named volume"
            # The feedback loop runs here, off until a GitOps repository is given from the shell.
            assert not config.feedback.enabled
            shell = {"OBSLOOP_FEEDBACK_ENABLED": "true", "OBSLOOP_GITOPS_REMOTE": "https://git.example/gitops.git",
                     "OBSLOOP_FEEDBACK__GIT__TOKEN": "s3cret"}
            acting = _config(config_file, _compose_environment(service, shell))
            assert acting.feedback.enabled and acting.feedback.git is not None
            assert acting.feedback.git.remote == "https://git.example/gitops.git"
            assert acting.feedback.git.token is not None and acting.feedback.git.token.get_secret_value() == "s3cret"
        else:
            assert not config.feedback.enabled, f"{name}: only detector workers have detections to act on"
    assert sorted(commands.values()) == [
        "obsloop.commands.detector_worker", "obsloop.commands.ingest_worker", "obsloop.commands.ingest_worker",
        "obsloop.commands.serve"]


def test_compose_prometheus_scrapes_every_obsloop_process_and_is_grafanas_prometheus_datasource() -> None:
    from obsloop.dashboards.grafana import PROMETHEUS

    compose = _compose()
    prometheus = compose["services"]["prometheus"]
    mounts = dict(reversed(volume.split(":")[:2]) for volume in prometheus["volumes"])
    scrape = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = set()
    for job in scrape["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for discovery in job["dns_sd_configs"]:
            targets |= {(name, discovery["port"]) for name in discovery["names"]}
    expected = set()
    for name, service in _obsloop_services().items():
        mounts_of = dict(reversed(volume.split(":")[:2]) for volume in service["volumes"])
        environment = _compose_environment(service)
        config = _config(ROOT / mounts_of[environment["OBSLOOP_CONFIG"]], environment)
        expected.add((name, config.admin.port))
    assert targets == expected
    port = int(prometheus["ports"][0].split(":")[-1])

    grafana = compose["services"]["grafana"]
    assert "prometheus" in grafana["depends_on"]
    grafana_mounts = dict(reversed(volume.split(":")[:2]) for volume in grafana["volumes"])
    datasources = yaml.safe_load(
        (ROOT / grafana_mounts["/etc/grafana/provisioning/datasources/obsloop.yaml"]).read_text())["datasources"]
    [datasource] = [d for d in datasources if d["type"] == PROMETHEUS["type"]]
    assert datasource["uid"] == PROMETHEUS["uid"]
    assert datasource["url"] == f"http://prometheus:{port}"
    collector = (ROOT / grafana_mounts["/var/lib/grafana/dashboards/obsloop"] / "obsloop-collector.json").read_text()
    assert f'"uid": "{PROMETHEUS["uid"]}"' in collector


def test_compose_grafana_provisions_the_clickhouse_datasource_the_dashboards_use() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = dict(reversed(volume.split(":")[:2]) for volume in grafana["volumes"])
    datasources = yaml.safe_load((ROOT / mounts["/etc/grafana/provisioning/datasources/obsloop.yaml"]).read_text())
    clickhouse = datasources["datasources"][0]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    assert clickhouse["jsonData"]["host"] == "clickhouse"
    dashboards_dir = ROOT / mounts["/var/lib/grafana/dashboards/obsloop"]
    boards = list(dashboards_dir.glob("*.json"))
    assert boards
    assert any(clickhouse["uid"] in board.read_text() for board in boards)
    provider = yaml.safe_load(next((ROOT / mounts["/etc/grafana/provisioning/dashboards"]).glob("*.yaml")).read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/obsloop"


def test_dockerfile_base_is_pinned_and_runs_obsloop() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases and all(PINNED.match(base) for base in bases)
    assert 'ENTRYPOINT ["obsloop"]' in dockerfile
    for copied in re.findall(r"^COPY (?!--)(\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), f"COPY {copied}: no such path"


def _kubernetes_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents.extend(d for d in yaml.safe_load_all((KUBERNETES / resource).read_text()) if d)
    return documents


def test_kubernetes_workloads_match_commands_configuration_and_probes(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
    documents = _kubernetes_documents()
    configmap = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "obsloop-config")
    config_file = tmp_path / "obsloop.yaml"
    config_file.write_text(configmap["data"]["obsloop.yaml"])
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("Deployment", "StatefulSet")}
    commands = {}
    for name, workload in deployments.items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            image = container["image"] if ":" in container["image"] else f"{container['image']}:{tags.get(container['image'])}"
            assert PINNED.match(image), f"{name}: image {image!r} is not pinned"
            if not container["image"].startswith("obsloop"):
                continue
            commands[name] = _command_module(container["args"])
            environment = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            secrets = [e for e in container["env"] if "value" not in e]
            [admin_token] = [e for e in secrets if e["name"] == "OBSLOOP_ADMIN__TOKEN"]
            assert admin_token["valueFrom"]["secretKeyRef"] == {"name": "obsloop-admin", "key": "token", "optional": True}
            assert all(e["valueFrom"]["secretKeyRef"].get("optional") for e in secrets), "a missing Secret blocks the pod"
            _config(config_file, {**environment, **{e["name"]: "from-a-secret" for e in secrets}})
            assert environment["OBSLOOP_CONFIG"] == "/etc/obsloop/obsloop.yaml"
            assert {"name": "config", "mountPath": "/etc/obsloop"} in container["volumeMounts"]
            config = _config(config_file, environment)
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["admin"] == config.admin.port
            if commands[name] == "obsloop.commands.serve":
                assert ports["otlp-http"] == config.receiver.http_port
                assert ports["otlp-grpc"] == config.receiver.grpc_port
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
            if commands[name] == "obsloop.commands.serve":
                assert not config.detectors.enabled, "the detector workers score; serve's loop would double it"
                grace = workload["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
                assert grace >= config.wal.drain_timeout_seconds + 5, "SIGKILL would cut the drain short"
            if commands[name] != "obsloop.commands.detector_worker":
                assert not config.feedback.enabled, f"{name}: only detector workers have detections to act on"
            if commands[name] == "obsloop.commands.detector_worker":
                assert "OBSLOOP_FEEDBACK__ENABLED" in environment, "the feedback loop runs in detector workers"
                assert config.feedback.git is not None, "configmap.yaml: feedback.git for the detector workers"
                mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
                claim = volumes[mounted[str(config.kafka.detector_checkpoint_dir)]]["persistentVolumeClaim"]
                [pvc] = [d for d in documents if d["kind"] == "PersistentVolumeClaim"
                         and d["metadata"]["name"] == claim["claimName"]]
                assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "every replica shares the checkpoints"
    assert sorted(commands.values()) == [
        "obsloop.commands.detector_worker", "obsloop.commands.ingest_worker", "obsloop.commands.serve"]
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in documents if d["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == set(commands)
    services = {d["metadata"]["name"] for d in documents if d["kind"] == "Service"}
    config = _config(config_file, {})
    # The admin port is reached by pod IP (probes, Prometheus), never through a Service.
    for service in (d for d in documents if d["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port.get("targetPort") != "admin" and port["port"] != config.admin.port, service["metadata"]["name"]
    assert "obsloop-receiver" in config.admin.allowed_hosts and config.admin.token is None
    assert config.storage.dsn == "http://clickhouse:8123" and "clickhouse" in services
    assert config.kafka is not None and config.kafka.bootstrap_servers == ["kafka:9092"] and "kafka" in services
