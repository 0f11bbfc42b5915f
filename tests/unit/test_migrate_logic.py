"""The pure parts of ``sluiceway migrate``: id map, pending runs, delta reduction, state
transitions and verify's comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from sluiceway.common.entities import load_order
from sluiceway.common.errors import ConfigError
from sluiceway.tools.migrate.logic import (
    CUT_OVER,
    CUTOVER_REQUESTED,
    RUNNING,
    check_tenants,
    checksum,
    compare_table,
    latest_changes,
    map_row,
    pending_runs,
    transition,
)
from tests.catalogs import ENTITIES


def test_map_row_moves_id_and_every_reference_but_nothing_else() -> None:
    row = {"id": 7, "project_id": 1, "creator_id": 2, "reporter_id": None, "assignee_id": 3,
           "parent_id": None, "summary": "x", "story_points": 5}  # fmt: skip
    assert map_row("issue", row, 100, "b") == {
        "id": 107, "project_id": 101, "creator_id": 102, "reporter_id": None,
        "assignee_id": 103, "parent_id": None, "summary": "x", "story_points": 5,
    }  # fmt: skip
    assert map_row("user", {"id": 1, "account_id": "abc"}, 5, "b") == {"id": 6, "account_id": "abc"}
    assert map_row("comment", {"id": 1, "issue_id": 2}, 0, "b") == {"id": 1, "issue_id": 2}


def test_apply_order_is_parents_first_and_covers_every_entity() -> None:
    order = load_order()
    assert sorted(order) == sorted(ENTITIES)
    assert order.index("project") < order.index("issue") < order.index("comment")
    assert order.index("user") < order.index("issue") < order.index("worklog")


def test_pending_runs_are_the_deltas_after_the_applied_one_in_order() -> None:
    runs = [("20261122T000003Z-c", "delta"), ("20261122T000001Z-a", "full"),
            ("20261122T000002Z-b", "delta"), ("20261122T000004Z-d", "delta")]  # fmt: skip
    assert pending_runs(runs, "20261122T000002Z-b") == ["20261122T000003Z-c", "20261122T000004Z-d"]
    assert pending_runs(runs, "20261122T000004Z-d") == []
    with pytest.raises(ConfigError, match="20261122T000005Z-e full export after the applied run"):
        pending_runs([*runs, ("20261122T000005Z-e", "full")], "20261122T000004Z-d")


def test_latest_changes_keeps_the_highest_position_per_id() -> None:
    rows = [
        {"id": 1, "_position": 5, "_deleted": False, "v": "new"},
        {"id": 1, "_position": 3, "_deleted": False, "v": "old"},
        {"id": 2, "_position": 4, "_deleted": False, "v": "x"},
        {"id": 2, "_position": 9, "_deleted": True, "v": None},
        {"id": 3, "_position": 1, "_deleted": True, "v": None},
        {"id": 3, "_position": 2, "_deleted": False, "v": "reborn"},
    ]
    upserts, deletes = latest_changes(rows, ("id",))
    assert {k: r["v"] for k, r in upserts.items()} == {(1,): "new", (3,): "reborn"}
    assert deletes == {(2,)}


def test_state_transitions() -> None:
    assert transition(RUNNING, "apply") == RUNNING
    assert transition(RUNNING, "request_cutover") == CUTOVER_REQUESTED
    assert transition(CUTOVER_REQUESTED, "apply") == CUTOVER_REQUESTED
    assert transition(CUTOVER_REQUESTED, "final_apply") == CUT_OVER
    for status, event in [(RUNNING, "final_apply"), (CUT_OVER, "apply"),
                          (CUT_OVER, "request_cutover"), (CUT_OVER, "final_apply")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"migration is {status}"):
            transition(status, event)


def test_same_tenant_in_the_same_database_is_refused() -> None:
    check_tenants("a", "b", same_database=True)
    check_tenants("a", "a", same_database=False)
    with pytest.raises(ConfigError, match="both 'a' in the same database"):
        check_tenants("a", "a", same_database=True)


def test_checksum_ignores_read_order_and_time_zone_but_not_values() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    same_instant = t.astimezone(timezone(timedelta(hours=2)))
    a = {1: {"id": 1, "at": t}, 2: {"id": 2, "at": None}}
    b = {2: {"id": 2, "at": None}, 1: {"id": 1, "at": same_instant}}
    assert checksum(a) == checksum(b)
    assert checksum(a) != checksum({**a, 2: {"id": 2, "at": t}})


def test_compare_table_reports_each_difference_by_key_modulo_the_id_map() -> None:
    source = [
        {"id": 1, "issue_id": 10, "body": "same"},
        {"id": 2, "issue_id": 10, "body": "changed"},
        {"id": 3, "issue_id": 11, "body": "missing"},
        {"id": 4, "issue_id": 12, "body": "wrong reference"},
    ]
    target = [
        {"id": 101, "issue_id": 110, "body": "same"},
        {"id": 102, "issue_id": 110, "body": "CHANGED"},
        {"id": 104, "issue_id": 12, "body": "wrong reference"},
        {"id": 105, "issue_id": 110, "body": "extra"},
    ]
    report = compare_table("comment", source, target, 100, "b")
    assert [(d.id, d.kind, d.columns) for d in report.differences] == [
        (103, "missing", ()),
        (105, "extra", ()),
        (102, "changed", ("body",)),
        (104, "changed", ("issue_id",)),
    ]
    assert (report.source_rows, report.target_rows) == (4, 4)
    assert report.source_checksum != report.target_checksum
    clean = compare_table("comment", source[:1], target[:1], 100, "b")
    assert clean.differences == [] and clean.source_checksum == clean.target_checksum


def test_compare_table_treats_nan_bytes_and_arrays_by_value() -> None:
    # psycopg2 reads a NaN numeric as Decimal('NaN'), never equal to itself, bytea as a
    # memoryview and arrays as lists: equal values must not be reported as changed.
    source = [{"id": 1, "issue_id": 10, "body": Decimal("NaN"), "raw": b"\x00\xff",
               "tags": [float("nan"), b"a"]}]  # fmt: skip
    target = [{"id": 101, "issue_id": 110, "body": Decimal("NaN"), "raw": memoryview(b"\x00\xff"),
               "tags": [float("nan"), memoryview(b"a")]}]  # fmt: skip
    report = compare_table("comment", source, target, 100, "b")
    assert report.differences == [] and report.source_checksum == report.target_checksum
    changed = [{**target[0], "raw": b"\x00", "tags": [1.0, b"a"], "body": Decimal("1")}]
    [difference] = compare_table("comment", source, changed, 100, "b").differences
    assert difference.columns == ("body", "raw", "tags")


def test_latest_changes_keys_by_the_named_record_key() -> None:
    rows = [
        {"unit_no": 5, "_position": 2, "_deleted": False, "title": "new"},
        {"unit_no": 5, "_position": 1, "_deleted": False, "title": "old"},
        {"unit_no": 6, "_position": 3, "_deleted": True, "title": None},
    ]
    upserts, deletes = latest_changes(rows, ("unit_no",))
    assert {k: r["title"] for k, r in upserts.items()} == {(5,): "new"} and deletes == {(6,)}


def test_latest_changes_keys_by_every_column_of_a_composite_key() -> None:
    """Replies of one ticket share its id: keyed by the first column alone, the later reply
    would have hidden the earlier one's change (a migrate bug once)."""
    rows = [
        {"ticket_id": "t1", "n": 1, "_position": 4, "_deleted": False, "body": "one"},
        {"ticket_id": "t1", "n": 2, "_position": 5, "_deleted": False, "body": "two"},
        {"ticket_id": "t1", "n": 3, "_position": 6, "_deleted": True, "body": None},
        {"ticket_id": "t2", "n": 1, "_position": 3, "_deleted": True, "body": None},
        {"ticket_id": "t2", "n": 1, "_position": 7, "_deleted": False, "body": "back"},
    ]
    upserts, deletes = latest_changes(rows, ("ticket_id", "n"))
    assert {k: r["body"] for k, r in upserts.items()} == {
        ("t1", 1): "one",
        ("t1", 2): "two",
        ("t2", 1): "back",
    }
    assert deletes == {("t1", 3)}
