"""The pure part of the source-impact bench: percentiles, the verdict, and its metrics.

The target (issue 18, the Data pipeline page's "under 5% impact"): the p99 latency of a
fixed query mix on the source while 10 per-tenant exports run is within 5% of its p99 on
an idle source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.report import Metric, info

TOLERANCE = 0.05  # loaded p99 may exceed idle p99 by this fraction
KINDS = ("point", "range", "aggregate")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default), so p50 of [1, 2] is 1.5; raises on no values."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    return float(np.percentile(values, q))


@dataclass(frozen=True)
class Summary:
    """Latencies of one phase, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float


def summarize(latencies_s: Iterable[float]) -> Summary:
    ms = [x * 1000 for x in latencies_s]
    return Summary(len(ms), percentile(ms, 50), percentile(ms, 99))


def by_kind(samples: Iterable[tuple[str, float]]) -> dict[str, Summary]:
    """Per query kind and ``all`` (the whole mix) from (kind, seconds) samples."""
    grouped: dict[str, list[float]] = {}
    for kind, seconds in samples:
        grouped.setdefault(kind, []).append(seconds)
        grouped.setdefault("all", []).append(seconds)
    return {kind: summarize(values) for kind, values in grouped.items()}


@dataclass(frozen=True)
class Verdict:
    idle_p99_ms: float
    loaded_p99_ms: float

    @property
    def ratio(self) -> float:
        """Loaded p99 over idle p99 (1.0: no impact)."""
        return self.loaded_p99_ms / self.idle_p99_ms if self.idle_p99_ms > 0 else math.inf

    @property
    def ok(self) -> bool:
        return self.ratio <= 1 + TOLERANCE


def verdict(idle: Summary, loaded: Summary) -> Verdict:
    return Verdict(idle.p99_ms, loaded.p99_ms)


def metrics(
    idle: Mapping[str, Summary], loaded: Mapping[str, Summary], exports: int, rounds: int
) -> list[Metric]:
    """The bench's table: the verdict on the whole mix first, then each kind's figures."""
    v = verdict(idle["all"], loaded["all"])
    out = [
        info("exports started (10 tenants a round)", exports, "runs"),
        info("export rounds while measuring", rounds, "rounds"),
        info("queries idle / loaded", f"{idle['all'].n:,} / {loaded['all'].n:,}"),
        Metric(
            "mix p99 loaded / idle",
            round(v.ratio, 3),
            "x",
            f"<= {1 + TOLERANCE:.2f}",
            v.ok,
        ),
    ]
    for kind in ("all", *KINDS):
        if kind in idle and kind in loaded:
            name = "mix" if kind == "all" else kind
            out += [
                info(f"{name} p50 idle", idle[kind].p50_ms, "ms"),
                info(f"{name} p50 loaded", loaded[kind].p50_ms, "ms"),
                info(f"{name} p99 idle", idle[kind].p99_ms, "ms"),
                info(f"{name} p99 loaded", loaded[kind].p99_ms, "ms"),
            ]
    return out


def ratio_interval(
    idle_s: Sequence[float], loaded_s: Sequence[float], draws: int = 400, seed: int = 18
) -> tuple[float, float]:
    """The 5th and 95th percentiles of loaded p99 / idle p99 over bootstrap resamples: how
    far the ratio moves when the same windows' queries are drawn again."""
    rng = np.random.default_rng(seed)
    idle, loaded = np.asarray(idle_s), np.asarray(loaded_s)
    ratios = [
        np.percentile(rng.choice(loaded, loaded.size), 99)
        / np.percentile(rng.choice(idle, idle.size), 99)
        for _ in range(draws)
    ]
    low, high = np.percentile(ratios, [5, 95])
    return float(low), float(high)


def control_metrics(
    idle: Mapping[str, Summary], control: Mapping[str, Summary] | None
) -> list[Metric]:
    """The control window's mix p99 against idle: a CPU-bound neighbour's cost alone."""
    if control is None:
        return []
    return [
        info("mix p99 control (a spinning process) / idle",
             round(control["all"].p99_ms / idle["all"].p99_ms, 3), "x"),
        info("mix p99 control", control["all"].p99_ms, "ms"),
    ]  # fmt: skip
