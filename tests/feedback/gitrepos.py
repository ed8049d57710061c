"""Real Git repositories for tests: a bare remote seeded with manifests, and clones."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_remote(root: Path, files: dict[str, str]) -> Path:
    """A bare repository whose ``main`` holds ``files``; returns its path."""
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = clone(remote, root / "seed")
    for name, text in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "initial manifests")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return remote


def clone(remote: Path, path: Path) -> Path:
    git(path.parent, "clone", "-q", str(remote), str(path))
    return path


def human_commit(remote: Path, work: Path, name: str, text: str, message: str) -> str:
    """Somebody else pushes to ``main`` (a clone at ``work``, created if needed)."""
    if not work.exists():
        clone(remote, work)
    git(work, "pull", "-q", "--rebase", "origin", "main")
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    git(work, "add", name)
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


def show(remote: Path, ref: str, path: str) -> str:
    return git(remote, "show", f"{ref}:{path}")


def log(remote: Path, ref: str = "main") -> list[str]:
    return git(remote, "log", "--format=%s", ref).splitlines()
