"""Which CloudWatch log groups the AWS collector pulls: the configured list, or every group
under a prefix (``/aws/lambda/`` by default), found with ``DescribeLogGroups``.

Discovery runs at every poll, so a function deployed after obsloop started is collected from
its next poll on, as the OpenTelemetry Collector's CloudWatch receiver does with
``autodiscover``. ``limit`` bounds the groups pulled (the first ones in name order, after
``exclude``); a fleet larger than the limit is reported once, not silently cut.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence

from obsloop.collectors.aws_logs_pull import COLLECTOR, classify_aws_error
from obsloop.collectors.retry import with_backoff

log = logging.getLogger(__name__)

_PAGE = 50
"""DescribeLogGroups' largest page."""


class LogGroupDiscovery:
    def __init__(
        self,
        client,
        prefix: str = "/aws/lambda/",
        limit: int = 1000,
        exclude: Sequence[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``exclude``: group names or shell patterns (``/aws/lambda/*-canary``) to skip."""
        self.client = client
        self.prefix = prefix
        self.limit = limit
        self.exclude = tuple(exclude)
        self.sleep = sleep
        self._warned_limit = False

    def _excluded(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, pattern) for pattern in self.exclude)

    def groups(self) -> list[str]:
        """The groups to pull now, in name order."""
        found: list[str] = []
        kwargs: dict = {"limit": _PAGE}
        if self.prefix:
            kwargs["logGroupNamePrefix"] = self.prefix
        while True:
            page = with_backoff(lambda: self.client.describe_log_groups(**kwargs), classify_aws_error,  # noqa: B023 - called in this iteration
                                collector=COLLECTOR, sleep=self.sleep)
            for entry in page.get("logGroups", []):
                if self._excluded(entry["logGroupName"]):
                    continue
                if len(found) == self.limit:
                    if not self._warned_limit:
                        log.warning("more than %d log groups under %r: the others are not collected "
                                    "(raise collectors.aws.log_group_limit or exclude some)", self.limit, self.prefix)
                        self._warned_limit = True
                    return found
                found.append(entry["logGroupName"])
            if not page.get("nextToken"):
                return found
            kwargs["nextToken"] = page["nextToken"]
