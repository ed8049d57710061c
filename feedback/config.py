"""The ``feedback:`` configuration section and the one function that builds the loop from it.

Secrets are ``SecretStr`` (masked in repr, dumps and errors) and unwrapped only where a
request is built.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from obsloop.pipelines.kafka_config import KafkaConfig

from .alerts import DEFAULT_GROUP_BY, Alerter, Notifier
from .audit import AuditLog
from .deadletter import DeadLetters
from .delivery import RetryPolicy, Sender
from .forges import Forge, GitHub, GitLab
from .gitops import Author, GitOpsRepo
from .loop import FeedbackLoop
from .manifests import DEFAULT_GLOBS
from .notifiers import PAGERDUTY_URL, AlertmanagerWebhook, PagerDuty, SignedWebhook, Slack
from .policy import DEFAULT_POLICY_FILE
from .retrain import (
    ArgoWorkflowsTrigger,
    GitHubActionsTrigger,
    KafkaTrigger,
    RetrainTrigger,
    WebhookTrigger,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GitConfig(_Section):
    remote: str
    """A local path or a URL of the GitOps repository."""
    branch: str = "main"
    mode: Literal["push", "pull_request"] = "push"
    forge: Literal["github", "gitlab"] | None = None
    forge_api_url: str | None = None
    forge_project: str | None = None
    """``owner/repo`` on GitHub, ``group/project`` (or its id) on GitLab."""
    token: SecretStr | None = None
    author_name: str = "obsloop"
    author_email: str = "obsloop@localhost"
    skip_ci: bool = False
    policy_file: str = DEFAULT_POLICY_FILE
    manifest_globs: list[str] = Field(default_factory=lambda: list(DEFAULT_GLOBS))


class NotifierConfig(_Section):
    name: str
    type: Literal["alertmanager", "pagerduty", "slack", "webhook"]
    url: SecretStr | None = None
    """Receiver URL; for Slack the incoming-webhook URL, which is itself the secret."""
    routing_key: SecretStr | None = None
    hmac_key: SecretStr | None = None


class RetrainConfig(_Section):
    name: str
    type: Literal["webhook", "github_actions", "argo", "kafka"]
    url: str | None = None
    """Webhook URL, GitHub API URL, or Argo server URL."""
    token: SecretStr | None = None
    repository: str | None = None
    workflow: str | None = None
    ref: str = "main"
    namespace: str | None = None
    template: str | None = None
    topic: str = "obsloop.retrain"
    kafka: KafkaConfig | None = None


class FeedbackConfig(_Section):
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


def _notifier(config: NotifierConfig) -> Notifier:
    def need(value: SecretStr | None, what: str) -> SecretStr:
        if value is None:
            raise ValueError(f"feedback.notifiers[{config.name}]: {what} is required")
        return value

    if config.type == "pagerduty":
        url = config.url.get_secret_value() if config.url else PAGERDUTY_URL
        return PagerDuty(config.name, need(config.routing_key, "routing_key"), url)
    url = need(config.url, "url")
    if config.type == "slack":
        return Slack(config.name, url)
    if config.type == "webhook":
        return SignedWebhook(config.name, url.get_secret_value(), need(config.hmac_key, "hmac_key"))
    return AlertmanagerWebhook(config.name, url.get_secret_value())


def _trigger(config: RetrainConfig, sender: Sender) -> RetrainTrigger:
    missing = [k for k in _REQUIRED[config.type] if getattr(config, k) is None]
    if missing:
        raise ValueError(f"feedback.retrain[{config.name}]: {', '.join(missing)} required")
    if config.type == "webhook":
        return WebhookTrigger(config.name, sender, config.url or "", config.token)
    if config.type == "github_actions":
        return GitHubActionsTrigger(
            config.name,
            sender,
            config.repository or "",
            config.workflow or "",
            config.token or SecretStr(""),
            config.ref,
            config.url or "https://api.github.com",
        )
    if config.type == "argo":
        return ArgoWorkflowsTrigger(
            config.name,
            sender,
            config.url or "",
            config.namespace or "",
            config.template or "",
            config.token,
        )
    return KafkaTrigger(config.name, config.kafka or KafkaConfig(), config.topic, sender)


_REQUIRED: dict[str, tuple[str, ...]] = {
    "webhook": ("url",),
    "github_actions": ("repository", "workflow", "token"),
    "argo": ("url", "namespace", "template"),
    "kafka": ("kafka",),
}


def build_loop(
    config: FeedbackConfig,
    client: Any,
    data_dir: Path,
    database: str = "default",
    registry: CollectorRegistry = REGISTRY,
) -> FeedbackLoop:
    """The loop for ``config``; ``client`` is the process's shared ClickHouse client.
    Call ``await loop.alerter.sender.close()`` on shutdown."""
    if config.git is None:
        raise ValueError("feedback.git is required when feedback is enabled")
    git = config.git
    retry = RetryPolicy(
        config.retry_attempts, config.retry_base_delay_seconds, config.retry_max_delay_seconds
    )
    sender = Sender(retry, DeadLetters(client, database, registry), registry=registry)
    forge: Forge | None = None
    if git.forge is not None:
        if git.forge_project is None or git.token is None:
            raise ValueError("feedback.git: forge needs forge_project and token")
        if git.forge == "github":
            forge = GitHub(
                sender, git.forge_project, git.token, git.forge_api_url or "https://api.github.com"
            )
        else:
            forge = GitLab(
                sender,
                git.forge_project,
                git.token,
                git.forge_api_url or "https://gitlab.com/api/v4",
            )
    repo = GitOpsRepo(
        git.remote,
        data_dir / "gitops",
        branch=git.branch,
        author=Author(git.author_name, git.author_email),
        mode=git.mode,
        skip_ci=git.skip_ci,
        token=git.token,
        token_user="oauth2" if git.forge == "gitlab" else "x-access-token",
    )
    alerter = Alerter(
        [_notifier(n) for n in config.notifiers],
        sender,
        group_by=config.group_by,
        repeat_interval=timedelta(seconds=config.repeat_interval_seconds),
        state_file=data_dir / "alerts-firing.json",
    )
    return FeedbackLoop(
        repo,
        AuditLog(client, database),
        alerter,
        [_trigger(r, sender) for r in config.retrain],
        forge,
        policy_file=git.policy_file,
        manifest_globs=git.manifest_globs,
        dry_run=config.dry_run,
    )
