"""Reading and validating ``ServerlessModelDeployment`` manifests from a GitOps checkout.

A manifest that does not parse or validate becomes a :class:`ManifestError` (file, line,
reason) instead of an exception: one broken file in a repository of hundreds must not stop
the loop from acting on the others, and the error must point a human at the exact line.
Broken manifests are never edited, because there is no safe way to edit what we cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError

from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE, Detection
from obsloop.feedback.config import DEFAULT_GLOBS

KIND = "ServerlessModelDeployment"

Position = tuple[int, int]
"""0-based (line, column) of a scalar value in its file, as ruamel reports it."""


@dataclass(frozen=True)
class ManifestError:
    path: str
    line: int
    """1-based, like editors and ``git blame``."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Manifest:
    """The parts of one manifest document the feedback loop reads, plus where they are."""

    path: str
    """Relative to the repository root, with forward slashes."""
    document: int
    """Index of the document in a multi-document file."""
    name: str
    namespace: str
    model_name: str
    model_version: str
    platform: str
    min_replicas: int
    max_replicas: int
    memory_mb: int | None
    min_memory_mb: int | None
    max_memory_mb: int | None
    blue_percent: float | None
    green_percent: float | None
    budget_monthly_usd: float | None
    policies: tuple[str, ...]
    line: int
    positions: Mapping[str, Position] = field(default_factory=dict, compare=False)
    """Dotted spec path (``autoscaling.minReplicas``) -> where its value is written."""

    @property
    def key(self) -> str:
        """The deployment's identity in audit rows, cooldowns and branch names."""
        return f"{self.namespace}/{self.name}"


@dataclass
class ManifestSet:
    manifests: list[Manifest]
    errors: list[ManifestError]

    def index(self) -> ManifestIndex:
        return ManifestIndex(self.manifests)


class _Invalid(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mb|mib|mi|m|gb|gib|gi|g)?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_BUDGET = re.compile(
    r"^\s*\$?\s*([\d,]+(?:\.\d+)?)\s*(?:usd)?\s*(?:/\s*(day|week|month|year))?\s*$", re.IGNORECASE
)
_PER_MONTH = {"day": 365.25 / 12, "week": 365.25 / 12 / 7, "month": 1.0, "year": 1 / 12}


def parse_memory_mb(value: Any) -> int:
    """``"4096MB"``, ``"4Gi"``, ``512`` -> megabytes (MB and MiB are treated alike, as the
    serverless platforms do)."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a memory size: {value!r}")
    amount, unit = float(match.group(1)), (match.group(2) or "mb").lower()
    return int(amount * 1024) if unit.startswith("g") else int(amount)


def parse_percent(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a percentage: {value!r}")
    match = _PERCENT.match(str(value))
    if not match:
        raise ValueError(f"not a percentage: {value!r}")
    return float(match.group(1))


def parse_budget(value: Any) -> float:
    """``"$5000/month"``, ``"$200/day"``, ``"60000 USD/year"`` -> dollars per month."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _BUDGET.match(str(value))
    if not match:
        raise ValueError(f"not a budget like '$5000/month': {value!r}")
    amount = float(match.group(1).replace(",", ""))
    return amount * _PER_MONTH[(match.group(2) or "month").lower()]


def normalize_platform(value: str) -> str:
    """``aws-lambda`` (manifest style) and ``aws_lambda`` (OpenTelemetry) are the same."""
    return value.strip().lower().replace("-", "_")


def _line(node: Any, key: str | None = None) -> int:
    if isinstance(node, CommentedMap):
        if key is not None and key in node:
            return node.lc.key(key)[0] + 1
        return node.lc.line + 1
    return 0


def _mapping(parent: CommentedMap, key: str, where: str, required: bool = True) -> CommentedMap:
    value = parent.get(key)
    if value is None and not required:
        return CommentedMap()
    if not isinstance(value, CommentedMap):
        state = "missing" if value is None else "not a mapping"
        raise _Invalid(_line(parent, key), f"{where}.{key} is {state}")
    return value


def _string(parent: CommentedMap, key: str, where: str) -> str:
    value = parent.get(key)
    if value is None or isinstance(value, CommentedMap | list) or str(value).strip() == "":
        raise _Invalid(_line(parent, key), f"{where}.{key} is missing or not a string")
    return str(value)


def _replicas(node: CommentedMap, key: str) -> int:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(_line(node, key), f"autoscaling.{key} must be a non-negative integer")
    return value


def _optional(node: CommentedMap, key: str, parse: Any, where: str) -> Any:
    if node.get(key) is None:
        return None
    try:
        return parse(node[key])
    except ValueError as exc:
        raise _Invalid(_line(node, key), f"{where}.{key}: {exc}") from None


def _build(path: str, document: int, doc: Any) -> Manifest:
    if not isinstance(doc, CommentedMap):
        raise _Invalid(1, "document is not a mapping")
    kind = doc.get("kind")
    if kind != KIND:
        raise _Invalid(_line(doc, "kind"), f"unknown kind {kind!r} (expected {KIND})")
    _string(doc, "apiVersion", "")
    metadata = _mapping(doc, "metadata", "")
    spec = _mapping(doc, "spec", "")
    model_ref = spec.get("modelRef")
    if not isinstance(model_ref, CommentedMap):
        raise _Invalid(_line(doc, "spec"), "spec.modelRef is missing")
    runtime = _mapping(spec, "runtime", "spec")
    autoscaling = _mapping(spec, "autoscaling", "spec")
    traffic = _mapping(spec, "trafficSplit", "spec", required=False)
    finops = _mapping(spec, "finops", "spec", required=False)

    min_replicas = _replicas(autoscaling, "minReplicas")
    max_replicas = _replicas(autoscaling, "maxReplicas")
    if min_replicas > max_replicas:
        raise _Invalid(
            _line(autoscaling, "minReplicas"),
            f"autoscaling.minReplicas {min_replicas} > maxReplicas {max_replicas}",
        )
    memory = _optional(runtime, "memory", parse_memory_mb, "runtime")
    min_memory = _optional(autoscaling, "minMemory", parse_memory_mb, "autoscaling")
    max_memory = _optional(autoscaling, "maxMemory", parse_memory_mb, "autoscaling")
    if min_memory is not None and max_memory is not None and min_memory > max_memory:
        raise _Invalid(
            _line(autoscaling, "minMemory"),
            f"autoscaling.minMemory {min_memory}MB > maxMemory {max_memory}MB",
        )
    if memory is not None and not (min_memory or 0) <= memory <= (max_memory or memory):
        raise _Invalid(
            _line(runtime, "memory"), f"runtime.memory {memory}MB is outside min/maxMemory"
        )
    blue = _optional(traffic, "blue", parse_percent, "trafficSplit")
    green = _optional(traffic, "green", parse_percent, "trafficSplit")
    if blue is not None and green is not None and abs(blue + green - 100.0) > 1e-6:
        raise _Invalid(
            _line(spec, "trafficSplit"), f"trafficSplit adds up to {blue + green:g}%, not 100%"
        )
    budget = _optional(finops, "budgetLimit", parse_budget, "finops")
    policies = spec.get("policies") or []
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise _Invalid(_line(spec, "policies"), "spec.policies must be a list of names")

    positions: dict[str, Position] = {}
    for section_name, section in (
        ("autoscaling", autoscaling),
        ("runtime", runtime),
        ("trafficSplit", traffic),
    ):
        for key in section:
            positions[f"{section_name}.{key}"] = tuple(section.lc.value(key))
    return Manifest(
        path=path,
        document=document,
        name=_string(metadata, "name", "metadata"),
        namespace=str(metadata.get("namespace") or "default"),
        model_name=_string(model_ref, "name", "spec.modelRef"),
        model_version=_string(model_ref, "version", "spec.modelRef"),
        platform=normalize_platform(_string(runtime, "platform", "spec.runtime")),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        memory_mb=memory,
        min_memory_mb=min_memory,
        max_memory_mb=max_memory,
        blue_percent=blue,
        green_percent=green,
        budget_monthly_usd=budget,
        policies=tuple(policies),
        line=_line(doc),
        positions=positions,
    )


def parse_manifests(path: str, text: str) -> tuple[list[Manifest], list[ManifestError]]:
    """Every document of one file; a YAML syntax error invalidates the whole file."""
    try:
        documents = list(YAML(typ="rt").load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = " ".join(filter(None, (exc.context, exc.problem))) or "not valid YAML"
        return [], [ManifestError(path, line, f"not valid YAML: {reason}")]
    manifests, errors = [], []
    for number, doc in enumerate(documents):
        if doc is None:
            continue
        try:
            manifests.append(_build(path, number, doc))
        except _Invalid as exc:
            errors.append(ManifestError(path, exc.line, exc.reason))
    return manifests, errors


def load_manifests(
    root: Path, globs: Iterable[str] = DEFAULT_GLOBS, exclude: Iterable[str] = ()
) -> ManifestSet:
    """All manifests under ``root`` (``.git`` and ``exclude`` paths skipped), sorted by path
    so that results, and the error log, are reproducible."""
    skip = set(exclude)
    files = sorted(
        {
            file
            for pattern in globs
            for file in root.glob(pattern)
            if file.is_file() and ".git" not in file.relative_to(root).parts
        }
    )
    result = ManifestSet([], [])
    seen: dict[str, Manifest] = {}
    for file in files:
        relative = file.relative_to(root).as_posix()
        if relative in skip:
            continue
        manifests, errors = parse_manifests(relative, file.read_text(encoding="utf-8"))
        result.errors.extend(errors)
        for manifest in manifests:
            first = seen.setdefault(manifest.key, manifest)
            if first is not manifest:
                result.errors.append(
                    ManifestError(
                        relative,
                        manifest.line,
                        f"deployment {manifest.key} is already declared in "
                        f"{first.path}:{first.line}",
                    )
                )
            else:
                result.manifests.append(manifest)
    return result


class ManifestIndex:
    """Finds the manifest a detection's series belongs to.

    A function name (``faas.name`` = ``metadata.name``) is the most specific match; without
    one, the model name and version (``modelRef``) identify the deployment. A namespace or
    platform label, when present, must agree, so two clouds running the same model version
    under different manifests are told apart.
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
            return next((m for m in candidates if m.name == function), None)
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
