"""A small tmpfs to fill up: mounted for a test or a benchmark, and the filler that fills it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CannotMount(RuntimeError):
    """mount(2) is not allowed here (not root, or in a container without the capability)."""


@contextmanager
def mounted_tmpfs(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """``mountpoint`` as a tmpfs of ``size_bytes``, unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise CannotMount(result.stderr.strip() or f"mount exited with {result.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path, leave_bytes: int) -> Path:
    """A filler file taking all but ``leave_bytes`` of the filesystem (all of it with 0)."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "ab") as file:
        while (room := free_bytes(directory) - leave_bytes) > 0:
            try:
                file.write(chunk[: min(room, len(chunk))])
                file.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler
