"""Scheduler due-time logic and how a tick fires schedules, with an injected clock and starter."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sluiceway.api.config_store import MemoryStore
from sluiceway.api.scheduler import Scheduler
from sluiceway.api.schedules import Schedule, advance, feed_of, first_due, is_due
from sluiceway.common.errors import ConfigError, RunConflictError, StackDownError
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.control.export import ChainPolicyError
from sluiceway.control.runner import Workers
from tests.polling import wait_for

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def sched(next_due: datetime = T0, interval: int = 60, **extra: object) -> Schedule:
    spec = {"tenants": ["t1"], "destination": "/srv/lake", "type": "continuous", "interval": 60}
    fields: dict[str, object] = {
        "name": "feed", "spec": spec, "mode": "delta", "interval_s": interval,
        "anchor": next_due, "next_due": next_due, **extra,
    }  # fmt: skip
    return Schedule(**fields)  # type: ignore[arg-type]


def test_due_and_not_due() -> None:
    assert not is_due(sched(), T0 - timedelta(microseconds=1))
    assert is_due(sched(), T0)
    assert is_due(sched(), T0 + 10 * MIN)


def test_advance_is_on_the_grid_without_drift() -> None:
    # Fired 7 s late: the next slot stays on the minute, not 7 s later.
    assert advance(T0, 60, T0 + timedelta(seconds=7)) == T0 + MIN
    due = T0
    for late in (3, 59, 0, 12):
        due = advance(due, 60, due + timedelta(seconds=late))
    assert due == T0 + 4 * MIN


def test_advance_skips_missed_slots_after_downtime() -> None:
    # Down for 10.5 intervals: one run now, the next on the grid, none for the missed slots.
    now = T0 + timedelta(minutes=10, seconds=30)
    assert advance(T0, 60, now) == T0 + 11 * MIN
    assert advance(T0, 60, T0 + 10 * MIN) == T0 + 11 * MIN  # exactly on a slot
    assert advance(T0 + MIN, 60, T0) == T0 + MIN  # not yet due: unchanged


def test_first_due_from_a_start_time() -> None:
    assert first_due(T0, 3600, T0 - MIN) == T0  # ahead: the start itself
    assert first_due(T0, 3600, T0) == T0
    assert first_due(T0, 3600, T0 + timedelta(minutes=61)) == T0 + timedelta(hours=2)
    assert first_due(T0, 60, T0 + 5 * MIN) == T0 + 5 * MIN


def test_schedule_json_round_trip() -> None:
    original = sched(last_etl_id="20261122T120000Z-abcd", last_error="x")
    assert Schedule.from_json(original.to_json()) == original


class FakeStarter:
    def __init__(self) -> None:
        self.specs: list[RunSpec] = []
        self.fail: Exception | None = None

    def __call__(self, spec: RunSpec) -> tuple[RunRecord, Workers | None]:
        if self.fail is not None:
            raise self.fail
        self.specs.append(spec)
        etl_id = f"20261122T1200{len(self.specs):02d}Z-abcd"
        record = RunRecord(
            etl_id, spec.type, spec.tenants, spec.entities, spec.destination, "t", 1, {}, {}
        )
        return record, None


def make_scheduler(chain: set[str]) -> tuple[Scheduler, FakeStarter, MemoryStore]:
    starter, store = FakeStarter(), MemoryStore()
    scheduler = Scheduler(
        KafkaSettings(port=1), S3Settings(port=1), store, MemoryStore(),
        starter=starter, chain_exists=lambda d: d in chain, clock=lambda: T0,
        probe=lambda: None,
    )  # fmt: skip
    return scheduler, starter, store


def test_tick_starts_full_then_delta_and_advances() -> None:
    chain: set[str] = set()
    scheduler, starter, _ = make_scheduler(chain)
    scheduler.put(sched())
    assert scheduler.tick(T0 - MIN) == []
    scheduler.tick(T0 + timedelta(seconds=1))
    chain.add("/srv/lake")
    scheduler.tick(T0 + timedelta(seconds=30))  # not due again yet
    scheduler.tick(T0 + MIN)
    assert [s.type for s in starter.specs] == ["full", "delta"]
    assert all(s.interval is None for s in starter.specs)
    stored = scheduler.get("feed")
    assert stored is not None
    assert stored.next_due == T0 + 2 * MIN
    assert stored.last_etl_id == "20261122T120002Z-abcd" and stored.last_error is None


def test_full_mode_always_runs_full() -> None:
    scheduler, starter, _ = make_scheduler({"/srv/lake"})
    scheduler.put(sched(mode="full"))
    scheduler.tick(T0)
    assert [s.type for s in starter.specs] == ["full"]


def test_busy_destination_skips_the_slot_without_error() -> None:
    scheduler, starter, _ = make_scheduler(set())
    starter.fail = RunConflictError("destination /srv/lake is busy with run X")
    scheduler.put(sched())
    (updated,) = scheduler.tick(T0)
    assert updated.next_due == T0 + MIN and updated.last_error is None


def test_errors_are_recorded_and_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    scheduler, starter, _ = make_scheduler(set())
    starter.fail = ConfigError("tenant 't1' is unknown")
    scheduler.put(sched())
    with caplog.at_level(logging.WARNING, "sluiceway.api.scheduler"):
        scheduler.tick(T0)
    stored = scheduler.get("feed")
    assert stored is not None and stored.last_error == "tenant 't1' is unknown"
    assert stored.next_due == T0 + MIN
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    starter.fail = KeyError("boom")
    scheduler.tick(T0 + MIN)
    stored = scheduler.get("feed")
    assert stored is not None and stored.last_error == "KeyError: 'boom'"


def test_datapipeline_schedule_reads_the_config_at_run_time() -> None:
    scheduler, starter, _ = make_scheduler(set())
    scheduler.put(replace(sched(), name="datapipeline", spec=None))
    scheduler.tick(T0)
    assert starter.specs == []  # not configured: recorded as an error
    stored = scheduler.get("datapipeline")
    assert stored is not None and "export path" in str(stored.last_error)
    scheduler.config.put("tenants", ["t9"])
    scheduler.config.put("export-path", "/srv/dp")
    scheduler.config.put("optout", ["SECRET"])
    scheduler.tick(T0 + MIN)
    (spec,) = starter.specs
    assert spec.tenants == ("t9",) and spec.opt_out == ("SECRET",) and spec.type == "full"


def test_hash_feed_reads_its_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        "tenants": ["t1"], "destination": "/srv/lake", "type": "continuous", "interval": 60,
        "pii": {"user.email_address": "hash"}, "pii_secret": "k1",
    }  # fmt: skip
    monkeypatch.setenv("SLUICEWAY_PII_SECRET", "k1")
    feed = feed_of(parse_spec(data), T0)
    assert feed.needs_secret and "pii_secret" not in (feed.spec or {})
    assert "k1" not in str(feed.to_json())
    scheduler, starter, _ = make_scheduler(set())
    scheduler.put(feed)
    scheduler.tick(T0)
    assert starter.specs[0].pii_secret is not None
    assert starter.specs[0].pii_secret.get_secret_value() == "k1"
    monkeypatch.delenv("SLUICEWAY_PII_SECRET")
    scheduler.tick(T0 + MIN)
    stored = scheduler.get(feed.name)
    assert stored is not None and "SLUICEWAY_PII_SECRET is not set" in str(stored.last_error)


def test_thread_fires_and_stops_cleanly() -> None:
    scheduler, starter, _ = make_scheduler(set())
    scheduler.tick_s = 0.01
    scheduler.put(sched())
    scheduler.start()
    thread = scheduler._thread
    assert thread is not None and thread.is_alive()
    wait_for(lambda: starter.specs, 5, "the due schedule to start", poll=0.01)
    scheduler.stop()
    assert not thread.is_alive()
    assert len(starter.specs) == 1  # due once; the next slot is a minute of fake time away


def test_thread_pauses_quietly_while_kafka_is_down(caplog: pytest.LogCaptureFixture) -> None:
    scheduler, starter, _ = make_scheduler(set())
    scheduler.put(sched())
    probes: list[int] = []

    def down() -> None:
        probes.append(1)
        raise StackDownError("Kafka at 127.0.0.1:1 does not answer")

    scheduler._probe, scheduler.tick_s = down, 0.01
    with caplog.at_level(logging.WARNING, "sluiceway.api.scheduler"):
        scheduler.start()
        wait_for(lambda: len(probes) >= 5, 10, "five probes", poll=0.01)
        scheduler.stop()
    assert starter.specs == []
    assert [r.getMessage() for r in caplog.records] == [
        "scheduler paused: Kafka at 127.0.0.1:1 does not answer"
    ]


def test_a_feed_whose_policy_changed_starts_a_new_chain_with_a_full_export() -> None:
    scheduler, starter, _ = make_scheduler({"/srv/lake"})
    start_any = starter.__call__

    def start(spec: RunSpec) -> tuple[RunRecord, Workers | None]:
        if spec.type == "delta":
            raise ChainPolicyError("a delta at /srv/lake must continue the policy of its chain")
        return start_any(spec)

    scheduler._starter = start
    scheduler.put(sched())
    (updated,) = scheduler.tick(T0)
    assert [s.type for s in starter.specs] == ["full"] and updated.last_error is None
