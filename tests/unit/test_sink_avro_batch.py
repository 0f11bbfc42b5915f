"""Batch decoding of run-topic values, checked against fastavro (the source of truth)."""

from __future__ import annotations

import copy
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sluiceway.common.avro_batch import BatchDecoder, lake_table
from sluiceway.common.codec import HEADER_LEN, Codec, EventSchema, event_schema_from, plain_schema
from sluiceway.common.run_schema import run_event_schemas
from sluiceway.common.spec import parse_spec
from sluiceway.sinks.consume import RunReader, handle_batch
from sluiceway.sinks.offsets import OffsetTracker
from sluiceway.sinks.plan import RunPlan, TableSchema
from sluiceway.sinks.rows import arrow_schema, event_row
from tests.catalogs import ENTITIES
from tests.unit.test_schemas import generated_event
from tests.unit.test_sink_writer import DIRS, ETL, make_writer, read_back

CODEC = Codec()


def events(entity: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Generated events, every fifth a delete (no ``after``), ids unique."""
    out = []
    for i in range(count):
        event = generated_event(CODEC, entity, seed * 100_000 + i)
        event["entity_id"] = event["after"]["id"] = i + 1
        event["tenant_id"] = f"tenant-{i % 3:03d}"
        if i % 5 == 4:
            event["op"], event["after"] = "d", None
        out.append(event)
    return out


def key(event: dict[str, Any]) -> bytes:
    return f"{event['tenant_id']}/{event['entity_id']}".encode()


def table_schema(schema: EventSchema) -> tuple[pa.Schema, list[str]]:
    return arrow_schema(schema.record), [f["name"] for f in schema.record["fields"]]


def fastavro_table(schema: EventSchema, values: list[bytes]) -> pa.Table:
    """What the one-by-one path writes: fastavro decode, event_row, Arrow."""
    lake, columns = table_schema(schema)
    rows = [event_row(CODEC.with_schemas([schema]).decode(v), ETL, columns) for v in values]
    return pa.Table.from_pylist(rows, schema=lake)


def batch_table(schema: EventSchema, values: list[bytes], keys: list[Any]) -> pa.Table | None:
    frame = BatchDecoder().decode(schema, values, keys)
    if frame is None:
        return None
    lake, columns = table_schema(schema)
    return lake_table(frame, columns, lake, ETL)


@pytest.mark.parametrize("entity", ENTITIES)
def test_batch_decode_equals_fastavro(entity: str) -> None:
    schema = CODEC.schemas[entity]
    evs = events(entity, 300, seed=ENTITIES.index(entity))
    values = [CODEC.encode(e) for e in evs]
    got = batch_table(schema, values, [key(e) for e in evs])
    assert got is not None
    expected = fastavro_table(schema, values)
    assert got.schema == expected.schema
    assert got.equals(expected)


def _with_column(schema: EventSchema, column: dict[str, Any]) -> EventSchema:
    plain = copy.deepcopy(plain_schema(schema.parsed))
    after = next(f for f in plain["fields"] if f["name"] == "after")
    record = next(b for b in after["type"] if b != "null")
    record["fields"].append(column)
    return event_schema_from(schema.entity, plain)


@pytest.mark.parametrize(
    "column_type",
    [
        ["null", {"type": "enum", "name": "Mood", "symbols": ["ok", "sad"]}],
        {"type": "enum", "name": "Mood", "symbols": ["ok", "sad"]},
        ["null", {"type": "bytes", "logicalType": "decimal", "precision": 60, "scale": 2}],
    ],
)
def test_a_schema_polars_cannot_read_is_not_even_tried(
    column_type: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """polars panics on these, printing a Rust backtrace on stderr each batch; the decoder
    must say None (fastavro then decodes) without asking it."""
    schema = _with_column(CODEC.schemas["issue"], {"name": "mood", "type": column_type})
    value = Decimal("1.50") if "decimal" in str(column_type) else "ok"
    evs = events("issue", 40)
    for e in evs:
        if e["after"] is not None:
            e["after"]["mood"] = value
    values = [CODEC.encode_with(schema, e) for e in evs]
    assert BatchDecoder().decode(schema, values, [key(e) for e in evs]) is None
    assert "panicked" not in capfd.readouterr().err
    plain = CODEC.schemas["issue"]  # the envelope's own enum (op) is read
    values = [CODEC.encode_with(plain, e) for e in events("issue", 40)]
    assert BatchDecoder().decode(plain, values, [key(e) for e in events("issue", 40)]) is not None


def test_batch_decode_of_a_projected_run_schema() -> None:
    spec = parse_spec(
        {
            "tenants": ["tenant-000"],
            "destination": "/tmp/lake",
            "fields": {"issue": ["id", "key", "due_date", "story_points", "created"]},
            "pii": {"issue.key": "mask", "issue.due_date": "hash"},
            "pii_secret": "k",
        }
    )
    schema = run_event_schemas(spec, CODEC)["issue"]
    evs = events("issue", 50)
    for e in evs:
        if e["after"] is not None:
            kept = {"id", "key", "due_date", "story_points", "created"}
            e["after"] = {k: v for k, v in e["after"].items() if k in kept}
            e["after"]["key"], e["after"]["due_date"] = "***", "ab12"
    values = [CODEC.encode_with(schema, e) for e in evs]
    got = batch_table(schema, values, [key(e) for e in evs])
    assert got is not None and got.equals(fastavro_table(schema, values))


def _corrupt(values: list[bytes], index: int, how: str) -> list[bytes]:
    value = values[index]
    middle = HEADER_LEN + (len(value) - HEADER_LEN) // 2
    changed = {
        "insert": value[:middle] + b"\x02" + value[middle:],
        "drop": value[:middle] + value[middle + 1 :],
        "truncate": value[: HEADER_LEN + 3],
        "empty": value[:HEADER_LEN],
        "other_header": CODEC.schemas["user"].header + value[HEADER_LEN:],
    }[how]
    return [*values[:index], changed, *values[index + 1 :]]


@pytest.mark.parametrize("how", ["insert", "drop", "truncate", "empty", "other_header"])
@pytest.mark.parametrize("index", [0, 17, 39])
def test_corrupt_body_is_never_decoded_in_a_batch(how: str, index: int) -> None:
    schema = CODEC.schemas["issue"]
    evs = events("issue", 40)
    values = _corrupt([CODEC.encode(e) for e in evs], index, how)
    keys = [key(e) for e in evs]
    got = batch_table(schema, values, keys)
    if got is not None:
        # trailing bytes of the last body are ignored by fastavro too: same rows, or None
        assert got.equals(fastavro_table(schema, values))


def test_keys_that_do_not_match_reject_the_batch() -> None:
    schema = CODEC.schemas["issue"]
    evs = events("issue", 10)
    values = [CODEC.encode(e) for e in evs]
    keys: list[Any] = [key(e) for e in evs]
    assert batch_table(schema, values, keys) is not None
    assert batch_table(schema, values, [*keys[:3], b"tenant-000/999", *keys[4:]]) is None
    assert batch_table(schema, values, [*keys[:3], None, *keys[4:]]) is None
    assert batch_table(schema, values, [*keys[:3], b"\xff\xfe", *keys[4:]]) is None
    assert batch_table(schema, values, keys[:-1]) is None


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes, key: bytes | None) -> None:
        self._p, self._o, self._v, self._k = partition, offset, value, key

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "sw.run.test"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})

    def poll(self, timeout: float) -> int:
        return 0


def reader_for(tmp_path: Path, **caps: Any) -> RunReader:
    schema = CODEC.schemas["issue"]
    lake, columns = table_schema(schema)
    sid = schema.header[2:].hex()
    plan = RunPlan(
        etl_id=ETL,
        tenants=frozenset({"tenant-000", "tenant-001", "tenant-002"}),
        table_dirs=DIRS,
        schemas={sid: TableSchema("issue", sid, lake, tuple(columns))},
        full_export_date="2026-11-22",
    )
    return RunReader(
        topic="sw.run.test", dlq_topic="sw.dlq.sink", notify_topic="sw.notifications",
        consumer=None, producer=FakeProducer(), codec=CODEC, plan=plan,  # type: ignore[arg-type]
        writer=make_writer(tmp_path, **caps), tracker=OffsetTracker(1),
    )  # fmt: skip


def test_a_corrupt_message_alone_is_dead_lettered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader = reader_for(tmp_path, row_group_rows=64)
    evs = events("issue", 200)
    values = _corrupt([CODEC.encode(e) for e in evs], 77, "insert")
    values = _corrupt(values, 120, "other_header")  # an unselected fingerprint, mid-batch
    msgs = [FakeMessage(0, i, v, key(e)) for i, (v, e) in enumerate(zip(values, evs, strict=True))]
    with caplog.at_level(logging.WARNING, "sluiceway.sink"):
        handle_batch(reader, msgs[:150])  # type: ignore[arg-type]
        handle_batch(reader, msgs[150:])  # type: ignore[arg-type]
    reader.writer.close_all()
    sent = reader.producer.sent  # type: ignore[attr-defined]
    assert [int(dict(m["headers"])["sw-offset"]) for m in sent] == [77, 120]
    assert reader.dead_letters == 2 and reader.rows == 198
    written = pa.concat_tables([t for _, _, t in read_back(reader.writer)])
    good = [v for i, v in enumerate(values) if i not in (77, 120)]
    assert written.sort_by("id").equals(fastavro_table(CODEC.schemas["issue"], good).sort_by("id"))
    assert reader.tracker.consumed == {0: 199}


def _layout(writer: Any) -> list[tuple[str, list[int]]]:
    """Each file's name and the sizes of its row groups."""
    return [
        (p.name, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        for p, meta, _ in read_back(writer)
    ]


def test_batches_cut_files_and_row_groups_as_rows_one_by_one_do(tmp_path: Path) -> None:
    reader = reader_for(tmp_path / "a", row_group_rows=64, max_rows=300)
    evs = events("issue", 1000)
    msgs = [FakeMessage(0, i, CODEC.encode(e), key(e)) for i, e in enumerate(evs)]
    for start in range(0, 1000, 170):
        handle_batch(reader, msgs[start : start + 170])  # type: ignore[arg-type]
    reader.writer.close_all()
    one_by_one = make_writer(tmp_path / "b", row_group_rows=64, max_rows=300)
    plan = next(iter(reader.plan.schemas.values()))
    for m in msgs:
        row = event_row(CODEC.decode(m.value()), ETL, list(plan.columns))
        one_by_one.add("issue", 0, m.offset(), plan.schema, plan.schema_id, row)
    one_by_one.close_all()
    assert _layout(reader.writer) == _layout(one_by_one)
    assert len(_layout(one_by_one)) == 4
    got = pa.concat_tables([t for _, _, t in read_back(reader.writer)])
    assert got.equals(pa.concat_tables([t for _, _, t in read_back(one_by_one)]))
