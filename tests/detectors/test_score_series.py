"""``score-series``: streaming CSV scoring, folders, and clear errors for bad input."""

from __future__ import annotations

import argparse
import csv
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from obsloop.commands import score_series as command
from obsloop.detectors.score_series import SeriesInputError, score_path


def write_series(path: Path, values: list[float], start_minute: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"]
    for i, v in enumerate(values):
        m = start_minute + 5 * i
        lines.append(f"2024-01-{1 + m // 1440:02d} {(m // 60) % 24:02d}:{m % 60:02d}:00,{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_file_in_file_out(tmp_path: Path) -> None:
    values = [10.0 + (i % 7) * 0.1 for i in range(600)] + [50.0]
    src = write_series(tmp_path / "s.csv", values)
    stats = score_path(src, tmp_path / "out.csv")
    rows = read_out(tmp_path / "out.csv")
    assert stats.rows == 601 and len(rows) == 601
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
    assert rows[0]["timestamp"] == "2024-01-01 00:00:00"
    assert float(rows[-1]["anomaly_score"]) > 0.9
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)


def test_scores_do_not_depend_on_future_rows(tmp_path: Path) -> None:
    values = [10.0 + (i * 37 % 11) * 0.3 for i in range(700)]
    full = write_series(tmp_path / "full.csv", values + [99.0] * 50)
    prefix = write_series(tmp_path / "prefix.csv", values)
    score_path(full, tmp_path / "a.csv")
    score_path(prefix, tmp_path / "b.csv")
    a = [r["anomaly_score"] for r in read_out(tmp_path / "a.csv")][:700]
    b = [r["anomaly_score"] for r in read_out(tmp_path / "b.csv")]
    assert a == b


def test_folder_keeps_relative_paths(tmp_path: Path) -> None:
    write_series(tmp_path / "in" / "x.csv", [1.0, 2.0, 3.0])
    write_series(tmp_path / "in" / "sub" / "y.csv", [4.0, 5.0])
    stats = score_path(tmp_path / "in", tmp_path / "out")
    assert stats.files == 2 and stats.rows == 5
    assert len(read_out(tmp_path / "out" / "x.csv")) == 3
    assert len(read_out(tmp_path / "out" / "sub" / "y.csv")) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,val\n2024-01-01 00:00:00,1\n", r"bad\.csv:1: missing column\(s\) timestamp, value"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n",
         r"bad\.csv:3: column 'value': not a number: 'abc'"),
        ("timestamp,value\nyesterday,1\n", r"bad\.csv:2: column 'timestamp': not a timestamp"),
        ("timestamp,value\n2024-01-01 00:00:00,nan\n", r"bad\.csv:2: column 'value': not finite"),
        ("", r"bad\.csv: empty file"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(content)
    out = tmp_path / "out.csv"
    with pytest.raises(SeriesInputError, match=message):
        score_path(src, out)
    assert not out.exists()  # no half-written result


def test_cli_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    src = write_series(tmp_path / "s.csv", [1.0, 2.0])
    args = parser.parse_args(["score-series", str(src), "--out", str(tmp_path / "o.csv")])
    assert args.func(args) == 0
    assert len(read_out(tmp_path / "o.csv")) == 2
    bad = tmp_path / "b.csv"
    bad.write_text("timestamp\n2024-01-01 00:00:00\n")
    args = parser.parse_args(["score-series", str(bad), "--out", str(tmp_path / "p.csv")])
    assert args.func(args) == 2
    assert "missing column(s) value" in capsys.readouterr().err


def test_clock_step_back_is_scored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real export's clock may step back (NAB's machine_temperature_system_failure.csv does,
    once): every row is scored in file order, the folder is not refused, one warning names
    the file and line, and the model is not broken by the step (time is non-decreasing for
    its seasonal parts), so the following steady rows score low."""
    start = datetime(2024, 1, 1)
    lines = ["timestamp,value"]
    for i in range(800):
        t = start + timedelta(minutes=5 * i)
        if i >= 500:  # from row 500 on the clock is an hour behind, twice
            t -= timedelta(hours=1 if i < 600 else 2)
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{10.0 + (i % 3)}")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "glitch.csv").write_text("\n".join(lines) + "\n")
    write_series(tmp_path / "in" / "ok.csv", [1.0, 2.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="obsloop.detectors.score_series"):
        stats = score_path(tmp_path / "in", tmp_path / "out")
    assert stats.files == 2 and stats.rows == 803
    assert stats.clock_steps == 22  # 11 rows behind the latest time after each step
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "glitch.csv:502: column 'timestamp'" in warnings[0]
    out = read_out(tmp_path / "out" / "glitch.csv")
    assert [r["timestamp"] for r in out] == [ln.split(",")[0] for ln in lines[1:]]
    assert max(float(r["anomaly_score"]) for r in out[500:]) < 0.5
