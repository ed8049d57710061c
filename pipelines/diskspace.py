"""Free disk space as a limit of the write-ahead log.

The write-ahead log stops acknowledging while the filesystems it watches (its own, and the
embedded ClickHouse's data directory) are down to a reserve: ClickHouse needs room to insert
a segment (about twice its size) and to merge parts, and a log that took that room would
hold acknowledged data that can never be stored. ``statvfs`` is asked at most every
``refresh_seconds`` (the check runs on every request); bytes the log writes in between are
subtracted from the last answer, so its estimate never lags behind its own writes.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from pathlib import Path

from obsloop.pipelines.backpressure import DiskFull

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _existing(directory: Path) -> Path:
    """``directory`` or its nearest existing parent (ClickHouse creates its own on first use)."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return Path("/")


class FreeSpace:
    """The least free space among some directories' filesystems, against a reserve.

    Once below it, a request is refused until the reserve plus a tenth of it is free again,
    so acknowledging resumes in a stretch rather than one request at a time.
    """

    def __init__(self, directories: Iterable[Path], reserve_bytes: int, *, refresh_seconds: float = 0.5) -> None:
        self.reserve_bytes = reserve_bytes
        self._directories = tuple(directories)
        self._refresh_seconds = refresh_seconds
        self._checked_at = -refresh_seconds
        self._free = 0
        self._where = self._directories[0]
        self.low = False
        """Below the reserve at the last check (or out of space at the last write)."""

    def free_bytes(self) -> int:
        """Free bytes on the fullest watched filesystem (cached, see the module docstring)."""
        now = time.monotonic()
        if now - self._checked_at >= self._refresh_seconds:
            answers = []
            for directory in self._directories:
                stat = os.statvfs(_existing(directory))
                answers.append((stat.f_bavail * stat.f_frsize, directory))
            self._free, self._where = min(answers)
            self._checked_at = now
        return self._free

    def refusal(self, size: int) -> DiskFull | None:
        """Why ``size`` more bytes may not be written now, or ``None``."""
        free = self.free_bytes()
        needed = self.reserve_bytes + size + (self.reserve_bytes // 10 if self.low else 0)
        self.low = free < needed
        if not self.low:
            return None
        return DiskFull(f"{free} bytes free on the filesystem of {self._where}, at the reserve of "
                        f"{self.reserve_bytes} kept for ClickHouse's inserts and merges (wal.min_free_bytes)")

    def wrote(self, size: int) -> None:
        self._free -= size

    def exhausted(self, error: OSError) -> DiskFull:
        """A write ran out of space (the reserve was too small, or another process filled the
        disk): refuse from now on, until the next check finds room again."""
        self._checked_at = -self._refresh_seconds
        self.low = True
        return DiskFull(f"{error.strerror} writing {error.filename}: {self.free_bytes()} bytes free "
                        f"on the filesystem of {self._where}")
