"""The disk guard: the decision, the start check, and a consume loop that pauses and resumes.

A full disk is simulated with an injected ``disk_usage``; the consume loop runs against a
fake consumer that honours pause/resume the way librdkafka does (paused partitions return
nothing, and resume from the last message handed out).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from sluiceway.common.codec import Codec
from sluiceway.common.runs import END_MARKER, MARKER_HEADER
from sluiceway.common.settings import S3Settings
from sluiceway.lake import storage
from sluiceway.sinks import metrics
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.consume import RunReader, consume_until_complete
from sluiceway.sinks.disk_guard import DiskGuard, LowDiskSpaceError, check_start, should_pause
from sluiceway.sinks.metrics import PollTimes
from sluiceway.sinks.offsets import OffsetTracker
from sluiceway.sinks.writer import RunWriter

GB = 10**9
TOPIC = "t.run.x"


def usage(free: int) -> Callable[[str], Any]:
    return lambda _path: SimpleNamespace(free=free, total=100 * GB, used=0)


@pytest.mark.parametrize(
    ("free", "minimum", "pending", "pause"),
    [
        (10 * GB, 5 * GB, 0, False),
        (5 * GB, 5 * GB, 0, False),  # exactly the minimum left is allowed
        (5 * GB - 1, 5 * GB, 0, True),
        (6 * GB, 5 * GB, 2 * GB, True),  # the pending write would take it below
        (6 * GB, 5 * GB, -3, False),  # nonsense pending counts as nothing
        (0, -1, 10 * GB, False),  # -1 disables the guard
        (0, 0, 0, False),
    ],
)
def test_decision(free: int, minimum: int, pending: int, pause: bool) -> None:
    assert should_pause(free, minimum, pending) is pause


def test_a_run_is_refused_with_one_line_naming_path_and_numbers(tmp_path: Path) -> None:
    with pytest.raises(LowDiskSpaceError) as info:
        check_start(str(tmp_path), 5 * GB, disk_usage=usage(1_234_000_000))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert "1.23 GB" in message and "1234000000" in message
    assert "5.00 GB" in message and "5000000000" in message


def test_start_check_skips_object_stores_disabled_guards_and_roomy_disks(tmp_path: Path) -> None:
    def never(_path: str) -> Any:
        raise AssertionError("measured")

    check_start("s3://bucket/prefix", 5 * GB, disk_usage=never)
    check_start(str(tmp_path), -1, disk_usage=never)
    check_start(str(tmp_path / "not" / "yet"), 5 * GB, disk_usage=usage(6 * GB))


class Disk:
    """Free space the test controls; counts how often it was measured."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.measured = 0

    def __call__(self, _path: str) -> Any:
        self.measured += 1
        return SimpleNamespace(free=self.free)


def test_guard_measures_at_most_every_interval_and_reports_changes() -> None:
    disk, now, changes = Disk(1 * GB), [0.0], []
    guard = DiskGuard("/lake", 5 * GB, 5.0, disk, lambda: now[0], changes.append)
    assert guard.blocked() and guard.paused
    now[0] = 1.0
    disk.free = 50 * GB
    assert guard.blocked()  # not measured again before the interval
    assert disk.measured == 1
    now[0] = 5.0
    assert not guard.blocked()
    assert disk.measured == 2
    assert changes[0] is not None and changes[0].startswith("waiting: free space at /lake is")
    assert "below the minimum 5.00 GB" in changes[0]
    assert changes[1:] == [None]
    assert metrics.DISK_GUARD_PAUSED._value.get() == 0


def test_the_first_measurement_clears_a_stale_note_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk, now, changes = Disk(50 * GB), [0.0], []
    guard = DiskGuard("/lake", 5 * GB, 5.0, disk, lambda: now[0], changes.append)
    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        assert not guard.blocked()
        now[0] = 10.0
        assert not guard.blocked()
    assert changes == [None]  # once, from a note a dead sink may have left behind
    assert caplog.records == []


class FakeConsumer:
    """Two partitions, each holding one end marker; honours pause and resume."""

    def __init__(self) -> None:
        self.queues = {p: deque([marker(p, 7)]) for p in (0, 1)}
        self.paused: set[int] = set()
        self.calls: list[str] = []
        self.commits: list[list[TopicPartition]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in self.queues]

    def pause(self, parts: list[TopicPartition]) -> None:
        self.calls.append("pause")
        self.paused |= {tp.partition for tp in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        self.calls.append("resume")
        self.paused -= {tp.partition for tp in parts}

    def consume(self, num: int, timeout: float) -> list[Any]:
        self.calls.append("consume-paused" if self.paused else "consume")
        out = []
        for p, queue in self.queues.items():
            while queue and p not in self.paused and len(out) < num:
                out.append(queue.popleft())
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        """What the group holds: each partition's last commit, metadata included."""
        last = {tp.partition: tp for batch in self.commits for tp in batch}
        return [last.get(tp.partition, TopicPartition(TOPIC, tp.partition)) for tp in parts]


def marker(partition: int, offset: int) -> Any:
    return SimpleNamespace(
        error=lambda: None,
        partition=lambda: partition,
        offset=lambda: offset,
        headers=lambda: [(MARKER_HEADER, END_MARKER)],
        value=lambda: b'{"dead_letters": 0}',
        key=lambda: None,
        topic=lambda: TOPIC,
    )


class FakeProducer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing to dead-letter")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def reader(tmp_path: Path, guard: DiskGuard) -> RunReader:
    lake = storage.open_lake(str(tmp_path), S3Settings())
    writer = RunWriter(lake, "etl", SinkSettings(), lambda: 0.0, {})
    return RunReader(
        topic=TOPIC, dlq_topic="dlq", notify_topic="notes", consumer=FakeConsumer(),  # type: ignore[arg-type]
        producer=FakeProducer(), codec=Codec(), plan=SimpleNamespace(etl_id="etl"),  # type: ignore[arg-type]
        writer=writer, tracker=OffsetTracker(2), guard=guard,
    )  # fmt: skip


def test_a_full_disk_pauses_the_loop_which_keeps_polling_then_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk, changes = Disk(1 * GB), []
    guard = DiskGuard(str(tmp_path), 5 * GB, 0.0, disk, on_change=changes.append)
    r = reader(tmp_path, guard)
    consumer: FakeConsumer = r.consumer  # type: ignore[assignment]

    def expired() -> bool:  # the disk frees up after three idle rounds
        if consumer.calls.count("consume-paused") >= 3:
            disk.free = 50 * GB
        return False

    with caplog.at_level(logging.INFO, logger="sluiceway.sink"):
        consume_until_complete(r, 100, 0.01, expired)
    assert r.tracker.ended == {0, 1}
    first_read = consumer.calls.index("consume")
    assert consumer.calls[:first_read].count("consume-paused") >= 3
    assert "resume" in consumer.calls[:first_read]
    assert [c is None for c in changes] == [False, True]
    lines = [rec.getMessage() for rec in caplog.records]
    assert sum(line.startswith("pausing the sink") for line in lines) == 1
    assert sum(line.startswith("resuming the sink") for line in lines) == 1


def test_poll_times_report_the_oldest_message_a_commit_covers() -> None:
    times = PollTimes()
    for offset in range(0, 5):
        times.saw(0, offset, 10.0)
    for offset in range(5, 9):
        times.saw(0, offset, 20.0)
    assert times.committed(0, 3) == 10.0  # offsets 0..2
    assert times.committed(0, 7) == 10.0  # 3..4 were polled at 10, 5..6 at 20
    assert times.committed(0, 7) is None  # nothing new
    assert times.committed(0, 9) == 20.0
    times.saw(0, 9, 30.0)
    assert times.committed(0, 10) == 30.0
    assert times.committed(1, 5) is None
