"""Every mapped type against the real PostgreSQL: a scratch table with one column of each,
edge values in it; each cell's text form is parsed, written to Avro and Parquet with the
schemas derived from the catalog, read back and restored into two more tables through the
restore casts; both must equal the source cell for cell."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import fastavro
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.catalog_schemas import entity_arrow_schema, entity_record
from sluiceway.common.pgtypes import column_type
from tests.conftest import Stack

pytestmark = pytest.mark.integration

# Column name -> SQL type as written in CREATE TABLE; {s} is the scratch schema.
COLUMNS = {
    "c_smallint": "smallint", "c_integer": "integer", "c_bigint": "bigint",
    "c_numeric_ps": "numeric(30,10)", "c_numeric_wide": "numeric(60,20)",
    "c_numeric": "numeric", "c_real": "real", "c_double": "double precision",
    "c_bool": "boolean", "c_text": "text", "c_varchar": "varchar(40)", "c_char": "char(5)",
    "c_uuid": "uuid", "c_json": "json", "c_jsonb": "jsonb", "c_bytea": "bytea",
    "c_date": "date", "c_time": "time(3)", "c_ts": "timestamp", "c_tstz": "timestamptz",
    "c_interval": "interval", "c_enum": '{s}."Mood"', "c_domain": "{s}.positive",
    "c_text_arr": "text[]", "c_int_arr": "integer[]", "c_numeric_arr": "numeric[]",
    "c_numeric_ps_arr": "numeric(6,2)[]", "c_double_arr": "double precision[]",
    "c_real_arr": "real[]", "c_bytea_arr": "bytea[]", "c_json_arr": "json[]",
    "c_jsonb_arr": "jsonb[]", "c_uuid_arr": "uuid[]", "c_date_arr": "date[]",
    "c_time_arr": "time[]", "c_ts_arr": "timestamp[]", "c_tstz_arr": "timestamptz[]",
    "c_interval_arr": "interval[]", "c_enum_arr": '{s}."Mood"[]', "c_bool_arr": "boolean[]",
    "c_char_arr": "char(3)[]", "c_domain_arr": "{s}.positive[]",
}  # fmt: skip
EDGE_TEXT = 'line\nbreak\ttab "quote" \\ back, comma {brace} NULL ü ✓ 😀'
ROWS: list[dict[str, Any]] = [
    {},  # every column NULL
    {"c_smallint": "-32768", "c_integer": "2147483647", "c_bigint": "-9223372036854775808",
     "c_numeric_ps": "-12345678901234567890.0123456789",
     "c_numeric_wide": "1234567890123456789012345678901234567890.12345678901234567890",
     "c_numeric": "NaN", "c_real": "Infinity", "c_double": "NaN", "c_bool": "true",
     "c_text": EDGE_TEXT, "c_varchar": "ü✓, \"x\"", "c_char": "ab",
     "c_uuid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
     "c_json": '{"b": 1,  "a": ["ü", "✓", "\\u00e9"], "b": null}',
     "c_jsonb": '{"emoji": "😀", "nested": {"k": [1, 2.50, true, "q\\"\\\\"]}}',
     "c_bytea": "\\x00ff5c22", "c_date": "1900-02-28", "c_time": "23:59:59.999",
     "c_ts": "1969-12-31 23:59:59.999999", "c_tstz": "1901-12-13 20:45:52.000001+00",
     "c_interval": "-1 years +2 mons 3 days -04:05:06.000007",
     "c_enum": 'in progress, "quoted"', "c_domain": "0.001",
     "c_text_arr": ["a,b", 'q"x', "back\\slash", None, "NULL", "", " sp ", "{brace}", EDGE_TEXT],
     "c_int_arr": ["1", None, "-3"],
     "c_numeric_arr": ["NaN", "Infinity", "-Infinity", "1.000", None],
     "c_numeric_ps_arr": ["1.5", None, "-9999.99"],
     "c_double_arr": ["NaN", "Infinity", "-Infinity", None, "4.9e-324"],
     "c_real_arr": ["3.1415927", None, "-Infinity", "NaN"],
     "c_bytea_arr": ["\\x00", None, "\\x", "\\x5c227b2c"],
     "c_json_arr": ['{"a":  "ü,\\"}"}', "[]", None], "c_jsonb_arr": ['{"a": "x,{}"}', None],
     "c_uuid_arr": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None],
     "c_date_arr": ["1969-07-20", None, "0001-01-01"], "c_time_arr": ["00:00:00", None],
     "c_ts_arr": ["1492-10-12 00:00:00", None], "c_tstz_arr": ["1969-07-20 20:17:40+00", None],
     "c_interval_arr": ["1 day", None, "-00:00:00.000001"],
     "c_enum_arr": ['in progress, "quoted"', None, "done"], "c_bool_arr": ["t", None, "f"],
     "c_char_arr": ["a", None, "abc"], "c_domain_arr": ["1.5", None]},
    {"c_smallint": "32767", "c_integer": "-2147483648", "c_bigint": "9223372036854775807",
     "c_numeric_ps": "0.0000000000", "c_numeric_wide": "-0.00000000000000000001",
     "c_numeric": "-0.000000000000000000000000000001234500", "c_real": "-1.17549435e-38",
     "c_double": "-Infinity", "c_bool": "false", "c_text": "", "c_varchar": "", "c_char": "",
     "c_json": '"just a string ü"', "c_jsonb": "[]", "c_bytea": "\\x", "c_date": "9999-12-31",
     "c_time": "00:00:00", "c_ts": "0001-01-01 00:00:00",
     "c_tstz": "1969-12-31 23:59:59.999999+00", "c_interval": "0", "c_enum": "done",
     "c_domain": "999999.999",
     **{name: [] for name in COLUMNS if name.endswith("_arr")}},
    {"c_numeric": "Infinity", "c_real": "NaN", "c_double": "1.7976931348623157e308",
     "c_ts": "9999-12-31 23:59:59.999999", "c_tstz": "0001-01-01 00:00:00+00",
     "c_numeric_arr": ["-0.0"], "c_text_arr": [None], "c_int_arr": [None, None]},
]  # fmt: skip


@pytest.fixture
def scratch(local_stack: Stack, unique: str) -> Iterator[tuple[connection, str]]:
    """A connection whose session prints timestamptz in a zone with odd offsets (LMT before
    1940 has seconds), and a fresh schema with the enum and domain; dropped afterwards."""
    conn = psycopg2.connect(local_stack.pg.dsn())
    conn.autocommit = True
    schema = f"sw_types_{unique}"
    ident = sql.Identifier(schema)
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'Europe/Amsterdam'")
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        cur.execute(sql.SQL("""CREATE TYPE {}."Mood" AS ENUM ('in progress, "quoted"', 'done')""")
                    .format(ident))  # fmt: skip
        cur.execute(sql.SQL("CREATE DOMAIN {}.positive AS numeric(9,3) CHECK (VALUE > 0)")
                    .format(ident))  # fmt: skip
        for table in ("src", "from_avro", "from_parquet"):
            cur.execute(create_table(schema, table))
    try:
        yield conn, schema
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
        conn.close()


def create_table(schema: str, table: str) -> sql.Composed:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind.format(s=schema)))
        for name, kind in COLUMNS.items()
    )
    return sql.SQL("CREATE TABLE {}.{} (id integer PRIMARY KEY, {})").format(
        sql.Identifier(schema), sql.Identifier(table), columns
    )


def discovered_catalog(conn: connection, schema: str) -> Catalog:
    """The catalog as discover would write it: column types as format_type prints them."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (f"{schema}.src",),
        )
        columns = [{"name": name, "type": kind} for name, kind in cur.fetchall()]
    types = {f'{schema}."Mood"': {"kind": "enum", "values": ['in progress, "quoted"', "done"]},
             f"{schema}.positive": {"kind": "domain", "base": "numeric(9,3)"}}  # fmt: skip
    entity = {"table": f"{schema}.src", "key": ["id"], "tenant": {"column": "tenant"},
              "columns": columns}  # fmt: skip
    return parse_catalog({"types": types, "entities": {"sample": entity}}, "discovered")


def insert(conn: connection, catalog: Catalog, table: str, rows: list[dict[str, Any]]) -> None:
    entity = catalog.entity("sample")
    target = sql.Identifier(entity.schema_name or "", table)
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in entity.columns)
    types = {c.name: column_type(c, catalog.types) for c in entity.columns}
    values = sql.SQL(", ").join(t.restore_placeholder() for t in types.values())
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(target, names, values)
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(statement, [t.restore_param(row.get(n)) for n, t in types.items()])


def seed_source(conn: connection, catalog: Catalog) -> None:
    """The edge rows, sent as PostgreSQL input text (arrays as lists of it), cast per column."""
    entity = catalog.entity("sample")
    target = sql.Identifier(entity.schema_name or "", "src")
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in entity.columns)
    values = sql.SQL(", ").join(sql.SQL("%s::" + c.type) for c in entity.columns)
    with conn.cursor() as cur:
        for number, row in enumerate(ROWS):
            cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(target, names, values),
                        [number, *(row.get(c.name) for c in entity.columns[1:])])  # fmt: skip


def parsed_source(conn: connection, catalog: Catalog) -> list[dict[str, Any]]:
    """Each cell's text form (col::text), parsed with the column type's parser."""
    entity = catalog.entity("sample")
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c.name))
                               for c in entity.columns)  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            texts, sql.Identifier(entity.schema_name or "", "src")))  # fmt: skip
        cells = cur.fetchall()
    types = [column_type(c, catalog.types) for c in entity.columns]
    return [{c.name: t.parse_text(text) for c, t, text in zip(entity.columns, types, row,
                                                               strict=True)}
            for row in cells]  # fmt: skip


def through_avro(catalog: Catalog, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    schema = fastavro.parse_schema(entity_record(catalog, "sample"))
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, rows)
    buffer.seek(0)
    return list(fastavro.reader(buffer))  # type: ignore[arg-type]


def through_parquet(catalog: Catalog, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    schema = entity_arrow_schema(catalog, "sample")
    table = pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    back = pq.read_table(buffer)
    assert back.schema == schema
    return back.to_pylist()


def differences(conn: connection, catalog: Catalog, table: str) -> list[str]:
    """Cells where ``table`` differs from the source: by the type's own equality (json has
    none) and by the text PostgreSQL prints, so '1.50' and '1.5' count as different."""
    entity = catalog.entity("sample")
    found = []
    with conn.cursor() as cur:
        for column in entity.columns:
            name = sql.Identifier(column.name)
            same = sql.SQL("s.{c}::text IS NOT DISTINCT FROM d.{c}::text").format(c=name)
            if "json" not in column.type or "jsonb" in column.type:
                same = sql.SQL("{} AND s.{c} IS NOT DISTINCT FROM d.{c}").format(same, c=name)
            cur.execute(sql.SQL("SELECT s.id, s.{c}::text, d.{c}::text FROM {s} s FULL JOIN {d} d "
                                "USING (id) WHERE s.id IS NULL OR d.id IS NULL OR NOT ({same})")
                        .format(c=name, same=same,
                                s=sql.Identifier(entity.schema_name or "", "src"),
                                d=sql.Identifier(entity.schema_name or "", table)))  # fmt: skip
            found += [f"{table}.{column.name} row {r[0]}: {r[1]!r} != {r[2]!r}"
                      for r in cur.fetchall()]  # fmt: skip
    return found


def test_every_mapped_type_round_trips_exactly(scratch: tuple[connection, str]) -> None:
    conn, schema = scratch
    catalog = discovered_catalog(conn, schema)
    assert catalog.entity("sample").column("c_enum").type == f'{schema}."Mood"'
    seed_source(conn, catalog)
    parsed = parsed_source(conn, catalog)
    assert parsed[1]["c_text_arr"][3] is None and parsed[2]["c_int_arr"] == []
    insert(conn, catalog, "from_avro", through_avro(catalog, parsed))
    insert(conn, catalog, "from_parquet", through_parquet(catalog, parsed))
    assert differences(conn, catalog, "from_avro") == []
    assert differences(conn, catalog, "from_parquet") == []
