"""Checkpoints of :class:`~obsloop.detectors.series.SeriesAnomalyDetector`: its whole state
as a small JSON-serialisable dict, and back.

JSON rather than pickle: a checkpoint is read back by another process (maybe another
version) after a restart, loading it must not execute code, and it must not depend on
river's internal object layout. NaN slots are written as ``None``; float32 slots in the
shortest text that reads back to the same float32. Every older version stays readable: the
parts it lacks start empty (see each ``if ... in state`` below).
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obsloop.detectors.series import SeriesAnomalyDetector

__all__ = ["STATE_VERSION", "from_state", "to_state"]

STATE_VERSION = 9
_OLD_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)  # readable: the new parts start empty


def to_state(det: SeriesAnomalyDetector) -> dict[str, Any]:
    """``det``'s checkpoint."""
    return {
        "version": STATE_VERSION,
        "params": det._params(),
        "n": det.n,
        "level": det.level,
        "var": det.var,
        "lo": _finite_or_none(det.lo),
        "hi": _finite_or_none(det.hi),
        "err": list(det.err),
        "daily": [_f32(v) if v == v else None for v in det.daily],
        "weekly": [_f32(v) if v == v else None for v in det.weekly],
        "env": [_f32(v) for v in det.env],
        "env_today": [_f32(v) for v in det.env_today],
        "env_day": det.env_day,
        "short": det.short,
        "lik_mean": det.lik_mean,
        "lik_var": det.lik_var,
        "shift": [det.sn, det.sm, det.lm, det.lv, det.l2_mean, det.l2_var],
        "season": [*det.sconf, int(det.sdes), _finite_or_none(det.t0)],
        "since_alarm": det.since_alarm,
        "last_t": _finite_or_none(det.last_t),
        "tail": [det.tail_total, det.tail_gain, *(_f32(v) for v in det.tail)],
        "ctx": [det.ctx_n, det.ctx_hist, det.ctx_new, det.ctx_lo, det.ctx_hi,
                det.ctx_seen.hex()],
        "ar": [det.ar_n, det.ar_prev, det.ar_c1, det.ar_c0, det.ar_var],
        "hour_var": [_f32(v) if v == v else None for v in det.hour_var],
        "spread": [det.vn, det.vs, det.vl, det.l3_mean, det.l3_var],
    }


def from_state(cls: type[SeriesAnomalyDetector], state: dict[str, Any]) -> SeriesAnomalyDetector:
    """A detector of class ``cls`` rebuilt from :func:`to_state` output (``ValueError`` if
    the version is unknown)."""
    version = state.get("version")
    if version != STATE_VERSION and version not in _OLD_VERSIONS:
        raise ValueError(
            f"unsupported detector state version {version!r} (this version of obsloop "
            f"reads versions {sorted((*_OLD_VERSIONS, STATE_VERSION))}); delete the "
            "checkpoint to start learning afresh"
        )
    params = dict(state["params"])
    if version in (1, 2):
        # Before version 3 env_decay was per visit of a slot, now it is per day: the old
        # value would fade the envelope several times more slowly, so take the default.
        params.pop("env_decay", None)
    if version in (1, 2, 3, 4):
        # Before version 5 env_start and shift_deseason were off by default, and a
        # checkpoint records every parameter: take today's defaults, not the old ones.
        params.pop("env_start", None)
        params.pop("shift_deseason", None)
    det = cls(**params)
    det.n = int(state["n"])
    det.level = float(state["level"])
    det.var = float(state["var"])
    det.lo = _none_to(state["lo"], math.inf)
    det.hi = _none_to(state["hi"], -math.inf)
    det.err = [float(v) for v in state["err"]]
    det.daily = array("f", [_none_to(v, math.nan) for v in state["daily"]])
    det.weekly = array("f", [_none_to(v, math.nan) for v in state["weekly"]])
    if "env" in state:
        det.env = array("f", [float(v) for v in state["env"]])
        det.short = float(state["short"])
    if "env_today" in state:
        det.env_today = array("f", [float(v) for v in state["env_today"]])
        det.env_day = int(state["env_day"])
    det.lik_mean = float(state["lik_mean"])
    det.lik_var = float(state["lik_var"])
    if "shift" in state:  # before version 4 the mean-shift detector starts afresh
        sn, *rest = state["shift"]
        det.sn = int(sn)
        det.sm, det.lm, det.lv, det.l2_mean, det.l2_var = (float(v) for v in rest)
    if "season" in state:
        sd, sw, sdes, t0 = state["season"]
        det.sconf = [float(sd), float(sw)]
        det.sdes, det.t0 = bool(sdes), _none_to(t0, math.nan)
    elif det.err[0] > 0.0:  # before version 5: today's error ratios; t0 unknown, so the
        # de-seasonalised view waits shift_season_after days from the restore
        det.sconf = [min(det.err[k] / det.err[0], 1.0) for k in (1, 2)]
    det.since_alarm = int(state["since_alarm"])
    det.last_t = _none_to(state["last_t"], -math.inf)
    if "tail" in state and det.tail_alpha > 0.0:  # before version 6: an empty history
        total, gain, *bins = state["tail"]
        det.tail_total, det.tail_gain = float(total), float(gain)
        fresh = len(det.tail)
        det.tail = array("f", [float(v) for v in bins])
        # Before version 9 there were no spread view's bins: its history starts empty.
        det.tail.extend([0.0] * (fresh - len(det.tail)))
    if "ctx" in state and det.ctx_levels:  # before version 7: an empty context table
        ctx_n, hist, new, lo, hi, seen = state["ctx"]
        det.ctx_n, det.ctx_hist, det.ctx_new = int(ctx_n), int(hist), int(new)
        det.ctx_lo, det.ctx_hi = float(lo), float(hi)
        det.ctx_seen = bytearray.fromhex(seen)
        if len(det.ctx_seen) != det.ctx_bits // 4:
            raise ValueError("detector state: context table size does not match ctx_bits")
    if "ar" in state:  # before version 8 the AR(1) term starts afresh and re-warms
        ar_n, *rest = state["ar"]
        det.ar_n = int(ar_n)
        det.ar_prev, det.ar_c1, det.ar_c0, det.ar_var = (float(v) for v in rest)
    if state.get("hour_var") and det.hour_var:  # before version 9: each hour starts from
        # the series-wide variance at its first point after the restore
        if len(state["hour_var"]) != len(det.hour_var):
            raise ValueError("detector state: hour_var must have one slot per hour of the day")
        det.hour_var = array("f", [_none_to(v, math.nan) for v in state["hour_var"]])
    if "spread" in state:  # before version 9 the spread view starts afresh and re-warms
        vn, *rest = state["spread"]
        det.vn = int(vn)
        det.vs, det.vl, det.l3_mean, det.l3_var = (float(v) for v in rest)
    return det


def _f32(v: float) -> float:
    """A float32 slot value in the shortest text that reads back to the same float32."""
    return float(f"{v:.9g}")


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _none_to(v: float | None, default: float) -> float:
    return default if v is None else float(v)
