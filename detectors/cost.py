"""Month-end spend forecast per function against the manifest's ``finops`` budget.

Spend per function is bucketed (hourly by default) and fed to river's ``SNARIMAX`` with one
daily seasonal difference (the seasonal naive model: every remaining hour is forecast as the
same hour of the last day), so a function that is busy by day and idle by night is forecast
as such, and a rise in spend shows in the forecast within a day. The month-end forecast is the spend so far this month
plus the model's forecast of every remaining bucket; when it passes ``budgetLimit x
alertThreshold`` (``"$5000/month"``, ``"80%"``) a ``budget_forecast`` detection is raised,
once per function and month. Until the model has seen a full season it cannot forecast,
and the run rate of the month so far stands in.

Spend *anomalies* (a sudden jump in cost per window, per function and per cost center) are
scored like every other window metric in :mod:`obsloop.detectors.scoring`.
"""

from __future__ import annotations

import calendar
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from river import time_series

from obsloop.core import semconv
from obsloop.core.manifests import Budget, valid_manifests
from obsloop.detectors.detection import Detection

HISTORY_BUCKETS = 14 * 24
"""Buckets kept to rebuild the model after a restart (two weeks of hours)."""


def load_budgets(directory: Path) -> dict[str, Budget]:
    """The budget of every valid manifest with ``finops.budgetLimit`` under ``directory``, by
    function (the first manifest by path when two name one function). An invalid manifest is
    logged and left out (the feedback loop records it in its audit table)."""
    budgets: dict[str, Budget] = {}
    for manifest in valid_manifests(directory):
        if manifest.budget is not None:
            budgets.setdefault(manifest.function, manifest.budget)
    return budgets


def _month_end(t: datetime) -> datetime:
    last = calendar.monthrange(t.year, t.month)[1]
    return datetime(t.year, t.month, last, tzinfo=UTC) + timedelta(days=1)


class SpendForecaster:
    """Month-end spend forecast of one function from bucketed spend.

    >>> from datetime import datetime, UTC
    >>> f = SpendForecaster(bucket_seconds=3600)
    >>> t = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    >>> for hour in range(24 * 5):  # $1/h by day, $0.2/h by night, for five days
    ...     f.add(t + hour * 3600, 1.0 if 8 <= hour % 24 < 20 else 0.2)
    >>> f.close_until(t + 24 * 5 * 3600)
    >>> round(f.month_to_date, 1), round(f.forecast(), 1)
    (72.0, 432.0)
    """

    def __init__(self, bucket_seconds: float = 3600.0) -> None:
        self.bucket_seconds = bucket_seconds
        self.season = max(1, round(86_400 / bucket_seconds))
        self.history: deque[float] = deque(maxlen=max(HISTORY_BUCKETS, 2 * self.season))
        self.bucket_start: float | None = None
        self.bucket_spend = 0.0
        self.month: tuple[int, int] | None = None
        self.month_to_date = 0.0
        self.alerted_month: str = ""
        self._model = self._new_model()
        self._learned = 0

    def _new_model(self) -> Any:
        # One seasonal difference and nothing else: the seasonal naive forecast (each hour as
        # the same hour yesterday). river's Holt-Winters was tried first: its additive form
        # initialises the season with multiplicative ratios (a +1.0 offset on every slot) and
        # its trend, extrapolated over a month, overshoots by several times.
        return time_series.SNARIMAX(p=0, d=0, q=0, m=self.season, sd=1)

    def _bucket_of(self, t: float) -> float:
        return t - t % self.bucket_seconds

    def add(self, t: float, spend: float) -> None:
        """Spend observed in a window starting at ``t`` (epoch seconds); windows in time order."""
        bucket = self._bucket_of(t)
        if self.bucket_start is not None and bucket > self.bucket_start:
            self.close_until(bucket)
        if self.bucket_start is None:
            self.bucket_start = bucket
        month = _month_of(t)
        if month != self.month:
            self.month, self.month_to_date = month, 0.0
        self.bucket_spend += spend
        self.month_to_date += spend

    def close_until(self, t: float) -> None:
        """Close every bucket that ends by ``t``, learning empty ones as zero spend."""
        while self.bucket_start is not None and self.bucket_start + self.bucket_seconds <= t:
            self._learn(self.bucket_spend)
            self.bucket_spend = 0.0
            self.bucket_start += self.bucket_seconds

    def _learn(self, spend: float) -> None:
        self.history.append(spend)
        self._model.learn_one(spend)
        self._learned += 1

    @property
    def now(self) -> float | None:
        return self.bucket_start

    def forecast(self) -> float:
        """Spend expected by the end of the current month (USD)."""
        if self.bucket_start is None:
            return 0.0
        start = datetime.fromtimestamp(self.bucket_start, UTC)
        remaining = max(0, round((_month_end(start).timestamp() - self.bucket_start)
                                 / self.bucket_seconds))
        if remaining == 0:
            return self.month_to_date
        if self._learned > self.season:
            future = sum(max(0.0, x) for x in self._model.forecast(horizon=remaining))
        else:
            elapsed = max(self.bucket_seconds, self.bucket_start - _month_start(start))
            future = self.month_to_date / elapsed * remaining * self.bucket_seconds
        return self.month_to_date + max(0.0, future - self.bucket_spend)

    def to_state(self) -> dict[str, Any]:
        return {"bucket_seconds": self.bucket_seconds, "history": list(self.history),
                "bucket_start": self.bucket_start, "bucket_spend": self.bucket_spend,
                "month": list(self.month) if self.month else None,
                "month_to_date": self.month_to_date, "alerted_month": self.alerted_month}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SpendForecaster:
        """Rebuild, replaying the kept buckets into a fresh model (a JSON-safe checkpoint)."""
        f = cls(float(state["bucket_seconds"]))
        for spend in state["history"]:
            f._learn(float(spend))
        f.bucket_start = state["bucket_start"]
        f.bucket_spend = float(state["bucket_spend"])
        f.month = tuple(state["month"]) if state["month"] else None
        f.month_to_date = float(state["month_to_date"])
        f.alerted_month = state["alerted_month"]
        return f


def _month_of(t: float) -> tuple[int, int]:
    d = datetime.fromtimestamp(t, UTC)
    return d.year, d.month


def _month_start(d: datetime) -> float:
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


class BudgetWatch:
    """A forecaster per budgeted function; a detection when a forecast passes the alert line."""

    def __init__(self, budgets: dict[str, Budget], bucket_seconds: float = 3600.0) -> None:
        self.budgets = budgets
        self.bucket_seconds = bucket_seconds
        self.forecasters: dict[str, SpendForecaster] = {}

    def observe(self, t: float, spend_by_function: Iterable[tuple[str, float]]) -> list[Detection]:
        """Spend of every budgeted function in the window starting at ``t``."""
        seen = dict(spend_by_function)
        out = []
        for function, budget in self.budgets.items():
            forecaster = self.forecasters.get(function)
            if forecaster is None:
                if function not in seen:
                    continue
                forecaster = self.forecasters[function] = SpendForecaster(self.bucket_seconds)
            closed_before = forecaster.now
            forecaster.add(t, seen.get(function, 0.0))
            if forecaster.now == closed_before:
                continue  # check once per closed bucket, not once per window
            detection = self._check(function, budget, forecaster)
            if detection is not None:
                out.append(detection)
        return out

    def _check(self, function: str, budget: Budget, f: SpendForecaster) -> Detection | None:
        assert f.month is not None
        month = f"{f.month[0]:04d}-{f.month[1]:02d}"
        forecast = f.forecast()
        if forecast < budget.alert_usd or f.alerted_month == month:
            return None
        f.alerted_month = month
        series = {semconv.FAAS_NAME: function}
        if budget.cost_center:
            series[semconv.COST_CENTER] = budget.cost_center
        assert f.now is not None
        return Detection(
            id=f"budget_forecast-{function}-{month}",
            time=datetime.fromtimestamp(f.now, UTC),
            series=series, kind="budget_forecast",
            score=min(1.0, forecast / budget.monthly_usd),
            severity="critical" if forecast >= budget.monthly_usd else "warning",
            observed={"forecast_usd": forecast, "month_to_date_usd": f.month_to_date},
            expected={"forecast_usd": (0.0, budget.alert_usd)},
            summary=(f"{function}: month-end spend forecast ${forecast:,.2f} passes "
                     f"{budget.alert_fraction:.0%} of the ${budget.monthly_usd:,.2f} budget "
                     f"({month}, ${f.month_to_date:,.2f} so far)"),
        )

    def to_state(self) -> dict[str, Any]:
        return {fn: f.to_state() for fn, f in self.forecasters.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self.forecasters = {fn: SpendForecaster.from_state(s) for fn, s in state.items()}
