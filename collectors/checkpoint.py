"""Durable per-source checkpoints: one small JSON file per collector, replaced atomically.

A checkpoint is written only after the ingest path accepted the records it covers, so a
crash replays at most the last page (at-least-once) and never skips one. The write goes
to a temporary file, is fsynced and renamed over the old one: a crash mid-write leaves
the previous checkpoint intact rather than a truncated file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from obsloop.core.files import private_dir


class CheckpointStore:
    """Checkpoints of one collector, keyed by source (log group, project, workspace…)."""

    def __init__(self, directory: Path, collector: str) -> None:
        self.path = Path(directory) / f"{collector}.json"
        try:
            self._state: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._state = {}

    def get(self, key: str) -> Any:
        return self._state.get(key)

    def put(self, key: str, value: Any) -> None:
        self._state[key] = value
        private_dir(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self._state, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
