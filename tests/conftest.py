from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from obsloop_process import ObsloopProcess  # noqa: E402


@pytest.fixture
def obsloop_factory(tmp_path: Path) -> Iterator:
    """Start ``obsloop serve`` processes (config sections as keyword arguments)."""
    started: list[ObsloopProcess] = []

    def start(name: str = "obsloop", **config) -> ObsloopProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        process = ObsloopProcess(workdir, **config).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def obsloop(obsloop_factory) -> ObsloopProcess:
    """A running ``obsloop serve`` on the embedded engine, free loopback ports."""
    return obsloop_factory()
