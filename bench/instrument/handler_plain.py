"""The uninstrumented baseline: a small scoring handler."""

import json


def handler(event, context):
    features = json.loads(event["body"])
    probability = min(1.0, features["amount"] / 5000 + (0.3 if features["age"] < 25 else 0.0))
    return {"statusCode": 200, "body": json.dumps({"fraud_probability": probability})}
