"""A database the demo never saw, end to end on the real stack: a catalog written here (tables
in schema ``ledger`` under names that are not ``<entity>s``, the tenant in an integer column
``org``, integer record keys, a reference, a column of every mapped type), its tables created
and filled by ``sluiceway source seed --catalog`` plus the edge rows of the type round-trip
test; captured (snapshot, then live inserts, updates to edge values and deletes), exported
full (Parquet and CSV), reconstructed (Parquet and PostgreSQL) and restored into a fresh
database. The source, read with SQL, is the truth: every cell of the Parquet reconstruction
equals the source's parsed text form, every cell of the PostgreSQL reconstruction and of the
restored tables prints as the source's does, and the CSV's cells of types whose text form is
PostgreSQL's are that text."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest
import yaml
from psycopg2 import sql

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.pgtypes import column_type, pg_type
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, Stack, fresh_database, settings_env
from tests.integration.test_capture import snapshot_done, start_capture, wait_caught_up
from tests.integration.test_pgtypes_roundtrip import COLUMNS, EDGE_TEXT, ROWS
from tests.polling import wait_for

pytestmark = pytest.mark.integration
SCHEMA = "ledger"
MOOD = f'{SCHEMA}."Mood"'
# COLUMNS' types as format_type prints them (what the catalog and the check compare)
SPELLED = {
    "varchar(40)": "character varying(40)", "char(5)": "character(5)",
    "time(3)": "time(3) without time zone", "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone", "time[]": "time without time zone[]",
    "timestamp[]": "timestamp without time zone[]",
    "timestamptz[]": "timestamp with time zone[]", "char(3)[]": "character(3)[]",
}  # fmt: skip


def _type(kind: str) -> str:
    kind = kind.format(s=SCHEMA)
    return SPELLED.get(kind, kind)


def write_catalog(path: Path) -> Catalog:
    every_type = [{"name": n, "type": _type(k)} for n, k in COLUMNS.items()]
    tenant = {"column": "org", "type": "integer"}
    document = {
        "namespace": "ledger.entity",
        "types": {
            MOOD: {"kind": "enum", "values": ['in progress, "quoted"', "done"]},
            f"{SCHEMA}.positive": {"kind": "domain", "base": "numeric(9,3)"},
        },
        "entities": {
            "unit": {
                "table": f"{SCHEMA}.org_units", "key": ["org", "unit_no"], "tenant": tenant,
                "columns": [{"name": "unit_no", "type": "bigint", "nullable": False},
                            {"name": "title", "type": "text", "nullable": False},
                            *every_type],
            },
            "member": {
                "table": f"{SCHEMA}.unit_members", "key": ["org", "member_no"],
                "tenant": tenant, "updated": "joined",
                "references": [{"entity": "unit", "columns": ["unit_no"]}],
                "columns": [{"name": "member_no", "type": "integer", "nullable": False},
                            {"name": "unit_no", "type": "bigint", "nullable": False},
                            {"name": "joined", "type": "timestamp with time zone"},
                            {"name": "tags", "type": "text[]"},
                            {"name": "mood", "type": MOOD},
                            {"name": "share", "type": "numeric(6,2)"}],
            },
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return parse_catalog(document, str(path))


def _execute(pg: PostgresSettings, statement: sql.Composable, *params: Any) -> None:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def put_edge_row(pg: PostgresSettings, catalog: Catalog, unit_no: int, row: dict[str, Any]) -> None:
    """Insert or overwrite unit ``unit_no`` of org 1 with one of the edge rows (PostgreSQL
    input text, cast per column)."""
    names = ["org", "unit_no", "title", *COLUMNS]
    entity = catalog.entity("unit")
    casts = [sql.SQL("%s::integer"), sql.SQL("%s::bigint"), sql.SQL("%s::text")]
    casts += [sql.SQL("%s::" + entity.column(n).type) for n in COLUMNS]
    statement = sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (org, unit_no) DO UPDATE SET ({}) = ({})"
    ).format(
        sql.Identifier(SCHEMA, "org_units"),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(casts),
        sql.SQL(", ").join(map(sql.Identifier, names[2:])),
        sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in names[2:]),
    )
    _execute(pg, statement, 1, unit_no, f"edge {unit_no}", *(row.get(n) for n in COLUMNS))


def source_texts(
    pg: PostgresSettings, catalog: Catalog, entity: str, table: tuple[str, ...] = (),
    tenant: str = "org",
) -> list[tuple[Any, ...]]:  # fmt: skip
    """Every row as the text PostgreSQL prints for each cell, tenant first, in key order;
    from the entity's table, or ``table`` (whose tenant column is ``tenant``)."""
    found = catalog.entity(entity)
    names = [tenant, *found.column_names]
    blank_padded = {c.name for c in found.columns if c.type.startswith("character(")}
    # ordered by the columns, not the text forms the output names stand for
    select = sql.SQL("SELECT {} FROM {} AS t ORDER BY t.{}, t.{}").format(
        sql.SQL(", ").join(_text(n, n in blank_padded) for n in names),
        sql.Identifier(*(table or found.table.split("."))),
        sql.Identifier(tenant),
        sql.Identifier(found.record_key[0]),
    )
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'Europe/Amsterdam'")  # offsets with seconds before 1940
        cur.execute(select)
        rows = list(cur.fetchall())
    conn.close()
    return rows


def _text(name: str, blank_padded: bool) -> sql.Composable:
    """A cell as PostgreSQL prints it: ``::text`` drops a character(n) value's padding,
    the type's output function (what capture reads) keeps it."""
    if blank_padded:
        return sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END").format(
            sql.Identifier(name)
        )
    return sql.SQL("{}::text").format(sql.Identifier(name))


def _plain(value: Any) -> Any:
    """NaN compares equal to NaN; lists element by element."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def reconstructed_matches(
    cli: Cli, lake: Path, out: Path, catalog: Catalog, entity: str, texts: list[tuple[Any, ...]]
) -> None:
    cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
    got = pq.read_table(out).to_pylist()
    found = catalog.entity(entity)
    types = [pg_type("integer", {}), *(column_type(c, catalog.types) for c in found.columns)]
    names = ["tenant_id", *found.column_names]
    assert len(got) == len(texts)
    for row, source in zip(got, texts, strict=True):
        assert row["tenant_id"] == source[0]
        for name, kind, text in list(zip(names, types, source, strict=True))[1:]:
            want = _plain(kind.parse_text(text))
            assert _plain(row[name]) == want, f"{entity} {source[:2]} {name}: {row[name]!r}"


# Columns whose CSV text form is the one PostgreSQL prints (docs/guide.md): compared cell for
# cell with the source; the others have forms of their own (ISO timestamps, base64, JSON
# arrays) and text with line breaks is escaped.
SAME_IN_CSV = (
    "c_smallint", "c_integer", "c_bigint", "c_numeric_ps", "c_numeric_wide", "c_numeric",
    "c_uuid", "c_json", "c_jsonb", "c_interval", "c_enum", "c_domain",
)  # fmt: skip


def csv_matches(lake: Path, texts: list[tuple[Any, ...]], catalog: Catalog) -> None:
    files = sorted(lake.rglob("full-export/unit/*/part-*.csv"))
    assert files
    rows = [r for f in files for r in csv.DictReader(f.read_text(encoding="utf-8").splitlines())]
    names = ["org", *catalog.entity("unit").column_names]
    source = {(t[0], t[1]): dict(zip(names, t, strict=True)) for t in texts}
    got = {(r["_tenant_id"], r["unit_no"]): r for r in rows}
    assert got.keys() == source.keys()
    for key, row in got.items():
        for name in SAME_IN_CSV:
            want = source[key][name]
            assert (row[name] or None) == (want if want != "" else None), f"{key} {name}"


def live_changes(pg: PostgresSettings, catalog: Catalog) -> None:
    """Edge values written over seeded and edge rows, new rows, deletes."""
    put_edge_row(pg, catalog, 1001, ROWS[2])  # the first edge row takes the second's values
    put_edge_row(pg, catalog, 1002, ROWS[1])
    put_edge_row(pg, catalog, 2001, ROWS[3])  # new, then deleted below
    put_edge_row(pg, catalog, 2002, ROWS[3])  # new, kept
    units = sql.Identifier(SCHEMA, "org_units")
    members = sql.Identifier(SCHEMA, "unit_members")
    _execute(pg, sql.SQL("DELETE FROM {} WHERE org = 1 AND unit_no = 2001").format(units))
    _execute(pg, sql.SQL("DELETE FROM {} WHERE member_no %% 4 = 0").format(members))
    _execute(
        pg,
        sql.SQL(
            "UPDATE {} SET c_text = %s, c_numeric = '-Infinity', c_double = 'NaN', "
            "c_ts = '0001-01-01', c_int_arr = '{{}}', c_tstz = '1901-12-13 20:45:52.000001+00' "
            "WHERE org = 2 AND unit_no %% 3 = 0"
        ).format(units),
        EDGE_TEXT,
    )
    _execute(
        pg,
        sql.SQL("UPDATE {} SET tags = '{{\"a,b\",NULL,\"\"}}', share = -9999.99, mood = NULL "
                "WHERE member_no %% 4 = 1").format(members),
    )  # fmt: skip


def test_a_catalog_of_its_own_is_captured_exported_reconstructed_and_restored(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, local_stack: Stack,
    unique: str,
) -> None:  # fmt: skip
    """With pgoutput, the default plugin (wal2json before 2.4 sends NaN and ±Infinity in
    float and numeric columns as JSON null, so it cannot carry these edge values)."""
    catalog = write_catalog(tmp_path / "catalog.yaml")
    cli = Cli(
        settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(tmp_path / "catalog.yaml")})
    )
    cli("source", "seed", "--catalog", str(tmp_path / "catalog.yaml"), "--tenants", "2",
        "--rows-per-tenant", "15", "--seed", "3")  # fmt: skip
    for unit_no, row in zip((1000, 1001, 1002), ROWS[:3], strict=True):
        put_edge_row(source_db, catalog, unit_no, row)
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN="pgoutput")
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        live_changes(source_db, catalog)
        wait_caught_up(source_db, slot, capture, timeout=60)
    finally:
        capture.stop()
    lake = tmp_path / "lake"
    spec = tmp_path / "run.yaml"
    spec.write_text(f"tenants: ['1', '2']\ndestination: {lake}\n")
    cli.json("export", "start", "--spec", str(spec), "--wait", timeout=300)
    csv_spec = tmp_path / "csv.yaml"
    csv_spec.write_text(f"tenants: ['1', '2']\ndestination: {tmp_path / 'csv'}\nformat: csv\n")
    cli.json("export", "start", "--spec", str(csv_spec), "--wait", timeout=300)
    texts = {e: source_texts(source_db, catalog, e) for e in catalog.names}
    csv_matches(tmp_path / "csv", texts["unit"], catalog)
    assert len(texts["unit"]) == 2 * 15 + 4 and 0 < len(texts["member"]) < 30
    for entity in catalog.names:
        reconstructed_matches(cli, lake, tmp_path / f"{entity}.parquet", catalog, entity,
                              texts[entity])  # fmt: skip
    with fresh_database(local_stack.pg, f"sw_restore_{unique}") as target:
        restored = cli.json("restore", "--from", str(lake), "--target-dsn", target.dsn())
        assert restored["rows"] == {e: len(texts[e]) for e in catalog.names}
        for entity in catalog.names:
            assert cell_differences(catalog, entity, texts[entity], target) == []
        url = f"postgresql://{target.user}:{target.password.get_secret_value()}@{target.host}"
        for entity in catalog.names:  # into the same database, as public.<entity>
            cli("reconstruct", "--dest", str(lake), "--table", entity,
                "--out", f"{url}:{target.port}/{target.dbname}#public.{entity}")  # fmt: skip
            got = source_texts(target, catalog, entity, ("public", entity), "tenant_id")
            assert got == texts[entity], entity


def cell_differences(
    catalog: Catalog, entity: str, source: list[tuple[Any, ...]], target: PostgresSettings
) -> list[str]:
    restored = source_texts(target, catalog, entity)
    names = ["org", *catalog.entity(entity).column_names]
    found = [f"{entity}: {len(restored)} rows restored, {len(source)} in the source"]
    if len(restored) == len(source):
        found = [
            f"{entity} {a[:2]} {name}: {x!r} restored as {y!r}"
            for a, b in zip(source, restored, strict=True)
            for name, x, y in zip(names, a, b, strict=True)
            if x != y
        ]
    return found
