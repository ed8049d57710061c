"""A short, seeded slice of ``bench/fuzz/statement_gate.py`` (the full run takes 100,000
inputs): no crash, and no statement the gate lets through reads files, reaches the
network or writes on the read-only surface."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "fuzz"))

import statement_gate  # noqa: E402


def test_seeded_slice_has_no_crash_and_no_escape(chdb_client):
    report = statement_gate.fuzz(examples=300, seed=7, engine=chdb_client.path)
    assert report.inputs == 300
    assert report.crashes == [] and report.escapes == []
    assert report.refusals > 0 and report.accepted > 0 and report.executed > 0
