"""``sluiceway source discover`` in schema-per-tenant mode, with two schemas in one run, and on
the Jira-shaped demo database, whose discovered catalog is the example catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway import exit_codes
from sluiceway.common.catalog import Catalog, Column, Entity, Reference, Tenant, load_catalog
from sluiceway.common.settings import PostgresSettings
from sluiceway.tools.discover import Rule
from tests.conftest import Cli
from tests.integration.test_discover import catalog_lines, execute, run_discover
from tests.repo import ROOT

pytestmark = pytest.mark.integration

TENANT_TABLES = """
CREATE TABLE {s}.items (id uuid PRIMARY KEY, name text NOT NULL,
  region text REFERENCES shared.regions (code), modified timestamptz);
CREATE TABLE {s}.parts (item_id uuid REFERENCES {s}.items (id), n integer, weight real,
  PRIMARY KEY (item_id, n));
CREATE TABLE {s}.extra (id bigint PRIMARY KEY, note text);
"""
TENANTS = (
    "CREATE SCHEMA shared; CREATE TABLE shared.regions (code text PRIMARY KEY);"
    "CREATE SCHEMA t_alpha; CREATE SCHEMA t_beta;"
    + TENANT_TABLES.format(s="t_alpha")
    + TENANT_TABLES.format(s="t_beta")
    + "ALTER TABLE t_beta.extra ADD COLUMN flag boolean;"
    "CREATE TABLE t_alpha.only_alpha (id integer PRIMARY KEY);"
)
PER_SCHEMA = Tenant(schema_pattern="t_(.*)")
EXPECTED = {
    "items": Entity(
        table="items", key=("id",), tenant=PER_SCHEMA, updated="modified",
        columns=(Column(name="id", type="uuid", nullable=False),
                 Column(name="name", type="text", nullable=False),
                 Column(name="region", type="text"),
                 Column(name="modified", type="timestamp with time zone")),
    ),
    "parts": Entity(
        table="parts", key=("item_id", "n"), tenant=PER_SCHEMA,
        references=(Reference(entity="items", columns=("item_id",)),),
        columns=(Column(name="item_id", type="uuid", nullable=False),
                 Column(name="n", type="integer", nullable=False),
                 Column(name="weight", type="real")),
    ),
    "extra": Entity(
        table="extra", key=("id",), tenant=PER_SCHEMA,
        columns=(Column(name="id", type="bigint", nullable=False),
                 Column(name="note", type="text")),
    ),
    "only_alpha": Entity(
        table="only_alpha", key=("id",), tenant=PER_SCHEMA,
        columns=(Column(name="id", type="integer", nullable=False),),
    ),
}  # fmt: skip


@pytest.fixture
def tenant_schemas(source_db: PostgresSettings) -> Iterator[PostgresSettings]:
    execute(source_db, TENANTS)
    yield source_db
    execute(source_db, "DROP SCHEMA t_alpha, t_beta, shared CASCADE")


def test_schema_per_tenant(tenant_schemas: PostgresSettings, cli: Cli, tmp_path: Path) -> None:
    found = run_discover(tenant_schemas, Rule(schema_pattern="t_(.*)"))
    for name, entity in EXPECTED.items():
        assert found.catalog.entities.get(name) == entity, name
    assert set(found.catalog.entities) == set(EXPECTED)
    assert sorted(found.not_mapped) == [
        ("t_alpha.items.region", "foreign key items_region_fkey: shared.regions is not in the "
         "catalog; reference dropped"),
        ("t_beta.extra", "columns differ from t_alpha.extra (flag); the catalog follows "
         "t_alpha.extra"),
        ("t_beta.only_alpha", "missing in this tenant schema (found in t_alpha)"),
    ]  # fmt: skip
    out = tmp_path / "catalog.yaml"
    cli("source", "discover", "--schema-per-tenant", "t_(.*)", "--out", str(out))
    assert load_catalog(out) == found.catalog
    # check looks in every tenant schema: the table discover found missing is named
    _, lines = catalog_lines(cli, out)
    assert [c["detail"] for c in lines] == ["t_beta.only_alpha: table does not exist"]
    execute(tenant_schemas, "ALTER TABLE t_beta.parts DROP COLUMN weight")
    _, lines = catalog_lines(cli, out)
    assert sorted(c["detail"] for c in lines) == [
        "t_beta.only_alpha: table does not exist",
        "t_beta.parts.weight: column does not exist",
    ]


def test_one_table_name_in_two_schemas_gets_schema_prefixes(
    tenant_schemas: PostgresSettings,
) -> None:
    execute(tenant_schemas, "ALTER TABLE t_alpha.items ADD COLUMN id2 bigint")
    found = run_discover(tenant_schemas, Rule(tenant_column="id2"))
    assert list(found.catalog.entities) == ["items"]  # one schema: no prefix
    rule = Rule(tenant_column="n", tables=("parts",))
    found = run_discover(tenant_schemas, rule)
    assert set(found.catalog.entities) == {"t_alpha_parts", "t_beta_parts"}
    assert found.catalog.entities["t_beta_parts"].table == "t_beta.parts"


DEMO_NAMES = {"projects": "project", "users": "user", "issues": "issue",
              "comments": "comment", "worklogs": "worklog"}  # fmt: skip
# The demo's DDL declares no foreign keys; these are the relations its catalog documents.
DEMO_FOREIGN_KEYS = [
    ("projects", "lead_id", "users"), ("issues", "project_id", "projects"),
    ("issues", "creator_id", "users"), ("issues", "reporter_id", "users"),
    ("issues", "assignee_id", "users"), ("issues", "parent_id", "issues"),
    ("comments", "issue_id", "issues"), ("comments", "author_id", "users"),
    ("comments", "update_author_id", "users"), ("worklogs", "issue_id", "issues"),
    ("worklogs", "author_id", "users"), ("worklogs", "update_author_id", "users"),
]  # fmt: skip


def comparable(catalog: Catalog, references: bool = True) -> dict[str, Entity]:
    """Entities under the example's names, without docs (the demo's DDL has no comments)."""
    entities = {}
    for name, entity in catalog.entities.items():
        refs = tuple(
            Reference(entity=DEMO_NAMES.get(r.entity, r.entity), columns=r.columns)
            for r in entity.references
        )
        columns = tuple(c.model_copy(update={"doc": ""}) for c in entity.columns)
        entities[DEMO_NAMES.get(name, name)] = entity.model_copy(
            update={"doc": "", "columns": columns, "references": refs if references else ()}
        )
    return entities


def test_the_demo_database_discovers_as_the_example_catalog(
    source_db: PostgresSettings, cli: Cli, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    example = load_catalog(ROOT / "examples" / "jira" / "catalog.yaml")
    found = run_discover(source_db, Rule(tenant_column="tenant_id"))
    assert found.not_mapped == ()
    assert comparable(found.catalog) == comparable(example, references=False)

    execute(source_db, ";".join(
        f"ALTER TABLE {child} ADD FOREIGN KEY (tenant_id, {column}) "
        f"REFERENCES {parent} (tenant_id, id) NOT VALID"
        for child, column, parent in DEMO_FOREIGN_KEYS
    ))  # fmt: skip
    found = run_discover(source_db, Rule(tenant_column="tenant_id"))
    assert comparable(found.catalog) == comparable(example)
    assert [DEMO_NAMES[n] for n in found.catalog.order] == list(example.order)

    code, lines = catalog_lines(cli, ROOT / "examples" / "jira" / "catalog.yaml")
    assert (code, [c["ok"] for c in lines]) == (exit_codes.OK, [True]), lines
