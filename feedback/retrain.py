"""Retraining triggers: where a drift detection goes to start a training run.

Every trigger carries the same facts: the detection (with its evidence), the deployment and
model it concerns, and the report link (the detection's first evidence link). The targets
are a generic JSON webhook, a GitHub Actions ``workflow_dispatch``, an Argo Workflows
submission of a ``WorkflowTemplate``, and a Kafka message (for pipelines that listen on a
topic). Each returns a reference for the audit row.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from pydantic import SecretStr

from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import Detection
from obsloop.feedback.delivery import DeliveryFailed, Request, Sender, bearer
from obsloop.feedback.forges import github_headers
from obsloop.pipelines.kafka_config import KafkaConfig, client_kwargs


def retrain_event(detection: Detection, manifest: Manifest) -> dict[str, Any]:
    return {
        "event": "obsloop.retrain",
        "deployment": manifest.key,
        "manifest": manifest.path,
        "model": {"name": manifest.model_name, "version": manifest.model_version},
        "report_url": detection.evidence[0] if detection.evidence else "",
        "detection": detection.to_json(),
    }


class RetrainTrigger(Protocol):
    name: str

    async def trigger(self, detection: Detection, manifest: Manifest) -> str: ...


class WebhookTrigger:
    def __init__(self, name: str, sender: Sender, url: str, token: SecretStr | None = None):
        self.name, self.sender, self._url, self._token = name, sender, url, token

    async def trigger(self, detection: Detection, manifest: Manifest) -> str:
        event = retrain_event(detection, manifest)
        await self.sender.send(Request.json(self.name, self._url, event, bearer(self._token), kind="retrain",
                                            key=detection.id))
        return f"webhook:{detection.id}"


class GitHubActionsTrigger:
    """``POST /repos/{repo}/actions/workflows/{workflow}/dispatches``; the workflow declares
    the inputs below under ``on.workflow_dispatch.inputs`` (inputs are strings)."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        repository: str,
        workflow: str,
        token: SecretStr,
        ref: str = "main",
        api_url: str = "https://api.github.com",
    ) -> None:
        self.name, self.sender, self.repository, self.workflow = name, sender, repository, workflow
        self._token, self.ref, self.api_url = token, ref, api_url.rstrip("/")

    async def trigger(self, detection: Detection, manifest: Manifest) -> str:
        event = retrain_event(detection, manifest)
        payload = {
            "ref": self.ref,
            "inputs": {
                "detection_id": detection.id,
                "deployment": manifest.key,
                "model_name": manifest.model_name,
                "model_version": manifest.model_version,
                "report_url": event["report_url"],
                "evidence": json.dumps(event["detection"], sort_keys=True),
            },
        }
        url = f"{self.api_url}/repos/{self.repository}/actions/workflows/{self.workflow}/dispatches"
        await self.sender.send(Request.json(self.name, url, payload, github_headers(self._token), kind="retrain",
                                            key=detection.id))
        return f"{self.repository}:{self.workflow}@{self.ref}"


class ArgoWorkflowsTrigger:
    """``POST /api/v1/workflows/{namespace}/submit`` of a WorkflowTemplate, with the
    detection as workflow parameters and a label to find the run from the audit row."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        server_url: str,
        namespace: str,
        template: str,
        token: SecretStr | None = None,
    ) -> None:
        self.name, self.sender, self.server_url = name, sender, server_url.rstrip("/")
        self.namespace, self.template, self._token = namespace, template, token

    async def trigger(self, detection: Detection, manifest: Manifest) -> str:
        event = retrain_event(detection, manifest)
        payload = {
            "namespace": self.namespace,
            "resourceKind": "WorkflowTemplate",
            "resourceName": self.template,
            "submitOptions": {
                "generateName": f"{self.template}-",
                "labels": f"obsloop.dev/deployment={manifest.name}",
                "parameters": [
                    f"detection-id={detection.id}",
                    f"model-name={manifest.model_name}",
                    f"model-version={manifest.model_version}",
                    f"report-url={event['report_url']}",
                    f"evidence={json.dumps(event['detection'], sort_keys=True)}",
                ],
            },
        }
        url = f"{self.server_url}/api/v1/workflows/{self.namespace}/submit"
        reply = await self.sender.send(Request.json(self.name, url, payload, bearer(self._token), kind="retrain",
                                                    key=detection.id))
        return json.loads(reply.text)["metadata"]["name"]


class KafkaTrigger:
    """One JSON message per drift detection, keyed by deployment so one deployment's
    triggers stay ordered on one partition."""

    def __init__(self, name: str, config: KafkaConfig, topic: str, sender: Sender) -> None:
        self.name, self.config, self.topic, self.sender = name, config, topic, sender

    def _publish(self, key: str, value: bytes) -> str:
        from kafka import KafkaProducer

        producer = KafkaProducer(**client_kwargs(self.config), acks="all")
        try:
            metadata = producer.send(self.topic, key=key.encode(), value=value).get(
                timeout=self.config.publish_timeout_ms / 1000
            )
        finally:
            producer.close(timeout=2)
        return f"{self.topic}/{metadata.partition}@{metadata.offset}"

    async def trigger(self, detection: Detection, manifest: Manifest) -> str:
        event = retrain_event(detection, manifest)
        try:
            return await asyncio.to_thread(self._publish, manifest.key, json.dumps(event).encode())
        except Exception as exc:
            reason = f"kafka error ({type(exc).__name__})"
            if self.sender.dead_letters is not None:
                self.sender.dead_letters.record(
                    self.name, "retrain", detection.id, 1, reason, event
                )
            raise DeliveryFailed(self.name, 1, reason) from None
