"""Schema-per-tenant capture on the real stack: the help desk's knowledge base (articles,
keyed by an integer, and their votes, keyed by ``(article_id, voter_id)``), one schema per
organisation (``org_7`` holds organisation 7's), the tenant taken from the schema.

Three organisations are seeded and captured (snapshot, then inserts, updates and deletes in
each schema). While capture runs two more organisations arrive: ``org_4`` gets rows before
capture has added its tables to the publication and more changes after, ``org_5`` is created
with its rows in one transaction and changed at once. A full export, then a delta after more
changes in every schema (and a column added to one tenant's table); each reconstructs to
the source, read with SQL in every tenant schema: every cell of every row, no row missing,
none twice. A tenant created while capture is stopped is added when it starts again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest
import yaml
from psycopg2 import sql

from sluiceway.common.catalog import Catalog, parse_catalog
from sluiceway.common.resources import example_catalog
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, settings_env
from tests.integration.test_capture import snapshot_done, start_capture, wait_caught_up
from tests.integration.test_helpdesk import parquet_differences
from tests.polling import wait_for

pytestmark = pytest.mark.integration
ENTITIES = ("article", "vote")
TENANTS = ("1", "2", "3", "4", "5")
TABLES = ("articles", "article_votes")


def write_catalog(path: Path) -> Catalog:
    """The help desk example's schema-per-tenant entities alone."""
    document = yaml.safe_load(example_catalog("helpdesk").read_text(encoding="utf-8"))
    document["entities"] = {n: e for n, e in document["entities"].items() if n in ENTITIES}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return parse_catalog(document, str(path))


def _execute(pg: PostgresSettings, *statements: str) -> None:
    """The statements in one transaction."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def _rows(pg: PostgresSettings, query: sql.Composable) -> list[tuple[Any, ...]]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(query)
        rows = cur.fetchall()
    conn.close()
    return rows


def tenant_schemas(pg: PostgresSettings) -> list[str]:
    found = _rows(pg, sql.SQL("SELECT nspname FROM pg_namespace WHERE nspname ~ '^org_[0-9]+$'"))
    return sorted(r[0] for r in found)


def source_rows(pg: PostgresSettings, catalog: Catalog, entity: str) -> dict[tuple[Any, ...], Any]:
    """(tenant, record key texts...) -> the row's cells as PostgreSQL prints them, from the
    entity's table in every tenant schema."""
    found = catalog.entity(entity)
    names = found.column_names
    cells = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END").format(
            sql.Identifier(n)
        )
        for n in names
    )
    out: dict[tuple[Any, ...], Any] = {}
    for schema in tenant_schemas(pg):
        tenant = schema.removeprefix("org_")
        exists = sql.SQL("SELECT to_regclass(format('%I.%I', {}, {})) IS NOT NULL").format(
            sql.Literal(schema), sql.Literal(found.table)
        )
        if not _rows(pg, exists)[0][0]:
            continue  # a tenant without this entity's table (yet)
        query = sql.SQL("SELECT {} FROM {}").format(cells, sql.Identifier(schema, found.table))
        for values in _rows(pg, query):
            row = dict(zip(names, values, strict=True))
            out[(tenant, *(row[k] for k in found.record_key))] = row
    return out


def finite_only(pg: PostgresSettings) -> None:
    """No NaN or infinity in the seeded floats: the new tenants copy org_1's rows, and
    wal2json before 2.4 sends those as null (docs/your-database.md)."""
    for n in (1, 2, 3):
        _execute(pg, f"UPDATE org_{n}.article_votes SET weight = 0.5 "
                     "WHERE weight IN ('NaN', 'Infinity', '-Infinity')",
                 f"UPDATE org_{n}.articles SET rating = 0.5 WHERE rating = 'NaN'")  # fmt: skip


def first_changes(pg: PostgresSettings) -> None:
    """Inserts, updates and deletes in each seeded schema, after the snapshot."""
    for n in (1, 2, 3):
        s = f"org_{n}"
        _execute(pg, f"UPDATE {s}.articles SET title = left('edited / ' || title, 80), "
                     f"rating = 4.5, updated_at = now() WHERE id % 3 = {n % 3}")  # fmt: skip
        _execute(pg, f"DELETE FROM {s}.article_votes WHERE ctid IN "
                     f"(SELECT ctid FROM {s}.article_votes ORDER BY voter_id LIMIT 2)")  # fmt: skip
        _execute(pg, f"INSERT INTO {s}.articles (id, title, updated_at) "
                     f"VALUES ({9000 + n}, 'new in {s}', now())")  # fmt: skip
    _drop_article(pg, "org_3")


def _drop_article(pg: PostgresSettings, schema: str) -> None:
    """Delete the lowest article of ``schema`` with its votes (votes first: foreign key)."""
    low = f"(SELECT min(id) FROM {schema}.articles)"
    _execute(pg, f"DELETE FROM {schema}.article_votes WHERE article_id = {low}",
             f"DELETE FROM {schema}.articles WHERE id = {low}")  # fmt: skip


def new_tenant(pg: PostgresSettings, n: int, *then: str, like: str = "org_1") -> list[str]:
    """Statements creating ``org_<n>`` like schema ``like``, with a copy of its rows."""
    s = f"org_{n}"
    return [
        f"CREATE SCHEMA {s}",
        *(f"CREATE TABLE {s}.{t} (LIKE {like}.{t} INCLUDING ALL)" for t in TABLES),
        *(f"INSERT INTO {s}.{t} SELECT * FROM {like}.{t}" for t in TABLES),
        *then,
    ]


def published(pg: PostgresSettings, schema: str) -> bool:
    found = _rows(pg, sql.SQL(
        "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'sluiceway' "
        "AND schemaname = {}").format(sql.Literal(schema)))  # fmt: skip
    return bool(found[0][0] == len(TABLES))


def tenants_arrive(pg: PostgresSettings, capture: Any, adds: bool) -> None:
    """org_4: rows before capture adds its tables, changes after; org_5: created, filled and
    changed in one transaction. ``adds``: capture adds the tables to its publication (else
    the plugin sees every table from its first write)."""

    def added(schema: str) -> None:
        if adds:
            wait_for(lambda: capture.assert_alive() or published(pg, schema), 60, schema)

    _execute(pg, *new_tenant(pg, 4))  # its rows most likely before capture looks (every 3 s)
    added("org_4")
    _execute(pg, "UPDATE org_4.articles SET body = 'after / ' || coalesce(body, '') "
                 "WHERE id % 2 = 0")  # fmt: skip
    _execute(pg, "INSERT INTO org_4.articles (id, title, updated_at) VALUES (9004, 'n', now())")
    _drop_article(pg, "org_4")
    _execute(pg, *new_tenant(pg, 5, "UPDATE org_5.articles SET rating = 1.5",
                             "DELETE FROM org_5.article_votes WHERE helpful"))  # fmt: skip
    added("org_5")


def later_changes(pg: PostgresSettings) -> None:
    """What the delta carries: changes in every schema, old and new; org_2's articles gain a
    column (a schema version of that tenant's table alone)."""
    _execute(pg, "ALTER TABLE org_2.articles ADD COLUMN reviewer text")
    _execute(pg, "UPDATE org_2.articles SET reviewer = 'r'")
    for n in (1, 2, 4, 5):
        s = f"org_{n}"
        _execute(pg, f"UPDATE {s}.articles SET keywords = ARRAY['later', '{s}'], "
                     f"updated_at = now() WHERE id % 2 = 1")  # fmt: skip
        _execute(pg, f"UPDATE {s}.article_votes SET weight = 0.25 WHERE NOT helpful")
    _drop_article(pg, "org_2")
    _drop_article(pg, "org_5")


def _spec(tmp_path: Path, lake: Path, run_type: str) -> Path:
    path = tmp_path / f"{run_type}.yaml"
    path.write_text(f"tenants: {list(TENANTS)}\ndestination: {lake}\ntype: {run_type}\n")
    return path


def lake_equals_source(
    cli: Cli, catalog: Catalog, lake: Path, source: dict[str, dict[tuple[Any, ...], Any]],
    tmp_path: Path, label: str,
) -> None:  # fmt: skip
    """Reconstruct every entity: one row per source row, every cell equal."""
    for entity in catalog.names:
        out = tmp_path / f"{entity}-{label}.parquet"
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
        assert pq.read_metadata(out).num_rows == len(source[entity]), entity
        assert parquet_differences(catalog, entity, source[entity], out) == []
        tenants = {key[0] for key in source[entity]}
        assert tenants == set(TENANTS), (entity, tenants)


# pgoutput with the publication capture creates (it adds each new tenant's tables), and
# wal2json (no publication: it sees a new table from its first write)
@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
def test_schema_per_tenant_tables_old_and_new_are_captured_and_reconstruct(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str, plugin: str,
) -> None:  # fmt: skip
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "3",
        "--rows-per-tenant", "12", "--seed", "7")  # fmt: skip
    assert tenant_schemas(source_db) == ["org_1", "org_2", "org_3"]
    slot, lake = f"sw_{unique}", tmp_path / "lake"
    if plugin == "wal2json":
        finite_only(source_db)
    capture = start_capture(
        cli, tmp_path, slot, SLUICEWAY_CAPTURE_DISCOVER_S="3", SLUICEWAY_CAPTURE_PLUGIN=plugin
    )
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        first_changes(source_db)
        tenants_arrive(source_db, capture, adds=plugin == "pgoutput")
        wait_caught_up(source_db, slot, capture, timeout=60)
        cli.json("export", "start", "--spec", str(_spec(tmp_path, lake, "full")), "--wait",
                 timeout=300)  # fmt: skip
        at_full = {e: source_rows(source_db, catalog, e) for e in catalog.names}
        lake_equals_source(cli, catalog, lake, at_full, tmp_path, "full")
        later_changes(source_db)
        wait_caught_up(source_db, slot, capture, timeout=60)
    finally:
        capture.stop()
    delta = cli.json("export", "start", "--spec", str(_spec(tmp_path, lake, "delta")), "--wait",
                     timeout=300)  # fmt: skip
    assert sum(delta["rows"].values()) > 0
    source = {e: source_rows(source_db, catalog, e) for e in catalog.names}
    assert source != at_full
    lake_equals_source(cli, catalog, lake, source, tmp_path, "delta")
    if plugin == "pgoutput":  # it carries added columns; wal2json leaves them out
        rows = pq.read_table(tmp_path / "article-delta.parquet").to_pylist()
        assert {(r["tenant_id"], r["reviewer"]) for r in rows} == {
            (t, "r" if t == "2" else None) for t in TENANTS
        }


def _reconstructs(
    cli: Cli, catalog: Catalog, pg: PostgresSettings, tmp_path: Path, tenants: list[str]
) -> None:
    """A full export of ``tenants`` reconstructs to the source, every cell, no row twice."""
    lake, spec = tmp_path / "lake", tmp_path / "full.yaml"
    spec.write_text(f"tenants: {tenants}\ndestination: {lake}\n")
    cli.json("export", "start", "--spec", str(spec), "--wait", timeout=300)
    source = {e: source_rows(pg, catalog, e) for e in catalog.names}
    for entity in catalog.names:
        out = tmp_path / f"{entity}.parquet"
        cli("reconstruct", "--dest", str(lake), "--table", entity, "--out", str(out))
        assert pq.read_metadata(out).num_rows == len(source[entity]), entity
        assert parquet_differences(catalog, entity, source[entity], out) == []
        assert {key[0] for key in source[entity]} == set(tenants)


def test_capture_starts_without_tenants_and_takes_the_first_one_when_it_comes(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    """A new deployment: no schema matches yet (the seeded one is renamed out of the
    pattern, kept as the template); capture starts, and the first tenant's tables are added."""
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "1",
        "--rows-per-tenant", "8", "--seed", "13")  # fmt: skip
    _execute(source_db, "ALTER SCHEMA org_1 RENAME TO template_1")
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_DISCOVER_S="1")
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        _execute(source_db, *new_tenant(source_db, 2, like="template_1"))
        wait_for(lambda: capture.assert_alive() or published(source_db, "org_2"), 60, "org_2")
        _execute(source_db, "UPDATE org_2.articles SET title = 'second' WHERE id % 2 = 0")
        _drop_article(source_db, "org_2")
        wait_caught_up(source_db, slot, capture, timeout=60)
    finally:
        capture.stop()
    _reconstructs(cli, catalog, source_db, tmp_path, ["2"])


def test_a_tenant_created_while_capture_is_stopped_is_added_when_it_starts_again(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
) -> None:  # fmt: skip
    """The slot holds org_4's rows, unpublished (pgoutput drops them); the capture started
    again adds the table with its rows, and its later changes stream."""
    catalog_file = tmp_path / "catalog.yaml"
    catalog = write_catalog(catalog_file)
    cli = Cli(settings_env(kafka, source_db, {"SLUICEWAY_PG_CATALOG": str(catalog_file)}))
    cli("source", "seed", "--catalog", str(catalog_file), "--tenants", "3",
        "--rows-per-tenant", "8", "--seed", "11")  # fmt: skip
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_DISCOVER_S="1")
    try:
        wait_for(lambda: capture.assert_alive() or snapshot_done(kafka, slot), 60, "the snapshot")
        capture.stop()
        _execute(source_db, *new_tenant(source_db, 4, "DELETE FROM org_4.article_votes "
                                        "WHERE helpful"))  # fmt: skip
        _execute(source_db, "UPDATE org_2.articles SET rating = 2.5")
        capture.start()
        wait_for(lambda: capture.assert_alive() or published(source_db, "org_4"), 60, "org_4")
        _execute(source_db, "UPDATE org_4.articles SET title = 'after restart' WHERE id % 2 = 0")
        _drop_article(source_db, "org_4")
        wait_caught_up(source_db, slot, capture, timeout=60)
    finally:
        capture.stop()
    _reconstructs(cli, catalog, source_db, tmp_path, ["1", "2", "3", "4"])
