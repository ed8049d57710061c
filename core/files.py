"""Private files: what obsloop writes under its data directory is readable by its user only.

WAL segments hold every request as received (prompts, completions, user ids), and the data
directory holds checkpoints and the running server's endpoints, so directories are created
0700 and files 0600 whatever the process umask is (``mkdir``/``open`` modes are only ever
narrowed by the umask, so each creation is followed by an explicit ``chmod``). Directories
that already exist are left as they are: a mounted volume's owner decides its mode.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SERVICE_UMASK = 0o077
"""The umask of the long-running commands, for files that libraries (the embedded ClickHouse,
git) create under the data directory with their own modes."""


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 directories; returns ``path``."""
    path = Path(path)
    missing = []
    node = path
    while not node.exists():
        missing.append(node)
        node = node.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created concurrently (another thread): not ours to chmod
            continue
        os.chmod(directory, DIR_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with ``O_CREAT`` that leaves a created file 0600."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` (truncating it) as a 0600 file."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def private_umask() -> int:
    """Make files created from now on by this process (and its libraries) private;
    returns the previous umask."""
    return os.umask(SERVICE_UMASK)
