from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluiceway.common.errors import InvalidEventError
from sluiceway.processors.progress import RunProgress
from sluiceway.processors.transforms import key_tenant, select, validate

ALL = frozenset({"project", "user", "issue", "comment", "worklog"})


@pytest.mark.parametrize(
    ("key", "tenant"),
    [
        (b"tenant-001/42", "tenant-001"),
        (b"a/b/c/7", "a/b/c"),
        (b"tenant-001/", None),
        (b"/42", None),
        (b"tenant-001", None),
        (b"tenant-001/x1", None),
        (None, None),
    ],
)
def test_key_tenant(key: bytes | None, tenant: str | None) -> None:
    assert key_tenant(key) == tenant


def test_select_keeps_only_run_tenants() -> None:
    tenants = frozenset({"tenant-002"})
    assert select(b"tenant-002/1", tenants)
    assert not select(b"tenant-001/1", tenants)
    assert not select(b"tenant-0021/1", tenants)
    assert not select(None, tenants)


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "tenant_id": "tenant-002",
        "entity": "issue",
        "entity_id": 5,
        "op": "c",
        "position": 9,
        "source_ts": datetime(2026, 1, 1, tzinfo=UTC),
        "snapshot": False,
        "after": {"id": 5},
    }
    event.update(overrides)
    return event


def test_validate_accepts_a_consistent_event() -> None:
    event = _event()
    assert validate(b"tenant-002/5", event, ALL) is event


@pytest.mark.parametrize(
    ("key", "overrides", "needle"),
    [
        (b"tenant-001/5", {}, "does not match event body"),
        (b"tenant-002/6", {}, "does not match event body"),
        (b"tenant-002/5", {"after": None}, "without a row"),
    ],
)
def test_validate_rejects_inconsistent_events(
    key: bytes, overrides: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidEventError, match=needle):
        validate(key, _event(**overrides), ALL)


def test_validate_rejects_entity_outside_run() -> None:
    with pytest.raises(InvalidEventError, match="'issue' not in this run"):
        validate(b"tenant-002/5", _event(), frozenset({"user"}))


def test_progress_reads_each_partition_from_its_start_up_to_its_cut() -> None:
    progress = RunProgress(start={"a": {0: 0, 1: 5, 2: 3}}, cut={"a": {0: 3, 1: 5, 2: 4}})
    assert progress.in_range("a", 2, 3)
    assert not progress.in_range("a", 2, 2)  # before the start
    assert not progress.in_range("a", 0, 3)  # at the cut
    assert not progress.in_range("a", 1, 5)  # partition 1 has nothing to read
    assert not progress.in_range("b", 0, 0)  # not a topic of the run


def test_progress_counts_the_records_of_each_batch() -> None:
    progress = RunProgress(start={"a": {0: 0, 1: 0}}, cut={"a": {0: 10, 1: 4}})
    for count in (6, 8, 4):
        progress.observe_batch(count)
    assert progress.read == 18
