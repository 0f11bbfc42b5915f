"""The pure parts of change capture: wal2json decoding, positions, acknowledgement order."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from sluiceway.common.catalog import parse_catalog
from sluiceway.common.codec import Codec
from sluiceway.producers.acks import AckTracker
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.events import MAX_SEQ, int_to_lsn, lsn_of, lsn_to_int, position
from sluiceway.producers.stream import wal2json_options
from sluiceway.producers.tables import tables_by_relation
from sluiceway.producers.wal2json import Decoder, Heartbeat, Transaction


def _msg(action: str, **fields: Any) -> str:
    return json.dumps({"action": action, **fields})


def _col(name: str, value: Any, type_: str = "text") -> dict[str, Any]:
    return {"name": name, "type": type_, "value": value}


def _comment_columns(body: str = 'a "b",\nc') -> list[dict[str, Any]]:
    return [
        _col("tenant_id", "tenant-001"), _col("id", 40001, "bigint"),
        _col("issue_id", 30000, "bigint"), _col("author_id", None, "bigint"),
        _col("update_author_id", 10001, "bigint"), _col("body", body),
        _col("created", "2026-01-02 03:04:05.123456+00", "timestamp with time zone"),
        _col("updated", "2026-01-02 05:04:05+02", "timestamp with time zone"),
    ]  # fmt: skip


def _begin() -> str:
    return _msg("B", xid=7, lsn="0/3D1C600", timestamp="2026-11-22 00:48:51.460014+00")


def test_a_transaction_is_returned_at_commit_with_typed_values() -> None:
    decoder = Decoder(Codec())
    assert decoder.feed(_begin()) is None
    assert (
        decoder.feed(_msg("I", table="comments", schema="public", columns=_comment_columns()))
        is None
    )
    txn = decoder.feed(_msg("C", xid=7, lsn="0/3D1C600"))
    assert isinstance(txn, Transaction)
    assert txn.commit_lsn == lsn_to_int("0/3D1C600")
    assert txn.commit_ts == datetime(2026, 11, 22, 0, 48, 51, 460014, tzinfo=UTC)
    (change,) = txn.changes
    assert (change.entity, change.tenant_id, change.entity_id, change.op) == (
        "comment",
        "tenant-001",
        40001,
        "c",
    )
    assert change.row is not None and "tenant_id" not in change.row
    assert change.row["body"] == 'a "b",\nc'
    assert change.row["author_id"] is None
    assert change.row["created"] == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert change.row["updated"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    codec = Codec()
    event = {
        "tenant_id": "t",
        "entity": "comment",
        "entity_id": 1,
        "op": "c",
        "position": 1,
        "source_ts": txn.commit_ts,
        "snapshot": False,
        "after": change.row,
    }
    assert codec.decode(codec.encode(event))["after"] == change.row


def test_dates_doubles_and_booleans_convert() -> None:
    tables = tables_by_relation(Codec().catalog)
    issues, users = tables["public", "issues"], tables["public", "users"]
    assert issues.parse("due_date", "2025-03-04") == date(2025, 3, 4)
    assert issues.parse("story_points", 3) == 3.0
    assert issues.parse("story_points", "2.50") == 2.5  # wal2json's number, kept as text
    assert users.parse("active", True) is True


def test_delete_uses_the_identity_and_carries_no_row() -> None:
    decoder = Decoder(Codec())
    decoder.feed(_begin())
    identity = [_col("tenant_id", "tenant-002"), _col("id", 5, "bigint")]
    decoder.feed(_msg("D", table="worklogs", schema="public", identity=identity))
    txn = decoder.feed(_msg("C", xid=7, lsn="0/3D1C600"))
    assert isinstance(txn, Transaction)
    assert [(c.op, c.tenant_id, c.entity_id, c.row) for c in txn.changes] == [
        ("d", "tenant-002", 5, None)
    ]


def test_update_fills_unchanged_toast_columns_from_the_old_row() -> None:
    decoder = Decoder(Codec())
    decoder.feed(_begin())
    old = _comment_columns(body="long body kept in TOAST")
    new = [c for c in _comment_columns() if c["name"] != "body"]
    decoder.feed(_msg("U", table="comments", schema="public", columns=new, identity=old))
    txn = decoder.feed(_msg("C", xid=7, lsn="0/3D1C600"))
    assert isinstance(txn, Transaction)
    assert txn.changes[0].row is not None
    assert txn.changes[0].row["body"] == "long body kept in TOAST"


def test_update_without_full_identity_names_the_fix() -> None:
    decoder = Decoder(Codec())
    decoder.feed(_begin())
    new = [c for c in _comment_columns() if c["name"] != "body"]
    with pytest.raises(SourceSchemaError, match="REPLICA IDENTITY FULL"):
        decoder.feed(_msg("U", table="comments", schema="public", columns=new))


def test_uncatalogued_columns_are_skipped_a_missing_one_and_truncate_refused() -> None:
    decoder = Decoder(Codec())
    decoder.feed(_begin())
    columns = [*_comment_columns(), _col("mood", "happy")]
    decoder.feed(_msg("I", table="comments", schema="public", columns=columns))
    lacking = [c for c in _comment_columns() if c["name"] != "created"]
    with pytest.raises(
        SourceSchemaError, match=r"public\.comments lacks captured columns \['created'\]"
    ):
        decoder.feed(_msg("I", table="comments", schema="public", columns=lacking))
    with pytest.raises(SourceSchemaError, match=r"TRUNCATE of public\.issues"):
        decoder.feed(_msg("T", table="issues", schema="public"))


def test_heartbeats_are_recognised_other_messages_ignored() -> None:
    decoder = Decoder(Codec())
    beat = decoder.feed(_msg("M", lsn="0/10", prefix="sluiceway-heartbeat", content="x"))
    assert beat == Heartbeat(16)
    assert decoder.feed(_msg("M", lsn="0/20", prefix="someone-else", content="x")) is None


def test_positions_increase_in_commit_order_inside_and_across_transactions() -> None:
    first = [position(100, seq) for seq in range(3)]
    assert first == sorted(first) and len(set(first)) == 3
    assert position(101, 0) > position(100, MAX_SEQ)
    assert lsn_of(position(12345, 17)) == 12345
    assert int_to_lsn(lsn_to_int("16/B374D848")) == "16/B374D848"
    with pytest.raises(SourceSchemaError, match="more than"):
        position(100, MAX_SEQ + 1)


def test_confirmed_position_waits_for_every_earlier_transaction() -> None:
    tracker = AckTracker(confirmed=10)
    a, b = tracker.add(20, 2), tracker.add(30, 1)
    tracker.acked(b)
    assert tracker.safe_lsn() == 10  # b is done but a, before it, is not
    tracker.acked(a)
    assert tracker.safe_lsn() == 10
    tracker.acked(a)
    assert tracker.safe_lsn() == 30


def test_heartbeat_advances_only_when_nothing_is_in_flight() -> None:
    tracker = AckTracker(confirmed=10)
    txn = tracker.add(20, 1)
    tracker.saw_heartbeat(25)
    assert tracker.safe_lsn() == 10
    tracker.acked(txn)
    assert tracker.safe_lsn() == 25
    empty = tracker.add(40, 0)  # a transaction with no captured change
    assert empty.remaining == 0 and tracker.safe_lsn() == 40


def test_a_failed_delivery_holds_the_position_back() -> None:
    tracker = AckTracker(confirmed=10)
    txn = tracker.add(20, 1)
    tracker.acked(txn, error="broker down")
    assert tracker.safe_lsn() == 10
    assert tracker.error == "broker down"


def test_wal2json_takes_a_schema_per_tenant_table_in_every_matching_schema() -> None:
    catalog = parse_catalog({"entities": {"note": {
        "table": "notes", "key": ["id"], "tenant": {"schema_pattern": r"org_(\d+)"},
        "columns": [{"name": "id", "type": "bigint", "nullable": False},
                    {"name": "body", "type": "text"}],
    }}}, "test")  # fmt: skip
    assert wal2json_options(catalog)["add-tables"] == "*.notes"
    decoder = Decoder(Codec(catalog=catalog))
    decoder.feed(_begin())
    row = [_col("id", 5, "bigint"), _col("body", "a")]
    for schema in ("org_7", "public", "org_12"):
        decoder.feed(_msg("I", table="notes", schema=schema, columns=row))
    decoder.feed(_msg("D", table="notes", schema="org_7", identity=[_col("id", 5, "bigint")]))
    txn = decoder.feed(_msg("C"))
    assert isinstance(txn, Transaction)
    assert [(c.tenant_id, c.entity_id, c.op, c.row) for c in txn.changes] == [
        ("7", 5, "c", {"id": 5, "body": "a"}), ("12", 5, "c", {"id": 5, "body": "a"}),
        ("7", 5, "d", None),
    ]  # fmt: skip
