"""Run the examples in obsloop's docstrings (river-style doctests) as tests."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import obsloop


def _modules_with_examples() -> list[str]:
    names = []
    for package in ("obsloop", "obsloop.collectors", "obsloop.pipelines", "obsloop.detectors", "obsloop.feedback"):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, prefix=f"{package}."):
            spec = importlib.util.find_spec(info.name)
            if spec and spec.origin and spec.origin.endswith(".py"):
                with open(spec.origin, encoding="utf-8") as source:
                    if ">>> " in source.read():
                        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_examples_are_found() -> None:
    assert obsloop.__name__ == "obsloop"
    assert "obsloop.detectors.series" in _modules_with_examples()
