"""The baseline handler under obsloop-instrument (span, metrics, flush per invocation)."""

import json

from obsloop_instrument import instrument_lambda


@instrument_lambda(model_name="fraud-scorer", model_version="1")
def handler(event, context):
    features = json.loads(event["body"])
    probability = min(1.0, features["amount"] / 5000 + (0.3 if features["age"] < 25 else 0.0))
    return {"statusCode": 200, "body": json.dumps({"fraud_probability": probability})}
