"""The pure part of the source-impact bench: percentiles, the verdict, and its metrics.

The target (issue 18, the Data pipeline page's "under 5% impact"): the p99 latency of a
fixed query mix on the source while 10 per-tenant exports run is within 5% of its p99 on
an idle source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


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
