"""The uninstrumented baseline of an application that uses the OpenTelemetry API itself
(its own span per invocation; no SDK configured, so the API's no-op tracer)."""

import json

from opentelemetry import trace

tracer = trace.get_tracer("fraud-scorer")


def handler(event, context):
    with tracer.start_as_current_span("score"):
        features = json.loads(event["body"])
        probability = min(1.0, features["amount"] / 5000 + (0.3 if features["age"] < 25 else 0.0))
    return {"statusCode": 200, "body": json.dumps({"fraud_probability": probability})}
