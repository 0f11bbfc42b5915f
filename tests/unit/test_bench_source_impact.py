"""The source-impact bench's pure pieces: percentiles, the 5% verdict, its table, the core
split, its registration in ``make bench`` and its place in docs/performance.md."""

from __future__ import annotations

import random

import pytest

from benchmarks.__main__ import BENCHMARKS, parser
from benchmarks.perf_doc import OTHERS, other_table
from benchmarks.pinned import split_cores
from benchmarks.report import result
from benchmarks.source_impact_stats import (
    TOLERANCE,
    Summary,
    by_kind,
    control_metrics,
    metrics,
    percentile,
    ratio_interval,
    summarize,
    verdict,
)


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([5.0], 99) == 5.0
    values = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile(values, 99) == pytest.approx(99.01)
    random.Random(3).shuffle(values)  # order does not matter
    assert percentile(values, 50) == pytest.approx(50.5)


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_p99_sees_the_slow_tail() -> None:
    """Of 1,000 queries of 1 ms, 20 of 50 ms push p99 up; 5 do not."""
    assert summarize([0.001] * 980 + [0.050] * 20).p99_ms == pytest.approx(50.0)
    assert summarize([0.001] * 995 + [0.050] * 5).p99_ms == pytest.approx(1.0)


def test_summaries_by_kind_and_for_the_whole_mix() -> None:
    found = by_kind([("point", 0.001), ("range", 0.002), ("point", 0.003)])
    assert found["point"] == Summary(2, 2.0, pytest.approx(2.98))  # type: ignore[arg-type]
    assert found["all"].n == 3 and found["range"].p50_ms == 2.0


@pytest.mark.parametrize(
    ("idle", "loaded", "ok"),
    [(1.0, 1.0, True), (1.0, 1.049, True), (1.0, 1.0 + TOLERANCE, True), (1.0, 1.06, False),
     (2.0, 1.0, True)],
)  # fmt: skip
def test_the_verdict_is_p99_within_five_percent_of_idle(
    idle: float, loaded: float, ok: bool
) -> None:
    v = verdict(Summary(100, 0.5, idle), Summary(100, 0.5, loaded))
    assert v.ok is ok and v.ratio == pytest.approx(loaded / idle)


def test_a_zero_idle_p99_never_passes() -> None:
    assert not verdict(Summary(1, 0.0, 0.0), Summary(1, 0.0, 0.1)).ok


def test_the_table_leads_with_the_verdict_and_renders_in_the_doc() -> None:
    idle = by_kind([("point", 0.001), ("range", 0.001), ("aggregate", 0.002)] * 100)
    loaded = by_kind([("point", 0.001), ("range", 0.001), ("aggregate", 0.004)] * 100)
    table = metrics(idle, loaded, exports=10, rounds=1)
    judged = [m for m in table if m.ok is not None]
    assert [m.metric for m in judged] == ["mix p99 loaded / idle"] and judged[0].ok is False
    res = result("source_impact", {"source_impact_queries": 300, "tenants": 99}, table)
    rendered = "\n".join(other_table("source_impact", res))
    assert "| mix p99 loaded / idle | 2.00 | x | <= 1.05 | **no** |" in rendered
    assert "source_impact_queries 300" in rendered


def test_cores_split_the_source_from_the_pipeline() -> None:
    cores = split_cores(True, {0, 1})
    assert cores.source == {0} and cores.pipeline == {1} and cores.pinned
    assert "core(s) [0]" in cores.describe()
    assert not split_cores(True, {0}).pinned  # one core: nothing to split
    assert not split_cores(False, {0, 1, 2}).pinned
    assert "not pinned" in split_cores(False, {0, 1}).describe()


def test_make_bench_runs_it_and_the_doc_lists_it() -> None:
    assert "source_impact" in BENCHMARKS and "source_impact" in OTHERS
    args = parser().parse_args(["source_impact", "--source-impact-queries", "50"])
    assert args.source_impact_queries == 50 and args.source_impact_tenants == 10


def test_the_ratio_interval_holds_the_ratio_and_narrows_with_more_queries() -> None:
    rng = random.Random(5)
    idle = [rng.lognormvariate(0, 0.5) / 1000 for _ in range(3000)]
    loaded = [x * 1.2 for x in idle]  # the same queries, each 20% slower
    low, high = ratio_interval(idle, loaded)
    assert low < 1.2 < high and high - low < 0.4
    many_low, many_high = ratio_interval(idle * 4, [x * 1.2 for x in idle * 4])
    assert many_high - many_low < high - low


def test_the_control_window_is_reported_against_idle() -> None:
    idle = by_kind([("point", 0.001)] * 100)
    control = by_kind([("point", 0.002)] * 100)
    found = {m.metric: m.value for m in control_metrics(idle, control)}
    assert found["mix p99 control (a spinning process) / idle"] == 2.0
    assert control_metrics(idle, None) == []
