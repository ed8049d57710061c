"""Committing changes to the GitOps repository with the real ``git`` CLI.

obsloop keeps its own clone (``checkout``) of the remote, a local path or a URL, and never
works in a human's working tree, so it may reset that clone freely. A change is an ``edit``
function run on a fresh checkout of the remote branch; this is what makes the two hard cases
simple:

- the remote moved meanwhile: the push is rejected, the clone fetches and rebases the commit
  onto the new tip and pushes again; if the rebase conflicts (somebody edited the same
  lines), the edit runs again on the new tip, where the guardrail values are re-read;
- idempotency: every commit carries an ``Obsloop-Detection: <id>`` trailer, and the remote
  history (not local memory) is asked for it before each attempt, so a retry, a restart or a
  second obsloop replica never commits one detection twice, and an edit that changes nothing
  commits nothing.

Credentials for an HTTPS remote go to git as an ``http.extraHeader`` through the
environment (``GIT_CONFIG_*``), never on a command line, in a URL or in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

log = logging.getLogger(__name__)

TRAILER = "Obsloop-Detection"
SKIP_CI = "[skip ci]"
"""Honoured by GitHub Actions, GitLab CI, Azure Pipelines and others."""

Mode = Literal["push", "pull_request"]
Status = Literal["committed", "noop", "duplicate"]
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


class GitError(Exception):
    """A git command failed; the message has URL credentials removed."""


MAX_DETECTION_ID = 256


def valid_detection_id(detection_id: str) -> str:
    """``detection_id`` if it can go into a commit trailer and a ``git log`` search as is.

    Ids embed data (function and model names), so one with a line break could forge other
    trailers or message lines, an empty one would match every obsloop commit, and one that
    starts with ``-`` reads as an option wherever it stands alone on a command line."""
    if (
        not detection_id
        or len(detection_id) > MAX_DETECTION_ID
        or not detection_id.isprintable()
        or detection_id.startswith("-")
        or detection_id != detection_id.strip()
    ):
        raise GitError(f"detection id {detection_id[:80]!r} cannot be used in git: it must be "
                         f"1-{MAX_DETECTION_ID} printable characters, not starting with '-'")
    return detection_id


@dataclass(frozen=True)
class Author:
    name: str = "obsloop"
    email: str = "obsloop@localhost"


@dataclass(frozen=True)
class Change:
    detection_id: str
    deployment: str
    message: str
    """Subject line, blank line, body; the trailer and skip-CI marker are added here."""
    edit: Callable[[Path], list[str]]
    """Edits files under the checkout; returns the changed paths (empty: nothing to do)."""


@dataclass(frozen=True)
class Result:
    status: Status
    branch: str
    sha: str = ""
    attempts: int = 0


class GitOpsRepo:
    def __init__(
        self,
        remote: str,
        checkout: Path,
        branch: str = "main",
        author: Author = Author(),
        mode: Mode = "push",
        skip_ci: bool = False,
        token: SecretStr | None = None,
        token_user: str = "x-access-token",
        max_attempts: int = 5,
    ) -> None:
        self.remote, self.checkout, self.branch = remote, checkout, branch
        self.author, self.mode, self.skip_ci = author, mode, skip_ci
        self.max_attempts = max_attempts
        self._env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        if token is not None:
            basic = base64.b64encode(f"{token_user}:{token.get_secret_value()}".encode()).decode()
            self._env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )

    def _git(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [
            "git",
            "-c",
            f"user.name={self.author.name}",
            "-c",
            f"user.email={self.author.email}",
            "-c",
            "commit.gpgsign=false",
            *args,
        ]
        done = subprocess.run(
            command,
            cwd=self.checkout,
            env=self._env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            stderr = _CREDENTIALS.sub(r"\1***@", done.stderr.strip())
            raise GitError(f"git {args[0]} failed ({done.returncode}): {stderr[-500:]}")
        return done

    def sync(self) -> Path:
        """Clone on first use, then fetch and check out the remote branch's tip."""
        if not (self.checkout / ".git").exists():
            self.checkout.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q")
            self._git("remote", "add", "origin", _CREDENTIALS.sub(r"\1", self.remote))
        self._git("fetch", "-q", "--prune", "origin")
        self._reset(f"origin/{self.branch}")
        return self.checkout

    def _reset(self, ref: str) -> None:
        self._git("checkout", "-q", "--force", "-B", "obsloop-work", ref)
        self._git("clean", "-q", "-fdx")

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").stdout.strip()

    def _find(self, ref: str, detection_id: str) -> str:
        """The commit on ``ref`` that carries this detection's trailer, or ``""``.

        ``--grep`` matches a fixed substring (never a pattern), which would also find the
        trailer of a longer id that starts with this one; the match is confirmed on whole
        message lines."""
        if self._git("rev-parse", "--verify", "-q", ref, check=False).returncode != 0:
            return ""
        trailer = f"{TRAILER}: {valid_detection_id(detection_id)}"
        found = self._git("log", ref, "--fixed-strings", f"--grep={trailer}", "--format=%H%x00%B%x00")
        fields = found.stdout.split("\0")
        for sha, message in zip(fields[0::2], fields[1::2], strict=False):
            if trailer in message.splitlines():
                return sha.strip()
        return ""

    def pull_request_branch(self, change: Change) -> str:
        digest = hashlib.sha256(change.detection_id.encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", change.deployment).strip("-")
        return f"obsloop/{slug}-{digest}"

    def _message(self, change: Change) -> str:
        subject, _, body = change.message.partition("\n")
        if self.skip_ci:
            subject = f"{subject} {SKIP_CI}"
        return f"{subject}\n{body.rstrip()}\n\n{TRAILER}: {change.detection_id}\n"

    def commit(self, change: Change) -> Result:
        """Commit ``change`` and push it to the branch (``push``) or to a branch of its own
        for a pull request (``pull_request``); safe to call again for the same detection."""
        valid_detection_id(change.detection_id)
        target = self.branch if self.mode == "push" else self.pull_request_branch(change)
        for attempt in range(1, self.max_attempts + 1):
            self.sync()
            for ref in {f"origin/{self.branch}", f"origin/{target}"}:
                sha = self._find(ref, change.detection_id)
                if sha:
                    return Result("duplicate", target, sha, attempt)
            changed = change.edit(self.checkout)
            if not changed:
                return Result("noop", target, attempts=attempt)
            self._git("add", "--", *changed)
            if self._git("diff", "--cached", "--quiet", check=False).returncode == 0:
                return Result("noop", target, attempts=attempt)
            self._git("commit", "-q", "-F", "-", input_text=self._message(change))
            if self._push(target):
                return Result("committed", target, self.head(), attempt)
            log.info(
                "push of %s to %s rejected; fetching and rebasing", change.detection_id, target
            )
            self._git("fetch", "-q", "origin")
            if self._find(f"origin/{target}", change.detection_id):
                continue  # somebody pushed this very detection: the next round reports it
            if self._git("rebase", "-q", f"origin/{self.branch}", check=False).returncode == 0:
                if self._push(target):
                    return Result("committed", target, self.head(), attempt)
            else:
                self._git("rebase", "--abort", check=False)
        raise GitError(f"gave up pushing {change.detection_id} after {self.max_attempts} attempts")

    def _push(self, target: str) -> bool:
        done = self._git("push", "-q", "origin", f"HEAD:refs/heads/{target}", check=False)
        if done.returncode == 0:
            return True
        if "rejected" in done.stderr or "fetch first" in done.stderr:
            return False
        stderr = _CREDENTIALS.sub(r"\1***@", done.stderr.strip())
        raise GitError(f"git push failed ({done.returncode}): {stderr[-500:]}")
