"""The entity catalog: its rules, its load order and the example catalogs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluiceway.common.catalog import Catalog, CatalogError, load_catalog, parse_catalog

ROOT = Path(__file__).resolve().parents[2]
JIRA = ROOT / "examples" / "jira" / "catalog.yaml"


def entity(refs: list[tuple[str, list[str]]] = (), key: tuple[str, ...] = ("id",)) -> dict:  # type: ignore[assignment]
    columns = [{"name": "id", "type": "bigint"}, {"name": "parent_id", "type": "bigint"}]
    return {
        "table": "public.t",
        "key": list(key),
        "tenant": {"column": "tenant_id"},
        "columns": columns,
        "references": [{"entity": e, "columns": c} for e, c in refs],
    }


def catalog(**entities: dict[str, Any]) -> Catalog:
    return parse_catalog({"entities": entities}, "test")


def test_order_puts_parents_first_and_ignores_self_references() -> None:
    cat = catalog(
        c=entity([("b", ["parent_id"])]),
        b=entity([("a", ["parent_id"]), ("b", ["parent_id"])]),
        a=entity(),
    )
    assert cat.order == ("a", "b", "c")
    assert cat.descendants(["a"]) == ("a", "b", "c")
    assert cat.descendants(["c"]) == ("c",)


def test_a_cycle_is_refused_naming_it() -> None:
    with pytest.raises(CatalogError, match="cycle: a -> b -> a"):
        catalog(a=entity([("b", ["parent_id"])]), b=entity([("a", ["parent_id"])]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"references": [{"entity": "nope", "columns": ["parent_id"]}]}, "unknown entity 'nope'"),
        ({"key": ["tenant_id", "missing"]}, "key column 'missing' is not a captured column"),
        ({"key": ["tenant_id"]}, "the key holds only the tenant column"),
        ({"updated": "gone"}, "updated column 'gone' is not captured"),
        ({"tenant": {"column": "t", "schema_pattern": "x"}}, "exactly one of tenant.column"),
        ({"tenant": {"schema_pattern": "("}}, "not a regex"),
        ({"columns": [{"name": "id", "type": "bigint"}, {"name": "tenant_id", "type": "text"}]},
         "tenant column 'tenant_id' is listed among the columns"),
    ],
)  # fmt: skip
def test_bad_entities_get_one_line_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as info:
        catalog(a={**entity(), **change})
    assert "\n" not in str(info.value)


def test_reference_arity_must_match_the_parents_key() -> None:
    parent = entity(key=("tenant_id", "id", "parent_id"))
    with pytest.raises(CatalogError, match="has 1 columns; 'p' is keyed by"):
        catalog(p=parent, c=entity([("p", ["parent_id"])]))


def test_schema_per_tenant_finds_the_tenant_in_the_schema_name() -> None:
    cat = catalog(a={**entity(), "tenant": {"schema_pattern": "tenant_(.+)"}, "table": "t"})
    tenant = cat.entity("a").tenant
    assert tenant.tenant_of_schema("tenant_acme") == "acme"
    assert tenant.tenant_of_schema("public") is None


def test_yaml_round_trip_and_config_section(tmp_path: Path) -> None:
    cat = load_catalog(JIRA)
    again = yaml.safe_load(cat.to_yaml())
    assert parse_catalog(again, "again") == cat
    config = tmp_path / "sluiceway.yaml"
    config.write_text(yaml.safe_dump({"catalog": again}))
    assert load_catalog(config) == cat


def test_unreadable_catalogs_get_one_line(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read it"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("entities: [1, 2]\n")
    with pytest.raises(CatalogError, match=r"bad\.yaml: entities"):
        load_catalog(bad)


def _avro_columns(entity: str) -> list[tuple[str, Any, bool]]:
    """(name, Avro type, nullable) per field of the checked-in entity schema."""
    record = json.loads(
        (ROOT / "schemas" / f"sluiceway.entity.{entity.capitalize()}.avsc").read_text()
    )
    out = []
    for field in record["fields"]:
        avro = field["type"]
        nullable = isinstance(avro, list)
        avro = next(t for t in avro if t != "null") if nullable else avro
        out.append(
            (field["name"], avro.get("logicalType") if isinstance(avro, dict) else avro, nullable)
        )
    return out


def test_the_jira_example_describes_the_checked_in_schemas() -> None:
    pg = {"bigint": "long", "integer": "int", "text": "string", "boolean": "boolean",
          "double precision": "double", "timestamp with time zone": "timestamp-micros",
          "date": "date"}  # fmt: skip
    cat = load_catalog(JIRA)
    assert cat.order == ("user", "project", "issue", "comment", "worklog")
    for name, ent in cat.entities.items():
        described = [(c.name, pg[c.type], c.nullable) for c in ent.columns]
        assert described == _avro_columns(name), name
