"""Cloud Functions wrapper through functions-framework's Flask app and test client."""

from __future__ import annotations

import base64
from pathlib import Path

import functions_framework
from otlp_capture import OtlpCaptureReceiver, attributes, picked

SOURCE = str(Path(__file__).with_name("gcf_main.py"))


def test_http_function_span_from_cloud_trace_header(
    otlp: OtlpCaptureReceiver, gcp_env: None
) -> None:
    client = functions_framework.create_app(target="predict", source=SOURCE).test_client()
    response = client.post(
        "/",
        json={"amount": 912.5, "country": "DE"},
        headers={
            "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1234567890123;o=1",
            "Function-Execution-Id": "exec-42",
        },
    )

    assert response.status_code == 200
    assert response.get_json() == {"fraud_probability": 0.1825}
    [(resource, span)] = otlp.spans()
    expected = {
        "faas.trigger": "http",
        "faas.invocation_id": "exec-42",
        "faas.coldstart": True,
        "faas.name": "fraud-scorer",
        "faas.version": "fraud-scorer-00007-xam",
        "cloud.provider": "gcp",
        "cloud.region": "europe-west1",
        "cloud.resource_id": "//cloudfunctions.googleapis.com/projects/ml-prod-4711"
        "/locations/europe-west1/functions/fraud-scorer",
        "model.name": "fraud-scorer",
    }
    assert picked(attributes(span.attributes), expected) == expected
    assert resource["cloud.platform"] == "gcp_cloud_functions"
    assert span.trace_id.hex() == "105445aa7843bc8bf206b12000100000"
    assert span.parent_span_id == (1234567890123).to_bytes(8, "big")
    [record] = otlp.log_records()
    assert attributes(record.attributes)["feature.country"] == "DE"


def test_traceparent_wins_and_4xx_is_not_an_error(otlp: OtlpCaptureReceiver, gcp_env: None) -> None:
    client = functions_framework.create_app(target="predict", source=SOURCE).test_client()
    response = client.post(
        "/",
        json={"country": "DE"},
        headers={
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1",
        },
    )

    assert response.status_code == 400
    [(_, span)] = otlp.spans()
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert attributes(span.attributes)["http.response.status_code"] == 400
    assert span.status.code == 0  # unset


def test_pubsub_cloud_event(otlp: OtlpCaptureReceiver, gcp_env: None) -> None:
    client = functions_framework.create_app(
        target="on_transaction", source=SOURCE, signature_type="cloudevent"
    ).test_client()
    data = {"message": {"attributes": {"amount": "12.5"}, "data": base64.b64encode(b"{}").decode()}}
    response = client.post(
        "/",
        json=data,
        headers={
            "ce-id": "msg-9001",
            "ce-specversion": "1.0",
            "ce-source": "//pubsub.googleapis.com/projects/ml-prod-4711/topics/transactions",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
    )

    assert response.status_code == 200
    [(_, span)] = otlp.spans()
    attrs = attributes(span.attributes)
    assert attrs["faas.trigger"] == "pubsub"
    assert attrs["faas.invocation_id"] == "msg-9001"
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    [record] = otlp.log_records()
    assert attributes(record.attributes)["feature.amount"] == "12.5"
