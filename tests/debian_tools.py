"""The real Prometheus tools the suite checks obsloop against, installed from Debian when missing.

``alertmanager`` comes from ``prometheus-alertmanager``, ``prometheus`` and ``promtool``
from ``prometheus``.
The suite runs as root on a Debian machine (CI included), so a missing program is installed
with apt-get on first use rather than skipped; a test is skipped only when apt itself is
impossible (not root, no apt-get), with that reason. ``make test-tools`` does the same ahead
of time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

#: program -> (Debian package, the program's path once installed)
PROGRAMS = {
    "alertmanager": ("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager"),
    "promtool": ("prometheus", "/usr/bin/promtool"),
    "prometheus": ("prometheus", "/usr/bin/prometheus"),
}
_lock = threading.Lock()


def _apt_get(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    # Another apt on the machine holds the lock for a while; wait for it instead of failing.
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *arguments]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=1200)


def install(package: str) -> str | None:
    """Install ``package`` with apt-get; None when done, else why it could not be."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this machine"
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    result = _apt_get("install", "-y", "--no-install-recommends", package)
    if result.returncode != 0:  # a fresh machine has no package lists yet
        _apt_get("update")
        result = _apt_get("install", "-y", "--no-install-recommends", package)
    if result.returncode != 0:
        return f"apt-get install {package} failed: {result.stderr.strip()[-500:]}"
    return None


def program(name: str) -> str:
    """The path of a real Prometheus program, installing its Debian package when missing."""
    package, path = PROGRAMS[name]
    with _lock:
        found = shutil.which(path) or shutil.which(name)
        if found is None:
            reason = install(package)
            if reason:
                pytest.skip(f"{name} ({package}) is not installed and cannot be: {reason}")
            found = shutil.which(path) or shutil.which(name)
            assert found, f"{package} installed but {path} is missing"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Daemon:
    """One of these programs running on 127.0.0.1 until :meth:`stop`; its output in ``log``."""

    def __init__(self, command: list[str], ready_url: str, log: Path, timeout: float = 30.0) -> None:
        self.log = log
        with log.open("wb") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{command[0]} not ready at {ready_url}:\n{log.read_text()}")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":  # ``make test-tools``
    for tool, (debian_package, _) in PROGRAMS.items():
        if shutil.which(PROGRAMS[tool][1]) is None and (problem := install(debian_package)):
            print(f"{tool}: not installed, its tests will be skipped ({problem})")
        else:
            print(f"{tool}: {shutil.which(PROGRAMS[tool][1])}")
