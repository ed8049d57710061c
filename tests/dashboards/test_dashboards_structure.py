"""The dashboards as Grafana loads them: committed JSON is what the code builds, uids are
unique, every datasource reference resolves to a provisioned datasource, panels do not
overlap on the grid, and every PromQL metric is one obsloop serve exposes."""

import json
import re
from itertools import combinations
from pathlib import Path

import yaml

from obsloop.cli import main
from obsloop.dashboards.build import PACKAGE_DIRECTORY, rendered

GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}


def _dashboards() -> list[dict]:
    files = sorted((PACKAGE_DIRECTORY / "json").glob("*.json"))
    assert len(files) == 5
    return [json.loads(path.read_text()) for path in files]


def _provisioned() -> list[dict]:
    document = yaml.safe_load((PACKAGE_DIRECTORY / "provisioning/datasources/obsloop.yaml").read_text())
    return [{"type": source["type"], "uid": source["uid"]} for source in document["datasources"]]


def test_committed_files_are_what_the_code_builds():
    for relative, text in rendered().items():
        assert (PACKAGE_DIRECTORY / relative).read_text() == text, f"{relative} is stale: run obsloop dashboards build"


def test_build_command_writes_every_file(tmp_path: Path):
    assert main(["dashboards", "build", "--output", str(tmp_path), "--clickhouse-url", "http://obsloop:8123"]) == 0
    datasources = yaml.safe_load((tmp_path / "provisioning/datasources/obsloop.yaml").read_text())
    assert datasources["datasources"][0]["jsonData"]["host"] == "obsloop"
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == sorted(
        p.name for p in (PACKAGE_DIRECTORY / "json").iterdir())


def test_uids_and_panel_ids_are_unique():
    boards = _dashboards()
    assert len({board["uid"] for board in boards}) == len(boards)
    for board in boards:
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]


def _references(board: dict):
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        yield panel["title"], panel["datasource"]
        for target in panel["targets"]:
            yield panel["title"], target["datasource"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["datasource"]
    for annotation in board["annotations"]["list"]:
        yield f"annotation {annotation['name']}", annotation["datasource"]
        if "target" in annotation:
            yield f"annotation {annotation['name']}", annotation["target"]["datasource"]


def test_every_datasource_reference_resolves():
    known = _provisioned() + [GRAFANA_BUILTIN]
    for board in _dashboards():
        for where, reference in _references(board):
            assert reference in known, f"{board['uid']} / {where}: {reference} is not provisioned"


def test_panels_do_not_overlap_and_fit_the_grid():
    for board in _dashboards():
        boxes = [(panel["title"], panel["gridPos"]) for panel in board["panels"]]
        for title, box in boxes:
            assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, (board["uid"], title)
        for (title_a, a), (title_b, b) in combinations(boxes, 2):
            apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                     or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
            assert apart, f"{board['uid']}: {title_a!r} overlaps {title_b!r}"


def _exposed(metrics_text: str) -> set[str]:
    names = set()
    for line in metrics_text.splitlines():
        match = re.match(r"# TYPE (\w+) (\w+)", line)
        if match:
            name, kind = match.groups()
            names.add(name)
            names.update({"counter": [f"{name}_total"], "histogram": [f"{name}_bucket", f"{name}_sum",
                          f"{name}_count"]}.get(kind, []))
    return names


def test_promql_metrics_are_exposed_by_obsloop_serve(obsloop_factory):
    server = obsloop_factory(clickhouse_http={"port": 0})
    status, text = server.get("/metrics")
    assert status == 200
    exposed = _exposed(text)
    expressions = [target["expr"] for board in _dashboards() for panel in board["panels"]
                   for target in panel.get("targets", []) if "expr" in target]
    assert expressions
    for expr in expressions:
        for name in re.findall(r"\bobsloop_\w+", expr):
            assert name in exposed, f"{name} (in {expr}) is not on /metrics"
