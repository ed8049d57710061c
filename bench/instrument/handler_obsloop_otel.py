"""The baseline handler under obsloop-instrument when the application itself uses the
OpenTelemetry API (a span of its own per invocation): the API is imported by the
application, and the SDK tracer is built by the library at the first ``get_tracer`` use."""

import json

from obsloop_instrument import instrument_lambda
from opentelemetry import trace

tracer = trace.get_tracer("fraud-scorer")


@instrument_lambda(model_name="fraud-scorer", model_version="1")
def handler(event, context):
    with tracer.start_as_current_span("score"):
        features = json.loads(event["body"])
        probability = min(1.0, features["amount"] / 5000 + (0.3 if features["age"] < 25 else 0.0))
    return {"statusCode": 200, "body": json.dumps({"fraud_probability": probability})}
