"""Building the feedback loop from its configuration (``serve`` and ``detector-worker``
only: this pulls in aiohttp, git and ruamel.yaml)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import SecretStr

from obsloop.feedback.alertmanager_api import AlertmanagerApi
from obsloop.feedback.alerts import Alerter, Notifier
from obsloop.feedback.audit import AuditLog
from obsloop.feedback.config import FeedbackConfig, NotifierConfig, RetrainConfig
from obsloop.feedback.deadletter import DeadLetters
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.forges import Forge, GitHub, GitLab
from obsloop.feedback.gitops import Author, GitOpsRepo
from obsloop.feedback.loop import FeedbackLoop
from obsloop.feedback.notifiers import PAGERDUTY_URL, AlertmanagerWebhook, PagerDuty, SignedWebhook, Slack
from obsloop.feedback.retrain import (
    ArgoWorkflowsTrigger,
    GitHubActionsTrigger,
    KafkaTrigger,
    RetrainTrigger,
    WebhookTrigger,
)
from obsloop.pipelines.kafka_config import KafkaConfig


def _notifier(config: NotifierConfig) -> Notifier:
    def need(value: SecretStr | None, what: str) -> SecretStr:
        if value is None:
            raise ValueError(f"feedback.notifiers[{config.name}]: {what} is required")
        return value

    if config.type == "alertmanager_api":
        urls = [url.get_secret_value() for url in ([config.url] if config.url else []) + config.urls]
        return AlertmanagerApi(config.name, urls, timedelta(seconds=config.resend_interval_seconds))
    if config.type == "pagerduty":
        events_url = config.url.get_secret_value() if config.url else PAGERDUTY_URL
        return PagerDuty(config.name, need(config.routing_key, "routing_key"), events_url)
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


class LoopBuilder:
    """A feedback loop in two steps, so a process starts while ClickHouse is down.

    The constructor builds everything that needs no ClickHouse (notifiers, retraining
    triggers, forge, GitOps checkout, alert state), so a configuration error is a
    ``ValueError`` naming the key at start-up. :meth:`connect` adds what does (the audit
    and dead-letter tables) and may be retried until ClickHouse answers.
    """

    def __init__(
        self, config: FeedbackConfig, data_dir: Path, registry: CollectorRegistry = REGISTRY
    ) -> None:
        if config.git is None:
            raise ValueError("feedback.git is required when feedback is enabled")
        git = config.git
        self.git = git
        self.dry_run = config.dry_run
        self.registry = registry
        retry = RetryPolicy(
            config.retry_attempts, config.retry_base_delay_seconds, config.retry_max_delay_seconds
        )
        self.sender = Sender(retry, registry=registry)
        self.forge: Forge | None = None
        if git.forge is not None:
            if git.forge_project is None or git.token is None:
                raise ValueError("feedback.git: forge needs forge_project and token")
            if git.forge == "github":
                self.forge = GitHub(
                    self.sender,
                    git.forge_project,
                    git.token,
                    git.forge_api_url or "https://api.github.com",
                )
            else:
                self.forge = GitLab(
                    self.sender,
                    git.forge_project,
                    git.token,
                    git.forge_api_url or "https://gitlab.com/api/v4",
                )
        self.repo = GitOpsRepo(
            git.remote,
            data_dir / "gitops",
            branch=git.branch,
            author=Author(git.author_name, git.author_email),
            mode=git.mode,
            skip_ci=git.skip_ci,
            token=git.token,
            token_user="oauth2" if git.forge == "gitlab" else "x-access-token",
        )
        self.alerter = Alerter(
            [_notifier(n) for n in config.notifiers],
            self.sender,
            group_by=config.group_by,
            repeat_interval=timedelta(seconds=config.repeat_interval_seconds),
            state_file=data_dir / "alerts-firing.json",
        )
        self.triggers = [_trigger(r, self.sender) for r in config.retrain]

    def connect(self, client: Any, database: str = "default") -> FeedbackLoop:
        """The loop, with its tables created through ``client`` (the process's shared
        ClickHouse client); raises while ClickHouse does not answer. Call it until it
        returns, then no more. Call ``await loop.alerter.sender.close()`` on shutdown."""
        # A scratch registry: an attempt that fails after the dead-letter gauge was made
        # must not leave it in the process's registry, where the next attempt's collides.
        dead_letters = DeadLetters(client, database, CollectorRegistry())
        audit = AuditLog(client, database)
        self.registry.register(dead_letters.gauge)
        self.sender.dead_letters = dead_letters
        return FeedbackLoop(
            self.repo,
            audit,
            self.alerter,
            self.triggers,
            self.forge,
            policy_file=self.git.policy_file,
            manifest_globs=self.git.manifest_globs,
            dry_run=self.dry_run,
        )


def build_loop(
    config: FeedbackConfig,
    client: Any,
    data_dir: Path,
    database: str = "default",
    registry: CollectorRegistry = REGISTRY,
) -> FeedbackLoop:
    """The loop for ``config`` at once (ClickHouse must answer); ``client`` is the
    process's shared ClickHouse client. Call ``await loop.alerter.sender.close()`` on
    shutdown."""
    return LoopBuilder(config, data_dir, registry).connect(client, database)
