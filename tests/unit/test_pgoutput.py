"""Decoding pgoutput (protocol version 1) messages, built byte by byte as the protocol
documentation lays them out, into the same transactions the wal2json decoder gives."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest

from sluiceway.common.catalog import parse_catalog
from sluiceway.common.codec import Codec
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.pgoutput import UNCHANGED, Decoder
from sluiceway.producers.tables import CapturedTable, captured_tables
from sluiceway.producers.wal2json import Heartbeat, Transaction

# PostgreSQL's type oids, as a Relation message carries them
TEXT, INT8, BOOL, TIMESTAMPTZ = 25, 20, 16, 1184
COMMENT_COLUMNS = [
    ("tenant_id", TEXT), ("id", INT8), ("issue_id", INT8), ("author_id", INT8),
    ("update_author_id", INT8), ("body", TEXT), ("created", TIMESTAMPTZ),
    ("updated", TIMESTAMPTZ),
]  # fmt: skip
COMMIT_LSN = 0x3D1C600
# 2026-11-22 00:48:51.460014 UTC in microseconds since 2000-01-01
COMMIT_US = 848_623_731_460_014


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(xid: int = 7) -> bytes:
    return b"B" + struct.pack(">qqI", COMMIT_LSN, COMMIT_US, xid)


def commit() -> bytes:
    return b"C" + struct.pack(">bqqq", 0, COMMIT_LSN, COMMIT_LSN + 0x30, COMMIT_US)


def relation(
    relid: int, table: str, columns: Sequence[tuple[str, int]], schema: str = "public"
) -> bytes:
    out = b"R" + struct.pack(">I", relid) + _s(schema) + _s(table) + b"f"
    out += struct.pack(">h", len(columns))
    for name, oid in columns:
        out += struct.pack(">b", int(name in ("tenant_id", "id"))) + _s(name)
        out += struct.pack(">Ii", oid, -1)
    return out


def tuple_data(values: Sequence[Any]) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = str(value).encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def insert(relid: int, values: Sequence[Any]) -> bytes:
    return b"I" + struct.pack(">I", relid) + b"N" + tuple_data(values)


def update(
    relid: int, new: Sequence[Any], old: Sequence[Any] | None = None, kind: bytes = b"O"
) -> bytes:
    before = kind + tuple_data(old) if old is not None else b""
    return b"U" + struct.pack(">I", relid) + before + b"N" + tuple_data(new)


def delete(relid: int, old: Sequence[Any], kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relid) + kind + tuple_data(old)


def message(lsn: int, prefix: str, content: bytes = b"x", transactional: bool = False) -> bytes:
    head = b"M" + struct.pack(">bq", int(transactional), lsn) + _s(prefix)
    return head + struct.pack(">i", len(content)) + content


def comment(body: Any = 'a "b",\nc', author: Any = None) -> list[Any]:
    return ["tenant-001", 40001, 30000, author, 10001, body,
            "2026-01-02 03:04:05.123456+00", "2026-01-02 05:04:05+02"]  # fmt: skip


def decode(decoder: Decoder, *messages: bytes) -> Transaction:
    for msg in messages[:-1]:
        assert decoder.feed(msg) is None
    txn = decoder.feed(messages[-1])
    assert isinstance(txn, Transaction)
    return txn


def test_an_insert_is_returned_at_commit_with_typed_values() -> None:
    decoder = Decoder(Codec())
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 insert(1, comment()), commit())  # fmt: skip
    assert (txn.xid, txn.commit_lsn) == (7, COMMIT_LSN)
    assert txn.commit_ts == datetime(2026, 11, 22, 0, 48, 51, 460014, tzinfo=UTC)
    (change,) = txn.changes
    assert (change.entity, change.tenant_id, change.entity_id, change.op) == (
        "comment", "tenant-001", 40001, "c",
    )  # fmt: skip
    assert change.row == {
        "id": 40001, "issue_id": 30000, "author_id": None, "update_author_id": 10001,
        "body": 'a "b",\nc', "created": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "updated": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }  # fmt: skip


def test_booleans_doubles_and_dates_convert_from_text_as_for_wal2json() -> None:
    tables = captured_tables(Codec().catalog)
    users, issues = tables["user"], tables["issue"]
    assert users.parse("active", "t") is True
    assert users.parse("active", "f") is False
    assert users.parse("active", True) is True  # wal2json's JSON boolean
    assert issues.parse("story_points", "2.5") == 2.5
    assert math.isnan(issues.parse("story_points", "NaN"))
    assert issues.parse("story_points", "-Infinity") == -math.inf
    assert issues.parse("due_date", "2025-03-04") == date(2025, 3, 4)
    with pytest.raises(ValueError, match="boolean value 'yes'"):
        users.parse("active", "yes")


def test_a_user_row_with_a_boolean_decodes() -> None:
    columns = [("tenant_id", TEXT), ("id", INT8), ("account_id", TEXT), ("display_name", TEXT),
               ("email_address", TEXT), ("active", BOOL), ("time_zone", TEXT), ("locale", TEXT),
               ("created", TIMESTAMPTZ), ("updated", TIMESTAMPTZ)]  # fmt: skip
    values = ["t1", 5, "acc", "Ann", None, "f", None, "en", "2026-01-01 00:00:00+00",
              "2026-01-01 00:00:00+00"]  # fmt: skip
    txn = decode(Decoder(Codec()), begin(), relation(3, "users", columns), insert(3, values),
                 commit())  # fmt: skip
    row = txn.changes[0].row
    assert row is not None and row["active"] is False and row["email_address"] is None


def test_null_unchanged_toast_and_text_are_told_apart() -> None:
    """NULL stays None, an unchanged TOASTed value comes from the old row (REPLICA IDENTITY
    FULL sends it whole), a text value is converted."""
    decoder = Decoder(Codec())
    old = comment(body="long body kept in TOAST", author=None)
    new = comment(body=UNCHANGED, author=None)
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 update(1, new, old), commit())  # fmt: skip
    row = txn.changes[0].row
    assert row is not None and txn.changes[0].op == "u"
    assert row["body"] == "long body kept in TOAST" and row["author_id"] is None


def test_unchanged_toast_without_old_row_is_read_from_the_source_by_key() -> None:
    asked: list[tuple[str, dict[str, Any], Sequence[str]]] = []

    def fetch(
        table: CapturedTable, key: dict[str, Any], names: Sequence[str]
    ) -> dict[str, str | None]:
        asked.append((table.qualified, key, names))
        return {"body": "read back from the source"}

    decoder = Decoder(Codec(), fetch)
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 update(1, comment(body=UNCHANGED)), commit())  # fmt: skip
    assert txn.changes[0].row is not None
    assert txn.changes[0].row["body"] == "read back from the source"
    assert asked == [("public.comments", {"tenant_id": "tenant-001", "id": 40001}, ["body"])]


def test_unchanged_toast_comes_from_an_earlier_change_in_the_transaction() -> None:
    decoder = Decoder(Codec())  # no source to read: the insert before must be used
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 insert(1, comment(body="x" * 9000)), update(1, comment(body=UNCHANGED)),
                 commit())  # fmt: skip
    assert [c.row["body"] for c in txn.changes if c.row] == ["x" * 9000] * 2


def test_unchanged_toast_that_cannot_be_filled_is_refused_never_left_out() -> None:
    decoder = Decoder(Codec(), lambda table, key, names: None)  # the row was deleted since
    decoder.feed(begin())
    decoder.feed(relation(1, "comments", COMMENT_COLUMNS))
    with pytest.raises(SourceSchemaError, match=r"TOASTed columns \['body'\].*deleted since.*"
                       r"ALTER TABLE public\.comments REPLICA IDENTITY FULL"):  # fmt: skip
        decoder.feed(update(1, comment(body=UNCHANGED)))


def test_a_delete_uses_the_key_and_carries_no_row() -> None:
    decoder = Decoder(Codec())
    key_only = ["tenant-002", 5, None, None, None, None, None, None]  # REPLICA IDENTITY DEFAULT
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 delete(1, key_only), delete(1, comment(), kind=b"O"), commit())  # fmt: skip
    assert [(c.op, c.tenant_id, c.entity_id, c.row) for c in txn.changes] == [
        ("d", "tenant-002", 5, None), ("d", "tenant-001", 40001, None),
    ]  # fmt: skip


def test_a_relation_re_sent_after_alter_table_is_used_from_then_on() -> None:
    """After ``ALTER TABLE`` PostgreSQL sends the relation again; columns are taken by name,
    so a new column order is followed, a column the catalog lacks is skipped, and a
    captured column the table lacks is refused by name."""
    decoder = Decoder(Codec())
    reordered = [COMMENT_COLUMNS[i] for i in (7, 6, 5, 4, 3, 2, 1, 0)]
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 insert(1, comment()), relation(1, "comments", reordered),
                 insert(1, comment(body="second")[::-1]), commit())  # fmt: skip
    assert [c.row["body"] for c in txn.changes if c.row] == ['a "b",\nc', "second"]
    first, second = (c.row or {} for c in txn.changes)
    assert first == {**second, "body": 'a "b",\nc'}
    extra = decode(decoder, begin(), relation(1, "comments", [*COMMENT_COLUMNS, ("mood", 3802)]),
                   insert(1, [*comment(), "happy"]), commit())  # fmt: skip
    assert extra.changes[0].row == first
    dropped = [c for c in COMMENT_COLUMNS if c[0] != "body"]
    decoder.feed(begin())
    with pytest.raises(
        SourceSchemaError, match=r"public\.comments lacks captured columns \['body'\]"
    ):
        decoder.feed(relation(1, "comments", dropped))


def test_truncate_of_a_captured_table_is_refused_like_wal2json() -> None:
    decoder = Decoder(Codec())
    decoder.feed(begin())
    decoder.feed(relation(1, "comments", COMMENT_COLUMNS))
    decoder.feed(relation(9, "audit", [("id", INT8)]))
    assert decoder.feed(b"T" + struct.pack(">ibI", 1, 0, 9)) is None  # not captured
    with pytest.raises(SourceSchemaError, match=r"TRUNCATE of public\.comments"):
        decoder.feed(b"T" + struct.pack(">ibII", 2, 0, 9, 1))


def test_uncaptured_tables_types_and_origins_are_skipped() -> None:
    """A publication the user made may list more tables than are captured."""
    decoder = Decoder(Codec())
    other = relation(9, "audit", [("id", INT8), ("what", TEXT)])
    type_msg = b"Y" + struct.pack(">I", 16400) + _s("public") + _s("mood")
    origin = b"O" + struct.pack(">q", 123) + _s("upstream")
    txn = decode(decoder, begin(), type_msg, origin, other, insert(9, [1, "x"]),
                 update(9, [1, "y"]), delete(9, [1, None]), commit())  # fmt: skip
    assert txn.changes == []
    with pytest.raises(SourceSchemaError, match="message type 'S'"):
        decoder.feed(b"S" + struct.pack(">Ib", 7, 1))


def test_heartbeats_are_recognised_other_messages_ignored() -> None:
    decoder = Decoder(Codec())
    assert decoder.feed(message(16, "sluiceway-heartbeat")) == Heartbeat(16)
    assert decoder.feed(message(32, "someone-else")) is None
    decoder.feed(begin())
    assert decoder.feed(message(48, "sluiceway-heartbeat", transactional=True)) == Heartbeat(48)
    assert isinstance(decoder.feed(commit()), Transaction)


def test_changes_outside_a_transaction_or_before_their_relation_are_refused() -> None:
    decoder = Decoder(Codec())
    decoder.feed(relation(1, "comments", COMMENT_COLUMNS))
    with pytest.raises(SourceSchemaError, match="'I' outside a transaction"):
        decoder.feed(insert(1, comment()))
    decoder.feed(begin())
    with pytest.raises(SourceSchemaError, match="relation 2 before its schema"):
        decoder.feed(insert(2, comment()))


def test_a_schema_per_tenant_table_takes_its_tenant_from_its_schema() -> None:
    """A tenant schema's table is captured from its first Relation message (one created
    while capture runs included); the row carries no tenant column; other schemas are not
    captured."""
    catalog = parse_catalog({"entities": {"note": {
        "table": "notes", "key": ["id"], "tenant": {"schema_pattern": r"org_(\d+)"},
        "columns": [{"name": "id", "type": "bigint", "nullable": False},
                    {"name": "body", "type": "text"}],
    }}}, "test")  # fmt: skip
    decoder = Decoder(Codec(catalog=catalog))
    columns = [("id", INT8), ("body", TEXT)]
    txn = decode(decoder, begin(), relation(1, "notes", columns, schema="org_7"),
                 relation(2, "notes", columns, schema="org_12"),
                 relation(3, "notes", columns, schema="public"), insert(1, [5, "a"]),
                 insert(2, [5, "b"]), insert(3, [5, "c"]), update(2, [5, "b2"]),
                 delete(1, [5, None]), commit())  # fmt: skip
    assert [(c.tenant_id, c.entity_id, c.op, c.row) for c in txn.changes] == [
        ("7", 5, "c", {"id": 5, "body": "a"}), ("12", 5, "c", {"id": 5, "body": "b"}),
        ("12", 5, "u", {"id": 5, "body": "b2"}), ("7", 5, "d", None),
    ]  # fmt: skip


def test_multibyte_text_and_empty_text_are_read_whole() -> None:
    """Lengths are in bytes: a value of multi-byte characters ends where the next begins."""
    decoder = Decoder(Codec())
    body = "żółw 🐢 \x01 ' \\"
    txn = decode(decoder, begin(), relation(1, "comments", COMMENT_COLUMNS),
                 insert(1, comment(body=body)), insert(1, comment(body="")), commit())  # fmt: skip
    rows = [c.row for c in txn.changes]
    assert rows[0] is not None and rows[0]["body"] == body and rows[0]["created"] is not None
    assert rows[1] is not None and rows[1]["body"] == "" and rows[1]["created"] is not None


def test_a_column_of_an_unknown_kind_is_refused_by_name() -> None:
    """pgoutput's binary mode ('b') is not asked for: a value in it must not be misread."""
    decoder = Decoder(Codec())
    bad = insert(1, comment()).replace(b"t\x00\x00\x00\x05", b"b\x00\x00\x00\x05", 1)
    assert bad != insert(1, comment())
    decoder.feed(begin())
    decoder.feed(relation(1, "comments", COMMENT_COLUMNS))
    with pytest.raises(SourceSchemaError, match="column of kind 'b'; expected n, u or t"):
        decoder.feed(bad)
