"""Which manifest (:mod:`obsloop.core.manifests`) a detection is about."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from obsloop.core import semconv
from obsloop.core.manifests import Manifest, normalize_platform
from obsloop.detectors.detection import NAMESPACE, Detection


class ManifestIndex:
    """Finds the manifest a detection's series belongs to.

    A function name (``faas.name``, the manifest's deployed function) is the most specific
    match; without one, the model name and version (``modelRef``) identify the deployment. A
    namespace or platform label, when present, must agree, so two clouds running the same
    model version under different manifests are told apart.
    """

    def __init__(self, manifests: Iterable[Manifest]) -> None:
        self._manifests = list(manifests)

    def __iter__(self) -> Iterator[Manifest]:
        return iter(self._manifests)

    def __len__(self) -> int:
        return len(self._manifests)

    def find(self, series: Mapping[str, str]) -> Manifest | None:
        function = series.get(semconv.FAAS_NAME)
        model = series.get(semconv.MODEL_NAME), series.get(semconv.MODEL_VERSION)
        namespace = series.get(NAMESPACE)
        platform = series.get(semconv.CLOUD_PLATFORM)
        candidates = [
            m
            for m in self._manifests
            if (namespace is None or m.namespace == namespace)
            and (platform is None or m.platform == normalize_platform(platform))
        ]
        if function is not None:
            return next((m for m in candidates if m.function == function), None)
        if model[0] is not None:
            matches = [
                m
                for m in candidates
                if m.model_name == model[0] and (model[1] is None or m.model_version == model[1])
            ]
            return matches[0] if len(matches) == 1 else None
        return None

    def for_detection(self, detection: Detection) -> Manifest | None:
        return self.find(detection.series)
