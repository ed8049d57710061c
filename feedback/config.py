"""The ``feedback:`` configuration section: plain typed models, cheap to import (every
command reads the configuration; only ``serve`` builds the responder, in :mod:`.build`).

Secrets are ``SecretStr`` (masked in repr, dumps and errors) and unwrapped only where a
request is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from obsloop.core.manifests import DEFAULT_GLOBS, DEFAULT_POLICY_FILE
from obsloop.core.secret import Secret
from obsloop.core.settings import Section
from obsloop.detectors.detection import NAMESPACE
from obsloop.pipelines.kafka_config import KafkaConfig

DEFAULT_GROUP_BY = (NAMESPACE, "faas.name", "kind")
"""Alert grouping labels: one notification per deployment's function and kind of anomaly."""



class GitConfig(Section):
    remote: str
    """A local path or a URL of the GitOps repository."""
    branch: str = "main"
    mode: Literal["push", "pull_request"] = "push"
    forge: Literal["github", "gitlab"] | None = None
    forge_api_url: str | None = None
    forge_project: str | None = None
    """``owner/repo`` on GitHub, ``group/project`` (or its id) on GitLab."""
    token: Secret | None = None
    author_name: str = "obsloop"
    author_email: str = "obsloop@localhost"
    skip_ci: bool = False
    policy_file: str = DEFAULT_POLICY_FILE
    manifest_globs: list[str] = Field(default_factory=lambda: list(DEFAULT_GLOBS))


class NotifierConfig(Section):
    name: str
    type: Literal["alertmanager", "alertmanager_api", "pagerduty", "slack", "webhook"]
    """``alertmanager``: Alertmanager's webhook body, for receivers that accept it;
    ``alertmanager_api``: the alerts posted into running Alertmanagers, as Prometheus does."""
    url: Secret | None = None
    """Receiver URL; for Slack the incoming-webhook URL, which is itself the secret; for
    ``alertmanager_api`` an Alertmanager's base URL (``http://alertmanager:9093``)."""
    urls: list[Secret] = []
    """``alertmanager_api``: more Alertmanagers (each member of a cluster); each gets every
    alert. Secret like ``url``: a URL may carry basic-auth credentials."""
    resend_interval_seconds: float = Field(60, gt=0)
    """``alertmanager_api``: firing alerts are sent again this often (Prometheus'
    ``--rules.alert.resend-delay``); each is valid for four intervals."""
    routing_key: Secret | None = None
    hmac_key: Secret | None = None


class RetrainConfig(Section):
    name: str
    type: Literal["webhook", "github_actions", "argo", "kafka"]
    url: str | None = None
    """Webhook URL, GitHub API URL, or Argo server URL."""
    token: Secret | None = None
    repository: str | None = None
    workflow: str | None = None
    ref: str = "main"
    namespace: str | None = None
    template: str | None = None
    topic: str = "obsloop.retrain"
    kafka: KafkaConfig | None = None


class FeedbackConfig(Section):
    enabled: bool = False
    dry_run: bool = True
    """Start in dry-run: decisions are audited, nothing is committed or triggered."""
    git: GitConfig | None = None
    notifiers: list[NotifierConfig] = []
    retrain: list[RetrainConfig] = []
    group_by: list[str] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    repeat_interval_seconds: float = Field(4 * 3600, gt=0)
    retry_attempts: int = Field(5, ge=1)
    retry_base_delay_seconds: float = Field(0.5, gt=0)
    retry_max_delay_seconds: float = Field(30.0, gt=0)
