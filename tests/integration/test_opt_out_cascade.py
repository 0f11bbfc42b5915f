"""Opt-out cascading on the real stack: a three-level chain (project -> issue -> attachment)
and a self-reference (sub-issues, and their sub-issues, of an opted-out project's issues,
filed in other projects). A full export, then a delta whose changes are all below opted-out
rows that did not change in it, and one row that is not. The truth is a recursive query on
the source database; the lake is read back from its files."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from sluiceway.common.kafka_io import load_run
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import with_attachment
from tests.conftest import Cli, settings_env
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import snapshot_done, wait_caught_up
from tests.integration.test_sixth_entity import TENANT, _add_attachments
from tests.polling import wait_for

pytestmark = pytest.mark.integration

# the issues an opt-out of %(keys)s reaches: its projects' issues, then their sub-issues
OPTED_ISSUES = """
WITH RECURSIVE opted(id) AS (
  SELECT i.id FROM issues i JOIN projects p ON p.tenant_id = i.tenant_id AND p.id = i.project_id
  WHERE i.tenant_id = %(tenant)s AND p.key = ANY(%(keys)s)
  UNION
  SELECT c.id FROM issues c JOIN opted o ON c.parent_id = o.id WHERE c.tenant_id = %(tenant)s
)
"""
KEPT = {
    "project": "SELECT id FROM projects WHERE tenant_id = %(tenant)s AND key <> ALL(%(keys)s)",
    "issue": "SELECT id FROM issues WHERE tenant_id = %(tenant)s",
    "comment": "SELECT id FROM comments WHERE tenant_id = %(tenant)s",
    "worklog": "SELECT id FROM worklogs WHERE tenant_id = %(tenant)s",
    "attachment": "SELECT id FROM attachments WHERE tenant_id = %(tenant)s",
}
TABLES = {
    "project": "projects", "issue": "issues", "comment": "comments", "worklog": "worklogs",
    "attachment": "attachments",
}  # fmt: skip
ISSUE_OF = {"issue": "id", "comment": "issue_id", "worklog": "issue_id", "attachment": "issue_id"}


def _query(
    pg: PostgresSettings, text: str | sql.Composed, **params: object
) -> list[tuple[object, ...]]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(text, {"tenant": TENANT, **params})
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def kept_in_source(pg: PostgresSettings, entity: str, keys: list[str]) -> set[int]:
    """The entity's ids an opt-out of ``keys`` keeps, by the source's own rows."""
    text = KEPT[entity]
    if entity in ISSUE_OF:
        text = f"{OPTED_ISSUES} {text} AND {ISSUE_OF[entity]} NOT IN (SELECT id FROM opted)"
    return {int(r[0]) for r in _query(pg, text, keys=keys)}  # type: ignore[call-overload]


def all_in_source(pg: PostgresSettings, entity: str) -> set[int]:
    """Every id of the entity in the tenant, opted out or not."""
    text = sql.SQL("SELECT id FROM {} WHERE tenant_id = %(tenant)s").format(
        sql.Identifier(TABLES[entity])
    )
    return {int(r[0]) for r in _query(pg, text)}  # type: ignore[call-overload]


def lake_ids(lake: Path, entity: str, etl_id: str) -> set[int]:
    files = [p for p in lake.rglob("part-*.parquet") if entity in p.parts and etl_id in p.parts]
    if not files:
        return set()
    return set(pa.concat_tables(pq.read_table(f) for f in files).column("id").to_pylist())


def _nest(pg: PostgresSettings, opted_key: str) -> list[int]:
    """Two issues of other projects become sub-issues of the opted-out project's first
    issue, and two more sub-issues of those; returns the four, deepest last."""
    rows = _query(
        pg,
        "SELECT i.id, p.key = %(opted)s FROM issues i JOIN projects p"
        " ON p.tenant_id = i.tenant_id AND p.id = i.project_id"
        " WHERE i.tenant_id = %(tenant)s ORDER BY i.id",
        opted=opted_key,
    )
    top = next(int(i) for i, own in rows if own)  # type: ignore[call-overload]
    others = [int(i) for i, own in rows if not own][:4]  # type: ignore[call-overload]
    parents = [top, top, others[0], others[1]]
    for child, parent in zip(others, parents, strict=True):
        _query(pg, "UPDATE issues SET parent_id = %(p)s WHERE tenant_id = %(tenant)s"
               " AND id = %(c)s", p=parent, c=child)  # fmt: skip
    return others


def _delta_changes(pg: PostgresSettings, nested: list[int], kept_issue: int) -> None:
    """Rows under opted-out ancestors that do not change: a new attachment and comment on
    the deepest sub-issue, an edit of that sub-issue; and a new attachment on a kept issue."""
    deepest = nested[-1]
    for issue in (deepest, kept_issue):
        _query(
            pg,
            "INSERT INTO attachments (tenant_id, id, issue_id, author_id, file_name, size_bytes,"
            " created, updated) SELECT %(tenant)s, max(id) + 1, %(i)s, NULL, 'new.png', 1,"
            " now(), now() FROM attachments WHERE tenant_id = %(tenant)s",
            i=issue,
        )
    # a copy of a comment, on the deepest sub-issue
    rest = [
        c for c in with_attachment().entity("comment").column_names if c not in ("id", "issue_id")
    ]
    copy = sql.SQL(
        "INSERT INTO comments (tenant_id, id, issue_id, {cols}) SELECT tenant_id,"
        " (SELECT max(id) + 1 FROM comments), %(i)s, {cols} FROM comments"
        " WHERE tenant_id = %(tenant)s LIMIT 1"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, rest)))
    _query(pg, copy, i=deepest)
    _query(pg, "UPDATE issues SET summary = summary || ' (edited)' WHERE tenant_id = %(tenant)s"
           " AND id = %(i)s", i=deepest)  # fmt: skip


@pytest.mark.parametrize("path", ["scan", "index"])
def test_opt_out_leaves_out_every_descendant_in_a_full_export_and_a_delta(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str, path: str
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(with_attachment().to_yaml())
    mode = {"scan": "off", "index": "always"}[path]  # index: the verdicts' pass reads through it
    env = {"SLUICEWAY_PG_CATALOG": str(catalog), "SLUICEWAY_KAFKA_TENANT_INDEX": mode}
    cli = Cli(settings_env(kafka, source_db, env))
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "40", "--seed", "11")
    _add_attachments(source_db)
    [(opted,)] = _query(
        source_db, "SELECT key FROM projects WHERE tenant_id = %(tenant)s ORDER BY id LIMIT 1"
    )
    keys = [str(opted)]
    nested = _nest(source_db, keys[0])
    lake, slot = tmp_path / "lake", f"sw_{unique}"
    spec = tmp_path / "spec.yaml"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        spec.write_text(f"tenants: [{TENANT}]\nopt_out: [{opted}]\ndestination: {lake}\n")
        full = cli.json("export", "start", "--spec", str(spec), "--wait", timeout=600)
        before = {e: kept_in_source(source_db, e, keys) for e in KEPT}
        everything = {e: all_in_source(source_db, e) for e in KEPT}
        kept_issue = min(before["issue"])
        _delta_changes(source_db, nested, kept_issue)
        wait_caught_up(source_db, slot, capture, timeout=120)
        spec.write_text(spec.read_text() + "type: delta\n")
        delta = cli.json("export", "start", "--spec", str(spec), "--wait", timeout=600)
    finally:
        capture.stop()
    for run in (full, delta):
        assert (load_run(kafka, run["etl_id"]).read_path or {}).get("path") == path
    for entity, kept in before.items():
        # the opt-out leaves some of each entity out and some in, so the equality below
        # could fail either way
        assert 0 < len(kept) < len(everything[entity]), entity
        assert lake_ids(lake, entity, full["etl_id"]) == kept, entity
    # every sub-issue level was reached (they are in other projects: only parent_id leads)
    assert not set(nested) & before["issue"]
    after = {e: kept_in_source(source_db, e, keys) for e in KEPT}
    # what the delta's changes touched, by the source: rows new since the full export's
    # truth was read, and the edited sub-issue; the delta must write those it keeps
    touched = {e: all_in_source(source_db, e) - everything[e] for e in KEPT}
    touched["issue"].add(nested[-1])
    assert len(touched["attachment"]) == 2 and len(touched["comment"]) == 1
    for entity in KEPT:
        assert lake_ids(lake, entity, delta["etl_id"]) == touched[entity] & after[entity], entity
    # the one change under no opted-out ancestor: the attachment on the kept issue
    assert touched["attachment"] & after["attachment"] != set()
