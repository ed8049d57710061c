"""A real Alertmanager (Debian's ``prometheus-alertmanager``, installed when missing) on
127.0.0.1 with a free port, a temporary configuration and storage, and clustering off."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from debian_tools import Daemon, free_port, program


class Alertmanager:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.url = ""
        self._daemon: Daemon | None = None

    def start(self) -> Alertmanager:
        binary = program("alertmanager")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._daemon = Daemon(
            [binary, f"--config.file={config_file}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            f"{self.url}/-/ready", self.workdir / "alertmanager.log")
        return self

    def stop(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None

    def api(self, path: str, body: Any = None) -> Any:
        """GET (or POST ``body`` to) ``/api/v2/<path>``; the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/api/v2/{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read() or b"null")
