"""mypy over the ``obsloop`` and ``obsloop-instrument`` distributions by their installed
module names (``make lint``).

pyproject's ``package-dir`` maps folders to packages (``core/`` is ``obsloop.core``), which
mypy cannot follow: it finds a module by its path, and the editable install resolves the
mapping with an import hook mypy does not run. So this lays out a tree of links shaped like
the installed package (``.venv/typecheck/obsloop/core`` -> ``core/``, rebuilt each run, so a
new module is seen at once), runs mypy there with pyproject's ``[tool.mypy]``, and prints its
findings under the repository's own paths. Arguments are passed on to mypy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".venv" / "typecheck"
INSTRUMENT = "obsloop_instrument"


def package_dirs() -> dict[str, str]:
    """Package name -> folder, from pyproject (``{"obsloop.core": "core", ...}``), and the
    instrumentation library's own package."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {**pyproject["tool"]["setuptools"]["package-dir"], INSTRUMENT: f"instrument/{INSTRUMENT}"}


def build_tree(mapping: dict[str, str]) -> dict[str, str]:
    """Link every mapped folder into place under TREE; return tree path prefix -> folder."""
    shutil.rmtree(TREE, ignore_errors=True)
    prefixes = {}
    for package, folder in sorted(mapping.items()):
        place = TREE.joinpath(*package.split("."))
        prefixes[place.relative_to(TREE).as_posix() + "/"] = folder + "/"
        place.mkdir(parents=True, exist_ok=True)
        for entry in (ROOT / folder).iterdir():
            target = place / entry.name
            if not target.exists() and entry.name != "__pycache__":
                target.symlink_to(entry)
    return prefixes


def repository_path(line: str, prefixes: dict[str, str]) -> str:
    """``obsloop/core/files.py:3: error`` -> ``core/files.py:3: error`` (longest prefix wins)."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if line.startswith(prefix):
            return prefixes[prefix] + line[len(prefix) :]
    return line


def main(argv: list[str]) -> int:
    prefixes = build_tree(package_dirs())
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(ROOT / ".mypy_cache"), "-p", "obsloop", "-p", INSTRUMENT, *argv]
    env = {**os.environ, "MYPY_FORCE_COLOR": "0"}
    done = subprocess.run(command, cwd=TREE, env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        print(repository_path(line, prefixes))
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
