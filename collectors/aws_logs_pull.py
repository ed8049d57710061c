"""Pull Lambda log groups with CloudWatch Logs ``FilterLogEvents``, checkpointed per group.

The pull works in sweeps over a closed time window ``[start, end]`` where ``end`` trails
the wall clock by ``settle`` (events are stamped by the producer and ingested a little
later). Within a sweep the ``nextToken`` is checkpointed after every accepted page, so a
restart resumes on the very next page: no gap, no duplicate. The next sweep starts
``overlap`` before the previous end, to catch events ingested late, and the ids of the
events already seen in that overlap are kept in the checkpoint to drop them again.
Backfills are cut into ``window`` sized sweeps so the checkpoint stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from obsloop.collectors import selfmetrics
from obsloop.collectors.aws_lambda_logs import LambdaLogDecoder, LambdaSource
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.cursor import Batch, CursorPuller, Page
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.forward import Submit
from obsloop.collectors.normalize import Invocation

log = logging.getLogger(__name__)

COLLECTOR = "aws.logs"
_RETRYABLE_CODES = {
    "ThrottlingException": "throttled",
    "TooManyRequestsException": "throttled",
    "RequestLimitExceeded": "throttled",
    "ServiceUnavailableException": "5xx",
    "InternalFailure": "5xx",
}


def classify_aws_error(exc: Exception) -> str | None:
    """Retryable botocore errors: throttling, 5xx and dropped connections."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _RETRYABLE_CODES:
            return _RETRYABLE_CODES[code]
        return "5xx" if status >= 500 else None
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return "connection"
    return None


@dataclass
class SweepState:
    start: int
    end: int | None = None
    token: str | None = None
    seen: dict[str, int] | None = None

    @classmethod
    def load(cls, value: dict | None, initial_start: int) -> SweepState:
        if value is None:
            return cls(start=initial_start, seen={})
        # a copy: the page read from it is not accepted yet, the checkpoint must not change
        return cls(value["start"], value.get("end"), value.get("token"), dict(value.get("seen") or {}))

    def dump(self) -> dict:
        return {"start": self.start, "end": self.end, "token": self.token, "seen": self.seen}


class CloudWatchLogsPuller(CursorPuller):
    collector = COLLECTOR

    def __init__(
        self,
        client,
        log_groups: list[str],
        checkpoints: CheckpointStore,
        submit: Submit,
        enrich: Callable[[Invocation], Invocation],
        *,
        region: str | None,
        account_id: str | None = None,
        initial_start_ms: int,
        settle_ms: int = 30_000,
        overlap_ms: int = 120_000,
        window_ms: int = 3_600_000,
        page_limit: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        discover: Callable[[], list[str]] | None = None,
    ) -> None:
        """``discover`` (:meth:`LogGroupDiscovery.groups
        <obsloop.collectors.aws_log_groups.LogGroupDiscovery.groups>`) replaces
        ``log_groups`` at every poll."""
        super().__init__(checkpoints, submit, sleep=sleep, clock=clock)
        self.client = client
        self.log_groups = log_groups
        self.discover = discover
        self.decoder = LambdaLogDecoder(enrich, COLLECTOR)
        self.region = region
        self.account_id = account_id
        self.initial_start_ms = initial_start_ms
        self.settle_ms = settle_ms
        self.overlap_ms = overlap_ms
        self.window_ms = window_ms
        self.page_limit = page_limit
        self._horizon = 0
        """``now - settle`` when the current window's sweep began, in ms."""

    def progress(self) -> tuple[float, float]:
        """(done, total) milliseconds of the backfill across groups, for a progress bar."""
        now = self.clock() * 1000
        done = total = 0.0
        for group in self.log_groups:
            state = SweepState.load(self.checkpoints.get(group), self.initial_start_ms)
            total += max(0.0, now - self.initial_start_ms)
            done += max(0, state.start - self.initial_start_ms)
        return done, total

    def classify(self, exc: Exception) -> str | None:
        return classify_aws_error(exc)

    def sources(self) -> list[str]:
        """The groups; with ``discover``, listed again first (new functions join here)."""
        if self.discover is not None:
            self.log_groups = self.discover()
        return self.log_groups

    def catch_up(self, group: str) -> int:
        """Catch ``group`` up to ``now - settle``, window by window; a discovered group
        deleted since is skipped."""
        try:
            return super().catch_up(group)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if self.discover is None or code != "ResourceNotFoundException":
                raise
            log.info("log group %s was deleted since it was discovered", group)
            return 0

    def begin(self, group: str) -> None:
        self._horizon = int(self.clock() * 1000) - self.settle_ms

    def next_page(self, group: str, saved: dict | None) -> Page | None:
        """The next page of the current window, opening the next window when none is open;
        the ids seen in the overlap the next window re-reads are kept to drop them there."""
        state = SweepState.load(saved, self.initial_start_ms)
        if state.end is None:
            self.begin(group)
            if state.start > self._horizon:
                return None
            state.end = min(self._horizon, state.start + self.window_ms)
        assert state.seen is not None
        page = self._fetch(group, state)
        fresh = [e for e in page.get("events", []) if e["eventId"] not in state.seen]
        batch = Batch("logs", *self._encode(group, fresh)) if fresh else None
        next_start = state.end + 1 - self.overlap_ms
        for event in fresh:
            if event["timestamp"] >= next_start:
                state.seen[event["eventId"]] = event["timestamp"]
        state.token = page.get("nextToken")
        if state.token is not None:
            return Page(state.dump(), batch, more=True)
        end = state.end
        state.seen = {k: ts for k, ts in state.seen.items() if ts >= next_start}
        state.start, state.end = max(state.start, next_start), None
        return Page(state.dump(), batch, more=end < self._horizon, newest=end / 1000)

    def _fetch(self, group: str, state: SweepState) -> dict:
        kwargs = {"logGroupName": group, "startTime": state.start, "endTime": state.end,
                  "limit": self.page_limit}
        if state.token:
            kwargs["nextToken"] = state.token
        try:
            return self.retry(lambda: self.client.filter_log_events(**kwargs))
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if not state.token or code != "InvalidParameterException":
                raise
            # a token older than 24 h expires: restart the window; the overlap ids still
            # drop repeats there, earlier events of this window may be sent twice
            log.warning("nextToken of %s rejected, restarting its window", group)
            state.token = None
            return self._fetch(group, state)

    def _encode(self, group: str, events: list[dict]) -> tuple[bytes, int]:
        builder = LogsBuilder()
        by_stream: dict[str, list[tuple[int, str]]] = {}
        for event in events:
            by_stream.setdefault(event.get("logStreamName", ""), []).append(
                (event["timestamp"], event["message"])
            )
        for stream, lines in by_stream.items():
            source = LambdaSource.from_log_stream(group, stream, self.account_id, self.region)
            self.decoder.add_cloudwatch_events(builder, source, lines)
        if self.decoder.malformed:
            selfmetrics.MALFORMED.labels(COLLECTOR).inc(self.decoder.malformed)
            self.decoder.malformed = 0
        return builder.serialize(), builder.count


def lambda_tag_lookup(lambda_client) -> Callable[[Invocation], dict[str, str]]:
    """Tags of a function (for the cost-center fallback), asked once per function."""

    def lookup(invocation: Invocation) -> dict[str, str]:
        try:
            return lambda_client.get_function(FunctionName=invocation.function).get("Tags") or {}
        except Exception:  # noqa: BLE001 - no tags is a valid answer; the error is logged
            log.warning("cannot read tags of %s", invocation.function, exc_info=True)
            return {}

    return lookup
