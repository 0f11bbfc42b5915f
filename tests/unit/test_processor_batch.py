"""The batch path (processors/batch.py) against the per-event path it replaces.

For random specs and random batches of one entity's events, the batch path's outputs
are byte for byte the per-event path's, and every batch holding an event the per-event
path rejects is handed back to it (None), so that event is dead-lettered alone.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.common.avro_batch import BatchDecoder
from sluiceway.common.avro_encode import ColumnEncoder, UnencodableError, varints, zigzag
from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.run_schema import run_event_schemas
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.processors.batch import MIN_BATCH, BatchPath, in_scope_rows, opted_out_rows, remapped
from sluiceway.processors.opt_out import OptedOut, cascade_of
from sluiceway.processors.transforms import output_key, transform, validate
from tests.catalogs import ENTITIES
from tests.unit.test_transforms_spec import TENANTS, _value, specs

CODEC = Codec()
ALL = frozenset(ENTITIES)
Output = tuple[bytes | None, bytes | None]


class _Every3:
    """The verdicts of a pass that found every third row of each judged entity opted out
    (ids 0, 3, 6, ... by value "A", 1, 4, 7, ... by "B")."""

    def __init__(self, values: str, by_id: bool) -> None:
        self.remainders = {"A": 0, "B": 1}
        self.values, self.by_id = values, by_id

    def __contains__(self, row: object) -> bool:
        assert isinstance(row, tuple)
        _tenant, key = row
        number = int(key if self.by_id else key[0])
        return any(number % 3 == self.remainders[v] for v in self.values)


def lookup_for(spec: RunSpec) -> OptedOut:
    cascade = cascade_of(active_catalog())
    assert cascade is not None
    values = "".join(spec.opt_out)
    return OptedOut(
        cascade,
        frozenset(spec.opt_out),
        rows={e: _Every3(values, by_id=False) for e in cascade.judged},
        ids={e: _Every3(values, by_id=True) for e in cascade.judged},
    )


@functools.cache
def _rows(entity: str) -> st.SearchStrategy[dict[str, Any]]:
    """One entity's rows; built once, as hypothesis validates every strategy it is handed
    and a batch draws up to a hundred events (most of this module's time went there)."""
    fields = CODEC.schemas[entity].record["fields"]
    return st.fixed_dictionaries({f["name"]: _value(f["type"]) for f in fields})


_MOMENTS = _value({"type": "long", "logicalType": "timestamp-micros"})


@st.composite
def entity_events(draw: st.DrawFn, entity: str) -> dict[str, Any]:
    after = draw(_rows(entity))
    deleted = draw(st.integers(0, 4)) == 0
    return {
        "tenant_id": draw(st.sampled_from(TENANTS)),
        "entity": entity,
        "entity_id": after["id"],
        "op": "d" if deleted else draw(st.sampled_from("rcu")),
        "position": draw(st.integers(-(2**63), 2**63 - 1)),
        "source_ts": draw(_MOMENTS),
        "snapshot": draw(st.booleans()),
        "after": None if deleted else after,
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes | None], list[bytes]]:
    """Keys and values of one entity's events; now and then one the per-event path rejects."""
    entity = draw(st.sampled_from(ENTITIES))
    evs = draw(st.lists(entity_events(entity), min_size=MIN_BATCH, max_size=MIN_BATCH + 40))
    keys: list[bytes | None] = [event_key(e["tenant_id"], e["entity_id"]) for e in evs]
    values = [CODEC.encode(e) for e in evs]
    at = draw(st.integers(0, len(evs) - 1))
    spoil = draw(st.sampled_from(["none", "none", "none", "key", "truncate", "bad-op"]))
    if spoil == "key":
        keys[at] = b"t1/" + str(evs[at]["entity_id"] + 1).encode()
    elif spoil == "truncate":
        values[at] = values[at][:-1]
    elif spoil == "bad-op":  # an upsert without a row
        values[at] = CODEC.encode({**evs[at], "op": "u", "after": None})
    return keys, values


@st.composite
def run_specs(draw: st.DrawFn) -> RunSpec:
    spec: RunSpec = draw(specs())
    if draw(st.booleans()):
        moment = draw(_value({"type": "long", "logicalType": "timestamp-micros"}))
        spec = spec.model_copy(update={"from_date": moment})
    return spec


def per_event(
    spec: RunSpec, keys: list[bytes | None], values: list[bytes], full: bool
) -> list[Output] | None:
    """What the worker's per-event path (processors/app.py) outputs; None if it rejects one."""
    schemas = run_event_schemas(spec, CODEC)
    outs: list[Output] = []
    for key, value in zip(keys, values, strict=True):
        try:
            event = validate(key, CODEC.decode(value), frozenset(spec.entities))
            if full and event["op"] == "d":
                continue
            out = transform(event, spec, lookup_for(spec))
            if out is not None:
                outs.append((output_key(out), CODEC.encode_with(schemas[out["entity"]], out)))
        except InvalidEventError:
            return None
    return outs


def both_paths(
    spec: RunSpec, batch: tuple[list[bytes | None], list[bytes]], full: bool
) -> tuple[BatchPath, list[Output] | None, list[Output] | None]:
    """(the batch path, what it outputs, what the per-event path outputs) for one batch."""
    keys, values = batch
    path = BatchPath(spec, CODEC, run_event_schemas(spec, CODEC), lookup_for(spec), full)
    return (
        path,
        path.transform(keys, values, frozenset(spec.entities)),
        per_event(spec, keys, values, full),
    )


@settings(max_examples=120, deadline=None)
@given(spec=run_specs(), batch=batches(), full=st.booleans())
def test_batch_path_outputs_what_the_per_event_path_does(
    spec: RunSpec, batch: tuple[list[bytes | None], list[bytes]], full: bool
) -> None:
    path, got, expected = both_paths(spec, batch, full)
    values = batch[1]
    if expected is None:
        assert got is None  # the per-event path must dead-letter the bad event alone
        return
    entity = CODEC.decode(values[0])["entity"]
    if entity in path.encoders and entity in spec.entities:
        assert got == expected
    else:
        assert got is None or got == expected


@st.composite
def keeping_specs(draw: st.DrawFn) -> RunSpec:
    """Specs that keep every event as it is (no fields, pii or remap): scope, from_date and
    opt-outs still leave events out."""
    document = {
        "tenants": list(draw(st.sets(st.sampled_from(TENANTS), min_size=1))),
        "destination": "/l",
        "opt_out": draw(st.lists(st.sampled_from(["A", "B"]), unique=True, max_size=2)),
    }
    spec = parse_spec(document)
    if draw(st.booleans()):
        moment = draw(_value({"type": "long", "logicalType": "timestamp-micros"}))
        spec = spec.model_copy(update={"from_date": moment})
    return spec


@settings(max_examples=80, deadline=None)
@given(spec=keeping_specs(), batch=batches(), full=st.booleans())
def test_a_run_that_keeps_events_as_they_are_forwards_their_bodies_as_they_came(
    spec: RunSpec, batch: tuple[list[bytes | None], list[bytes]], full: bool
) -> None:
    path, got, expected = both_paths(spec, batch, full)
    assert got == expected if expected is not None else got is None
    writer = CODEC.schema_of(batch[1][0])
    if got is not None and writer is not None:
        assert path.same[writer.header] is not None  # the bodies were not encoded again


def test_hash_of_a_timestamp_column_takes_the_per_event_path() -> None:
    spec = parse_spec(
        {
            "tenants": ["t1"],
            "pii": {"issue.created": "hash", "user.email_address": "hash"},
            "pii_secret": "k",
            "destination": "/tmp/lake",
        }
    )
    path = BatchPath(spec, CODEC, run_event_schemas(spec, CODEC), lookup_for(spec), True)
    assert "issue" not in path.encoders and "user" in path.encoders


def test_remap_past_int64_takes_the_per_event_path() -> None:
    spec = parse_spec(
        {"tenants": ["t1"], "remap": {"tenant": "t9", "id_offset": 2**62}, "destination": "/l"}
    )
    frame = pl.DataFrame({"tenant_id": ["t1"], "entity_id": [2**62], "after": [{"id": 2**62}]})
    with pytest.raises(Exception, match="past int64"):
        remapped(frame, "user", spec)


def _frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    keys = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
    schema = CODEC.schemas[events[0]["entity"]]
    frame = BatchDecoder().decode(schema, [CODEC.encode(e) for e in events], keys)
    assert frame is not None
    return frame


def _issue(tenant: str, issue_id: int, updated: datetime, project_key: str) -> dict[str, Any]:
    fields = CODEC.schemas["issue"].record["fields"]
    after = {f["name"]: None for f in fields} | {
        "id": issue_id, "key": f"K-{issue_id}", "project_id": 1, "project_key": project_key,
        "issue_type": "Bug", "summary": "s", "status": "Open", "status_category": "To Do",
        "created": updated, "updated": updated, "due_date": date(2026, 1, 2),
    }  # fmt: skip
    return {
        "tenant_id": tenant, "entity": "issue", "entity_id": issue_id, "op": "u", "position": 1,
        "source_ts": updated, "snapshot": False, "after": after,
    }  # fmt: skip


def test_scope_and_opt_out_rows() -> None:
    early, late = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    events = [_issue("t1", 3, late, "A"), _issue("t2", 4, late, "Z"), _issue("t1", 5, early, "Z")]
    deleted = {**_issue("t1", 6, late, "Z"), "op": "d", "after": None}  # 6 % 3 == 0: "A"
    frame = _frame([*events, deleted])
    spec = parse_spec(
        {
            "tenants": ["t1"],
            "from_date": "2026-01-01T00:00:00Z",
            "opt_out": ["A"],
            "destination": "/l",
        }
    )
    assert in_scope_rows(frame, "issue", spec).to_list() == [True, False, False, True]
    opted = lookup_for(spec)
    assert opted_out_rows(frame, "issue", spec, opted).to_list() == [True, False, False, True]


@pytest.mark.parametrize("value", [0, -1, 1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1])
def test_varints_are_avros_long_encoding(value: int) -> None:
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    assert varints(zigzag(np.array([value], np.int64))).to_pylist() == [out.getvalue()]


def _long_bytes(value: int) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    return out.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
def test_varints_of_a_column_of_mixed_widths_are_fastavros(values: list[int]) -> None:
    # each row's varint is cut from one matrix as wide as the column's widest: a short
    # value beside a long one must come out short, and the rows must not run into each other
    encoded = varints(zigzag(np.array(values, np.int64))).to_pylist()
    assert encoded == [_long_bytes(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.lists(st.integers(0, 2**70), min_size=1, max_size=50))
def test_varints_of_a_column_of_one_width_are_fastavros(width: int, draws: list[int]) -> None:
    # every value as many bytes: the matrix is taken as it stands, each row one varint
    low = 0 if width == 1 else 1 << (7 * (width - 1))
    high = min((1 << (7 * width)) - 1, 2**64 - 1)
    zigzagged = [low + d % (high - low + 1) for d in draws]
    values = [(z >> 1) ^ -(z & 1) for z in zigzagged]  # zig-zag undone
    encoded = varints(zigzag(np.array(values, np.int64))).to_pylist()
    assert encoded == [_long_bytes(v) for v in values]
    assert {len(e) for e in encoded} == {width}


def test_encoder_refuses_a_null_where_the_schema_has_none() -> None:
    schema = run_event_schemas(parse_spec({"tenants": ["t1"], "destination": "/l"}))["issue"]
    frame = _frame([{**_issue("t1", 1, datetime(2026, 1, 1, tzinfo=UTC), "A")}])
    with pytest.raises(UnencodableError):
        ColumnEncoder(schema).encode(frame.with_columns(pl.lit(None, pl.Int64).alias("position")))


def test_encoder_reads_a_sliced_frame_at_its_offset() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    events = [_issue("t1", i, moment, f"P{i}") for i in range(1, 6)]
    schema = CODEC.schemas["issue"]
    encoded = ColumnEncoder(schema).encode(_frame(events).slice(2, 2))
    assert encoded == [CODEC.encode(e) for e in events[2:4]]
