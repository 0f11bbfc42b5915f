"""What capture refuses before reading anything, and how it maps a catalog's tables."""

from __future__ import annotations

from typing import Any

import pytest

from sluiceway.common.catalog import Catalog, CatalogError, parse_catalog
from sluiceway.producers.tables import captured_tables, relation_table


def _catalog(**entity: Any) -> Catalog:
    base: dict[str, Any] = {
        "table": "ledger.org_units", "key": ["org", "unit_no"],
        "tenant": {"column": "org", "type": "integer"},
        "columns": [{"name": "unit_no", "type": "bigint", "nullable": False},
                    {"name": "label", "type": "character(4)"},
                    {"name": "code", "type": "padded"}],
    }  # fmt: skip
    types = {"padded": {"kind": "domain", "base": "character(4)"}}
    return parse_catalog({"types": types, "entities": {"unit": {**base, **entity}}}, "test")


def test_a_table_is_taken_under_its_schema_and_name_with_its_tenant_and_key() -> None:
    (table,) = captured_tables(_catalog()).values()
    assert (table.qualified, table.label, table.tenant, table.key) == (
        "ledger.org_units", "ledger.org_units", "org", ("unit_no",),
    )  # fmt: skip
    assert table.integer_key and table.identity({"unit_no": 3, "label": "x"}) == (3, None)
    assert table.columns == ("unit_no", "label", "code")
    assert table.blank_padded == {"label", "code"}  # through the domain too
    assert table.parse("unit_no", "42") == 42 and table.parse("org", 7) == "7"
    public = captured_tables(_catalog(table="org_units"))["unit"]
    assert (public.qualified, public.label) == ("public.org_units", "org_units")


def test_a_schema_per_tenant_entity_has_a_table_in_each_matching_schema() -> None:
    catalog = _catalog(table="org_units", tenant={"schema_pattern": r"org_(\d+)"}, key=["unit_no"])
    (unbound,) = captured_tables(catalog).values()
    assert (unbound.schema, unbound.tenant, unbound.tenant_id, unbound.per_schema) == (
        "", None, None, True,
    )  # fmt: skip
    assert unbound.row_key == ("unit_no",) and "org" not in unbound.fast
    found = relation_table(catalog, "org_42", "org_units")
    assert found is not None and (found.qualified, found.label, found.tenant_id) == (
        "org_42.org_units", "org_42.org_units", "42",
    )  # fmt: skip
    assert found.tenant_of({"unit_no": 1}) == "42"
    assert relation_table(catalog, "public", "org_units") is None  # outside the pattern
    assert relation_table(catalog, "org_x", "org_units") is None
    assert relation_table(catalog, "org_42", "other") is None


def test_a_composite_key_is_carried_typed_with_its_canonical_text() -> None:
    (table,) = captured_tables(_catalog(key=["org", "unit_no", "label"])).values()
    assert table.key == ("unit_no", "label") and not table.integer_key
    assert table.identity({"unit_no": 3, "label": "a/b ", "code": None}) == (
        '["3","a\\u002fb "]', {"unit_no": 3, "label": "a/b "},
    )  # fmt: skip


def test_a_key_column_without_one_text_form_is_refused_naming_it() -> None:
    catalog = _catalog(
        key=["org", "day"], columns=[{"name": "day", "type": "date", "nullable": False}]
    )
    with pytest.raises(CatalogError, match=r"entity 'unit': key column 'day' has type 'date'"):
        captured_tables(catalog)
