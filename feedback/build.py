"""Building the feedback loop from its configuration (``serve`` only: this pulls in
aiohttp, git and ruamel.yaml)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import SecretStr

from obsloop.pipelines.kafka_config import KafkaConfig

from .alerts import Alerter, Notifier
from .audit import AuditLog
from .config import FeedbackConfig, NotifierConfig, RetrainConfig
from .deadletter import DeadLetters
from .delivery import RetryPolicy, Sender
from .forges import Forge, GitHub, GitLab
from .gitops import Author, GitOpsRepo
from .loop import FeedbackLoop
from .notifiers import PAGERDUTY_URL, AlertmanagerWebhook, PagerDuty, SignedWebhook, Slack
from .retrain import (
    ArgoWorkflowsTrigger,
    GitHubActionsTrigger,
    KafkaTrigger,
    RetrainTrigger,
    WebhookTrigger,
)


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
