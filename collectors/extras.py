"""Cloud SDKs are optional extras: import them only when a collector needs one.

``obsloop --help`` and the OTLP receivers must work without boto3, google-cloud-logging or
azure-monitor-query installed; a collector that needs one fails with the exact command
that installs it instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    pass


def require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"the {extra} collector needs {module}: pip install 'obsloop[{extra}]'"
        ) from exc
