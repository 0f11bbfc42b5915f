"""Pure parts of replay and restore: TIME, the cut inside TIME's millisecond, order, messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError, RestoreError
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.control.replay import boundary_cut, micros, parse_time, require_events
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.events import position, timestamp_ms
from sluiceway.producers.snapshot import SnapshotRun, _publish_chunk
from sluiceway.producers.source import columns
from sluiceway.producers.tables import captured_tables
from sluiceway.tools.restore import restore_order, schema_difference

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_parse_time_accepts_iso_with_offset_and_returns_utc() -> None:
    assert parse_time("2026-11-22T10:15:00Z", NOW) == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    got = parse_time("2026-11-22T11:15:00.123456+01:00", NOW)
    assert got == datetime(2026, 11, 22, 10, 15, 0, 123456, tzinfo=UTC)
    assert got.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("yesterday", "is not a time"),
        ("2026-11-22T10:15:00", "has no UTC offset"),
        ("2026-11-22T12:00:01Z", "is in the future"),
    ],
)
def test_parse_time_refuses_with_one_line_naming_the_value(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_time(text, NOW)
    message = str(err.value)
    assert says in message and repr(text) in message and "\n" not in message
    assert "expected" in message


def test_timestamp_ms_floors_exactly_and_micros_is_exact() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=999_999)
    assert timestamp_ms(moment) == micros(datetime(2026, 1, 1, tzinfo=UTC)) // 1000 + 999
    other = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert timestamp_ms(other) == micros(datetime(2026, 1, 1, tzinfo=UTC)) // 1000


def test_boundary_cut_splits_inside_the_millisecond_by_microseconds() -> None:
    to_us = 1_000_000_500  # TIME = ms 1_000_000, µs 500
    stamps = [
        (10, 1_000_000, 1_000_000_100),  # at TIME's ms, before TIME: in
        (11, 1_000_000, 1_000_000_500),  # exactly TIME: in
        (12, 1_000_000, None),  # the tombstone of a delete that is in: in
        (13, 1_000_000, 1_000_000_501),  # one µs after TIME: out, the cut
        (14, 1_000_001, 1_000_001_000),
    ]
    assert boundary_cut(stamps, to_us, end=15) == 13


def test_boundary_cut_stops_at_a_later_millisecond_and_ends_at_end() -> None:
    assert boundary_cut([(4, 1_000_001, 1_000_001_000)], 1_000_000_999, end=9) == 4
    assert boundary_cut([(4, 1_000_000, 1_000_000_999)], 1_000_000_999, end=9) == 9
    assert boundary_cut([], 1_000_000_999, end=9) == 9


def test_require_events_refuses_a_time_before_the_first_event() -> None:
    start = {"t": {0: 0, 1: 0}}
    require_events({"t": {0: 0, 1: 3}}, start, NOW, ["tenant-001"])
    with pytest.raises(ConfigError, match="before the first captured change of tenant-001"):
        require_events({"t": {0: 0, 1: 0}}, start, NOW, ["tenant-001"])


def test_restore_order_puts_parents_first_and_refuses_unknown_tables() -> None:
    assert restore_order(["worklog", "comment", "issue", "user", "project"]) == [
        "user", "project", "issue", "comment", "worklog",
    ]  # fmt: skip
    assert restore_order(["comment", "issue"]) == ["issue", "comment"]
    with pytest.raises(RestoreError, match="epic"):
        restore_order(["issue", "epic"])


def test_schema_difference_names_table_and_difference_in_one_line() -> None:
    problems = ["public.issues.summary: type is integer in the database, text in the catalog"]
    message = schema_difference("public.issues", problems)
    assert message.startswith("table public.issues in the target differs from the source schema: ")
    assert problems[0] in message
    assert "\n" not in message


class _Recorder:
    """A stand-in producer that keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})

    def poll(self, _timeout: float) -> int:
        return 0


def test_snapshot_events_are_stamped_with_the_consistent_point_time() -> None:
    codec = Codec()
    settings = CaptureSettings(KafkaSettings(), PostgresSettings(), CaptureTuning())
    at = datetime(2026, 11, 22, 10, 15, 0, 123_456, tzinfo=UTC)
    prod = _Recorder()
    run = SnapshotRun(settings, codec, prod, (position(1 << 24, 0), at), None)  # type: ignore[arg-type]
    names = [c.name for c in columns(codec, "project")]
    row = {c.name: _sample(c.sql_type) for c in columns(codec, "project")}
    _publish_chunk(
        run, captured_tables(codec.catalog)["project"], [("tenant-001", *(row[n] for n in names))]
    )
    assert [m["timestamp"] for m in prod.sent] == [timestamp_ms(at)]
    assert codec.decode(prod.sent[0]["value"])["source_ts"] == at


def _sample(sql_type: str) -> Any:
    return {"bigint": 7, "integer": 7, "boolean": True, "double precision": 1.5}.get(
        sql_type, 0 if sql_type in ("timestamptz", "date") else "x"
    )
