"""A captured table's columns changing while capture runs: pgoutput's Relation message,
re-sent after ALTER TABLE, makes a new schema version of the entity (added columns
captured, dropped ones left out, widened types carried); a narrowing stops that table
only."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.common.codec import Codec, EventSchema, event_key
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.run_schema import run_event_schema, run_event_schemas
from sluiceway.common.schema_registry import EvolvingCodec, parse_value, schema_value
from sluiceway.common.spec import RunSpec
from sluiceway.processors.batch import MIN_BATCH, BatchPath
from sluiceway.processors.transforms import output_key, transform, validate
from sluiceway.producers.decoded import Change
from sluiceway.producers.events import change_event
from sluiceway.producers.pgoutput import Decoder
from sluiceway.producers.schema_evolution import UncarriedChangeError, live_version, widens
from tests.catalogs import ENTITIES
from tests.unit.test_pgoutput import COMMENT_COLUMNS, INT8, TEXT, begin, commit, insert, relation
from tests.unit.test_processor_batch import _MOMENTS, CODEC, lookup_for, run_specs
from tests.unit.test_transforms_spec import TENANTS, _value

INT4 = 23
NAMES = {TEXT: "text", INT8: "bigint", INT4: "integer", 1184: "timestamp with time zone"}
WORKLOG = [("tenant_id", TEXT), ("id", INT8), ("issue_id", INT8), ("author_id", INT8),
           ("update_author_id", INT8), ("time_spent_seconds", INT8),
           ("started", 1184), ("comment", TEXT), ("created", 1184), ("updated", 1184)]  # fmt: skip
ROW = ["acme", 5, 9, 3, None, "hello", "2026-01-02 03:04:05+00", "2026-01-02 03:04:05+00"]


def _decoder() -> Decoder:
    return Decoder(Codec(), types=lambda oid, _mod: NAMES[oid])


def _changes(decoder: Decoder, *messages: bytes) -> list[Change]:
    decoder.feed(begin())
    for message in messages:
        decoder.feed(message)
    done: Any = decoder.feed(commit())
    return list(done.changes)


def _encoded(codec: Codec, change: Change) -> bytes:
    event = change_event(change.entity, change.tenant_id, change.entity_id, change.op,
                         change.row, 1, __import__("datetime").datetime(2026, 1, 2))  # fmt: skip
    return codec.encode(event) if change.schema is None else codec.encode_with(change.schema, event)


def test_widening_rules() -> None:
    assert widens("integer", "bigint") and widens("smallint", "integer")
    assert widens("character varying(10)", "text")
    assert widens("character varying(10)", "character varying(20)")
    assert widens("real", "double precision")
    assert not widens("bigint", "integer")
    assert not widens("text", "character varying(10)")
    assert not widens("character varying(20)", "character varying(10)")
    assert not widens("bigint", "text")


def test_unchanged_table_keeps_the_catalog_envelope() -> None:
    decoder = _decoder()
    [change] = _changes(decoder, relation(1, "comments", COMMENT_COLUMNS), insert(1, ROW))
    assert change.schema is None


def test_add_drop_and_widen_make_versions_readers_resolve() -> None:
    codec, decoder = Codec(), _decoder()
    added = [c for c in COMMENT_COLUMNS if c[0] != "body"] + [("extra", INT4)]
    row = [v for i, v in enumerate(ROW) if i != 5] + [7]
    [first] = _changes(decoder, relation(1, "comments", added), insert(1, row))
    assert first.schema is not None and first.row is not None
    assert "body" not in first.row and first.row["extra"] == 7
    fields = {f["name"]: f["type"] for f in first.schema.record["fields"]}
    assert fields["extra"] == ["null", "int"] and "body" not in fields
    widened = [*added[:-1], ("extra", INT8)]
    [second] = _changes(decoder, relation(1, "comments", widened), insert(1, row))
    assert second.schema is not None and second.schema.header != first.schema.header
    # a reader that knows only the catalog learns both versions from the registry records
    records = [schema_value(s) for s in (first.schema, second.schema)]
    reader = EvolvingCodec(Codec(), lambda: [parse_value(r) for r in records])
    for change in (first, second):
        decoded = reader.decode(_encoded(codec, change))
        assert decoded["after"]["extra"] == 7 and "body" not in decoded["after"]


def test_narrowing_stops_that_table_only(caplog: pytest.LogCaptureFixture) -> None:
    decoder = _decoder()
    narrowed = [(n, INT4 if n == "issue_id" else oid) for n, oid in COMMENT_COLUMNS]
    work = ["acme", 4, 9, 3, None, 60, "2026-01-02 03:04:05+00", "x",
            "2026-01-02 03:04:05+00", "2026-01-02 03:04:05+00"]  # fmt: skip
    _changes(decoder, relation(1, "comments", COMMENT_COLUMNS), relation(2, "worklogs", WORKLOG))
    with caplog.at_level(logging.ERROR, logger="sluiceway.capture"):
        changes = _changes(decoder, relation(1, "comments", narrowed), insert(1, ROW),
                           insert(2, work))  # fmt: skip
    assert [c.entity for c in changes] == ["worklog"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "public.comments.issue_id" in lines[0], lines
    assert "bigint to integer" in lines[0]


def _version_of(entity: str) -> EventSchema:
    """A schema version of ``entity``: a column added, and a nullable one dropped where the
    catalog allows it."""
    catalog = active_catalog()
    found = catalog.entity(entity)
    live = [(found.tenant.column or "tenant_id", "text")]
    live += [(c.name, c.type) for c in found.columns] + [("extra", "bigint")]
    for drop in [c.name for c in found.columns if c.nullable]:
        try:
            version = live_version(catalog, entity, [c for c in live if c[0] != drop])
        except UncarriedChangeError:
            continue
        break
    else:
        version = live_version(catalog, entity, live)
    assert version.schema is not None
    return version.schema


VERSIONS = {e: _version_of(e) for e in ENTITIES}
READER = CODEC.with_schemas(VERSIONS.values())


@st.composite
def version_batches(draw: st.DrawFn) -> tuple[list[bytes | None], list[bytes]]:
    """Keys and values of one entity's events, all written with a schema version."""
    entity = draw(st.sampled_from(ENTITIES))
    schema = VERSIONS[entity]
    rows = st.fixed_dictionaries({f["name"]: _value(f["type"]) for f in schema.record["fields"]})
    events = []
    for _ in range(draw(st.integers(MIN_BATCH, MIN_BATCH + 20))):
        after = draw(rows)
        op = draw(st.sampled_from("rcud"))
        events.append({
            "tenant_id": draw(st.sampled_from(TENANTS)), "entity": entity,
            "entity_id": after["id"], "op": op, "position": draw(st.integers(0, 2**62)),
            "source_ts": draw(_MOMENTS), "snapshot": False,
            "after": None if op == "d" else after,
        })  # fmt: skip
    keys: list[bytes | None] = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
    return keys, [CODEC.encode_with(schema, e) for e in events]


@settings(max_examples=60, deadline=None)
@given(spec=run_specs(), batch=version_batches(), full=st.booleans())
def test_batch_path_outputs_what_the_per_event_path_does_for_a_schema_version(
    spec: RunSpec, batch: tuple[list[bytes | None], list[bytes]], full: bool
) -> None:
    keys, values = batch
    path = BatchPath(spec, READER, run_event_schemas(spec, CODEC), lookup_for(spec), full)
    got = path.transform(keys, values, frozenset(spec.entities))
    expected: list[tuple[bytes | None, bytes | None]] | None = []
    for key, value in zip(keys, values, strict=True):
        writer = READER.schema_of(value)
        assert writer is not None
        try:
            event = validate(key, READER.decode(value), frozenset(spec.entities))
        except InvalidEventError:
            expected = None
            break
        out = None if full and event["op"] == "d" else transform(event, spec, lookup_for(spec))
        if out is not None and expected is not None:
            expected.append(
                (output_key(out), READER.encode_with(run_event_schema(writer, spec), out))
            )
    if expected is None:
        assert got is None
        return
    assert got is None or got == expected
    # the batch path takes every batch it has an encoder for: a version is not left behind
    batched = writer.entity in spec.entities and path.versions.get(writer.header) is not None
    assert got is not None or not batched
