"""Opening the pull / merge request for a pushed change branch (GitHub and GitLab REST APIs).

Opening is idempotent, as the commit is: a pull request that already exists for the branch
(GitHub 422, GitLab 409) counts as opened, so a retry after a crash between the push and the
API call completes the job instead of failing it.
"""

from __future__ import annotations

import json
from typing import Protocol
from urllib.parse import quote

from pydantic import SecretStr

from obsloop.feedback.delivery import DeliveryFailed, Request, Sender, bearer


class Forge(Protocol):
    async def open(self, branch: str, base: str, title: str, body: str) -> str:
        """Returns the pull / merge request's web URL (or the branch when it existed)."""
        ...


def github_headers(token: SecretStr) -> dict[str, str]:
    """What GitHub's REST API asks every call to send."""
    return {**bearer(token), "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHub:
    def __init__(
        self,
        sender: Sender,
        repository: str,
        token: SecretStr,
        api_url: str = "https://api.github.com",
    ) -> None:
        self.sender, self.repository, self._token = sender, repository, token
        self.api_url = api_url.rstrip("/")

    async def open(self, branch: str, base: str, title: str, body: str) -> str:
        payload = {"title": title, "head": branch, "base": base, "body": body}
        request = Request.json("github", f"{self.api_url}/repos/{self.repository}/pulls", payload,
                               github_headers(self._token), kind="pull_request")
        try:
            reply = await self.sender.send(request, dead_letter=False)
        except DeliveryFailed as exc:
            if exc.status == 422:  # "A pull request already exists for ..."
                return f"{self.repository}:{branch}"
            raise
        return json.loads(reply.text)["html_url"]


class GitLab:
    def __init__(
        self,
        sender: Sender,
        project: str,
        token: SecretStr,
        api_url: str = "https://gitlab.com/api/v4",
    ) -> None:
        self.sender, self.project, self._token = sender, project, token
        self.api_url = api_url.rstrip("/")

    async def open(self, branch: str, base: str, title: str, body: str) -> str:
        payload = {
            "source_branch": branch,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        request = Request.json("gitlab", f"{self.api_url}/projects/{quote(self.project, safe='')}/merge_requests",
                               payload, {"PRIVATE-TOKEN": self._token.get_secret_value()}, kind="pull_request")
        try:
            reply = await self.sender.send(request, dead_letter=False)
        except DeliveryFailed as exc:
            if (
                exc.status == 409
            ):  # "Another open merge request already exists for this source branch"
                return f"{self.project}:{branch}"
            raise
        return json.loads(reply.text)["web_url"]
