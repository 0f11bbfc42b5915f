"""Snapshot micro-benchmark: rows per second of the per-row path (psycopg2 rows, a parser
per value, fastavro) against the column path (on psycopg2 rows, and on chunks read by COPY)
for a table of uuid, numeric(12,2), text, timestamptz and timestamp columns keyed by a
bigint or a uuid, encoding alone and read plus encoding. Needs a running PostgreSQL
(``SLUICEWAY_PG_*``); not part of ``make bench``, which drives whole stacks.

    python -m benchmarks.snapshot_paths [--key bigint|uuid] [--rows 50000]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.codec import Codec
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.db import connect
from sluiceway.producers.snapshot import SnapshotRun, _chunks, encode_rows
from sluiceway.producers.snapshot_columns import Chunk
from sluiceway.producers.tables import CapturedTable, captured_tables

POINT = (1 << 40, datetime(2026, 12, 6, tzinfo=UTC))
KAFKA = KafkaSettings(partitions=12, spread=2)
CHUNK = 10_000
COLUMNS = {"u": "uuid", "n": "numeric(12,2)", "s": "text", "tstz": "timestamp with time zone",
           "ts": "timestamp without time zone"}  # fmt: skip


def _catalog(table: str, key: str) -> Catalog:
    columns = [{"name": "id", "type": key, "nullable": False},
               *({"name": n, "type": k} for n, k in COLUMNS.items())]  # fmt: skip
    entity = {"table": table, "key": ["id"], "tenant": {"column": "tenant"}, "columns": columns}
    return parse_catalog({"entities": {"bench": entity}}, "bench")


def _rows(n: int, key: str) -> list[tuple[Any, ...]]:
    rng = random.Random(1)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return [(f"tenant-{i % 7}", i if key == "bigint" else str(uuid.UUID(int=rng.getrandbits(128))),
             str(uuid.UUID(int=rng.getrandbits(128))), f"{rng.randint(-10**10, 10**10) / 100:.2f}",
             f"comment number {i} with some text", start + timedelta(seconds=rng.random() * 1e8),
             datetime(2000 + i % 20, 1 + i % 12, 1 + i % 28, i % 24, i % 60, i % 60,
                      rng.randint(0, 999_999)))
            for i in range(n)]  # fmt: skip


def _seed(pg: PostgresSettings, schema: str, key: str, n: int) -> None:
    ident = sql.Identifier(schema)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(k)) for c, k in COLUMNS.items()
    )
    with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        cur.execute(sql.SQL("CREATE TABLE {}.bench (tenant text, id {}, {}, PRIMARY KEY "
                            "(tenant, id))").format(ident, sql.SQL(key), columns))  # fmt: skip
        insert = sql.SQL("INSERT INTO {}.bench VALUES %s").format(ident).as_string(cur)
        execute_values(cur, insert, _rows(n, key), page_size=5000)
        cur.execute(sql.SQL("ANALYZE {}.bench").format(ident))
        conn.commit()


def _run(pg: PostgresSettings, catalog: Catalog, copy: bool) -> SnapshotRun:
    settings = CaptureSettings(
        KafkaSettings(), pg, CaptureTuning(chunk_rows=CHUNK, snapshot_copy=copy)
    )
    return SnapshotRun(settings, Codec(catalog=catalog), None, POINT, None)  # type: ignore[arg-type]


def _best(label: str, rows: int, fn: Callable[[], object]) -> None:
    took = []
    for _ in range(3):
        began = time.perf_counter()
        fn()
        took.append(time.perf_counter() - began)
    print(f"{label:52s} {min(took):7.3f} s {rows / min(took):>10,.0f} rows/s", flush=True)


def _measure(pg: PostgresSettings, catalog: Catalog, n: int) -> None:
    codec, table = Codec(catalog=catalog), captured_tables(catalog)["bench"]
    column_run = _run(pg, catalog, True)
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        fetched = list(_chunks(cur, _run(pg, catalog, False), table))
        copied = list(_chunks(cur, column_run, table))
    columnar = column_run.columnar[table.label]
    assert columnar is not None, "the table takes the column path"

    def encode(chunks: list[Chunk], column: bool) -> list[Any]:
        return [encode_rows(codec, table, POINT, KAFKA, c, columnar if column else None)
                for c in chunks]  # fmt: skip

    assert encode(fetched, False) == encode(copied, True), "both paths give the same records"
    _best("encode, per-row", n, lambda: encode(fetched, False))
    _best("encode, column path on psycopg2 rows", n, lambda: encode(fetched, True))
    _best("encode, column path on COPY chunks", n, lambda: encode(copied, True))
    for label, copy, column in (("per-row", False, False),
                                ("column path on psycopg2 rows", False, True),
                                ("column path, COPY", True, True)):  # fmt: skip
        _best(f"read + encode, {label}", n, _whole(pg, catalog, table, copy, column))


def _whole(
    pg: PostgresSettings, catalog: Catalog, table: CapturedTable, copy: bool, column: bool
) -> Callable[[], None]:
    """A whole read of the table, chunk by chunk, each encoded (not sent)."""

    def read() -> None:
        run = _run(pg, catalog, copy)
        if not column:
            run.columnar[table.label] = None
        with closing(connect(pg)) as conn, conn.cursor() as cur:
            for chunk in _chunks(cur, run, table):
                encode_rows(run.codec, table, POINT, KAFKA, chunk, run.columnar[table.label])

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", choices=("bigint", "uuid"), default="bigint")
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    pg, schema = PostgresSettings(), f"sw_snapbench_{args.key}_{uuid.uuid4().hex[:8]}"
    _seed(pg, schema, args.key, args.rows)
    try:
        print(f"{args.rows:,} rows keyed by {args.key}, chunks of {CHUNK:,}")
        _measure(pg, _catalog(f"{schema}.bench", args.key), args.rows)
    finally:
        with closing(psycopg2.connect(pg.dsn())) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.commit()


if __name__ == "__main__":
    main()
