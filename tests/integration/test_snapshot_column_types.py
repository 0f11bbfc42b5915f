"""The snapshot's column path on the types it reads as text (uuid, numeric(p,s), real,
bytea, time, timestamp) against the real PostgreSQL: chunks read by COPY give the records
the per-row path gives for edge values, and a value the mapping refuses sends its chunk to
the per-row path, which refuses it with its one-line error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.pgtypes import UncarriedValueError
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.db import connect
from sluiceway.producers.snapshot import _chunks, _copy_types, snapshot_table
from sluiceway.producers.tables import captured_tables
from tests.conftest import Stack
from tests.integration.test_snapshot_bytes import _run, reference

pytestmark = pytest.mark.integration

TYPED = {"u": "uuid", "n": "numeric(12,2)", "nw": "numeric(60,20)",
         "d": "{s}.positive", "r": "real", "b": "bytea", "tm": "time(3)", "tm6": "time",
         "ts": "timestamp", "ts0": "timestamp(0) without time zone", "t": "text",
         "tz": "timestamp with time zone", "dt": "date"}  # fmt: skip
TYPED_ROWS: list[dict[str, Any]] = [
    {},  # every column NULL but the key
    {"u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "n": "-9999999999.99", "d": "0.001",
     "nw": "9999999999999999999999999999999999999999.99999999999999999999", "r": "-0",
     "b": "\\x", "tm": "00:00:00", "tm6": "23:59:59.999999", "ts": "0001-01-01 00:00:00",
     "ts0": "9999-12-31 23:59:59", "t": "", "tz": "0001-01-01 00:00:00+00", "dt": "0001-01-01"},
    {"u": "00000000-0000-0000-0000-000000000000", "n": "0", "nw": "-0.00000000000000000001",
     "r": "NaN", "b": "\\x00ff5c22", "tm": "23:59:59.999", "tm6": "00:00:00.000001",
     "ts": "9999-12-31 23:59:59.999999", "ts0": "1969-12-31 23:59:59.6", "t": 'a,"b"\n',
     "tz": "9999-12-31 23:59:59.999999+00", "dt": "9999-12-31"},
    {"n": "1.5", "nw": "-170141183460469231731.6873037158841057", "r": "Infinity",
     "b": "\\x00", "ts": "1969-12-31 23:59:59.999999", "d": "999999.999"},
    {"n": "-0.01", "r": "-Infinity", "b": "\\xff", "ts": "1970-01-01 00:00:00"},
    {"r": "1e-45", "nw": "0"}, {"r": "3.4028235e+38"}, {"r": "-1.17549435e-38"}, {"r": "0.1"},
]  # fmt: skip
# the key column's type -> the key of tenant number t's row number n
KEYS: dict[str, Callable[[int, int], Any]] = {
    "bigint": lambda t, n: 2**63 - 1 - n if t else n,
    "uuid": lambda t, n: f"a0eebc99-9c0b-4ef8-bb6d-{t:06x}{n:06x}",
    "text": lambda t, n: f'ü/{n}, "k"\n{{}}\\' * (t + 1),
}
REFUSED = [("n", "NaN"), ("nw", "NaN"), ("tm6", "24:00:00"), ("ts", "infinity"),
           ("ts", "-infinity"), ("ts", "2026-01-01 00:00:00 BC"),
           ("ts", "10000-01-01 00:00:00"), ("tz", "infinity"), ("tz", "-infinity"),
           ("tz", "0044-03-15 12:00:00+00 BC"), ("tz", "10000-01-01 00:00:00+00"),
           ("dt", "infinity"), ("dt", "0044-03-15 BC"), ("dt", "10000-01-01")]  # fmt: skip


@pytest.fixture(params=sorted(KEYS))
def typed(
    local_stack: Stack, unique: str, request: pytest.FixtureRequest
) -> Iterator[tuple[PostgresSettings, Catalog, Any]]:
    """One table of the types read as text, keyed by one column of the type the parameter
    names, seeded with their edge values for two tenants; also yields an autocommit cursor
    to change it. Dropped afterwards."""
    pg, schema, key_of = local_stack.pg, f"sw_snaptypes_{unique}", KEYS[request.param]
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    kinds = {"id": request.param, **{n: k.format(s=schema) for n, k in TYPED.items()}}
    table, ident = sql.Identifier(schema, "typed"), sql.Identifier(schema)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in kinds.items()
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
            cur.execute(sql.SQL("CREATE DOMAIN {}.positive AS numeric(9,3) CHECK (VALUE > 0)")
                        .format(ident))  # fmt: skip
            cur.execute(sql.SQL("CREATE TABLE {} (tenant text, {}, PRIMARY KEY (tenant, id))")
                        .format(table, columns))  # fmt: skip
            for t, tenant in enumerate(("t-1", "tenant two")):
                for n, row in enumerate(TYPED_ROWS):
                    values = {**row, "id": key_of(t, n)}
                    names = sql.SQL(", ").join(map(sql.Identifier, ["tenant", *values]))
                    cells = sql.SQL(", ").join(sql.SQL("(%s)::" + kinds[k]) for k in values)
                    insert = sql.SQL("INSERT INTO {} ({}) VALUES (%s, {})")
                    cur.execute(insert.format(table, names, cells), [tenant, *values.values()])
            entity = {"table": f"{schema}.typed", "key": ["id"], "tenant": {"column": "tenant"},
                      "columns": [{"name": n, "type": k} for n, k in kinds.items()]}  # fmt: skip
            types = {f"{schema}.positive": {"kind": "domain", "base": "numeric(9,3)"}}
            catalog = parse_catalog({"types": types, "entities": {"typed": entity}}, "typed")
            yield pg, catalog, cur
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
        conn.close()


def test_text_read_types_read_by_copy_give_the_records_of_the_per_row_path(
    typed: tuple[PostgresSettings, Catalog, Any],
) -> None:
    pg, catalog, _ = typed
    table = captured_tables(catalog)["typed"]
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        rows = [r for chunk in _chunks(cur, _run(pg, catalog, 1000, copy=False), table)
                for r in chunk]  # fmt: skip
    expected = reference(_run(pg, catalog, 1000), table, rows)
    assert len(expected) == 2 * len(TYPED_ROWS)
    for copy, chunk_rows in ((True, 3), (True, 1000), (False, 4)):
        run = _run(pg, catalog, chunk_rows, copy=copy)
        assert (_copy_types(run, table) is not None) == copy, "read by COPY when asked"
        with closing(connect(pg)) as conn, conn.cursor() as cur:
            snapshot_table(cur, run, table)
        assert run.columnar[table.label] is not None, "the table takes the column path"
        assert run.prod.sent == expected, (copy, chunk_rows)  # type: ignore[attr-defined]


@pytest.mark.parametrize("copy", [True, False])
def test_a_refused_value_is_refused_by_the_snapshot_with_its_one_line_error(
    typed: tuple[PostgresSettings, Catalog, Any], copy: bool
) -> None:
    pg, catalog, change = typed
    table = captured_tables(catalog)["typed"]
    for column, text in REFUSED:
        update = sql.SQL(
            "UPDATE {} SET {} = %s WHERE id = (SELECT id FROM {} WHERE tenant = 't-1' ORDER BY id "
            "LIMIT 1 OFFSET 2) AND tenant = 't-1'"
        )
        target = sql.Identifier(table.schema, table.name)
        change.execute(update.format(target, sql.Identifier(column), target), [text])
        with (
            closing(connect(pg)) as conn,
            conn.cursor() as cur,
            pytest.raises(UncarriedValueError, match=r"cannot be carried exactly"),
        ):
            snapshot_table(cur, _run(pg, catalog, 4, copy=copy), table)
        change.execute(update.format(target, sql.Identifier(column), target), [None])
