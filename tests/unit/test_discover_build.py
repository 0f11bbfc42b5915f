"""Building a catalog from described tables: the cases a test database makes awkward."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sluiceway.common.catalog import UserType
from sluiceway.common.pg_catalog import PgColumn, PgForeignKey, PgTable
from sluiceway.tools.discover.build import Rule, by_tenant_column, valid_name


def col(name: str, type_name: str = "bigint") -> PgColumn:
    return PgColumn(name, type_name, True, "", False, False, 0)


def table(oid: int, name: str, *extra: str, key: tuple[str, ...] = ("org", "id")) -> PgTable:
    columns = [col("org", "text"), col("id"), *(col(c) for c in extra)]
    return PgTable(oid, "s", name, "", "d", columns, primary_key=key)


def fk(child: int, parent: int, column: str) -> PgForeignKey:
    return PgForeignKey(f"fk_{child}_{column}", child, parent, f"s.t{parent}", ("org", column),
                        ("org", "id"))  # fmt: skip


def no_types(oids: Iterable[int]) -> dict[str, UserType]:
    return {}


def refuse_money(type_name: str, types: Mapping[str, UserType]) -> str | None:
    return "no mapping" if type_name == "money" else None


def test_a_cycle_of_three_loses_one_reference_and_loads() -> None:
    a, b, c = table(1, "a", "b_id"), table(2, "b", "c_id"), table(3, "c", "a_id")
    a.foreign_keys.append(fk(1, 2, "b_id"))
    b.foreign_keys.append(fk(2, 3, "c_id"))
    c.foreign_keys.append(fk(3, 1, "a_id"))
    found = by_tenant_column([a, b, c], Rule(tenant_column="org"), no_types, refuse_money)
    refs = {n: [r.entity for r in e.references] for n, e in found.catalog.entities.items()}
    assert refs == {"a": ["b"], "b": ["c"], "c": []}
    assert found.not_mapped == (("s.c", "reference to a ['a_id'] closes a cycle of references; "
                                 "dropped"),)  # fmt: skip
    assert found.catalog.order == ("c", "b", "a")


def test_a_refused_key_column_or_a_key_of_the_tenant_alone_skips_the_table() -> None:
    money = PgTable(1, "s", "m", "", "d", [col("org", "text"), col("id", "money")], ("org", "id"))
    only_tenant = table(2, "t", key=("org",))
    kept = table(3, "kept")
    found = by_tenant_column([money, only_tenant, kept], Rule(tenant_column="org"), no_types,
                             refuse_money)  # fmt: skip
    assert list(found.catalog.entities) == ["kept"]
    assert found.not_mapped == (
        ("s.m.id", "money: no mapping; excluded"),
        ("s.m", "key column(s) ['id'] excluded: skipped"),
        ("s.t", "the key holds only the tenant: skipped"),
    )


def test_entity_names_are_valid_names() -> None:
    assert valid_name("Order-Items") == "order_items"
    assert valid_name("2fa") == "_2fa"
    assert valid_name("Café") == "caf_"
