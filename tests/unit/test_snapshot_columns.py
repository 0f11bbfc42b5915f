"""The snapshot's column path writes exactly the bytes of its per-row path (fastavro), on
random rows of every table it takes, and leaves to the per-row path what it cannot hold."""

from __future__ import annotations

import io
import math
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.common.catalog import Catalog, load_catalog, parse_catalog
from sluiceway.common.codec import Codec, plain_schema
from sluiceway.common.pgtypes import UncarriedValueError
from sluiceway.common.resources import example_catalog
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers.snapshot import _parsers, encode_rows
from sluiceway.producers.snapshot_columns import ColumnChunks
from sluiceway.producers.snapshot_copy import copy_parse
from sluiceway.producers.snapshot_temporal import UNCARRIED
from sluiceway.producers.tables import CapturedTable, captured_tables

POINT = (0x16B374D848 << 20, datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC))
KAFKA = KafkaSettings(partitions=6, spread=2, tenant_spread={"t/2": 4, "ß-3": 9})
SHARED = {"entity": "issue", "op": "r", "position": 1, "source_ts": 0, "snapshot": True}
TEXT = ["", "plain", "ünïcödé ✓", "tab\tand\nnewline", "x" * 3000, "'quoted' \"both\"", "😀"]


def _value(rng: random.Random, avro: Any) -> Any:
    logical = avro.get("logicalType") if isinstance(avro, dict) else None
    # the range the snapshot's SELECT gives (snapshot_temporal.py): years 1 to 9999
    if logical == "timestamp-micros":
        low, high = -62_135_596_800_000_000, 253_402_300_799_999_999
        return rng.choice([low, high, -1, 0, rng.randint(low, high)])
    if logical == "date":
        return rng.choice([-719_162, 2_932_896, -1, 0, rng.randint(-719_162, 2_932_896)])
    if avro == "long":
        return rng.choice(
            [0, -1, 1, 63, 64, -65, 2**63 - 1, -(2**63), rng.randint(-(2**40), 2**40)]
        )
    if avro == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if avro == "boolean":
        return rng.random() < 0.5
    if avro == "double":
        return rng.choice([0.0, -0.0, 1.5, -2.25e300, math.inf, -math.inf, math.nan, rng.random()])
    assert avro == "string", avro
    return rng.choice(TEXT)


def _nullable(codec: Codec, entity: str) -> set[str]:
    after = next(f for f in plain_schema(codec.schemas[entity].parsed)["fields"]
                 if f["name"] == "after")  # fmt: skip
    record = next(k for k in after["type"] if k != "null")
    return {f["name"] for f in record["fields"] if isinstance(f["type"], list)}


def _rows(rng: random.Random, table: CapturedTable, n: int) -> list[tuple[Any, ...]]:
    nullable = _nullable(Codec(), table.entity)
    rows = []
    for i in range(n):
        values = []
        for name in table.columns:
            pg = table.types[name]
            if name == table.key[0]:
                values.append(rng.choice([i, -i, rng.randint(-(2**62), 2**62)]))  # any sign
            elif name in nullable and rng.random() < 0.2:
                values.append(None)
            else:
                values.append(_value(rng, pg.avro))
        rows.append((rng.choice(["tenant-001", "t/2", "ß-3"]), *values))
    return rows


@pytest.mark.parametrize("entity", sorted(captured_tables(Codec().catalog)))
def test_random_chunks_encode_as_the_per_row_path_does(entity: str) -> None:
    codec = Codec()
    table = captured_tables(codec.catalog)[entity]
    columnar = ColumnChunks.of(codec.schemas[entity], table)
    assert columnar is not None, f"the Jira example's {entity} table takes the column path"
    rng = random.Random(entity)
    for size in (1, 2, 17, 500):
        rows = _rows(rng, table, size)
        assert columnar.encode(rows, [], SHARED, KAFKA) is not None  # the column path took it
        fast = encode_rows(codec, table, POINT, KAFKA, rows, columnar)
        assert fast == encode_rows(codec, table, POINT, KAFKA, rows)  # the per-row path


def test_a_value_its_column_cannot_hold_goes_row_by_row() -> None:
    codec = Codec()
    table = captured_tables(codec.catalog)["comment"]
    columnar = ColumnChunks.of(codec.schemas["comment"], table)
    assert columnar is not None
    rows = _rows(random.Random(1), table, 5)
    body = table.columns.index("body")
    bad = [*rows[:2], (*rows[2][: body + 1], 12345, *rows[2][body + 2 :]), *rows[3:]]
    # an int where the schema holds a string
    assert columnar.encode(bad, [], {**SHARED, "entity": "comment"}, KAFKA) is None
    with pytest.raises(Exception, match=r"body|str|12345"):
        encode_rows(codec, table, POINT, KAFKA, bad, columnar)  # fastavro names the problem


@pytest.mark.parametrize(("column", "kind"), [("created", "timestamp"), ("due_date", "date")])
def test_a_timestamp_or_date_avro_cannot_carry_is_refused_naming_its_row(
    column: str, kind: str
) -> None:
    """The SELECT hands infinity, BC and years after 9999 over as a sentinel
    (snapshot_temporal.py): the column path must not encode it, the per-row path refuses
    the row by its table, column and key."""
    codec = Codec()
    table = captured_tables(codec.catalog)["issue"]
    columnar = ColumnChunks.of(codec.schemas["issue"], table)
    assert columnar is not None and kind in table.types[column].sql
    rows = [list(r) for r in _rows(random.Random(2), table, 5)]
    rows[3][1 + table.columns.index(column)] = UNCARRIED["us" if kind == "timestamp" else "days"]
    bad = [tuple(r) for r in rows]
    assert columnar.encode(bad, [], SHARED, KAFKA) is None
    key = rf"\('{rows[3][0]}', {rows[3][1 + table.columns.index('id')]}\)"
    with pytest.raises(
        UncarriedValueError, match=rf"public\.issues\.{column} of the row keyed {key}"
    ):
        encode_rows(codec, table, POINT, KAFKA, bad, columnar)


def test_tables_keyed_by_several_columns_take_the_per_row_path() -> None:
    catalog = load_catalog(example_catalog("helpdesk"))
    codec = Codec(catalog=catalog)
    tables = captured_tables(catalog)
    chosen = {
        name: ColumnChunks.of(codec.schemas[name], t) is not None for name, t in tables.items()
    }
    assert chosen["attachment"], "bigint key; uuid, bytea and character(8) columns"
    assert not any(chosen[n] for n, t in tables.items() if len(t.key) > 1), chosen


# The column types read as text and converted a column at a time, each with the texts
# PostgreSQL prints at its edges (strategies below add random ones).
TYPES = {"u": "uuid", "n": "numeric(12,2)", "n0": "numeric(5,0)", "nw": "numeric(60,20)",
         "d": "positive", "r": "real", "b": "bytea", "tm": "time(6)",
         "ts": "timestamp without time zone", "s": "text"}  # fmt: skip
EDGES = {
    "u": ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "n": ["0.00", "-0.01", "9999999999.99", "-9999999999.99", "92233720368547758.07"[-13:]],
    "n0": ["0", "99999", "-99999", "-128", "128", "-32768", "255", "-256"],
    "nw": ["9" * 40 + "." + "9" * 20, "-" + "9" * 40 + "." + "9" * 20, "0." + "0" * 19 + "1",
           "-170141183460469231731.68730371588410572800", "1" + "0" * 39 + "." + "0" * 20],
    "d": ["0.001", "999999.999"],
    "r": ["-0", "0", "NaN", "Infinity", "-Infinity", "1e-45", "-1.17549435e-38",
          "3.4028235e+38", "3.1415927", "0.1"],
    "b": ["\\x", "\\x00", "\\xff", "\\x00ff5c22", "\\x" + "ab" * 300],
    "tm": ["00:00:00", "23:59:59.999999", "12:00:00.5", "00:00:00.000001"],
    "ts": ["0001-01-01 00:00:00", "9999-12-31 23:59:59.999999", "1969-12-31 23:59:59.999999",
           "1970-01-01 00:00:00", "2026-12-06 01:02:03.1"],
    "s": ["", "\\N", 'a,b "q"\n'],
}  # fmt: skip
REFUSED = {"n": ["NaN", "Infinity", "-Infinity"], "nw": ["NaN"], "d": ["Infinity"],
           "tm": ["24:00:00"],
           "ts": ["infinity", "-infinity", "2026-01-01 00:00:00 BC", "10000-01-01 00:00:00",
                  "0001-12-31 23:59:59 BC"]}  # fmt: skip


def _typed_catalog(columns: dict[str, str], nullable: bool = True, key: str = "bigint") -> Catalog:
    entity = {"table": "app.wide", "key": ["id"], "tenant": {"column": "tenant"},
              "columns": [{"name": "id", "type": key, "nullable": False},
                          *({"name": n, "type": k, "nullable": nullable}
                            for n, k in columns.items())]}  # fmt: skip
    positive = {"kind": "domain", "base": "numeric(9,3)"}
    return parse_catalog({"types": {"positive": positive}, "entities": {"wide": entity}}, "t")


def _decimal_text(precision: int, scale: int) -> st.SearchStrategy[str]:
    bound = 10**precision - 1
    unscaled = st.integers(-bound, bound) | st.sampled_from([0, 1, -1, bound, -bound])
    return unscaled.map(lambda n: _scaled(n, scale))


def _scaled(unscaled: int, scale: int) -> str:
    """As numeric(p,s) prints: exactly ``scale`` decimals (Decimal.scaleb would round to
    the context's 28 digits)."""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    whole, fraction = digits[: len(digits) - scale], digits[len(digits) - scale :]
    return ("-" if unscaled < 0 else "") + whole + ("." + fraction if scale else "")


def _real_text(value: float) -> str:
    special = {math.inf: "Infinity", -math.inf: "-Infinity"}
    if math.isnan(value):
        return "NaN"
    return special.get(value) or str(np.float32(value)).removesuffix(".0")


_WHEN = (datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999))
TEXTS: dict[str, st.SearchStrategy[str]] = {
    "u": st.uuids().map(str),
    "n": _decimal_text(12, 2),
    "n0": _decimal_text(5, 0),
    "nw": _decimal_text(60, 20),
    "d": st.integers(1, 10**9 - 1).map(lambda n: _scaled(n, 3)),
    "r": st.floats(width=32).map(_real_text),
    "b": st.binary(max_size=40).map(lambda b: "\\x" + b.hex()),
    "tm": st.times().map(lambda t: t.isoformat()),
    "ts": st.datetimes(*_WHEN).map(lambda d: d.isoformat(" ")),
    "s": st.text(max_size=20),
}


def _cell(name: str) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(EDGES[name]) | TEXTS[name]


ROW = st.tuples(st.sampled_from(["tenant-001", "t/2", "ß-3"]),
                st.integers(-(2**63), 2**63 - 1), *(_cell(n) for n in TYPES))  # fmt: skip


def _by_copy(table: CapturedTable, columnar: ColumnChunks, rows: list[Any]) -> pa.Table:
    """The chunk as copy_parse reads PostgreSQL's CSV of ``rows`` (NULL unquoted, text
    quoted)."""
    text = "".join(",".join(map(_csv_field, row)) + "\n" for row in rows)
    names = ["", *table.columns]
    return copy_parse(io.BytesIO(text.encode()), names, [pa.string(), *columnar.read_types])


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else '"' + value.replace('"', '""') + '"'


def _wide() -> tuple[Codec, CapturedTable, ColumnChunks]:
    catalog = _typed_catalog(TYPES)
    codec = Codec(catalog=catalog)
    table = captured_tables(catalog)["wide"]
    columnar = ColumnChunks.of(codec.schemas["wide"], table)
    assert columnar is not None, "a table of these types takes the column path"
    return codec, table, columnar


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=40))
def test_text_read_types_encode_as_the_per_row_path_does(rows: list[tuple[Any, ...]]) -> None:
    codec, table, columnar = _wide()
    parsers, shared = _parsers(table), {**SHARED, "entity": "wide"}
    expected = encode_rows(codec, table, POINT, KAFKA, rows)  # the per-row path
    for chunk in (rows, _by_copy(table, columnar, rows)):
        assert columnar.encode(chunk, parsers, shared, KAFKA) is not None  # no fallback
        assert encode_rows(codec, table, POINT, KAFKA, chunk, columnar) == expected


@pytest.mark.parametrize("name", sorted(TYPES))
@pytest.mark.parametrize("nullable", [True, False])
def test_each_text_read_type_takes_the_column_path(name: str, nullable: bool) -> None:
    catalog = _typed_catalog({name: TYPES[name]}, nullable)
    codec = Codec(catalog=catalog)
    table = captured_tables(catalog)["wide"]
    columnar = ColumnChunks.of(codec.schemas["wide"], table)
    assert columnar is not None, f"{TYPES[name]} takes the column path"
    parsed = [table.columns[i] for i, _ in _parsers(table) if i not in columnar.from_text]
    assert not parsed, "no text is parsed one by one (else COPY does not read the table)"
    rows = [("t", i, text) for i, text in enumerate(EDGES[name])]
    rows += [("t", -1, None)] if nullable else []
    shared = {**SHARED, "entity": "wide"}
    for chunk in (rows, _by_copy(table, columnar, rows)):
        assert columnar.encode(chunk, _parsers(table), shared, KAFKA) is not None
        assert encode_rows(codec, table, POINT, KAFKA, chunk, columnar) == encode_rows(
            codec, table, POINT, KAFKA, rows
        )


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, ts in REFUSED.items() for t in ts])
def test_a_refused_value_sends_its_chunk_to_the_per_row_path_which_refuses_it(
    name: str, text: str
) -> None:
    codec, table, columnar = _wide()
    at = 2 + list(TYPES).index(name)
    good = [("t", i, *(EDGES[n][0] for n in TYPES)) for i in range(3)]
    rows = [*good[:2], (*good[2][:at], text, *good[2][at + 1 :])]
    for chunk in (rows, _by_copy(table, columnar, rows)):
        assert columnar.encode(chunk, _parsers(table), {**SHARED, "entity": "wide"}, KAFKA) is None
        with pytest.raises(UncarriedValueError, match="cannot be carried exactly"):
            encode_rows(codec, table, POINT, KAFKA, chunk, columnar)


KEY_TEXTS = {"uuid": st.uuids().map(str),
             "text": st.sampled_from(["", "a/b", '"q" \\', "\n\x01", "ü 😀"]) | st.text(),
             "character varying(20)": st.text(max_size=20)}  # fmt: skip
KEYED = {"n": "numeric(12,2)", "ts": "timestamp", "s": "text", "u": "uuid"}
KEYED_ROW = st.tuples(st.sampled_from(["tenant-001", "t/2", "ß-3"]),
                      *(_cell(n) for n in KEYED))  # fmt: skip


@pytest.mark.parametrize("key", sorted(KEY_TEXTS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_tables_keyed_by_one_text_or_uuid_encode_as_the_per_row_path_does(
    key: str, data: st.DataObject
) -> None:
    catalog = _typed_catalog(KEYED, key=key)
    codec, table = Codec(catalog=catalog), captured_tables(catalog)["wide"]
    columnar = ColumnChunks.of(codec.schemas["wide"], table)
    assert columnar is not None, f"a table keyed by one {key} column takes the column path"
    ids = data.draw(st.lists(KEY_TEXTS[key], min_size=1, max_size=30))
    rows = [
        (r[0], i, *r[1:])
        for i, r in zip(
            ids, data.draw(st.lists(KEYED_ROW, min_size=len(ids), max_size=len(ids))), strict=True
        )
    ]
    expected = encode_rows(codec, table, POINT, KAFKA, rows)
    for chunk in (rows, _by_copy(table, columnar, rows)):
        assert columnar.encode(chunk, _parsers(table), {**SHARED, "entity": "wide"}, KAFKA)
        assert encode_rows(codec, table, POINT, KAFKA, chunk, columnar) == expected
