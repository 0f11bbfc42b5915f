"""When serve and the pools sweep, and what a pool forgets of expired runs (no stack)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluiceway.common.errors import StackDownError
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.control import cleanup
from sluiceway.control.cleanup import CleanupSettings, Sweeper, Swept
from sluiceway.control.pool import Pool, PoolSettings

KAFKA, S3 = KafkaSettings(port=1), S3Settings(port=1)


def test_the_first_sweep_waits_an_interval_and_failures_are_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    calls: list[float] = []

    def fake_sweep(*_: Any) -> Swept:
        calls.append(now[0])
        if len(calls) == 2:
            raise StackDownError("Kafka does not answer")
        return Swept([], ["x"])

    monkeypatch.setattr(cleanup, "sweep", fake_sweep)
    sweeper = Sweeper(KAFKA, S3, CleanupSettings(sweep_interval_s=60), clock=lambda: now[0])
    assert sweeper() is None and calls == []  # a starting process does not stall on it
    now[0] = 160.0
    assert sweeper() == Swept([], ["x"])
    assert sweeper() is None and calls == [160.0]
    now[0] = 220.0
    assert sweeper() is None and calls == [160.0, 220.0]  # failed: logged, not raised


def test_a_pool_forgets_expired_runs_and_their_logs(tmp_path: Path) -> None:
    pool = Pool("sink", KAFKA, S3, PoolSettings(log_dir=tmp_path), tmp_path / "metrics")
    pool.finished |= {"a", "b"}
    pool.failed_at["a"] = 1.0
    (tmp_path / "a.sink.log").write_text("done")
    pool.forget(Swept(["b"], ["a"]))
    assert pool.finished == {"b"} and pool.failed_at == {}
    assert not (tmp_path / "a.sink.log").exists()
    pool.forget(None)


def test_a_run_has_a_group_per_judged_entity() -> None:
    # in the Jira example, comments and worklogs reference issues, issues projects: an
    # opt-out's pass reads projects, then issues, each in its own group
    assert cleanup.run_groups("X") == [
        "sw-process-X", "sw-scan-X", "sw-scan-project-X", "sw-scan-issue-X", "sw-sink-X",
    ]  # fmt: skip
