"""The scale bench's pure parts: Zipf sizes, the tenants chosen, the share and the verdict,
its metrics, the doc block and the options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import perf_doc, scale, scale_report
from benchmarks.__main__ import BENCHMARKS
from benchmarks.__main__ import parser as bench_parser
from benchmarks.report import result
from benchmarks.scale_plan import (
    FULL_ENV,
    churned,
    meets_targets,
    picks,
    share,
    size_name,
    zipf_sizes,
)


def test_zipf_sizes_are_deterministic_exact_and_at_least_one() -> None:
    sizes = zipf_sizes(10_000, 2_000_000, 1.0, 18)
    assert sizes == zipf_sizes(10_000, 2_000_000, 1.0, 18)
    assert len(sizes) == 10_000 and sum(sizes) == 2_000_000 and min(sizes) >= 1
    # Zipf with exponent 1: the largest is about total / H(n), H(10,000) ~ 9.79
    assert 195_000 < max(sizes) < 210_000
    assert sizes != zipf_sizes(10_000, 2_000_000, 1.0, 19)  # the seed deals ranks to tenants
    assert sorted(sizes) == sorted(zipf_sizes(10_000, 2_000_000, 1.0, 19))


def test_zipf_sizes_keep_one_issue_per_tenant_when_there_are_barely_enough() -> None:
    assert zipf_sizes(5, 5, 2.0, 1) == (1, 1, 1, 1, 1)
    steep = zipf_sizes(50, 60, 3.0, 1)
    assert sum(steep) == 60 and min(steep) == 1
    assert zipf_sizes(4, 400, 0.0, 1) == (100, 100, 100, 100)  # exponent 0: all alike
    for tenants, issues, exponent in [(0, 5, 1.0), (6, 5, 1.0), (3, 5, -1.0)]:
        with pytest.raises(ValueError):
            zipf_sizes(tenants, issues, exponent, 1)


def test_picks_are_the_smallest_median_and_largest_ties_to_the_lower_number() -> None:
    assert picks([5, 1, 9, 1, 3]) == {"smallest": 2, "median": 5, "largest": 3}
    assert picks([7]) == {"smallest": 1, "median": 1, "largest": 1}


def test_churn_touches_the_chosen_and_others_deterministically() -> None:
    got = churned([3, 1, 9], 20, 7, seed=5)
    assert got == churned([3, 1, 9], 20, 7, seed=5)
    assert {1, 3, 9} <= set(got) and len(got) == 10 and got == sorted(got)
    assert churned([1, 2], 3, 7, seed=5) == [1, 2, 3]  # no more others than there are


def test_share_and_the_verdict_need_a_right_run_as_well_as_a_cheap_fast_one() -> None:
    assert share(50, 10_000) == 0.005
    assert share(None, 10_000) is None and share(5, 0) is None
    good = {"ok": True, "correct": True, "share": 0.005, "seconds": 4.9}
    assert meets_targets(good)
    assert not meets_targets({**good, "correct": False})  # fast but wrong
    assert not meets_targets({**good, "correct": None})  # not checked
    assert not meets_targets({**good, "ok": False})
    assert not meets_targets({**good, "share": 0.01})
    assert not meets_targets({**good, "seconds": 5.0})
    assert not meets_targets({**good, "share": None})


def test_the_size_is_small_unless_asked_for_full() -> None:
    assert size_name(False, {}) == "small"
    assert size_name(True, {}) == "full"
    assert size_name(False, {FULL_ENV: "full"}) == "full"
    args = bench_parser().parse_args(["scale"])
    assert "scale" in BENCHMARKS
    p = scale.params_of(args)
    assert (p["tenants"], p["issues"]) == (200, 20_000) or p["size"] == "full"
    full = scale.params_of(bench_parser().parse_args(["scale", "--scale-full"]))
    assert (full["tenants"], full["issues"], full["size"]) == (10_000, 2_000_000, "full")
    mine = bench_parser().parse_args(["scale", "--scale-tenants", "30", "--scale-churn", "0"])
    assert scale.params_of(mine)["tenants"] == 30 and scale.params_of(mine)["churn_changes"] == 0


def _run(role: str, kind: str, **over: Any) -> dict[str, Any]:
    run = {
        "role": role, "tenant": f"tenant-{role}", "run": kind, "etl_id": "x", "ok": True,
        "failure": None, "tenant_rows": 36, "events_read": 703, "topic_events": 3_234,
        "share": 703 / 3_234, "seconds": 9.9, "path": None, "correct": True,
    }  # fmt: skip
    return {**run, **over}


def _result(tenants: int = 200, **smallest: Any) -> dict[str, Any]:
    runs = [_run("smallest", "full", **smallest), _run("median", "full"),
            _run("largest", "delta", correct=False)]  # fmt: skip
    details = {
        "source": {"counts": {"issue": 600, "comment": 1_489}, "seed_s": 0.2,
                   "capture_snapshot_s": 12.9},
        "chosen": {"smallest": {"tenant": "tenant-005", "issues": 6}},
        "churn": {"tenants": ["a", "b"], "changes": 300, "seconds": 1.0},
        "runs": runs,
    }  # fmt: skip
    params = {"size": "small", "tenants": tenants, "issues": 600, "churn_changes": 300,
              "zipf_exponent": 1.0, "seed": 18}  # fmt: skip
    return result("scale", params, scale_report.metrics(details), **details)


def test_metrics_say_each_run_and_judge_only_the_smallest_tenant() -> None:
    res = _result()
    by_name = {m["metric"]: m for m in res["metrics"]}
    assert by_name["smallest full: events read"]["value"] == 703
    assert by_name["smallest full: share read"]["value"] == pytest.approx(21.738, abs=1e-3)
    assert by_name["largest delta: lake = source"]["value"] == "**NO**"
    judged = [m for m in res["metrics"] if m["ok"] is not None]
    assert [m["metric"] for m in judged] == ["target, smallest tenant full"]
    assert judged[0]["ok"] is False
    json.dumps(res)  # what write_json saves


def test_doc_block_has_the_table_the_verdict_and_says_when_only_indicative() -> None:
    block = scale_report.render_block(_result())
    assert block.startswith(scale_report.BEGIN) and block.endswith(scale_report.END)
    row = "| tenant-smallest | smallest | full | 36 | 703 | 3,234 | 21.74% | 9.9 | - | yes |"
    assert row in block
    assert "| tenant-largest | largest | delta |" in block and "| **NO** |" in block
    assert "**FAIL**" in block and "indicative only: 200 tenants" in block
    passed = scale_report.render_block(
        _result(10_000, share=0.004, seconds=3.1, path="tenant index")
    )
    assert "**PASS**" in passed and "indicative" not in passed
    assert "| 0.40% | 3.1 | tenant index | yes |" in passed
    failed = scale_report.render_block(_result(ok=False, failure="timed out\nmore"))
    assert "| failed: timed out |" in failed


def test_publish_scale_writes_the_placeholder_then_a_result(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# P\n{perf_doc.BEGIN}\ne2e\n{perf_doc.END}\n"
                   f"{scale_report.BEGIN}\nold\n{scale_report.END}\ntail\n")  # fmt: skip
    perf_doc.publish_scale(None, tmp_path)
    text = doc.read_text()
    assert scale_report.PLACEHOLDER in text and "old" not in text and "\ne2e\n" in text
    perf_doc.publish_scale(_result(), tmp_path)
    text = doc.read_text()
    assert "| tenant-median | median | full |" in text and text.endswith("tail\n")


def test_the_repository_doc_has_the_scale_block() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "performance.md").read_text()
    assert scale_report.BEGIN in text and scale_report.END in text
