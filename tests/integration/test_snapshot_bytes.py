"""The snapshot's records are byte for byte what the plain per-row path gives: every mapped
type (the edge rows of test_pgtypes_roundtrip), keys of every shape (integer, uuid, text,
composite), read in several chunks. The reference below is the row path as it was before
the snapshot's encoding was optimised: the read row's values, ``change_event``,
``Codec.encode``, ``partition_of`` and ``event_key``, one row at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.codec import Codec, event_key
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.db import connect
from sluiceway.producers.events import change_event, position, timestamp_ms
from sluiceway.producers.snapshot import (
    SnapshotRun,
    _chunks,
    _copy_types,
    _parsers,
    partition_of,
    snapshot_table,
)
from sluiceway.producers.tables import CapturedTable, captured_tables
from tests.conftest import Stack
from tests.integration.test_pgtypes_roundtrip import COLUMNS, ROWS

pytestmark = pytest.mark.integration

# entity -> (key columns with their SQL types, the key values of row number n)
KEYS: dict[str, tuple[dict[str, str], Any]] = {
    "by_int": ({"id": "integer"}, lambda n: [n]),
    "by_uuid": ({"id": "uuid"}, lambda n: [f"a0eebc99-9c0b-4ef8-bb6d-{n:012x}"]),
    "by_text": ({"code": "text"}, lambda n: [f'ü/{n}, "k" {{}}']),
    "by_pair": ({"part": "integer", "name": "varchar(20)"}, lambda n: [n % 3, f"n {n}"]),
}
TENANTS = ("t-1", "tenant two")


class Recorder:
    """A stand-in producer that keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def produce(self, topic: str, **kw: Any) -> None:
        self.sent.append((topic, kw["partition"], kw["key"], kw["value"], kw["timestamp"]))

    def poll(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def source(local_stack: Stack, unique: str) -> Iterator[tuple[PostgresSettings, Catalog]]:
    """A schema with one table per key shape, each with every mapped type, seeded with the
    edge rows for two tenants; dropped afterwards."""
    pg = local_stack.pg
    schema = f"sw_snapbytes_{unique}"
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            _create(cur, schema)
        yield pg, _catalog(conn, schema)
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.close()


def _create(cur: Any, schema: str) -> None:
    ident = sql.Identifier(schema)
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    cur.execute(sql.SQL("""CREATE TYPE {}."Mood" AS ENUM ('in progress, "quoted"', 'done')""")
                .format(ident))  # fmt: skip
    cur.execute(sql.SQL("CREATE DOMAIN {}.positive AS numeric(9,3) CHECK (VALUE > 0)")
                .format(ident))  # fmt: skip
    for entity, (key, key_of) in KEYS.items():
        kinds = {"tenant": "text", **key, **{n: k.format(s=schema) for n, k in COLUMNS.items()}}
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in kinds.items()
        )
        primary = sql.SQL(", ").join(map(sql.Identifier, ["tenant", *key]))
        table = sql.Identifier(schema, entity)
        cur.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))")
                    .format(table, columns, primary))  # fmt: skip
        names = sql.SQL(", ").join(map(sql.Identifier, kinds))
        values = sql.SQL(", ").join(sql.SQL("%s::" + k) for k in kinds.values())
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(table, names, values)
        for t, tenant in enumerate(TENANTS):
            for number, row in enumerate(ROWS):
                cells = [row.get(n) for n in COLUMNS]
                cur.execute(insert, [tenant, *key_of(t * len(ROWS) + number), *cells])


def _catalog(conn: connection, schema: str) -> Catalog:
    """The catalog as discover would write it (types as format_type prints them)."""
    entities = {}
    with conn.cursor() as cur:
        for entity, (key, _) in KEYS.items():
            cur.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "AND attname <> 'tenant' ORDER BY attnum",
                (f"{schema}.{entity}",),
            )
            columns = [{"name": name, "type": kind} for name, kind in cur.fetchall()]
            entities[entity] = {"table": f"{schema}.{entity}", "key": list(key),
                                "tenant": {"column": "tenant"}, "columns": columns}  # fmt: skip
    types = {f'{schema}."Mood"': {"kind": "enum", "values": ['in progress, "quoted"', "done"]},
             f"{schema}.positive": {"kind": "domain", "base": "numeric(9,3)"}}  # fmt: skip
    return parse_catalog({"types": types, "entities": entities}, "snapshot bytes")


def reference(run: SnapshotRun, table: CapturedTable, rows: list[tuple[Any, ...]]) -> list[Any]:
    """The records of ``rows`` as the per-row path built them."""
    assert run.point is not None
    kafka, names, parsed, out = run.settings.kafka, table.columns, _parsers(table), []
    for record in rows:
        tenant, values = record[0], list(record[1:])
        for i, parse in parsed:
            if values[i] is not None:
                values[i] = parse(values[i])
        row = dict(zip(names, values, strict=True))
        entity_id, key = table.identity(row)
        event = change_event(table.entity, tenant, entity_id, "r", row, *run.point, key)
        part = partition_of(tenant, entity_id, kafka.partitions, kafka.spread_of(tenant))
        out.append((kafka.cdc_topic(table.entity), part, event_key(tenant, entity_id),
                    run.codec.encode(event), timestamp_ms(run.point[1])))  # fmt: skip
    return out


def _run(pg: PostgresSettings, catalog: Catalog, chunk_rows: int, copy: bool = True) -> SnapshotRun:
    tuning = CaptureTuning(chunk_rows=chunk_rows, snapshot_copy=copy)
    settings = CaptureSettings(KafkaSettings(), pg, tuning)
    at = datetime(2026, 12, 5, 18, 0, 0, 654_321, tzinfo=UTC)
    point = (position(1 << 30, 0), at)
    return SnapshotRun(settings, Codec(catalog=catalog), Recorder(), point, None)  # type: ignore[arg-type]


def test_snapshot_records_equal_the_per_row_path_for_every_type_and_key(
    source: tuple[PostgresSettings, Catalog],
) -> None:
    pg, catalog = source
    for entity in KEYS:
        table = captured_tables(catalog)[entity]
        whole = _run(pg, catalog, 1000)
        chunked = _run(pg, catalog, 3)  # several chunks, the last one short
        with closing(connect(pg)) as conn, conn.cursor() as cur:
            rows = [r for chunk in _chunks(cur, whole, table) for r in chunk]
            snapshot_table(cur, chunked, table)
        assert len(rows) == len(ROWS) * len(TENANTS)
        expected = reference(whole, table, rows)
        assert chunked.prod.sent == expected, entity  # type: ignore[attr-defined]


PLAIN = {"id": "bigint", "i": "integer", "s": "smallint", "t": "text", "v": "varchar(20)",
         "c": "character(4)", "b": "boolean", "d": "double precision",
         "ts": "timestamp with time zone", "dt": "date", "j": "json"}  # fmt: skip
ODD_TEXT = 'a,b "q" \n\r \\ ü 😀'
PLAIN_ROWS: list[dict[str, Any]] = [
    {},  # every column NULL but the key
    {"t": "", "v": "", "c": "", "j": '""', "b": False, "d": "-0"},
    {"t": ODD_TEXT, "v": "NULL", "c": '"', "j": '{"a": [1, "x,y"]}', "b": True, "d": "NaN"},
    {"t": "\\N", "v": " x ", "c": "ab", "d": "Infinity", "i": -(2**31), "s": 2**15 - 1},
    {"t": '"', "d": "-Infinity", "ts": "1901-12-13 20:45:52.123456+00", "dt": "1900-01-01"},
    {"d": "5e-324", "ts": "2262-04-11 23:47:16.854775+00", "dt": "2999-12-31", "i": 2**31 - 1},
    {"d": "1.7976931348623157e308", "ts": "1970-01-01 00:00:00+00", "dt": "1970-01-01"},
    {"d": "0.1", "ts": "2026-12-06 01:02:03.000001+05:30", "t": "x" * 5000},
]


@pytest.fixture
def plain(local_stack: Stack, unique: str) -> Iterator[tuple[PostgresSettings, Catalog]]:
    """One table of primitive columns, the snapshot's COPY path, with the values CSV could
    get wrong (NULL against '', quotes, commas, newlines, NaN and the infinities)."""
    pg, schema = local_stack.pg, f"sw_snapcopy_{unique}"
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    table, ident = sql.Identifier(schema, "plain"), sql.Identifier(schema)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in PLAIN.items()
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
            cur.execute(sql.SQL("CREATE TABLE {} (tenant text, {}, PRIMARY KEY (tenant, id))")
                        .format(table, columns))  # fmt: skip
            for t, tenant in enumerate(("t-1", 'tenant, "two"')):
                for n, row in enumerate(PLAIN_ROWS):
                    values = {**row, "id": 2**63 - 1 - n if t else n}
                    names = sql.SQL(", ").join(map(sql.Identifier, ["tenant", *values]))
                    cells = sql.SQL(", ").join(sql.SQL("(%s)::" + PLAIN[k]) for k in values)
                    insert = sql.SQL("INSERT INTO {} ({}) VALUES (%s, {})")
                    cur.execute(insert.format(table, names, cells), [tenant, *values.values()])
        entity = {"table": f"{schema}.plain", "key": ["id"], "tenant": {"column": "tenant"},
                  "columns": [{"name": n, "type": k} for n, k in PLAIN.items()]}  # fmt: skip
        yield pg, parse_catalog({"entities": {"plain": entity}}, "snapshot copy")
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
        conn.close()


def test_chunks_read_by_copy_give_the_records_psycopg2_rows_give(
    plain: tuple[PostgresSettings, Catalog],
) -> None:
    pg, catalog = plain
    table = captured_tables(catalog)["plain"]
    by_rows = _run(pg, catalog, 1000, copy=False)
    assert _copy_types(by_rows, table) is None
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        snapshot_table(cur, by_rows, table)
    sent = by_rows.prod.sent  # type: ignore[attr-defined]
    assert len(sent) == 2 * len(PLAIN_ROWS)
    # chunks of 3 end short; chunks of 4 fill exactly, so the last read finds no row
    for chunk_rows in (3, 4):
        by_copy = _run(pg, catalog, chunk_rows, copy=True)
        assert _copy_types(by_copy, table) is not None, "the table's chunks are read by COPY"
        with closing(connect(pg)) as conn, conn.cursor() as cur:
            snapshot_table(cur, by_copy, table)
        assert by_copy.prod.sent == sent, chunk_rows  # type: ignore[attr-defined]
    # and the per-row reference agrees with what psycopg2 read
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        rows = [r for chunk in _chunks(cur, _run(pg, catalog, 1000, copy=False), table)
                for r in chunk]  # fmt: skip
    assert reference(by_rows, table, rows) == sent
