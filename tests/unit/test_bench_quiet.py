"""The bench's quiet-machine gate and its kept results (pure: a fake load and clock)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import quiet
from benchmarks.quiet import KEEP, previous, prune, wait_for_quiet
from benchmarks.report import write_json


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def test_waits_until_the_load_drops() -> None:
    clock, loads = _Clock(), iter([3.0, 2.0, 1.2])
    gate = wait_for_quiet(1.5, 60, 5, lambda: next(loads), clock, clock.pause)
    assert gate.quiet and gate.load_at_start == 1.2 and gate.waited_s == 10
    assert "quiet" in gate.line()


def test_gives_up_after_the_wait_and_says_it_will_not_publish() -> None:
    clock = _Clock()
    gate = wait_for_quiet(1.5, 12, 5, lambda: 4.0, clock, clock.pause)
    assert not gate.quiet and gate.waited_s == 12
    assert "NOT published" in gate.line() and "4.00 > 1.5" in gate.line()


def _res(name: str, published: bool, value: float = 1.0) -> dict[str, object]:
    metric = {"metric": "m", "value": value, "unit": "", "target": "", "ok": None}
    return {"benchmark": name, "published": published, "metrics": [metric]}


def test_a_busy_result_never_becomes_the_latest(tmp_path: Path) -> None:
    write_json(_res("sink", True, 1.0), tmp_path)
    busy = write_json(_res("sink", False, 9.0), tmp_path)
    assert busy.parent == tmp_path / "busy"
    latest = json.loads((tmp_path / "latest-sink.json").read_text())
    assert latest["metrics"][0]["value"] == 1.0
    assert len(list(tmp_path.glob("sink-2*.json"))) == 1


def test_keeps_the_newest_runs_per_bench(tmp_path: Path) -> None:
    for day in range(1, 9):
        (tmp_path / f"sink-2026120{day}T000000Z.json").write_text("{}")
    (tmp_path / "e2e-20260101T000000Z.json").write_text("{}")
    removed = prune(tmp_path, "sink")
    kept = sorted(p.name for p in tmp_path.glob("sink-2*.json"))
    assert len(kept) == KEEP and kept[0] == "sink-20261204T000000Z.json"
    assert len(removed) == 8 - KEEP and (tmp_path / "e2e-20260101T000000Z.json").exists()


def test_previous_is_the_run_just_before(tmp_path: Path) -> None:
    for day, value in ((1, 1.0), (2, 2.0), (3, 3.0)):
        res = _res("sink", True, value)
        (tmp_path / f"sink-2026120{day}T000000Z.json").write_text(json.dumps(res))
    before = previous(tmp_path, "sink", tmp_path / "sink-20261203T000000Z.json")
    assert before is not None and before["metrics"][0]["value"] == 2.0
    assert previous(tmp_path, "sink", tmp_path / "sink-20261201T000000Z.json") is None


def _outcome(published: bool, *oks: bool | None) -> dict[str, object]:
    return {"published": published, "metrics": [{"metric": "m", "ok": ok} for ok in oks]}


def test_the_exit_code_tells_a_busy_machine_from_a_missed_target() -> None:
    from benchmarks.__main__ import EXIT_BUSY, EXIT_MISSED, exit_code

    assert exit_code([_outcome(True, True, None), _outcome(True, True)]) == 0
    assert exit_code([_outcome(True, True, None), _outcome(True, False)]) == EXIT_MISSED == 1
    # unpublished figures say nothing about the targets: try again later
    assert exit_code([_outcome(True, False), _outcome(False, True)]) == EXIT_BUSY == 75


def test_host_speed_is_measured_and_recorded_at_start_and_end() -> None:
    speed = quiet.host_speed(megabytes=8)
    assert speed["fresh_memory_gb_s"] > 0 and speed["sort_2m_floats_ms"] > 0
    gate = quiet.Quiet(0.5, 1.5, 0.0, True)
    res = quiet.with_load({"benchmark": "x"}, gate, speed)
    assert res["load"]["host_speed_at_start"] == speed
    assert set(res["load"]["host_speed_at_end"]) == {"fresh_memory_gb_s", "sort_2m_floats_ms"}
    assert "host_speed_at_start" not in quiet.with_load({}, gate)["load"]
