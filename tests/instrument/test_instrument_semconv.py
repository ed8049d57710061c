"""obsloop-instrument's attribute and event names against obsloop's.

The library keeps its own copy (``obsloop_instrument/_semconv.py``): the distribution must
not depend on the obsloop service. This test is what keeps the copy honest: a name both
define has the same value in both, so the functions' telemetry and the service that reads
it cannot drift apart silently.
"""

from __future__ import annotations

from types import ModuleType

from obsloop_instrument import _semconv as library

from obsloop.core import semconv as service


def _names(module: ModuleType) -> dict[str, object]:
    return {name: value for name, value in vars(module).items() if name.isupper()}


def test_every_name_the_library_shares_with_obsloop_has_the_same_value() -> None:
    ours, theirs = _names(library), _names(service)
    shared = ours.keys() & theirs.keys()

    assert {name: ours[name] for name in shared} == {name: theirs[name] for name in shared}
    # Not vacuous: the names the wrappers and prediction events export are among them.
    assert {"SERVICE_NAME", "FAAS_NAME", "CLOUD_RESOURCE_ID", "MODEL_NAME", "PREDICTION_EVENT"} <= shared

