"""Ground truth: ``log_prediction`` returns the id a later ``log_ground_truth`` refers to."""

from __future__ import annotations

import obsloop_instrument
import pytest
from obsloop_instrument import log_ground_truth, log_prediction
from otlp_capture import OtlpCaptureReceiver, attributes


def test_ground_truth_event_refers_to_the_returned_prediction_id(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSLOOP_MODEL_NAME", "fraud")
    monkeypatch.setenv("OBSLOOP_MODEL_VERSION", "7")
    first = log_prediction({"amount": 3.0}, 1, score=0.81)
    second = log_prediction({"amount": 4.0}, 0, score=0.1)
    assert first and second and first != second
    log_ground_truth(first, 0, time=1_790_000_000.25)
    obsloop_instrument.flush()

    prediction, _, truth = otlp.log_records()
    assert attributes(prediction.attributes)["prediction.id"] == first
    assert attributes(prediction.attributes)["prediction.score"] == 0.81
    assert truth.event_name == "obsloop.model.ground_truth"
    assert attributes(truth.attributes) == {"prediction.id": first, "label": 0}
    assert abs(truth.time_unix_nano - 1_790_000_000_250_000_000) < 1_000  # float seconds


def test_sampled_out_prediction_has_no_id(otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSLOOP_PREDICTION_SAMPLE_RATE", "0")
    assert log_prediction({"amount": 3.0}, 1) is None


@pytest.mark.parametrize(("prediction_id", "label"), [("", 1), ("p-1", None)])
def test_ground_truth_without_id_or_label_is_refused(otlp: OtlpCaptureReceiver, prediction_id: str,
                                                     label: object) -> None:
    with pytest.raises(ValueError, match="prediction id|label"):
        log_ground_truth(prediction_id, label)
