"""The batch path against the per-event path on an entity holding every type of
docs/types.md (and an array of each), with random fields, PII rules (drop, hash, mask),
``from_date`` on the entity's own ``updated`` column (named unlike the demo's) and opt-outs.

Where the batch path takes a batch, its outputs must be the per-event path's byte for byte;
where it doubts, it hands the batch back (None) and the per-event path runs alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import set_active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.run_schema import run_event_schemas
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.processors.batch import MIN_BATCH, BatchPath
from sluiceway.processors.opt_out import OptedOut, cascade_of, verdicts_of
from sluiceway.processors.transforms import output_key, transform, validate

# docs/types.md, one column each; the entity's key is (tenant_id, id)
TYPES = {
    "c_smallint": "smallint", "c_integer": "integer", "c_bigint": "bigint",
    "c_numeric_ps": "numeric(30,10)", "c_numeric_wide": "numeric(60,20)",
    "c_numeric": "numeric", "c_real": "real", "c_double": "double precision",
    "c_bool": "boolean", "c_text": "text", "c_varchar": "character varying(40)",
    "c_char": "character(5)", "c_uuid": "uuid", "c_json": "json", "c_jsonb": "jsonb",
    "c_bytea": "bytea", "c_date": "date", "c_time": "time(3) without time zone",
    "c_ts": "timestamp without time zone", "c_tstz": "timestamp with time zone",
    "c_interval": "interval", "c_enum": "mood", "c_domain": "positive",
}  # fmt: skip
TENANTS = ("t1", "t2")
NAMES = ("id", "c", "c_arr", "changed_at")


@functools.cache
def catalog_of(kind: str) -> tuple[Catalog, Codec]:
    """One entity: a column of ``kind``, an array of it, and an updated column named unlike
    the demo's; the opt-out field is the column itself."""
    columns = [
        {"name": "id", "type": "bigint", "nullable": False},
        {"name": "c", "type": kind},
        {"name": "c_arr", "type": f"{kind}[]"},
        {"name": "changed_at", "type": "timestamp with time zone", "nullable": False},
    ]
    entity = {
        "table": "public.things", "key": ["tenant_id", "id"], "tenant": {"column": "tenant_id"},
        "updated": "changed_at", "columns": columns,
    }  # fmt: skip
    types = {
        "mood": {"kind": "enum", "values": ["ok", "in progress"]},
        "positive": {"kind": "domain", "base": "numeric(9,3)"},
    }
    document = {
        "types": types, "entities": {"thing": entity},
        "opt_out": {"entity": "thing", "field": "c"},
    }  # fmt: skip
    catalog = parse_catalog(document, kind)
    return catalog, Codec(catalog=catalog)


_MOMENT = datetime(1960, 1, 1, tzinfo=UTC)
# drawn often, so that every run meets them: before 1970, the epoch's neighbours, the range ends
EDGE_MOMENTS = [
    datetime(1, 1, 2, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC), datetime(1900, 2, 28, 12, tzinfo=UTC),
    datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
]  # fmt: skip
EDGE_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324]
EDGE_TEXTS = ["NaN", "Infinity", "-Infinity", "-0.000100", "", "{}", "in progress", "a", "é\t'"]
# opt-out values, compared with the field's text form: some match a text, an int, a bool, a float
OPT_OUTS = ["a", "x", "0", "1", "True", "nan", "-inf", "NaN", "in progress"]


def values(avro: Any) -> st.SearchStrategy[Any]:
    """Values fastavro writes for an Avro type of the catalog's schemas."""
    if isinstance(avro, list):
        return st.one_of(*(st.none() if b == "null" else values(b) for b in avro))
    if isinstance(avro, dict):
        logical = avro.get("logicalType")
        if avro["type"] == "array":
            return st.lists(values(avro["items"]), max_size=3)
        if logical == "decimal":
            digits = avro["precision"] - avro["scale"]
            return st.decimals(
                min_value=Decimal(-(10**digits) + 1), max_value=Decimal(10**digits - 1),
                places=avro["scale"], allow_nan=False, allow_infinity=False,
            )  # fmt: skip
        if logical == "uuid":
            return st.uuids().map(str)
        if logical == "time-micros":
            return st.times()
        if logical == "local-timestamp-micros":
            moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
            return st.sampled_from([m.replace(tzinfo=None) for m in EDGE_MOMENTS]) | moments
        if logical == "timestamp-micros":
            return st.sampled_from(EDGE_MOMENTS) | st.datetimes(
                min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            )  # fmt: skip
        if logical == "date":
            return st.sampled_from([m.date() for m in EDGE_MOMENTS]) | st.dates()
        return values(avro["type"])
    return {
        "long": st.integers(-(2**63), 2**63 - 1),
        "int": st.integers(-(2**31), 2**31 - 1),
        # unconstrained numeric, interval, json: their text forms, specials included
        "string": st.sampled_from(EDGE_TEXTS) | st.text(max_size=8),
        "boolean": st.booleans(),
        "double": st.sampled_from(EDGE_FLOATS) | st.floats(),
        "float": st.sampled_from(EDGE_FLOATS) | st.floats(width=32),
        "bytes": st.binary(max_size=6),
    }[avro]


@functools.cache
def rows(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = catalog_of(kind)[1].schemas["thing"].record["fields"]
    return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in fields})


@st.composite
def batches(draw: st.DrawFn, kind: str) -> tuple[list[bytes | None], list[bytes]]:
    keys: list[bytes | None] = []
    out: list[bytes] = []
    codec = catalog_of(kind)[1]
    for _ in range(draw(st.integers(MIN_BATCH, MIN_BATCH + 8))):
        row = draw(rows(kind))
        row["id"] = draw(st.integers(0, 2**40))
        deleted = draw(st.integers(0, 4)) == 0
        event = {
            "tenant_id": draw(st.sampled_from(TENANTS)), "entity": "thing",
            "entity_id": row["id"], "op": "d" if deleted else draw(st.sampled_from("rcu")),
            "position": draw(st.integers(0, 2**62)), "snapshot": draw(st.booleans()),
            "source_ts": _MOMENT + timedelta(days=draw(st.integers(0, 40_000))),
            "after": None if deleted else row,
        }  # fmt: skip
        keys.append(event_key(event["tenant_id"], event["entity_id"]))
        out.append(codec.encode(event))
    return keys, out


@st.composite
def specs(draw: st.DrawFn) -> RunSpec:
    names = list(NAMES)
    fields = draw(st.none() | st.lists(st.sampled_from(names), unique=True, max_size=8))
    ruled = draw(st.lists(st.sampled_from(names[1:]), unique=True, max_size=2))
    rules = {f"thing.{c}": draw(st.sampled_from(["drop", "hash", "mask"])) for c in ruled}
    from_date = draw(st.none() | st.datetimes(timezones=st.just(UTC)).map(str))
    document = {
        "tenants": list(draw(st.sets(st.sampled_from(TENANTS), min_size=1))),
        "destination": "/l", "fields": {"thing": fields} if fields else {}, "pii": rules,
        "pii_secret": "k", "from_date": from_date,
        "opt_out": draw(st.lists(st.sampled_from(OPT_OUTS), max_size=2)),
    }  # fmt: skip
    return parse_spec(document)


@pytest.fixture(autouse=True)
def _restore_catalog() -> Iterator[None]:
    yield
    set_active_catalog(None)


def per_event(
    codec: Codec, spec: RunSpec, opted: OptedOut, keys: list[bytes | None], values_: list[bytes]
) -> list[Any] | None:
    """What the per-event path writes for the batch, or None when it rejects an event."""
    schemas = run_event_schemas(spec, codec)
    outs = []
    for key, value in zip(keys, values_, strict=True):
        try:
            event = validate(key, codec.decode(value), frozenset(spec.entities))
        except InvalidEventError:
            return None
        out = transform(event, spec, opted)
        if out is not None:
            outs.append((output_key(out), codec.encode_with(schemas["thing"], out)))
    return outs


@pytest.mark.parametrize("kind", TYPES)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_batch_path_outputs_what_the_per_event_path_does_for_every_type(
    kind: str, data: st.DataObject
) -> None:
    catalog, codec = catalog_of(TYPES[kind])
    set_active_catalog(catalog)
    spec, (keys, values_) = data.draw(specs()), data.draw(batches(TYPES[kind]))
    opted = verdicts_of(cascade_of(catalog), spec.opt_out, [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    expected = per_event(codec, spec, opted, keys, values_)
    assert got is None or got == expected


# polars' Decimal stops at 38 digits (its Avro reader panics on a wider one): those batches
# go event by event, whatever the run does. Every other type is batched.
UNBATCHED = {"c_numeric_wide"}
# what the runs of the test below ask: nothing (so each body is passed on as it came), a
# projection, and the PII rules, each leaving a column of the type and its array to encode
RUNS: dict[str, dict[str, Any]] = {
    "keep": {},
    "fields": {"fields": {"thing": ["c", "c_arr"]}},
    "drop": {"pii": {"thing.c_arr": "drop"}},
    "mask": {"pii": {"thing.c": "mask"}},
    "hash": {"pii": {"thing.c_arr": "hash"}},
}


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("kind", TYPES)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_batch_path_takes_the_batches_of_every_type(
    kind: str, run: str, data: st.DataObject
) -> None:
    """Without this, a batch path that handed every batch back would pass the test above.
    A hashed array goes event by event (polars prints a list unlike Python), and so, under
    ``hash``, does every type: the array column is what is hashed."""
    catalog, codec = catalog_of(TYPES[kind])
    set_active_catalog(catalog)
    document = {"tenants": list(TENANTS), "destination": "/l", "pii_secret": "k", **RUNS[run]}
    spec = parse_spec(document)
    keys, values_ = data.draw(batches(TYPES[kind]))
    opted = verdicts_of(cascade_of(catalog), spec.opt_out, [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    assert (got is not None) == (kind not in UNBATCHED and run != "hash")
    if got is not None:
        assert got == per_event(codec, spec, opted, keys, values_)
    writer = codec.schemas["thing"]
    assert (path.same.get(writer.header) is not None) == (run == "keep" and got is not None)


HASHED = {
    "c_smallint", "c_integer", "c_bigint", "c_numeric", "c_double", "c_bool", "c_text",
    "c_varchar", "c_char", "c_json", "c_jsonb", "c_interval", "c_enum",
}  # fmt: skip


@pytest.mark.parametrize("kind", TYPES)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_hashed_column_is_batched_where_polars_prints_it_as_python_does(
    kind: str, data: st.DataObject
) -> None:
    """HASHABLE stays conservative: a hashed column of another type (uuid, decimal, float,
    bytes, the temporal ones) goes event by event."""
    catalog, codec = catalog_of(TYPES[kind])
    set_active_catalog(catalog)
    document = {"tenants": list(TENANTS), "destination": "/l", "pii_secret": "k",
                "pii": {"thing.c": "hash"}, "fields": {"thing": ["c", "c_arr"]}}  # fmt: skip
    spec = parse_spec(document)
    keys, values_ = data.draw(batches(TYPES[kind]))
    opted = verdicts_of(cascade_of(catalog), spec.opt_out, [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    assert (got is not None) == (kind in HASHED)
    if got is not None:
        assert got == per_event(codec, spec, opted, keys, values_)


def _event(codec: Codec, n: int, changed_at: datetime, deleted: bool) -> tuple[bytes, bytes]:
    row = {"id": n, "c": f"v{n}", "c_arr": [], "changed_at": changed_at}
    event = {
        "tenant_id": "t1", "entity": "thing", "entity_id": n, "op": "d" if deleted else "u",
        "position": n, "snapshot": False, "source_ts": changed_at,
        "after": None if deleted else row,
    }  # fmt: skip
    return event_key("t1", n), codec.encode(event)


def test_from_date_reads_the_entitys_own_updated_column_on_both_paths() -> None:
    """The entity's update time is ``changed_at``: both paths keep exactly the events at or
    after from_date by it (a delete by its commit time), and the batch path takes the batch."""
    catalog, codec = catalog_of("text")
    set_active_catalog(catalog)
    cut = datetime(2000, 1, 1, tzinfo=UTC)
    spec = parse_spec(
        {"tenants": ["t1"], "destination": "/l", "from_date": cut.isoformat(),
         "fields": {"thing": ["c", "changed_at"]}}
    )  # fmt: skip
    moments = [cut + timedelta(microseconds=(n % 3) - 1) for n in range(MIN_BATCH + 4)]
    events = [_event(codec, n, m, deleted=n % 5 == 0) for n, m in enumerate(moments)]
    keys, values_ = [k for k, _v in events], [v for _k, v in events]
    opted = verdicts_of(None, [], [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    expected = per_event(codec, spec, opted, keys, values_)
    assert got is not None and got == expected
    assert [k for k, _v in got] == [f"t1/{n}".encode() for n, m in enumerate(moments) if m >= cut]


def test_from_date_does_not_filter_an_entity_without_an_updated_column() -> None:
    """The catalog gives the entity no update time (``updated`` omitted): from_date is off
    for it, on both paths, rather than a KeyError or a batch handed back."""
    catalog, _ = catalog_of("text")
    entity = catalog.entities["thing"].model_copy(update={"updated": None})
    bare = catalog.model_copy(update={"entities": {"thing": entity}})
    codec = Codec(catalog=bare)
    set_active_catalog(bare)
    spec = parse_spec(
        {"tenants": ["t1"], "destination": "/l", "from_date": "2000-01-01T00:00:00Z",
         "fields": {"thing": ["c", "changed_at"]}}
    )  # fmt: skip
    early = datetime(1990, 1, 1, tzinfo=UTC)
    events = [_event(codec, n, early, deleted=n % 5 == 0) for n in range(MIN_BATCH)]
    keys, values_ = [k for k, _v in events], [v for _k, v in events]
    opted = verdicts_of(None, [], [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    assert got is not None and got == per_event(codec, spec, opted, keys, values_)
    assert len(got) == MIN_BATCH


@pytest.mark.parametrize("rule", ["hash", "mask"])
def test_a_redacted_nullable_text_column_is_never_passed_through(rule: str) -> None:
    """A hashed or masked ``["null", "string"]`` column without a doc keeps its field as it
    was, so the run schema's fields equal the writer's: the run still rewrites the values,
    and neither path may write the raw text."""
    columns = [
        {"name": "id", "type": "bigint", "nullable": False},
        {"name": "email", "type": "text"},
    ]
    entity = {"table": "public.things", "key": ["id"], "tenant": {"column": "tenant_id"},
              "columns": columns}  # fmt: skip
    catalog = parse_catalog({"entities": {"thing": entity}}, "redacted")
    codec = Codec(catalog=catalog)
    set_active_catalog(catalog)
    spec = parse_spec(
        {"tenants": ["t1"], "destination": "/l", "pii": {"thing.email": rule}, "pii_secret": "k"}
    )
    keys: list[bytes | None] = []
    values_: list[bytes] = []
    for n in range(MIN_BATCH):
        event = {
            "tenant_id": "t1", "entity": "thing", "entity_id": n, "op": "u", "position": n,
            "snapshot": False, "source_ts": _MOMENT, "after": {"id": n, "email": f"a{n}@x.org"},
        }  # fmt: skip
        keys.append(event_key("t1", n))
        values_.append(codec.encode(event))
    opted = verdicts_of(None, [], [])
    path = BatchPath(spec, codec, run_event_schemas(spec, codec), opted, full=False)
    got = path.transform(keys, values_, frozenset(spec.entities))
    expected = per_event(codec, spec, opted, keys, values_)
    assert got is not None and got == expected
    assert not any(b"@x.org" in (value or b"") for _key, value in got)
