"""The end-to-end bench's pure parts: figures, metrics, chart, doc block, option parsing."""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks import e2e, e2e_report, perf_doc
from benchmarks.e2e_report import (
    TARGET_S,
    figures,
    keep_earlier,
    metrics,
    one_line,
    write_chart,
)
from benchmarks.report import result


def _workers(*cpu: float) -> list[dict[str, Any]]:
    return [{"stage": "x", "exit_code": 0, "killed": False, "wall_s": 1.0, "cpu_s": c} for c in cpu]


def _phases(e2e_s: float, rows_match: bool = True) -> dict[str, Any]:
    issues = 1_000_000 if rows_match else 999_999
    return {
        "e2e": {
            "ok": True, "failure": None, "wall_s": e2e_s, "events_read": 5_000_000,
            "processing_s": e2e_s - 5, "workers": _workers(100.0, 50.0),
            "rows_written": 5_000_000, "issue_rows": issues, "rows_match": rows_match,
            "first_read_to_manifest_s": e2e_s - 3,
        },
        "process": {
            "ok": True, "failure": None, "wall_s": 100.0, "events_read": 5_000_000,
            "processing_s": 80.0, "workers": _workers(90.0), "loadavg_1m": 3.5,
        },
        "sink": {
            "ok": True, "failure": None, "wall_s": 50.0, "events_read": 0,
            "processing_s": 0.0, "workers": _workers(40.0), "rows_written": 5_000_000,
            "issue_rows": issues, "rows_match": rows_match,
        },
    }  # fmt: skip


def _details(**runs: dict[str, Any]) -> dict[str, Any]:
    counts = {"issue": 1_000_000, "comment": 2_500_000, "worklog": 1_500_000, "user": 50_000}
    return {
        "source": {"counts": counts, "seed_s": 200.0, "capture_s": 90.0},
        "runs": runs,
        "cpu_model": "Test CPU",
    }


def _result(details: dict[str, Any], issues: int = 1_000_000) -> dict[str, Any]:
    params = {"issues": issues, "tenants": 4, "workers": [1, 2], "target_s": 60.0}
    return result("e2e", params, metrics(details), **details)


def test_figures_rates_and_per_cpu() -> None:
    f = figures(_phases(100.0)["process"], "process")
    assert f["ok"] and f["events"] == 5_000_000
    assert f["events_per_s"] == pytest.approx(50_000)
    assert f["events_per_s_window"] == pytest.approx(62_500)
    assert f["events_per_cpu_s"] == pytest.approx(5_000_000 / 90)
    # the sink stage counts the rows it wrote, not events a processor read
    assert figures(_phases(100.0)["sink"], "sink")["events_per_s"] == pytest.approx(100_000)


def test_failed_phase_has_no_rates() -> None:
    f = figures({"ok": False, "failure": "e2e x2: not done after 900s", "workers": []}, "e2e")
    assert not f["ok"] and f["events_per_s"] is None and f["wall_s"] is None


def test_metrics_judge_target_and_rows() -> None:
    phases = {"1": _phases(90.0), "2": _phases(TARGET_S - 5, rows_match=False)}
    by_name = {m.metric: m for m in metrics(_details(**phases))}
    assert by_name["x1 end to end: run start to manifest"].ok is False
    assert by_name["x2 end to end: run start to manifest"].ok is True
    assert by_name["x1 end to end: manifest issue rows"].ok is True
    assert by_name["x2 end to end: manifest issue rows"].ok is False
    assert by_name["x2 sinks alone: manifest issue rows"].value == "999,999 of 1,000,000"


def test_metrics_report_a_failed_phase_in_one_line() -> None:
    phases = _phases(90.0)
    phases["process"] = {"ok": False, "failure": "process worker exited 1; tail:\nboom"}
    phases["sink"] = {"ok": False, "failure": "processors failed"}
    by_name = {m.metric: m for m in metrics(_details(**{"2": phases}))}
    assert by_name["x2 processors alone"].value == "failed: process worker exited 1; tail:"
    assert by_name["x2 processors alone"].ok is False
    assert "processors alone: failed" in one_line(phases)


def test_chart_is_written_from_a_results_dict(tmp_path: Path) -> None:
    import matplotlib.image

    details = _details(**{"1": _phases(90.0), "2": {"e2e": {"ok": False, "failure": "x"}}})
    path = write_chart(_result(details), tmp_path / "sub" / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 800 and height > 300


def test_block_says_pass_or_fail_for_a_million_issues() -> None:
    failed = perf_doc.render_block(_result(_details(**{"1": _phases(90.0)})), {})
    verdict = (
        f"1M-issue full export < {TARGET_S:.0f} s end to end with one worker per stage: "
        "**FAIL** (1 worker(s): 90.0 s)"
    )
    assert verdict in failed
    passed = perf_doc.render_block(_result(_details(**{"1": _phases(TARGET_S - 5)})), {})
    assert f"**PASS** (1 worker(s): {TARGET_S - 5:.1f} s)" in passed
    assert (
        "| 1 | processors alone | 100.0 | 5,000,000 | 50,000 | 90.0 | 55,556 |  | 3.50 |" in passed
    )


def test_block_judges_one_worker_and_two_against_one() -> None:
    one, two = _phases(TARGET_S - 5), _phases(TARGET_S + 1)
    block = perf_doc.render_block(_result(_details(**{"1": one, "2": two})), {})
    assert "end to end with one worker per stage: **PASS**" in block
    assert "Two workers per stage against one, end to end time: 1.15x (target <= 1): **FAIL**" in (
        block
    )


def test_block_does_not_judge_a_scaled_down_run() -> None:
    block = perf_doc.render_block(_result(_details(**{"1": _phases(9.0)}), issues=50_000), {})
    assert "not judged: this run had only 50,000 issues" in block
    assert "PASS" not in block and "FAIL" not in block


def test_block_includes_the_other_benches() -> None:
    processor = result("processor", {"tenants": 2, "processor_issues": 9, "e2e_issues": 7}, [])
    processor["metrics"] = [
        {"metric": "throughput", "value": 31234.5, "unit": "events/s", "target": ">= 50,000",
         "ok": False},
    ]  # fmt: skip
    block = perf_doc.render_block(
        _result(_details(**{"1": _phases(90.0)})), {"processor": processor}
    )
    assert "| throughput | 31,234 | events/s | >= 50,000 | **no** |" in block
    assert "`capture`: no results here yet" in block
    # a bench that saves every option shows only its own
    assert "(" + processor["finished"] + ", tenants 2, processor_issues 9; load" in block


def test_replace_block_keeps_the_prose() -> None:
    text = f"# Doc\nbefore\n{perf_doc.BEGIN}\nold\n{perf_doc.END}\nafter\n"
    res = _result(_details(**{"1": _phases(90.0)}))
    out = perf_doc.replace_block(text, perf_doc.render_block(res, {}))
    assert out.startswith("# Doc\nbefore\n" + perf_doc.BEGIN) and out.endswith(
        perf_doc.END + "\nafter\n"
    )
    assert "old" not in out
    # rendering again replaces the block instead of adding a second one
    again = perf_doc.replace_block(out, perf_doc.render_block(copy.deepcopy(res), {}))
    assert again.count(perf_doc.BEGIN) == 1


def test_replace_block_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="no results block"):
        perf_doc.replace_block("# Doc without markers\n", "x")


def test_options_are_checked_with_one_line_errors() -> None:
    assert e2e.worker_counts("1,2") == (1, 2)
    with pytest.raises(SystemExit, match=r"--e2e-workers '1,x': expected positive integers"):
        e2e.worker_counts("1,x")
    with pytest.raises(SystemExit, match="--e2e-workers '0'"):
        e2e.worker_counts("0")
    assert e2e.issues_per_tenant(1_000_000, 4) == 250_000
    with pytest.raises(SystemExit, match="--e2e-issues 10 and --e2e-tenants 3"):
        e2e.issues_per_tenant(10, 3)


def test_comparison_with_atlassian_per_vcpu() -> None:
    res = _result(_details(**{"1": _phases(100.0), "2": {"e2e": {"ok": False}}}))
    res["machine"]["cpus"] = 2
    lines = perf_doc.comparison(res)
    assert lines[0].endswith("= 1,111 issues/s, 31 issues per vCPU-second.")
    assert "1 worker(s) per stage, export: 1,000,000 issues in 100 s on 2 vCPUs" in lines[1]
    assert lines[1].endswith("= 10,000 issues/s, 5,000 issues per vCPU-second.")
    # the capture snapshot (90 s) is added for the like-for-like line; failed runs are left out
    assert "capture snapshot + export: 1,000,000 issues in 190 s" in lines[2]
    assert len(lines) == 3


def test_publish_writes_chart_and_doc(tmp_path: Path) -> None:
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    (docs / "performance.md").write_text(f"# P\n{perf_doc.BEGIN}\n{perf_doc.END}\n")
    perf_doc.publish(_result(_details(**{"1": _phases(90.0)})), results, docs)
    assert (results / "e2e.png").read_bytes() == (docs / "performance.png").read_bytes()
    assert "**FAIL** (1 worker(s): 90.0 s)" in (docs / "performance.md").read_text()


def test_keep_earlier_adds_unmeasured_worker_counts() -> None:
    previous = _result(_details(**{"1": _phases(90.0), "2": _phases(80.0)}))
    new = {"2": {**_phases(70.0), "measured_at": "later"}}
    runs = keep_earlier(new, _details()["source"], previous)
    assert list(runs) == ["1", "2"]
    assert runs["2"]["measured_at"] == "later" and "earlier_result" not in runs["2"]
    assert runs["1"]["earlier_result"] == previous["finished"]
    runs["2"]["sink"]["workers"][0]["killed"] = True
    block = perf_doc.render_block(_result(_details(**runs)), {})
    assert "- 2 worker(s), sinks alone: 1 worker(s) still running at the phase's end" in block
    assert f"- 1 worker(s) per stage: measured {previous['finished']} (kept from" in block
    assert "- 2 worker(s) per stage: measured later." in block


def test_keep_earlier_refuses_another_source() -> None:
    previous = _result(_details(**{"1": _phases(90.0)}))
    other = copy.deepcopy(_details()["source"])
    other["counts"]["issue"] = 5
    with pytest.raises(ValueError, match="earlier result's source"):
        keep_earlier({}, other, previous)


def _scaled(phases: dict[str, Any], wall_s: float, cpu: tuple[float, ...]) -> dict[str, Any]:
    out = {**copy.deepcopy(phases), "measured_at": "2026-12-06T00:00:00+00:00"}  # as measure()
    out["e2e"]["wall_s"], out["e2e"]["workers"] = wall_s, _workers(*cpu)
    return out


def _judged(details: dict[str, Any]) -> dict[str, Any]:
    return {m.metric: m for m in metrics(details) if m.metric.startswith("x2 / x1")}


def test_two_workers_are_judged_against_one() -> None:
    one = _scaled(_phases(40.0), 40.0, (60.0, 30.0))  # 90 CPU-s for 5M rows
    ok = _judged(_details(**{"1": one, "2": _scaled(one, 39.0, (50.0, 48.0))}))  # 98: +8.9%
    assert ok["x2 / x1 end to end time"].ok is True
    assert ok["x2 / x1 CPU per exported event"].ok is True
    bad = _judged(_details(**{"1": one, "2": _scaled(one, 41.0, (52.0, 48.0))}))  # 100: +11%
    assert bad["x2 / x1 end to end time"].ok is False
    assert bad["x2 / x1 CPU per exported event"].ok is False
    assert bad["x2 / x1 CPU per exported event"].value == pytest.approx(100 / 90, abs=1e-3)
    # the bench itself keys its runs by worker count as an int
    assert _judged(_details(**{}) | {"runs": {1: one, 2: _scaled(one, 41.0, (52.0, 48.0))}})


def test_two_workers_are_not_judged_against_an_earlier_days_one() -> None:
    earlier = "2026-12-01T00:00:00+00:00"
    one = {**_phases(40.0), "measured_at": earlier, "earlier_result": earlier}
    assert _judged(_details(**{"1": one, "2": _phases(39.0)})) == {}
    assert _judged(_details(**{"2": _phases(39.0)})) == {}


def test_topic_layout_is_set_for_the_bench_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_PARTITIONS", "3")
    monkeypatch.delenv("SLUICEWAY_KAFKA_SPREAD", raising=False)
    with e2e.topic_layout(4, 4):
        assert (os.environ["SLUICEWAY_KAFKA_PARTITIONS"], os.environ["SLUICEWAY_KAFKA_SPREAD"]) == (
            "4",
            "4",
        )
    assert os.environ["SLUICEWAY_KAFKA_PARTITIONS"] == "3"
    assert "SLUICEWAY_KAFKA_SPREAD" not in os.environ
    refused = pytest.raises(SystemExit, match="--e2e-spread 5: expected 1 to --e2e-partitions")
    with refused, e2e.topic_layout(4, 5):
        pass


def _attempt(wall_s: float, cpu: tuple[float, ...], rows_match: bool = True) -> dict[str, Any]:
    out = copy.deepcopy(_phases(wall_s, rows_match)["e2e"])
    out["workers"] = _workers(*cpu)
    return out


def test_the_fastest_attempt_is_judged_and_a_failed_one_stands_for_all() -> None:
    slow, fast = _attempt(50.0, (60.0, 30.0)), _attempt(44.0, (62.0, 30.0))
    assert e2e_report.best_attempt([slow, fast]) is fast
    wrong = _attempt(40.0, (60.0, 30.0), rows_match=False)
    assert e2e_report.best_attempt([fast, wrong]) is wrong
    broken = {**slow, "ok": False, "failure": "timed out"}
    assert e2e_report.best_attempt([broken, fast]) is broken
    assert e2e_report.best_attempt([])["ok"] is False


def test_two_against_one_takes_each_counts_cheapest_attempt() -> None:
    one_tries = [_attempt(44.0, (70.0, 40.0)), _attempt(47.0, (60.0, 30.0))]  # 110, 90 CPU-s
    two_tries = [_attempt(43.0, (30.0, 30.0, 25.0, 25.0)), _attempt(45.0, (40.0,) * 4)]  # 110
    runs = {
        str(n): {**_phases(40.0), "e2e": e2e_report.best_attempt(t), "e2e_attempts": t}
        for n, t in (("1", one_tries), ("2", two_tries))
    }
    judged = _judged(_details(**runs))
    assert judged["x2 / x1 end to end time"].value == pytest.approx(43.0 / 44.0, abs=1e-3)
    assert judged["x2 / x1 CPU per exported event"].value == pytest.approx(110 / 90, abs=1e-3)
    assert judged["x2 / x1 CPU per exported event"].ok is False
    listed = {m.metric: m.value for m in metrics(_details(**runs))}
    assert listed["x1 end to end: each attempt, run start to manifest"] == "44.0, 47.0"
    assert listed["x1 end to end: each attempt, CPU per exported event"] == "22.00, 18.00"


def test_the_doc_lists_every_attempt() -> None:
    tries = [_attempt(44.0, (60.0, 30.0)), _attempt(47.5, (60.0, 30.0))]
    one = {**_phases(44.0), "e2e": tries[0], "e2e_attempts": tries}
    block = perf_doc.render_block(_result(_details(**{"1": one})), {})
    assert "2 attempts, interleaved with the other counts' (44.0 s, 47.5 s)" in block


def test_repeat_must_be_positive() -> None:
    args = argparse.Namespace(e2e_workers="1,2", e2e_repeat=0, e2e_issues=8, e2e_tenants=4)
    with pytest.raises(SystemExit, match="--e2e-repeat 0: expected a positive integer"):
        e2e.run(args)


def test_attempts_are_interleaved_and_numbered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def fake(env: Any, n: int, tenants: int, issues: int, timeout: float, attempt: int) -> Any:
        calls.append((n, attempt))
        return {"ok": True}

    monkeypatch.setattr(e2e, "end_to_end", fake)
    args = argparse.Namespace(e2e_repeat=2, e2e_tenants=4, e2e_timeout=1.0)
    tries = e2e.attempts(object(), args, (1, 2), 8)  # type: ignore[arg-type]
    # interleaved; the attempt number names the run's destination (a second run on the
    # first attempt's destination is refused as busy)
    assert calls == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert [len(t) for t in tries.values()] == [2, 2]
