"""``obsloop feedback check`` reads a GitOps folder the way the feedback responder does."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SEED_MANIFEST = (Path(__file__).parent / "feedback" / "manifests_data.py")

POLICY = """\
kind: FeedbackPolicy
defaults:
  allowedActions: [alert]
  maxReplicaStep: 2
  cooldown: 30m
  maxActionsPerDay: 3
namespaces:
  ai-production:
    allowedActions: [alert, scale, rollback, retrain]
policies:
  data-privacy-compliance: {description: PII never leaves the region}
  model-explainability-required: {cooldown: 1h}
"""


def _seed() -> str:
    """The seed article's manifest, shared with the feedback tests."""
    spec = importlib.util.spec_from_file_location("manifests_data", SEED_MANIFEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SEED


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "obsloop", "feedback", "check", "--repo", str(repo)],
                          capture_output=True, text=True, cwd=repo.parent, timeout=60)


def test_a_valid_repository_passes(tmp_path: Path) -> None:
    repo = tmp_path / "gitops"
    (repo / "apps").mkdir(parents=True)
    (repo / "apps" / "fraud.yaml").write_text(_seed())
    (repo / "obsloop-policy.yaml").write_text(POLICY)
    result = check(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 manifests read, 0 problems; policy obsloop-policy.yaml: valid" in result.stdout


def test_problems_are_reported_with_file_and_line(tmp_path: Path) -> None:
    repo = tmp_path / "gitops"
    (repo / "apps").mkdir(parents=True)
    (repo / "apps" / "fraud.yaml").write_text(_seed())
    (repo / "apps" / "broken.yaml").write_text("kind: ServerlessModelDeployment\nmetadata: [unclosed\n")
    bounds = _seed().replace("minReplicas: 1", "minReplicas: 20").replace("fraud-detection-model-v2", "other")
    (repo / "apps" / "bounds.yaml").write_text(bounds)
    (repo / "obsloop-policy.yaml").write_text(POLICY.replace("  model-explainability-required: {cooldown: 1h}\n", ""))
    result = check(repo)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("apps/broken.yaml:") and "not valid YAML" in line for line in lines), lines
    assert any(line.startswith("apps/bounds.yaml:") and "minReplicas" in line for line in lines), lines
    assert any("model-explainability-required" in line for line in lines), lines
