"""A Cloud Functions source file, loaded by functions-framework in the GCP tests."""

from __future__ import annotations

from typing import Any

import flask
import functions_framework
from obsloop_instrument import instrument_cloud_function, log_prediction


@functions_framework.http
@instrument_cloud_function(model_name="fraud-scorer", model_version="2026.11.1")
def predict(request: flask.Request) -> Any:
    features = request.get_json()
    if "amount" not in features:
        return {"error": "amount missing"}, 400
    probability = round(min(1.0, features["amount"] / 5000), 4)
    log_prediction(features, probability)
    return {"fraud_probability": probability}


@functions_framework.cloud_event
@instrument_cloud_function(model_name="fraud-scorer")
def on_transaction(cloud_event: Any) -> None:
    log_prediction({"amount": cloud_event.data["message"]["attributes"]["amount"]}, 0.0)
