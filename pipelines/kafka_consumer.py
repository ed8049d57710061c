"""Consumer groups over the OTLP topics: ingest workers and detector workers.

An ingest worker hands each consumed batch of one partition to
``insert(signal, payloads, dedup_token)`` and commits the offset only after it returned:
at-least-once delivery, made exactly-once in ClickHouse by the deduplication token. A
replay must cut the same batch, so the batch's end is recorded first as the offset of a
companion group ``<group_id>.intent`` (docs/design/kafka-batch-intent.md).

Detector workers own series by partition; :class:`GroupConsumer` reports ownership changes
through ``on_assign`` / ``on_revoke`` (called inside ``poll``, between batches) with
(signal, partition) pairs, and ``on_lost`` on eviction, when the partitions may already be
another member's, so state is dropped rather than checkpointed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from obsloop.core.retry import Retry
from obsloop.pipelines.kafka_config import SIGNALS, KafkaConfig, Signal, client_kwargs

log = logging.getLogger(__name__)

InsertBatch = Callable[[str, list[bytes], str], None]
"""``insert(signal, payloads, dedup_token)``: store the batch or raise."""


class OwnedPartition(NamedTuple):
    signal: Signal
    partition: int


OwnershipHook = Callable[[list[OwnedPartition]], None]


def dedup_token(
    topic: str, partition: int, first_offset: int, last_offset: int, payloads: list[bytes]
) -> str:
    """The insert deduplication token of the batch ``[first_offset, last_offset]``.

    The offsets identify the batch; the digest of its payloads keeps the token from
    matching an older batch at the same offsets once a topic was deleted and created again
    (or a broker lost its log, as tansu with memory storage does on restart): ClickHouse
    would otherwise drop the new batch as a duplicate. A replay cuts the same batch, so it
    gets the same digest.

    >>> dedup_token("otlp_traces", 3, 100, 101, [b"a", b"b"])
    'otlp_traces:3:100-101:cfb9cbd0aeeea44e'
    """
    digest = hashlib.blake2b(digest_size=8)
    for payload in payloads:
        digest.update(len(payload).to_bytes(8, "little"))
        digest.update(payload)
    return f"{topic}:{partition}:{first_offset}-{last_offset}:{digest.hexdigest()}"


@dataclass
class PollOutcome:
    """What one :meth:`IngestConsumer.poll_once` did."""

    inserted_batches: int = 0
    inserted_records: int = 0
    failed_batches: int = 0
    error: Exception | None = None
    """Why the last failed batch failed."""


class GroupConsumer:
    """A consumer-group member over the OTLP topics of ``signals`` with manual commits.

    Detector workers poll ``consumer`` (the kafka-python consumer) themselves and use the
    hooks to load a partition's model state when it is assigned and checkpoint it when it
    is revoked; :class:`IngestConsumer` adds the batch / insert / commit loop.
    """

    def __init__(
        self,
        config: KafkaConfig,
        group_id: str,
        *,
        signals: Iterable[Signal] = SIGNALS,
        on_assign: OwnershipHook | None = None,
        on_revoke: OwnershipHook | None = None,
        on_lost: OwnershipHook | None = None,
        assignors: tuple[type, ...] | None = None,
    ) -> None:
        """``assignors``: kafka-python's ``partition_assignment_strategy`` (default: its own,
        eager range / round robin, under which every rebalance revokes every partition)."""
        self._config = config
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        strategy = {} if assignors is None else {"partition_assignment_strategy": assignors}
        self.consumer = KafkaConsumer(
            **client_kwargs(config),
            **strategy,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            max_poll_records=config.max_poll_records,
        )
        self.consumer.subscribe(
            [config.topic(signal) for signal in signals], listener=_Listener(self)
        )

    def close(self) -> None:
        """Leave the group at once (its partitions move without waiting for a timeout)."""
        self.consumer.close(autocommit=False)

    def _owned(self, partitions: Iterable[TopicPartition]) -> list[OwnedPartition]:
        return sorted(
            OwnedPartition(self._config.signal_of(tp.topic), tp.partition) for tp in partitions
        )

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        if self._on_assign is not None:
            self._on_assign(self._owned(partitions))

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        if self._on_revoke is not None:
            self._on_revoke(self._owned(partitions))

    def _lost(self, partitions: set[TopicPartition]) -> None:
        if self._on_lost is None:
            self._revoked(partitions)
        else:
            self._on_lost(self._owned(partitions))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: GroupConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner._revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._owner._lost(set(lost))


class IngestConsumer(GroupConsumer):
    """An ingest worker: batches per partition to ``insert``, commit after it returned."""

    def __init__(
        self,
        config: KafkaConfig,
        group_id: str,
        insert: InsertBatch,
        *,
        signals: Iterable[Signal] = SIGNALS,
        on_assign: OwnershipHook | None = None,
        on_revoke: OwnershipHook | None = None,
    ) -> None:
        self._insert = insert
        # Partitions whose intent has not been read since they were assigned, and the last
        # offset of a batch that must be replayed exactly, with the records gathered so far.
        self._unchecked: set[TopicPartition] = set()
        self._replay_last: dict[TopicPartition, int] = {}
        self._replay_records: dict[TopicPartition, list[ConsumerRecord]] = {}
        self._intent = KafkaConsumer(
            **client_kwargs(config), group_id=f"{group_id}.intent", enable_auto_commit=False
        )
        super().__init__(
            config, group_id, signals=signals, on_assign=on_assign, on_revoke=on_revoke
        )

    def poll_once(self, timeout_ms: int = 1000) -> PollOutcome:
        """Poll once, insert each partition's batch, commit what was inserted.

        A failed batch (the intent not recorded, the callable raised, or the commit
        failed) rewinds its partition, so the next poll delivers the same batch with the same
        token; the failure is counted and returned (logged at debug level only: :meth:`run`
        logs when batches start and stop failing), and the caller backs off.
        """
        outcome = PollOutcome()
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        for tp, records in polled.items():
            batch = self._exact_batch(tp, records)
            if batch is None:
                continue
            first, last = batch[0].offset, batch[-1].offset
            payloads = [record.value for record in batch]
            token = dedup_token(tp.topic, tp.partition, first, last, payloads)
            try:
                self._intent.commit({tp: OffsetAndMetadata(last + 1, "", -1)})
                self._insert(self._config.signal_of(tp.topic), payloads, token)
                self.consumer.commit({tp: OffsetAndMetadata(last + 1, "", -1)})
            except Exception as exc:
                # Also after a failed commit: inserting the same batch again is harmless
                # (same token), skipping it is not.
                log.debug("batch %s not committed; it will be retried", token, exc_info=True)
                self.consumer.seek(tp, first)
                self._replay_last[tp] = last
                outcome.failed_batches += 1
                outcome.error = exc
                continue
            outcome.inserted_batches += 1
            outcome.inserted_records += len(batch)
        return outcome

    def run(
        self, stop: threading.Event, *, retry_backoff_s: float = 1.0, max_backoff_s: float = 30.0,
        between_polls: Callable[[], None] | None = None,
    ) -> None:
        """Poll until ``stop`` is set, backing off after a broker error, and after failed
        batches for ``retry_backoff_s`` doubling up to ``max_backoff_s`` while they keep
        failing (ClickHouse down), logged when they start and stop failing; call
        ``between_polls`` after each poll.

        The backoff stays below half of ``max_poll_interval_ms``: no poll happens while
        waiting, and a longer wait would get the member evicted from the group.
        """
        longest = max(retry_backoff_s, min(max_backoff_s, self._config.max_poll_interval_ms / 2000))
        batches = Retry(log, "consumed batches not stored; replaying them with backoff",
                        "consumed batches stored again", first_delay=retry_backoff_s, max_delay=longest)
        while not stop.is_set():
            try:
                outcome = self.poll_once()
            except KafkaError:
                log.exception("Kafka error while consuming; retrying")
                stop.wait(retry_backoff_s)
                continue
            if between_polls is not None:
                between_polls()
            if outcome.error is not None:
                stop.wait(batches.failed(outcome.error))
            elif outcome.inserted_batches:
                batches.succeeded()

    def close(self) -> None:
        super().close()
        self._intent.close(autocommit=False)

    def _exact_batch(
        self, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> list[ConsumerRecord] | None:
        """The batch to insert from ``records``, or None while a replay is incomplete."""
        if tp in self._unchecked:
            self._unchecked.discard(tp)
            intended_end = self._intent.committed(tp)
            if intended_end is not None and intended_end > records[0].offset:
                self._replay_last[tp] = intended_end - 1
        last = self._replay_last.get(tp)
        if last is None:
            return records
        gathered = self._replay_records.pop(tp, []) + [r for r in records if r.offset <= last]
        if not gathered or gathered[-1].offset < last:
            self._replay_records[tp] = gathered
            return None
        if records[-1].offset > last:
            self.consumer.seek(tp, last + 1)
        del self._replay_last[tp]
        return gathered

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        self._unchecked |= partitions
        super()._assigned(partitions)

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._unchecked.discard(tp)
            self._replay_last.pop(tp, None)
            self._replay_records.pop(tp, None)
        super()._revoked(partitions)
