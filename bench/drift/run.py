"""Drift detection quality on streams with known change points.

Each stream goes through the service's own :class:`~obsloop.detectors.drift.ModelDriftMonitor`
(river detector per stream, cooldown, post-change sample) exactly as prediction events do:

* ``sea``/``agrawal``/``stagger``: river's synthetic generators chained with
  ``ConceptDriftStream`` (concept drift: P(y|x) changes over 50 events, the inputs do not). An online
  Gaussian naive Bayes predicts; the label is known, so the ``error`` stream can see it.
* ``breast_cancer``: scikit-learn's bundled dataset, rows drawn at random, with a covariate
  shift injected (the first three features moved by +1.5 standard deviations); a logistic
  regression trained on a held-out half predicts; no label (features and predictions only).

Reported per detector: detection delay (events from a change to the detector firing; the
detection itself is emitted ``post_change`` events later, with its report), missed changes
(no firing within ``--max-delay``), and false alarms (firings outside ``[change, change +
max-delay]``) per 10,000 events.

    .venv/bin/python bench/drift/run.py [--runs 3] [--length 10000] [--max-delay 2000]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Iterator

from river import datasets, naive_bayes

from obsloop.detectors.config import DriftConfig
from obsloop.detectors.drift import ModelDriftMonitor

Event = dict[str, float]


def concept_stream(kind: str, seed: int, length: int, changes: list[int]) -> Iterator[Event]:
    synth = datasets.synth
    makers = {
        "sea": lambda v: synth.SEA(variant=v, seed=seed + v),
        "agrawal": lambda v: synth.Agrawal(classification_function=v, seed=seed + v),
        "stagger": lambda v: synth.STAGGER(classification_function=v % 3, seed=seed + v),
    }
    stream = makers[kind](len(changes))
    for i, position in reversed(list(enumerate(changes))):
        stream = synth.ConceptDriftStream(makers[kind](i), stream, position=position, width=50,
                                          seed=seed)
    model = naive_bayes.GaussianNB()
    for x, y in stream.take(length):
        x = {str(k): float(v) for k, v in x.items()}
        positive = True if isinstance(y, bool) else 1
        p = model.predict_proba_one(x).get(positive, 0.0)
        model.learn_one(x, y)
        yield {"prediction": p, "error": abs(p - float(y)), **x}


def covariate_stream(seed: int, length: int, changes: list[int]) -> Iterator[Event]:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.data))
    train, pool = order[: len(order) // 2], order[len(order) // 2:]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.data[train], data.target[train])
    sd = data.data.std(axis=0)
    names = [n.replace(" ", "_") for n in data.feature_names]
    rows = data.data[rng.choice(pool, size=length)].copy()
    shifts = np.searchsorted(np.array(changes), np.arange(length), side="right")
    rows[:, :3] += 1.5 * sd[:3] * shifts[:, None]
    predictions = model.predict_proba(rows)[:, 1]
    for x, p in zip(rows.tolist(), predictions.tolist(), strict=True):
        yield {"prediction": p, **dict(zip(names, x, strict=True))}


def evaluate(events: Iterator[Event], changes: list[int], config: DriftConfig,
             max_delay: int) -> tuple[list[int], int, int]:
    monitor = ModelDriftMonitor(("bench", "1"), config)
    firings = []
    for event in events:
        found = monitor.update(event)
        if found is not None:
            firings.append(found.position - 1)  # index of the event that fired
    delays, false_alarms, matched = [], 0, set()
    for f in firings:
        hit = next((c for c in changes if c <= f < c + max_delay and c not in matched), None)
        if hit is None:
            false_alarms += 1
        else:
            matched.add(hit)
            delays.append(f - hit)
    return delays, len(changes) - len(matched), false_alarms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--length", type=int, default=10_000)
    ap.add_argument("--max-delay", type=int, default=2000)
    ap.add_argument("--detectors", default="adwin,kswin,page_hinkley")
    args = ap.parse_args(argv)
    changes = [args.length * k // 4 for k in (1, 2, 3)]
    streams = ["sea", "agrawal", "stagger", "breast_cancer"]
    print(f"{args.runs} runs x {args.length} events, changes at {changes}, max delay {args.max_delay}")
    print(f"{'stream':<14}{'detector':<14}{'delay median':>13}{'delay p90':>10}{'missed':>9}"
          f"{'false/10k':>11}")
    for stream in streams:
        for name in args.detectors.split(","):
            config = DriftConfig(detector=name, reference_size=500, post_change=200, cooldown=1000)
            delays, missed, false = [], 0, 0
            for run in range(args.runs):
                seed = 100 * run + 7
                events = (covariate_stream(seed, args.length, changes) if stream == "breast_cancer"
                          else concept_stream(stream, seed, args.length, changes))
                d, m, f = evaluate(events, changes, config, args.max_delay)
                delays += d
                missed += m
                false += f
            total = args.runs * args.length
            med = f"{statistics.median(delays):.0f}" if delays else "-"
            p90 = f"{sorted(delays)[math.ceil(0.9 * len(delays)) - 1]:.0f}" if delays else "-"
            print(f"{stream:<14}{name:<14}{med:>13}{p90:>10}{missed:>5}/{3 * args.runs:<3}"
                  f"{false / total * 10_000:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
