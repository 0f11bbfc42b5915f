"""Feed timing: cron feeds in a time zone, and Enterprise Insights' daily cadence, driven by
an injected clock over three simulated days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from sluiceway.api.config_store import MemoryStore
from sluiceway.api.scheduler import Scheduler
from sluiceway.api.schedules import feed_of, next_slot
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.runner import Workers

START = datetime(2026, 3, 27, 0, 30, tzinfo=UTC)  # Berlin goes to summer time on the 29th


def feed_spec(**timing: Any) -> RunSpec:
    return parse_spec({"tenants": ["t1"], "destination": "/tmp/ei-lake", "type": "continuous",
                       **timing})  # fmt: skip


@pytest.mark.parametrize(
    ("timing", "needle"),
    [({"cron": "every day"}, "cron"), ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "IANA"),
     ({"interval": 3600, "full_window": "25:00-06:00"}, "HH:MM"),
     ({"interval": 5400, "full_window": "23:00-06:00"}, "whole hours"), ({}, "cron")],
)  # fmt: skip
def test_bad_feed_timing_is_one_clear_problem(timing: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        feed_spec(**timing)


def test_a_cron_feed_follows_the_wall_clock_of_its_zone() -> None:
    feed = feed_of(feed_spec(cron="30 2 * * *", timezone="Europe/Berlin"), START)
    dues = [feed.next_due]
    for _ in range(3):
        dues.append(next_slot(feed, dues[-1]))
    # 02:30 in Berlin: 01:30 UTC in winter, 00:30 UTC from the 29th (02:30 itself is skipped
    # that night, so the run comes at the first valid minute after it)
    assert [d.astimezone(UTC).hour for d in dues] == [1, 1, 1, 0]


class SimulatedLake(Scheduler):
    """A scheduler whose runs complete at once into a lake that only remembers its full."""

    def __init__(self, clock: list[datetime]) -> None:
        self.now = clock
        self.full: date | None = None
        self.started: list[tuple[datetime, str, date | None]] = []
        kafka, s3 = KafkaSettings(port=1, topic_prefix="unit.sw."), S3Settings(port=1)
        super().__init__(kafka, s3, MemoryStore(), MemoryStore(), starter=self._start,
                         chain_exists=lambda _: self.full is not None, clock=lambda: clock[0],
                         probe=lambda: None)  # fmt: skip

    def latest_full_date(self, destination: str) -> date | None:
        return self.full

    def _start(self, spec: RunSpec) -> tuple[RunRecord, Workers | None]:
        moment = self.now[0]
        if spec.type == "full":
            self.full = moment.date()
        self.started.append((moment, spec.type, self.full))
        record = RunRecord(f"{moment:%Y%m%dT%H%M%SZ}-0000", spec.type, spec.tenants,
                           spec.entities, spec.destination, "t", 1, {}, {})  # fmt: skip
        return record, None


def test_enterprise_insights_cadence_over_three_days() -> None:
    clock = [START]
    lake = SimulatedLake(clock)
    lake.put(feed_of(feed_spec(interval=4 * 3600, full_window="23:00-06:00"), START))
    while clock[0] < datetime(2026, 3, 30, tzinfo=UTC):  # the 27th, 28th and 29th
        lake.tick(clock[0])
        clock[0] += timedelta(minutes=30)
    fulls = [m for m, kind, _ in lake.started if kind == "full"]
    assert [m.date() for m in fulls] == [START.date() + timedelta(days=i) for i in range(3)]
    assert [m.time().isoformat() for m in fulls[1:]] == ["00:00:00"] * 2  # as the new day opens
    deltas = [(m, full) for m, kind, full in lake.started if kind == "delta"]
    assert len(deltas) == 3 * 5  # every 4 hours between the fulls
    for moment, full in deltas:
        assert full is not None and moment.date() - full <= timedelta(days=1)
        if moment.time() >= datetime.min.replace(hour=6).time():
            assert full == moment.date()  # after the window, deltas build on that day's full
    gaps = {b[0] - a[0] for a, b in zip(lake.started, lake.started[1:], strict=False)}
    assert max(gaps) <= timedelta(hours=4)
