"""Streaming capture's fast path against the path it replaced, byte for byte: pgoutput rows
read with a RowPlan and events written by the compiled writer (sluiceway/common/
avro_compiled.py) must give exactly the bytes of ``CapturedTable.parse`` and fastavro, for
every type of docs/types.md, and the compiled writer must never write what fastavro would
write otherwise or refuse."""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.common.avro_compiled import LeftToFastavro, compile_writer
from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.codec import Codec, Event, EventSchema
from sluiceway.producers.events import change_event
from sluiceway.producers.pgoutput import Decoder
from sluiceway.producers.tables import captured_tables
from tests.unit.test_pgoutput import begin, commit, decode, insert, relation
from tests.unit.test_pgtypes import CASES

COMMIT_TS = datetime(2026, 11, 22, 0, 48, 51, 460014, tzinfo=UTC)
TYPES = {
    "mood": {"kind": "enum", "values": ["ok", "not ok"]},
    "money_amount": {"kind": "domain", "base": "numeric(12,2)"},
    'app."Moods"': {"kind": "domain", "base": "mood[]"},
}


@functools.cache
def catalog_of(kind: str) -> tuple[Catalog, Codec]:
    """One entity: a non-null and a nullable column of type ``kind``."""
    columns = [
        {"name": "id", "type": "bigint", "nullable": False},
        {"name": "c", "type": kind, "nullable": False},
        {"name": "c_null", "type": kind},
    ]
    entity = {
        "table": "public.things", "key": ["tenant_id", "id"], "tenant": {"column": "tenant_id"},
        "columns": columns,
    }  # fmt: skip
    catalog = parse_catalog({"types": TYPES, "entities": {"thing": entity}}, kind)
    return catalog, Codec(catalog=catalog)


def fastavro_value(schema: EventSchema, event: Event) -> bytes:
    """What ``Codec.encode`` wrote before the compiled writer: fastavro's bytes."""
    after = event["after"]
    tagged = {**event, "after": None if after is None else (schema.record_name, after)}
    out = io.BytesIO()
    out.write(schema.header)
    schemaless_writer(out, schema.parsed, tagged)
    return out.getvalue()


@pytest.mark.parametrize(("type_name", "text", "_expected"), CASES)
def test_pgoutput_rows_encode_to_the_old_paths_bytes(
    type_name: str, text: str, _expected: Any
) -> None:
    catalog, codec = catalog_of(type_name)
    table, schema = captured_tables(catalog)["thing"], codec.schemas["thing"]
    assert schema.writer is not None
    columns = [("tenant_id", 25), ("id", 20), ("c", 25), ("c_null", 25)]
    txn = decode(Decoder(codec), begin(), relation(1, "things", columns),
                 insert(1, ["t1", 5, text, text]), insert(1, ["t1", 6, text, None]),
                 commit())  # fmt: skip
    for change, other in zip(txn.changes, (text, None), strict=True):
        old_row = {  # the old path: each text through CapturedTable.parse
            "id": change.entity_id,
            "c": table.parse("c", text),
            "c_null": None if other is None else table.parse("c_null", other),
        }
        new = change_event("thing", "t1", change.entity_id, "c", change.row, 1, COMMIT_TS)
        old = change_event("thing", "t1", change.entity_id, "c", old_row, 1, COMMIT_TS)
        assert codec.encode(new) == fastavro_value(schema, old)


def test_deletes_and_schema_less_events_encode_as_fastavro_does() -> None:
    codec = Codec()
    schema = codec.schemas["comment"]
    event = change_event("comment", "t1", 40001, "d", None, 1 << 40, COMMIT_TS)
    assert codec.encode(event) == fastavro_value(schema, event)


def _outcome(encode: Any, *args: Any) -> bytes | type[Exception]:
    try:
        value: bytes = encode(*args)
    except Exception as exc:  # what fastavro refuses, the codec must refuse alike
        return type(exc)
    return value


def test_events_the_compiled_writer_leaves_go_to_fastavro() -> None:
    codec = Codec()
    schema = codec.schemas["comment"]
    row = {"id": 1, "issue_id": 2, "author_id": 3, "update_author_id": None, "body": "x",
           "created": COMMIT_TS, "updated": COMMIT_TS}  # fmt: skip
    odd = [
        {**row, "author_id": True},  # fastavro refuses a bool in a union with a long
        {**row, "id": True},  # but writes it as 1 where no union is
        {**row, "body": None},
        {k: v for k, v in row.items() if k != "author_id"},  # a missing field: its default
        {**row, "created": COMMIT_TS.replace(tzinfo=None)},
    ]
    for after in odd:
        event = change_event("comment", "t1", 1, "u", after, 7, COMMIT_TS)
        assert _outcome(codec.encode, event) == _outcome(fastavro_value, schema, event)
    bad_op = change_event("comment", "t1", 1, "x", row, 7, COMMIT_TS)
    assert _outcome(codec.encode, bad_op) == _outcome(fastavro_value, schema, bad_op)


# Avro types the compiled writer writes itself or leaves to fastavro, each alone and
# nullable, against values of every Python type capture might hand it, and wrong ones.
SCHEMAS: list[Any] = [
    "boolean", "int", "long", "double", "float", "string", "bytes",
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "local-timestamp-micros"},
    {"type": "int", "logicalType": "date"}, {"type": "long", "logicalType": "time-micros"},
    {"type": "string", "logicalType": "uuid"},
    {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3},
    {"type": "array", "items": ["null", "long"]},
    {"type": "enum", "name": "Op", "symbols": ["r", "c", "u", "d"]},
]  # fmt: skip
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(2**31), max_value=2**31), st.floats(allow_nan=True),
    st.text(), st.binary(max_size=20), st.sampled_from(["r", "d", "x"]),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-8))])),
    st.datetimes(), st.dates(), st.times(), st.lists(st.none() | st.integers(-5, 5)),
    st.tuples(st.just("long"), st.integers(-5, 5)),
)  # fmt: skip


def _fastavro(schema: Any, record: Any) -> bytes | type[Exception]:
    try:
        out = io.BytesIO()
        schemaless_writer(out, parse_schema(schema), record)
        return out.getvalue()
    except Exception as exc:  # whatever fastavro raises, the compiled writer must raise too
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(SCHEMAS))), st.booleans(), VALUES)
def test_the_compiled_writer_writes_fastavros_bytes_or_leaves_the_value(
    which: int, nullable: bool, value: Any
) -> None:
    kind = SCHEMAS[which]
    schema = {"type": "record", "name": "R",
              "fields": [{"name": "f", "type": ["null", kind] if nullable else kind}]}  # fmt: skip
    writer = compile_writer(schema)
    assert writer is not None
    expected = _fastavro(schema, {"f": value})
    try:
        written = writer({"f": value})
    except Exception:  # left to fastavro, which writes it or refuses it
        return
    assert written == expected


def test_varints_of_every_width_and_the_long_range_ends() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": "long"}]}
    writer = compile_writer(schema)
    assert writer is not None
    for bits in range(64):
        for value in (1 << bits) - 1, 1 << bits, -(1 << bits), -(1 << bits) - 1:
            if -(1 << 63) <= value < 1 << 63:
                assert writer({"f": value}) == _fastavro(schema, {"f": value})
    with pytest.raises(LeftToFastavro):
        writer({"f": 1 << 63})
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    moments = {"type": "record", "name": "T", "fields": [{"name": "f", "type": stamp}]}
    stamps = compile_writer(moments)
    assert stamps is not None
    for moment in datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC):
        assert stamps({"f": moment}) == _fastavro(moments, {"f": moment})
