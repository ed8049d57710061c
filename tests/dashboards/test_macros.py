"""Macro and variable expansion as the Grafana ClickHouse plugin (pkg/macros/macros.go) and
Grafana's variable formats produce it, run on the embedded engine where SQL is produced."""

from datetime import UTC, datetime

import pytest

from obsloop.dashboards.macros import TimeRange, expand

START = int(datetime(2026, 11, 30, 23, 0, tzinfo=UTC).timestamp())
END = int(datetime(2026, 12, 1, 1, 0, tzinfo=UTC).timestamp())
RANGE = TimeRange(START, END, interval_seconds=30)


@pytest.mark.parametrize(("sql", "expanded"), [
    ("$__timeFilter(t)", f"t >= toDateTime({START}) AND t <= toDateTime({END})"),
    ("$__timeFilter_ms(t)", f"t >= fromUnixTimestamp64Milli({START}000) AND t <= fromUnixTimestamp64Milli({END}000)"),
    ("$__dateFilter(d)", "d >= toDate('2026-11-30') AND d <= toDate('2026-12-01')"),
    ("$__dateTimeFilter(d, t)", f"(d >= toDate('2026-11-30') AND d <= toDate('2026-12-01')) AND "
                                f"(t >= toDateTime({START}) AND t <= toDateTime({END}))"),
    ("$__dt(d, t)", f"(d >= toDate('2026-11-30') AND d <= toDate('2026-12-01')) AND "
                    f"(t >= toDateTime({START}) AND t <= toDateTime({END}))"),
    ("$__timeInterval(t)", "toStartOfInterval(toDateTime(t), INTERVAL 30 second)"),
    ("$__timeInterval_ms(t)", "toStartOfInterval(toDateTime64(t, 3), INTERVAL 30000 millisecond)"),
    ("$__fromTime AND $__toTime()", f"toDateTime({START}) AND toDateTime({END})"),
    ("$__fromTime_ms, $__toTime_ms", f"fromUnixTimestamp64Milli({START}000), fromUnixTimestamp64Milli({END}000)"),
    ("$__interval_s $__from $__to", f"30 {START}000 {END}000"),
    ("x IN (${v:singlequote})", "x IN ('a','it\\'s')"),
    ("x IN (${v:sqlstring})", "x IN ('a','it''s')"),
    ("x IN (${v:doublequote})", 'x IN ("a","it\'s")'),
    ("x = '$w'", "x = 'one'"),
])
def test_expansion_matches_the_plugin(sql, expanded):
    assert expand(sql, {"v": ["a", "it's"], "w": ["one"]}, RANGE) == expanded


def test_expanded_filters_run_and_select_the_range(chdb_client):
    rows = chdb_client.query(expand(
        f"SELECT count() FROM (SELECT toDateTime({START - 3600} + number * 1800, 'UTC') AS t "
        "FROM numbers(10)) WHERE $__dt(toDate(t), t)", {}, RANGE)).result_rows
    assert rows == [(5,)]  # START-1h .. +4.5h every 30 min: START, +30, +60, +90, END


def test_undefined_variables_and_unknown_macros_are_errors():
    with pytest.raises(KeyError, match="undefined variable \\$nope"):
        expand("SELECT $nope", {}, RANGE)
    with pytest.raises(ValueError, match="unknown macro \\$__bogus"):
        expand("SELECT $__bogus(x)", {}, RANGE)
