"""The type mapping: PostgreSQL's text output of each mapped type parses to the value
fastavro writes, survives Avro and Arrow, and what the mapping cannot carry is refused."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from sluiceway.common.catalog import UserType, parse_catalog
from sluiceway.common.pgtypes import (
    UncarriedValueError,
    UnmappableTypeError,
    check_catalog_types,
    pg_type,
    unmappable_reason,
)

USER_TYPES = {
    "mood": UserType(kind="enum", values=("ok", "not ok")),
    "money_amount": UserType(kind="domain", base="numeric(12,2)"),
    'app."Moods"': UserType(kind="domain", base="mood[]"),
    "loop": UserType(kind="domain", base="loop"),
}
UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
CASES: list[tuple[str, str, Any]] = [
    ("smallint", "-32768", -32768),
    ("integer", "2147483647", 2147483647),
    ("bigint", "-9223372036854775808", -(2**63)),
    ("numeric(12,2)", "-1234567890.50", Decimal("-1234567890.50")),
    ("numeric(60,30)", "1" * 30 + "." + "9" * 30, Decimal("1" * 30 + "." + "9" * 30)),
    ("numeric", "NaN", "NaN"),
    ("numeric", "-Infinity", "-Infinity"),
    ("numeric", "0.000000000000000000000100", "0.000000000000000000000100"),
    ("real", "3.1415927", 3.1415927410125732),
    ("real", "-Infinity", float("-inf")),
    ("double precision", "Infinity", float("inf")),
    ("double precision", "1e-310", 1e-310),
    ("boolean", "t", True),
    ("boolean", "false", False),
    ("text", "", ""),
    ("character varying(40)", "é ✓ \\ \"", "é ✓ \\ \""),
    ("character(5)", "ab   ", "ab   "),
    ("uuid", UUID.upper(), UUID),
    ("json", '{"b": 1,   "a": "ü"}', '{"b": 1,   "a": "ü"}'),
    ("jsonb", '{"a": "ü", "b": 1}', '{"a": "ü", "b": 1}'),
    ("bytea", "\\x00ff10", b"\x00\xff\x10"),
    ("bytea", "a\\000\\\\", b"a\x00\\"),  # bytea_output = escape
    ("bytea", "\\x", b""),
    ("date", "1900-02-28", date(1900, 2, 28)),
    ("date", "0001-01-01", date(1, 1, 1)),
    ("time without time zone", "23:59:59.999999", time(23, 59, 59, 999999)),
    ("time(3) without time zone", "00:00:00", time(0)),
    ("timestamp without time zone", "1969-12-31 23:59:59.5",
     datetime(1969, 12, 31, 23, 59, 59, 500000)),
    ("timestamp(0) without time zone", "9999-12-31 23:59:59", datetime(9999, 12, 31, 23, 59, 59)),
    ("timestamp with time zone", "1900-01-01 00:00:00+05:53:28",
     datetime(1899, 12, 31, 18, 6, 32, tzinfo=UTC)),
    ("timestamp with time zone", "2024-03-01 12:00:00.123456-08",
     datetime(2024, 3, 1, 20, 0, 0, 123456, tzinfo=UTC)),
    ("interval", "-1 years +2 mons 3 days -04:05:06.000007",
     "-1 years +2 mons 3 days -04:05:06.000007"),
    ("interval day to second(3)", "1 day 00:00:01.5", "1 day 00:00:01.5"),
    ("mood", "not ok", "not ok"),
    ("money_amount", "12.30", Decimal("12.30")),
    ("text[]", "{}", []),
    ("text[]", '{NULL,"NULL","a,b","q\\"x","b\\\\s"," sp ",""}',
     [None, "NULL", "a,b", 'q"x', "b\\s", " sp ", ""]),
    ("integer[]", "{1,NULL,-3}", [1, None, -3]),
    ("double precision[]", "{NaN,Infinity,-Infinity,NULL}",
     [pytest.approx(float("nan"), nan_ok=True), float("inf"), float("-inf"), None]),
    ("numeric(5,2)[]", "{1.50,NULL}", [Decimal("1.50"), None]),
    ("numeric[]", "{NaN,1.0}", ["NaN", "1.0"]),
    ("boolean[]", "{t,f,NULL}", [True, False, None]),
    ("bytea[]", '{"\\\\x01ff",NULL}', [b"\x01\xff", None]),
    ("jsonb[]", '{"{\\"a\\": [1, \\"x,y\\"]}"}', ['{"a": [1, "x,y"]}']),
    ("uuid[]", f"{{{UUID},NULL}}", [UUID, None]),
    ("date[]", "{1969-07-20,NULL}", [date(1969, 7, 20), None]),
    ("timestamp with time zone[]", '{"1960-01-01 00:00:00+00"}',
     [datetime(1960, 1, 1, tzinfo=UTC)]),
    ("mood[]", '{ok,"not ok"}', ["ok", "not ok"]),
    ('app."Moods"', '{"not ok",NULL}', ["not ok", None]),
]  # fmt: skip


@pytest.mark.parametrize(("type_name", "text", "expected"), CASES)
def test_text_output_parses_to_the_value(type_name: str, text: str, expected: Any) -> None:
    assert pg_type(type_name, USER_TYPES).parse_text(text) == expected


@pytest.mark.parametrize(("type_name", "text", "expected"), CASES)
def test_parsed_values_survive_avro_and_arrow(type_name: str, text: str, expected: Any) -> None:
    pg = pg_type(type_name, USER_TYPES)
    value = pg.parse_text(text)
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "v", "type": pg.avro_field_type(True)}]}  # fmt: skip
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(schema), [{"v": value}, {"v": None}])
    buffer.seek(0)
    back = [r["v"] for r in fastavro.reader(buffer)]
    assert back[1] is None
    assert pg.restore_param(back[0]) == pg.restore_param(pg.parse_text(text))
    column = pa.array([value, None], type=pg.arrow)
    assert column.type == pg.arrow and column.null_count == 1


@pytest.mark.parametrize(
    ("type_name", "text", "message"),
    [
        ("numeric(12,2)", "NaN", "an Avro decimal holds no NaN or Infinity"),
        ("numeric(12,2)", "Infinity", "an Avro decimal holds no NaN or Infinity"),
        ("date", "infinity", "only 0001-01-01 to 9999-12-31 fits"),
        ("date", "0044-03-15 BC", "only 0001-01-01 to 9999-12-31 fits"),
        ("date", "10000-01-01", "only 0001-01-01 to 9999-12-31 fits"),
        ("timestamp without time zone", "-infinity", "only 0001-01-01 to 9999-12-31"),
        ("timestamp without time zone", "0001-01-01 00:00:00 BC", "no infinity, no BC"),
        ("timestamp without time zone", "2020-01-01 00:00:00+00", "expected no time zone"),
        ("timestamp with time zone", "2020-01-01 00:00:00", "expected a time zone offset"),
        ("time without time zone", "24:00:00", "expected 00:00:00 to 23:59:59.999999"),
        ("integer[]", "{{1,2},{3,4}}", "only one-dimensional arrays are carried"),
        ("integer[]", "[0:1]={1,2}", "arrays with explicit bounds are not carried"),
        ("boolean", "yes", "expected t, f, true or false"),
        ("uuid", "nope", "expected a UUID"),
    ],
)
def test_values_the_mapping_cannot_carry_are_refused(
    type_name: str, text: str, message: str
) -> None:
    with pytest.raises(UncarriedValueError, match=message) as info:
        pg_type(type_name, USER_TYPES).parse_text(text)
    assert repr(text) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("type_name", "reason"),
    [
        ("money", "type 'money' has no mapping"),
        ("time with time zone", "has no mapping"),
        ('"char"', "has no mapping"),
        ("point[]", "type 'point' has no mapping"),
        ("integer[][]", "arrays of arrays"),
        ("numeric(80,2)", "at most 76 digits"),
        ("numeric(3,5)", "0 <= scale <= precision"),
        ("loop", "domain 'loop' is defined over itself"),
    ],
)
def test_unmappable_types_say_why(type_name: str, reason: str) -> None:
    assert reason in str(unmappable_reason(type_name, USER_TYPES))
    with pytest.raises(UnmappableTypeError, match=reason):
        pg_type(type_name, USER_TYPES)


def test_user_type_names_must_be_sql_type_names() -> None:
    bad = {"x; drop table t": UserType(kind="enum", values=("a",))}
    assert "not a type name" in str(unmappable_reason("x; drop table t", bad))


@pytest.mark.parametrize(
    ("type_name", "avro", "arrow"),
    [
        ("smallint", "int", pa.int16()),
        ("numeric(40,10)", {"type": "bytes", "logicalType": "decimal", "precision": 40,
                            "scale": 10}, pa.decimal256(40, 10)),
        ("numeric(12)", {"type": "bytes", "logicalType": "decimal", "precision": 12,
                         "scale": 0}, pa.decimal128(12, 0)),
        ("numeric", "string", pa.string()),
        ("uuid", {"type": "string", "logicalType": "uuid"}, pa.string()),
        ("timestamp(3) without time zone",
         {"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
        ("timestamptz", {"type": "long", "logicalType": "timestamp-micros"},
         pa.timestamp("us", tz="UTC")),
        ("time without time zone", {"type": "long", "logicalType": "time-micros"},
         pa.time64("us")),
        ("varchar(3)[]", {"type": "array", "items": ["null", "string"]}, pa.list_(pa.string())),
        ("CHARACTER  VARYING(3)", "string", pa.string()),
        ("Numeric(4, 1)", {"type": "bytes", "logicalType": "decimal", "precision": 4,
                           "scale": 1}, pa.decimal128(4, 1)),
        ("money_amount", {"type": "bytes", "logicalType": "decimal", "precision": 12,
                          "scale": 2}, pa.decimal128(12, 2)),
    ],
)  # fmt: skip
def test_avro_and_arrow_types(type_name: str, avro: Any, arrow: pa.DataType) -> None:
    pg = pg_type(type_name, USER_TYPES)
    assert (pg.avro, pg.arrow) == (avro, arrow)
    assert pg.avro_field_type(True) == ["null", avro]


def test_restore_casts_to_the_column_type_and_adapts_values() -> None:
    assert pg_type("money_amount", USER_TYPES).restore_placeholder().as_string(None) == (  # type: ignore[arg-type]
        "CAST(%s AS money_amount)"
    )
    uuids = pg_type("uuid[]", USER_TYPES)
    assert uuids.restore_param([uuid.UUID(UUID), None]) == [UUID, None]
    assert pg_type("bytea", USER_TYPES).restore_param(memoryview(b"\x01")) == b"\x01"
    assert pg_type("text", USER_TYPES).restore_param(None) is None
    moment = datetime(1960, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert pg_type("timestamptz", USER_TYPES).restore_param(moment) == moment
    # as text: psycopg2 would write -0.0 as the numeric expression -0.0, which is zero
    assert pg_type("real", USER_TYPES).restore_param(-0.0) == "-0.0"
    assert pg_type("double precision[]", USER_TYPES).restore_param([-0.0, None]) == ["-0.0", None]


def test_the_catalog_check_names_schema_table_column_and_type() -> None:
    entity = {"table": "app.orders", "key": ["id"], "tenant": {"column": "tenant_id"},
              "columns": [{"name": "id", "type": "bigint"}, {"name": "total", "type": "money"},
                          {"name": "tags", "type": "mood[]"}]}  # fmt: skip
    catalog = parse_catalog(
        {"types": {"mood": {"kind": "enum", "values": ["a"]}}, "entities": {"order": entity}}, "t"
    )
    assert check_catalog_types(catalog) == [
        "app.orders.total (money): type 'money' has no mapping (docs/types.md lists the mapped "
        "types); exclude the column or cast it to a mapped type in a view"
    ]
