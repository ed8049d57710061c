"""The GitOps repository's ``ServerlessModelDeployment`` manifests and its policy file, read once.

Enrichment (a function's model and cost center), the budget forecast and the feedback loop
read the same files, so they read them here, with one validation: a document is a valid
:class:`Manifest` or a :class:`ManifestError` (file, line, reason), never an exception, so one
broken file in a repository of hundreds stops nobody from using the others, and the error
points a human at the exact line. ruamel's round-trip loader keeps where every value is
written, which lets the feedback loop edit a single token. Which behaviour was kept where the
three earlier readers differed: docs/design/one-manifest-model.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from obsloop.core import semconv

if TYPE_CHECKING:
    from ruamel.yaml.error import MarkedYAMLError

log = logging.getLogger(__name__)

KIND = "ServerlessModelDeployment"
FUNCTION_ANNOTATION = "obsloop.io/function-name"
"""Names the deployed function when it differs from the manifest's ``metadata.name``."""
DEFAULT_GLOBS = ("**/*.yaml", "**/*.yml")
"""Where manifests are looked for in the GitOps repository."""
DEFAULT_POLICY_FILE = "obsloop-policy.yaml"
"""The feedback policy file's path in the GitOps repository: it lives next to the manifests
and is never read as one."""

Position = tuple[int, int]
"""0-based (line, column) of a scalar value in its file, as ruamel reports it."""

SPEC_FIELDS = {
    "autoscaling.minReplicas": "min_replicas",
    "autoscaling.maxReplicas": "max_replicas",
    "runtime.memory": "memory_mb",
    "trafficSplit.blue": "blue_percent",
    "trafficSplit.green": "green_percent",
}
"""The spec values the feedback loop may change (dotted path -> :class:`Manifest` field)."""


@dataclass(frozen=True)
class ManifestError:
    """Why a manifest or policy file (or one document of it) cannot be used."""

    path: str
    line: int
    """1-based, like editors and ``git blame``."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Budget:
    """A function's ``finops`` budget, as the month-end spend forecast compares against it."""

    function: str
    monthly_usd: float
    alert_fraction: float = 1.0
    """``finops.alertThreshold``: the forecast alerts past this share of the budget."""
    cost_center: str | None = None

    @property
    def alert_usd(self) -> float:
        return self.monthly_usd * self.alert_fraction


@dataclass(frozen=True)
class Manifest:
    """One valid ``ServerlessModelDeployment`` document, plus where its values are written."""

    path: str
    """Relative to the repository root, with forward slashes."""
    document: int
    """Index of the document in a multi-document file."""
    name: str
    namespace: str
    function: str
    """The deployed function (``faas.name``): the annotation :data:`FUNCTION_ANNOTATION`,
    else ``metadata.name``."""
    model_name: str
    model_version: str
    platform: str
    """As OpenTelemetry's ``cloud.platform`` writes it (``aws-lambda`` -> ``aws_lambda``)."""
    cost_center: str | None
    min_replicas: int | None
    """``None`` without an ``autoscaling`` section: nothing to scale."""
    max_replicas: int | None
    memory_mb: int | None
    min_memory_mb: int | None
    max_memory_mb: int | None
    blue_percent: float | None
    green_percent: float | None
    budget_monthly_usd: float | None
    budget_alert_fraction: float
    policies: tuple[str, ...]
    line: int
    positions: dict[str, Position] = field(default_factory=dict, compare=False)
    """Dotted spec path (``autoscaling.minReplicas``) -> where its value is written."""

    @property
    def key(self) -> str:
        """The deployment's identity in audit rows, cooldowns and branch names."""
        return f"{self.namespace}/{self.name}"

    @property
    def budget(self) -> Budget | None:
        """The budget the spend forecast watches, if ``finops.budgetLimit`` sets one."""
        if self.budget_monthly_usd is None:
            return None
        return Budget(self.function, self.budget_monthly_usd, self.budget_alert_fraction, self.cost_center)

    def spec_value(self, path: str) -> float | None:
        """The value of an editable spec path (:data:`SPEC_FIELDS`) as this model reads it."""
        return getattr(self, SPEC_FIELDS[path])


@dataclass
class ManifestSet:
    """What a repository holds: the valid manifests and the errors of the others."""

    manifests: list[Manifest]
    errors: list[ManifestError]


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
PLATFORM_ALIASES = {
    "google_cloud_run": semconv.PLATFORM_GCP_CLOUD_RUN,
    "google_cloud_functions": semconv.PLATFORM_GCP_CLOUD_FUNCTIONS,
}


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
    """``"80%"``, ``80`` -> 80.0."""
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
    """``aws-lambda`` (manifest style) and ``aws_lambda`` (OpenTelemetry) are the same;
    ``google-cloud-run`` is OpenTelemetry's ``gcp_cloud_run``."""
    normalized = value.strip().lower().replace("-", "_")
    return PLATFORM_ALIASES.get(normalized, normalized)


def line_of(node: Any, path: Sequence[int | str] = ()) -> int:
    """The 1-based line of the deepest key or item of ``path`` that exists under ``node``."""
    line = node.lc.line + 1 if hasattr(node, "lc") else 1
    for part in path:
        if isinstance(node, dict) and part in node:
            line = cast(Any, node).lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = cast(Any, node).lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _syntax_error(path: str, exc: MarkedYAMLError) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    reason = " ".join(filter(None, (exc.context, exc.problem))) or "not valid YAML"
    return ManifestError(path, mark.line + 1 if mark is not None else 1, f"not valid YAML: {reason}")


# ruamel is imported where a file is read, not with this module: the configuration imports
# the defaults above on every command, and most commands read no manifest.


def load_documents(path: str, text: str) -> tuple[list[Any], ManifestError | None]:
    """Every YAML document of one file, round-trip (mappings and sequences know the line and
    column of each key, item and value), or the syntax error that makes the file unreadable."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return list(YAML(typ="rt").load_all(text)), None
    except MarkedYAMLError as exc:
        return [], _syntax_error(path, exc)


def load_document(path: str, text: str) -> tuple[Any, ManifestError | None]:
    """The single YAML document of a file (the policy file), round-trip, or its error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return YAML(typ="rt").load(text), None
    except MarkedYAMLError as exc:
        return None, _syntax_error(path, exc)


def _line(node: Any, key: str | None = None) -> int:
    return line_of(node, () if key is None else (key,))


def _mapping(parent: dict[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any]:
    """The mapping under ``key``; an optional one that is absent reads as empty."""
    value = parent.get(key)
    if value is None and not required:
        return {}  # no position to report: it has no keys
    if not isinstance(value, dict):
        state = "missing" if value is None else "not a mapping"
        raise _Invalid(_line(parent, key), f"{where}.{key} is {state}")
    return value


def _string(parent: dict[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if value is None or isinstance(value, dict | list) or str(value).strip() == "":
        raise _Invalid(_line(parent, key), f"{where}.{key} is missing or not a string")
    return str(value)


def _optional_string(parent: dict[str, Any], key: str, where: str) -> str | None:
    return None if parent.get(key) is None else _string(parent, key, where)


def _replicas(node: dict[str, Any], key: str) -> int:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(_line(node, key), f"autoscaling.{key} must be a non-negative integer")
    return value


def _optional(node: dict[str, Any], key: str, parse: Any, where: str) -> Any:
    if node.get(key) is None:
        return None
    try:
        return parse(node[key])
    except ValueError as exc:
        raise _Invalid(_line(node, key), f"{where}.{key}: {exc}") from None


def _build(path: str, document: int, doc: Any) -> Manifest:
    if not isinstance(doc, dict):
        raise _Invalid(1, "document is not a mapping")
    kind = doc.get("kind")
    if kind != KIND:
        raise _Invalid(_line(doc, "kind"), f"unknown kind {kind!r} (expected {KIND})")
    _string(doc, "apiVersion", "")
    metadata = _mapping(doc, "metadata", "")
    annotations = _mapping(metadata, "annotations", "metadata", required=False)
    spec = _mapping(doc, "spec", "")
    model_ref = spec.get("modelRef")
    if not isinstance(model_ref, dict):
        raise _Invalid(_line(doc, "spec"), "spec.modelRef is missing")
    runtime = _mapping(spec, "runtime", "spec")
    autoscaling = _mapping(spec, "autoscaling", "spec", required=False)
    traffic = _mapping(spec, "trafficSplit", "spec", required=False)
    finops = _mapping(spec, "finops", "spec", required=False)

    min_replicas = max_replicas = None
    if spec.get("autoscaling") is not None:
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
        raise _Invalid(_line(runtime, "memory"), f"runtime.memory {memory}MB is outside min/maxMemory")
    blue = _optional(traffic, "blue", parse_percent, "trafficSplit")
    green = _optional(traffic, "green", parse_percent, "trafficSplit")
    if blue is not None and green is not None and abs(blue + green - 100.0) > 1e-6:
        raise _Invalid(_line(spec, "trafficSplit"), f"trafficSplit adds up to {blue + green:g}%, not 100%")
    budget = _optional(finops, "budgetLimit", parse_budget, "finops")
    threshold = _optional(finops, "alertThreshold", parse_percent, "finops")
    policies = spec.get("policies") or []
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise _Invalid(_line(spec, "policies"), "spec.policies must be a list of names")

    positions: dict[str, Position] = {}
    for section_name, section in (("autoscaling", autoscaling), ("runtime", runtime), ("trafficSplit", traffic)):
        for key in section:
            positions[f"{section_name}.{key}"] = tuple(cast(Any, section).lc.value(key))
    name = _string(metadata, "name", "metadata")
    return Manifest(
        path=path,
        document=document,
        name=name,
        namespace=str(metadata.get("namespace") or "default"),
        function=_optional_string(annotations, FUNCTION_ANNOTATION, "metadata.annotations") or name,
        model_name=_string(model_ref, "name", "spec.modelRef"),
        model_version=_string(model_ref, "version", "spec.modelRef"),
        platform=normalize_platform(_string(runtime, "platform", "spec.runtime")),
        cost_center=_optional_string(finops, "costCenter", "spec.finops"),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        memory_mb=memory,
        min_memory_mb=min_memory,
        max_memory_mb=max_memory,
        blue_percent=blue,
        green_percent=green,
        budget_monthly_usd=budget,
        budget_alert_fraction=1.0 if threshold is None else threshold / 100.0,
        policies=tuple(policies),
        line=_line(doc),
        positions=positions,
    )


def parse_manifests(path: str, text: str) -> tuple[list[Manifest], list[ManifestError]]:
    """Every document of one file; a YAML syntax error invalidates the whole file."""
    documents, error = load_documents(path, text)
    if error is not None:
        return [], [error]
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
    root: Path, globs: Iterable[str] = DEFAULT_GLOBS, exclude: Iterable[str] = (DEFAULT_POLICY_FILE,)
) -> ManifestSet:
    """All manifests under ``root`` (``.git`` and ``exclude`` paths skipped), sorted by path
    so that results, and the error log, are reproducible. A second manifest of the same
    ``namespace/name`` is an error; the first one stands."""
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
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            result.errors.append(ManifestError(relative, 1, f"not UTF-8 text (byte {exc.start})"))
            continue
        manifests, errors = parse_manifests(relative, text)
        result.errors.extend(errors)
        for manifest in manifests:
            first = seen.setdefault(manifest.key, manifest)
            if first is not manifest:
                result.errors.append(
                    ManifestError(
                        relative,
                        manifest.line,
                        f"deployment {manifest.key} is already declared in {first.path}:{first.line}",
                    )
                )
            else:
                result.manifests.append(manifest)
    return result


def valid_manifests(root: Path) -> list[Manifest]:
    """The valid manifests under ``root`` for readers that use what they can (enrichment,
    budgets): each invalid one is logged as a warning and left out, and ``obsloop feedback
    check`` lists them all."""
    found = load_manifests(root)
    for error in found.errors:
        log.warning("manifest ignored: %s", error)
    return found.manifests
