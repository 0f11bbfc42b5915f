"""``sluiceway source discover --tenant-column`` on tables the demo never saw, compared field
by field with the DDL below (the source of truth), and ``sluiceway check`` holding the
written catalog against the database before and after the tables change."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sluiceway import exit_codes
from sluiceway.common.catalog import Column, Entity, Reference, Tenant, UserType, load_catalog
from sluiceway.common.settings import PostgresSettings
from sluiceway.tools.discover import Discovery, Rule, discover
from tests.conftest import Cli

pytestmark = pytest.mark.integration

SCRATCH = """
CREATE SCHEMA scratch;
CREATE TYPE scratch.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN scratch.positive AS numeric(10,2) CHECK (VALUE > 0);
-- a uuid key; the tenant (an integer) outside it; an unmappable and a generated column
CREATE TABLE scratch.accounts (
  id uuid PRIMARY KEY, org integer NOT NULL, name varchar(80) NOT NULL, mood scratch.mood,
  moods scratch.mood[], balance scratch.positive, search tsvector,
  name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
  modified_at timestamp without time zone);
COMMENT ON TABLE scratch.accounts IS 'A customer account.';
COMMENT ON COLUMN scratch.accounts.name IS 'Shown to customers.';
-- a composite key holding the tenant; a dropped column
CREATE TABLE scratch.ledgers (org text, a integer, b text, old text, label text,
  PRIMARY KEY (org, a, b));
ALTER TABLE scratch.ledgers DROP COLUMN old;
-- a three-level chain ledgers <- entries <- lines; entries names the ledger's key out of order
CREATE TABLE scratch.entries (
  org text, id bigint, ledger_a integer NOT NULL, ledger_b text NOT NULL,
  account_id uuid REFERENCES scratch.accounts (id), updated timestamptz,
  PRIMARY KEY (org, id),
  FOREIGN KEY (org, ledger_b, ledger_a) REFERENCES scratch.ledgers (org, b, a));
CREATE TABLE scratch.lines (org text, entry_id bigint, n integer, amount numeric(12,2),
  PRIMARY KEY (org, entry_id, n), FOREIGN KEY (org, entry_id) REFERENCES scratch.entries (org, id));
-- a self-reference, and a foreign key to a table without the tenant column
CREATE TABLE scratch.countries (code text PRIMARY KEY);
CREATE TABLE scratch.notes (
  org text, id bigint, parent_id bigint, body text NOT NULL,
  country text REFERENCES scratch.countries (code),
  PRIMARY KEY (org, id), FOREIGN KEY (org, parent_id) REFERENCES scratch.notes (org, id));
-- foreign keys to a unique key other than the primary key: without the tenant column (the
-- parent's key holds it: the tenant is implied), and to columns that are not the parent's key
CREATE UNIQUE INDEX notes_id ON scratch.notes (id);
CREATE UNIQUE INDEX accounts_name ON scratch.accounts (name);
CREATE TABLE scratch.remarks (org text, id bigint, note_id bigint REFERENCES scratch.notes (id),
  account_name varchar(80) REFERENCES scratch.accounts (name), PRIMARY KEY (org, id));
-- no primary key; no primary key but a replica identity index
CREATE TABLE scratch.events (org text, at timestamptz, what text);
CREATE TABLE scratch.tags (org text NOT NULL, tag text NOT NULL, colour text);
CREATE UNIQUE INDEX tags_identity ON scratch.tags (org, tag);
ALTER TABLE scratch.tags REPLICA IDENTITY USING INDEX tags_identity;
-- two tables referencing each other: a cycle
CREATE TABLE scratch.teams (org text, id bigint, captain_id bigint, PRIMARY KEY (org, id));
CREATE TABLE scratch.players (org text, id bigint, team_id bigint, PRIMARY KEY (org, id),
  FOREIGN KEY (org, team_id) REFERENCES scratch.teams (org, id));
ALTER TABLE scratch.teams ADD FOREIGN KEY (org, captain_id) REFERENCES scratch.players (org, id);
-- a tenant column of a type that is not keyable
CREATE TABLE scratch.odd (org varchar(10), id bigint PRIMARY KEY);
"""

ORG = Tenant(column="org")
NOT_NULL_ID = Column(name="id", type="bigint", nullable=False)
EXPECTED = {
    "accounts": Entity(
        table="scratch.accounts", key=("id",), tenant=Tenant(column="org", type="integer"),
        updated="modified_at", doc="A customer account.",
        columns=(
            Column(name="id", type="uuid", nullable=False),
            Column(name="name", type="character varying(80)", nullable=False,
                   doc="Shown to customers."),
            Column(name="mood", type="scratch.mood"),
            Column(name="moods", type="scratch.mood[]"),
            Column(name="balance", type="scratch.positive"),
            Column(name="modified_at", type="timestamp without time zone"),
        ),
        exclude=("search", "name_upper"),
    ),
    "ledgers": Entity(
        table="scratch.ledgers", key=("org", "a", "b"), tenant=ORG,
        columns=(Column(name="a", type="integer", nullable=False),
                 Column(name="b", type="text", nullable=False), Column(name="label", type="text")),
    ),
    "entries": Entity(
        table="scratch.entries", key=("org", "id"), tenant=ORG, updated="updated",
        references=(Reference(entity="ledgers", columns=("ledger_a", "ledger_b")),
                    Reference(entity="accounts", columns=("account_id",))),
        columns=(NOT_NULL_ID, Column(name="ledger_a", type="integer", nullable=False),
                 Column(name="ledger_b", type="text", nullable=False),
                 Column(name="account_id", type="uuid"),
                 Column(name="updated", type="timestamp with time zone")),
    ),
    "lines": Entity(
        table="scratch.lines", key=("org", "entry_id", "n"), tenant=ORG,
        references=(Reference(entity="entries", columns=("entry_id",)),),
        columns=(Column(name="entry_id", type="bigint", nullable=False),
                 Column(name="n", type="integer", nullable=False),
                 Column(name="amount", type="numeric(12,2)")),
    ),
    "notes": Entity(
        table="scratch.notes", key=("org", "id"), tenant=ORG,
        references=(Reference(entity="notes", columns=("parent_id",)),),
        columns=(NOT_NULL_ID, Column(name="parent_id", type="bigint"),
                 Column(name="body", type="text", nullable=False),
                 Column(name="country", type="text")),
    ),
    "remarks": Entity(
        table="scratch.remarks", key=("org", "id"), tenant=ORG,
        references=(Reference(entity="notes", columns=("note_id",)),),
        columns=(NOT_NULL_ID, Column(name="note_id", type="bigint"),
                 Column(name="account_name", type="character varying(80)")),
    ),
    "tags": Entity(
        table="scratch.tags", key=("org", "tag"), tenant=ORG,
        columns=(Column(name="tag", type="text", nullable=False),
                 Column(name="colour", type="text")),
    ),
    "teams": Entity(
        table="scratch.teams", key=("org", "id"), tenant=ORG,
        columns=(NOT_NULL_ID, Column(name="captain_id", type="bigint")),
    ),
    "players": Entity(
        table="scratch.players", key=("org", "id"), tenant=ORG,
        references=(Reference(entity="teams", columns=("team_id",)),),
        columns=(NOT_NULL_ID, Column(name="team_id", type="bigint")),
    ),
}  # fmt: skip
TYPES = {
    "scratch.mood": UserType(kind="enum", values=("sad", "ok", "happy")),
    "scratch.positive": UserType(kind="domain", base="numeric(10,2)"),
}
NOT_MAPPED = [
    ("scratch.accounts.search", "tsvector: no mapping for tsvector; excluded"),
    ("scratch.accounts.name_upper", "generated column; excluded"),
    ("scratch.events", "no primary key (nor a replica identity index): skipped"),
    ("scratch.odd.org", "tenant column of type character varying(10); expected one of text, "
     "integer, bigint, uuid: table skipped"),
    ("scratch.notes.country", "foreign key notes_country_fkey: scratch.countries is not in the "
     "catalog; reference dropped"),
    ("scratch.remarks.account_name", "foreign key remarks_account_name_fkey: it references "
     "['name'] of scratch.accounts, not its key ['id']; reference dropped"),
    ("scratch.teams", "reference to players ['captain_id'] closes a cycle of references; dropped"),
]  # fmt: skip


def refuse_tsvector(type_name: str, types: Mapping[str, UserType]) -> str | None:
    assert set(types) <= set(TYPES), types  # the enums and domains are handed over
    return "no mapping for tsvector" if type_name == "tsvector" else None


def execute(pg: PostgresSettings, statement: str) -> None:
    with closing(psycopg2.connect(pg.dsn())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)


def run_discover(pg: PostgresSettings, rule: Rule, schemas: tuple[str, ...] = ()) -> Discovery:
    with closing(psycopg2.connect(pg.dsn())) as conn:
        return discover(conn, rule, schemas=schemas, unmapped=refuse_tsvector)


@pytest.fixture
def scratch(source_db: PostgresSettings) -> Iterator[PostgresSettings]:
    execute(source_db, SCRATCH)
    yield source_db
    execute(source_db, "DROP SCHEMA scratch CASCADE")


def test_discover_finds_what_the_ddl_declares(scratch: PostgresSettings, tmp_path: Path) -> None:
    found = run_discover(scratch, Rule(tenant_column="org"), schemas=("scratch",))
    for name, entity in EXPECTED.items():
        assert found.catalog.entities.get(name) == entity, name
    assert set(found.catalog.entities) == set(EXPECTED)
    assert found.catalog.types == TYPES
    assert sorted(found.not_mapped) == sorted(NOT_MAPPED)
    written = tmp_path / "catalog.yaml"
    written.write_text(found.catalog.to_yaml())
    assert load_catalog(written) == found.catalog
    # parents before children, as restore loads them
    order = list(found.catalog.entities)
    for child, parent in [("entries", "ledgers"), ("lines", "entries"), ("players", "teams")]:
        assert order.index(parent) < order.index(child)


def test_tables_and_updated_column_options(scratch: PostgresSettings) -> None:
    rule = Rule(tenant_column="org", tables=("scratch.l*", "entries"), updated_column="updated")
    found = run_discover(scratch, rule)
    assert list(found.catalog.entities) == ["ledgers", "entries", "lines"]
    assert found.catalog.entities["entries"].updated == "updated"
    assert found.catalog.entities["ledgers"].updated is None
    assert ("scratch.ledgers", "no captured column 'updated': no updated column") in (
        found.not_mapped
    )
    # the reference to accounts leaves with accounts
    dropped = (
        "scratch.entries.account_id",
        "foreign key entries_account_id_fkey: scratch.accounts is not in the catalog; "
        "reference dropped",
    )
    assert dropped in found.not_mapped


def catalog_lines(cli: Cli, catalog: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = Cli({**cli.env, "SLUICEWAY_PG_CATALOG": str(catalog)})("check", "--json", check=False)
    checks = json.loads(proc.stdout)["checks"]
    return proc.returncode, [c for c in checks if c["name"] == "catalog"]


def test_cli_writes_a_catalog_that_check_holds_against_the_database(
    scratch: PostgresSettings, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "catalog.yaml"
    report = cli.json("source", "discover", "--tenant-column", "org", "--schemas", "scratch",
                      "--out", str(out))  # fmt: skip
    assert report["out"] == str(out) and set(report["entities"]) == set(EXPECTED)
    # the CLI judges types with the documented mapping (docs/types.md): tsvector has none
    tsvector = ("scratch.accounts.search",
                "tsvector: type 'tsvector' has no mapping (docs/types.md lists the mapped types); "
                "excluded")  # fmt: skip
    assert {(n["where"], n["reason"]) for n in report["not_mapped"]} == {tsvector, *NOT_MAPPED[1:]}
    # the header says where the catalog came from, and nothing more (no password)
    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert header == [
        '# Discovered by `sluiceway source discover --tenant-column "org"` from PostgreSQL '
        "database",
        f'# "{scratch.dbname}" at {scratch.host}:{scratch.port} (as "{scratch.user}").',
        "# Edit it freely: drop entities, add columns to `exclude`, rename entities (and the",
        "# references to them); `sluiceway check` holds it against the database.",
    ]
    assert load_catalog(out).entities["accounts"].exclude == ("search", "name_upper")

    code, lines = catalog_lines(cli, out)
    assert code == exit_codes.OK, lines
    assert [c["ok"] for c in lines] == [True]

    execute(scratch, "ALTER TABLE scratch.ledgers ALTER label TYPE varchar(20);"
            "ALTER TABLE scratch.notes DROP COLUMN parent_id;"
            "ALTER TABLE scratch.notes ALTER body DROP NOT NULL;"
            "ALTER TABLE scratch.tags REPLICA IDENTITY DEFAULT;"
            "ALTER TYPE scratch.mood ADD VALUE 'glad'")  # fmt: skip
    code, lines = catalog_lines(cli, out)
    assert code == exit_codes.BAD_INPUT
    assert sorted(c["detail"] for c in lines) == [
        "scratch.ledgers.label: type is character varying(20) in the database, text in the catalog",
        "scratch.notes.body: nullable in the database, NOT NULL in the catalog",
        "scratch.notes.parent_id: column does not exist",
        "scratch.tags: key ['org', 'tag'] is neither the primary key (none) nor covered by the "
        "replica identity (default, with no primary key)",
        "type scratch.mood: {'kind': 'enum', 'values': ('sad', 'ok', 'happy', 'glad')} in the "
        "database, {'kind': 'enum', 'values': ('sad', 'ok', 'happy')} in the catalog",
    ]
    assert all(not c["ok"] and "sluiceway source discover" in c["fix"] for c in lines)

    execute(scratch, "DROP TABLE scratch.lines")
    _, lines = catalog_lines(cli, out)
    assert "scratch.lines: table does not exist" in [c["detail"] for c in lines]


def test_bad_input_and_an_unreachable_database_exit_apart(
    scratch: PostgresSettings, cli: Cli
) -> None:
    cases = [
        ([], "give exactly one of --tenant-column C and --schema-per-tenant PATTERN"),
        (["--schema-per-tenant", "t_("], "--schema-per-tenant 't_(' is not a regular expression"),
        (["--schema-per-tenant", "nomatch_(.*)"], "--schema-per-tenant 'nomatch_(.*)' matches"),
        (["--tenant-column", "org", "--schemas", "scratch,nope"], "--schemas names 'nope', not"),
        (["--tenant-column", "no_such_column"], "no table matches the rule"),
    ]
    for args, message in cases:
        proc = cli("source", "discover", *args, "--json", check=False)
        assert proc.returncode == exit_codes.BAD_INPUT, (args, proc.stderr)
        assert json.loads(proc.stdout)["error"].startswith(message), proc.stdout
    proc = Cli({**cli.env, "SLUICEWAY_PG_PORT": "1"})("source", "discover", "--tenant-column",
                                                      "org", check=False)  # fmt: skip
    assert proc.returncode == exit_codes.TRANSIENT, proc.stderr
    assert "refused the connection" in proc.stderr
