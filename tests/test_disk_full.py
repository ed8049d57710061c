"""A full disk costs no acknowledged span: ``obsloop serve`` on a small tmpfs that fills up
answers only 503 / gRPC UNAVAILABLE (which exporters retry), sets nothing aside, and stores
everything it acknowledged once space returns, without a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families
from small_disk import CannotMount, fill, mounted_tmpfs
from span_load import SpanLoad, post_traces, traces_request

from obsloop.pipelines.backpressure import DiskFull
from obsloop.pipelines.wal import WriteAheadLog, iter_messages

TMPFS_BYTES = 64 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (needs root and mount(2), as on the CI machines)."""
    try:
        with mounted_tmpfs(tmp_path / "small-disk", TMPFS_BYTES) as mountpoint:
            yield mountpoint
    except CannotMount as exc:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {exc}")


def stored(server) -> dict[str, int]:
    return server.query("SELECT count() AS n, uniqExact(SpanId) AS distinct_ids FROM otel_traces "
                        "WHERE ServiceName = 'span-load'")[0]


def assert_all_stored_once(server, load: SpanLoad) -> None:
    wait_until(lambda: stored(server)["distinct_ids"] >= len(load.acknowledged),
               f"{len(load.acknowledged)} acknowledged spans stored")
    counts = stored(server)
    assert counts["n"] == counts["distinct_ids"], "a span was stored twice"
    ids = {row["SpanId"] for row in server.query("SELECT SpanId FROM otel_traces WHERE ServiceName = 'span-load'")}
    missing = load.acknowledged - ids
    assert not missing, f"{len(missing)} acknowledged spans lost"


def readiness(server) -> tuple[int, dict]:
    status, body = server.get("/readyz")
    return status, json.loads(body)


def refusal_lines(server) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines()
            if ("refusing requests" in line) or ("export refused" in line)]


def test_disk_at_its_reserve_refuses_with_503_then_stores_everything(obsloop_factory, small_disk) -> None:
    server = obsloop_factory(
        data_dir=str(small_disk / "data"),
        wal={"segment_max_bytes": 1 << 20, "min_free_bytes": 8 << 20},
        detectors={"enabled": False},
    )
    filler = fill(small_disk, leave_bytes=16 << 20)
    load = SpanLoad(lambda: (server.http, server.grpc), threads=3).start()
    try:
        not_ready = wait_until(lambda: (r := readiness(server))[0] == 503 and r, "/readyz turning 503")
        wait_until(lambda: load.count("http", "503") and load.count("grpc", "UNAVAILABLE"), "refusals on both")
        time.sleep(2)  # refusing for a while: a storm of 503s
    finally:
        load.stop()
    assert not_ready[1]["pipeline"] == "disk_space", not_ready
    assert load.count("http") == load.count("http", "200", "503"), load.outcomes
    assert load.count("grpc") == load.count("grpc", "OK", "UNAVAILABLE"), load.outcomes
    assert len(load.acknowledged) >= 20_000, "too little was acknowledged to test anything"
    assert len(refusal_lines(server)) <= 3, "a refusal storm must not flood the log"
    quarantine = server.data_dir / "wal" / "quarantine"
    assert not quarantine.exists() or not any(quarantine.rglob("*.seg")), "space errors are retried, never set aside"

    filler.unlink()
    assert_all_stored_once(server, load)
    wait_until(lambda: readiness(server)[0] == 200, "/readyz back to 200 once space returned")


def test_write_running_out_of_space_is_a_503_and_the_segment_replays_exactly(obsloop_factory, small_disk) -> None:
    """Without a reserve, a write fails with ENOSPC: 503, the partial write cut off again, so
    a ``kill -9`` then and a restart store every acknowledged span once."""
    server = obsloop_factory(
        data_dir=str(small_disk / "data"),
        wal={"segment_max_bytes": 8 << 20, "segment_max_age_seconds": 30, "min_free_bytes": 0},
        detectors={"enabled": False},
    )
    load = SpanLoad(lambda: (server.http, server.grpc), threads=2).start()
    try:
        wait_until(lambda: len(load.acknowledged) >= 5_000, "spans acknowledged")
        filler = fill(small_disk, leave_bytes=0)
        wait_until(lambda: load.count("http", "503") >= 5, "refusals")
    finally:
        load.stop()
    assert load.count("http") == load.count("http", "200", "503"), load.outcomes
    assert load.count("grpc") == load.count("grpc", "OK", "UNAVAILABLE"), load.outcomes
    [first_refusal] = refusal_lines(server)[:1]
    assert "No space left on device writing" in first_refusal and "bytes free" in first_refusal, first_refusal
    assert list((server.data_dir / "wal" / "traces").glob("*.open")), "no open segment: nothing tested"

    server.kill()
    filler.unlink()
    restarted = obsloop_factory(data_dir=str(small_disk / "data"), detectors={"enabled": False})
    assert_all_stored_once(restarted, load)


def test_short_write_is_cut_back_and_refused(small_disk) -> None:
    """A write the disk has room for only part of: ``DiskFull`` naming the file and the free
    space, the segment as it was, and the next write (space back) lands right after it."""
    wal = WriteAheadLog(small_disk / "wal", ("traces",), max_bytes=64 << 20, max_age=60, min_free_bytes=0)
    first, _ = traces_request(1, 500)
    wal.append("traces", first, 500)  # looks at the free space, which is cached for a while
    filler = fill(small_disk, leave_bytes=len(first) // 2)
    with pytest.raises(DiskFull, match=r"No space left on device writing .*\.open: \d+ bytes free"):
        wal.append("traces", traces_request(501, 500)[0], 500)
    with pytest.raises(DiskFull, match="at the reserve"):  # refused without trying, until there is room
        wal.append("traces", traces_request(501, 500)[0], 500)
    filler.unlink()
    time.sleep(0.6)
    third, _ = traces_request(1001, 500)
    wal.append("traces", third, 500)
    wal.rotate(force=True)
    segment = wal.next_segment(timeout=0)
    assert segment is not None and wal.pending_segments() == 1
    assert list(iter_messages(segment.path.read_bytes())) == [first, third]


def test_readyz_is_503_whenever_submit_refuses_and_a_storm_logs_a_line(obsloop_factory) -> None:
    """``submit`` refuses at pending + body > limit; /readyz says so from the first refusal on
    (it tested pending >= limit, and answered 200 while most requests were refused)."""
    bodies = [traces_request(1 + n * 150, 150)[0] for n in range(2_000)]
    server = obsloop_factory(wal={"segment_max_age_seconds": 60, "max_pending_bytes": int(len(bodies[0]) * 10.5)},
                             detectors={"enabled": False})
    assert readiness(server)[0] == 200
    statuses = [post_traces(server.http, body) for body in bodies]
    assert statuses[:10] == ["200"] * 10 and set(statuses[10:]) == {"503"}, statuses[:20]
    status, body = readiness(server)
    assert (status, body["storage"], body["pipeline"]) == (503, "ok", "pending_bytes"), body
    assert len(refusal_lines(server)) == 1, refusal_lines(server)[:5]
    refused = {(sample.labels["signal"], sample.labels["reason"]): sample.value
               for family in text_string_to_metric_families(server.get("/metrics")[1])
               for sample in family.samples if sample.name == "obsloop_receiver_refused_total"}
    assert refused == {("traces", "pending_bytes"): 1_990}


def test_readyz_is_503_while_inserts_fail_though_clickhouse_answers(obsloop_factory) -> None:
    """The last insert's outcome, not ``SELECT 1``: with the table renamed away, ClickHouse
    answers queries and refuses every insert."""
    server = obsloop_factory(detectors={"enabled": False}, admin={"allow_write_queries": True})
    assert post_traces(server.http, traces_request(1, 150)[0]) == "200"
    server.wait_for("SELECT count() FROM otel_traces", 150)
    assert readiness(server)[0] == 200
    server.command("RENAME TABLE otel_traces TO otel_traces_aside")
    try:
        assert post_traces(server.http, traces_request(151, 150)[0]) == "200"  # the log has room
        status, body = wait_until(lambda: (r := readiness(server))[0] == 503 and r, "/readyz 503 on failing inserts")
        assert (body["storage"], body["pipeline"]) == ("failing", "ok"), body
    finally:
        server.command("RENAME TABLE otel_traces_aside TO otel_traces")
    wait_until(lambda: readiness(server)[0] == 200, "/readyz 200 once inserts work again")
    server.wait_for("SELECT count() FROM otel_traces", 300)


def test_sigterm_with_a_backlog_exits_within_the_drain_deadline(obsloop_factory, tmp_path: Path) -> None:
    """A backlog far longer to insert than the deadline: exit 0 within it, and the rest is
    inserted at the next start, once."""
    wal = WriteAheadLog(tmp_path / "obsloop" / "data" / "wal", ("traces",), max_bytes=2 << 20, max_age=60)
    spans = 0
    while wal.pending_segments() < 40:
        body, ids = traces_request(1 + spans, 500)
        wal.append("traces", body, len(ids))
        spans += len(ids)
    wal.rotate(force=True)
    server = obsloop_factory(wal={"drain_timeout_seconds": 3}, detectors={"enabled": False})
    started = time.monotonic()
    assert server.stop(timeout=60) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 4, f"SIGTERM took {elapsed:.1f} s with a 3 s drain deadline"
    assert list((server.data_dir / "wal" / "traces").glob("*.seg")), "the backlog drained: nothing tested"
    restarted = obsloop_factory(detectors={"enabled": False})
    restarted.wait_for("SELECT count() FROM otel_traces", spans, timeout=120)
    assert restarted.scalar("SELECT uniqExact(SpanId) FROM otel_traces") == spans


def test_sigterm_while_inserts_fail_does_not_spend_the_drain_retrying(obsloop_factory) -> None:
    """A segment that cannot be stored is not retried while shutting down: exit at once, and
    the segment is stored at the next start."""
    server = obsloop_factory(detectors={"enabled": False}, admin={"allow_write_queries": True})
    assert post_traces(server.http, traces_request(1, 150)[0]) == "200"
    server.wait_for("SELECT count() FROM otel_traces", 150)  # the first insert applies the schema
    server.command("RENAME TABLE otel_traces TO otel_traces_aside")
    assert post_traces(server.http, traces_request(151, 150)[0]) == "200"
    wait_until(lambda: readiness(server)[0] == 503, "a failed insert")
    started = time.monotonic()
    assert server.stop(timeout=60) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"SIGTERM took {elapsed:.1f} s retrying an insert that fails"
    restarted = obsloop_factory(detectors={"enabled": False})  # creates otel_traces again
    restarted.wait_for("SELECT count() FROM otel_traces", 150)
