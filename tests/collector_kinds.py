"""Kinds registered by a test are gone after it: the registry's tables as they were."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from obsloop.collectors import pricing, registry
from obsloop.core import manifests


@contextlib.contextmanager
def registrations_undone() -> Iterator[None]:
    tables = (registry._loaded, pricing.FORMULAS, manifests.PLATFORM_ALIASES)
    saved = [dict(table) for table in tables]
    try:
        yield
    finally:
        for table, before in zip(tables, saved, strict=True):
            table.clear()
            table.update(before)
