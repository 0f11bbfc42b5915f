"""The catalog-driven generators: values of every mapped type round-trip through their text
form and pgtypes' parser, rows are deterministic for a seed and reference live parents of
their tenant, and the churn planner never deletes a row another live row references."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sluiceway import exit_codes
from sluiceway.cli import build_app
from sluiceway.common.catalog import Catalog, CatalogError, load_catalog, parse_catalog
from sluiceway.common.pgtypes import pg_type
from sluiceway.devstack import catalog_churn, catalog_seed
from sluiceway.devstack.catalog_churn import CatalogPlanner, CatalogState, ledger_lines
from sluiceway.devstack.catalog_rows import KeyPool, RowMaker, Tenants, schema_for, tenant_rows
from sluiceway.devstack.churn_run import Commit
from sluiceway.devstack.values import kind_of, text_form, value
from tests.repo import ROOT

HELPDESK = load_catalog(ROOT / "examples" / "helpdesk" / "catalog.yaml")
EXTRA_TYPES = (
    "smallint", "integer", "bigint", "numeric(76,10)", "numeric(5,0)", "character(1)",
    "varchar(3)", "bpchar", "timestamp(3) without time zone", "time(0) without time zone",
    "interval day to second", "boolean[]", "bytea[]", "date[]", "uuid[]", "jsonb[]",
    "numeric[]", "double precision[]", "real[]", "timestamp with time zone[]",
    "ticket_status[]", "email_address[]", "interval[]", "character(4)[]",
)  # fmt: skip
TYPES = sorted({c.type for e in HELPDESK.entities.values() for c in e.columns} | set(EXTRA_TYPES))


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN equal to NaN (in lists too)."""
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right) and type(left) is type(right)


@pytest.mark.parametrize("type_name", TYPES)
def test_every_generated_value_round_trips_through_pgtypes(type_name: str) -> None:
    kind, pg = kind_of(type_name, HELPDESK.types), pg_type(type_name, HELPDESK.types)
    rng = random.Random(type_name)
    for draw in range(300):
        drawn = value(kind, rng, edge=draw % 2 == 0)
        assert same(pg.parse(text_form(kind, drawn)), drawn), (type_name, drawn)


def edges(type_name: str) -> list[Any]:
    rng = random.Random(1)
    kind = kind_of(type_name, HELPDESK.types)
    return [value(kind, rng, edge=True) for _ in range(200)]


def test_edge_values_hold_what_each_type_can_hold() -> None:
    assert {"NaN", "Infinity", "-Infinity"} <= set(edges("numeric"))
    assert sum(math.isnan(v) for v in edges("real")) and math.inf in edges("double precision")
    assert [] in edges("text[]") and any(None in v and len(v) > 1 for v in edges("integer[]"))
    texts = "".join(edges("text"))
    assert all(c in texts for c in "\"',\n\r\\\t") and "日本語" in texts
    assert any(not d.isascii() for d in edges("jsonb"))
    assert min(edges("timestamp with time zone")) < datetime(1970, 1, 1, tzinfo=UTC)
    assert min(edges("date")).year < 1970 and b"" in edges("bytea")
    assert all(len(v) == 2 for v in edges("character(2)"))
    assert all(len(v) <= 120 for v in edges("email_address"))


def test_rows_are_deterministic_for_a_seed() -> None:
    makers = {name: RowMaker(HELPDESK, name) for name in HELPDESK.order}

    def rows(seed: int) -> dict[str, Any]:
        return tenant_rows(makers, HELPDESK.order, seed, (1, "1"), 25)

    assert rows(3) == rows(3)
    assert rows(3) != rows(4)
    assert all(len(made) == 25 for made in rows(3).values())


def test_references_point_at_earlier_rows_of_the_same_tenant() -> None:
    makers = {name: RowMaker(HELPDESK, name) for name in HELPDESK.order}
    for number, tenant in enumerate(("1", "2"), start=1):
        rows = tenant_rows(makers, HELPDESK.order, 9, (number, tenant), 40)
        for name in HELPDESK.order:
            seen: dict[str, list[tuple[Any, ...]]] = {
                n: [makers[n].key_of(r) for r in rows[n]] for n in HELPDESK.order
            }
            for position, row in enumerate(rows[name]):
                for parent, key in makers[name].parents_of(row):
                    earlier = seen[parent][:position] if parent == name else seen[parent]
                    assert key in earlier, (name, row, parent)
    # the self-reference and every nullable column are exercised
    replies = tenant_rows(makers, HELPDESK.order, 9, (1, "1"), 40)["reply"]
    assert any(r["parent_n"] is not None for r in replies)
    assert any(r["parent_n"] is None for r in replies)


def test_keys_without_the_tenant_column_differ_across_tenants() -> None:
    makers = {name: RowMaker(HELPDESK, name) for name in HELPDESK.order}
    ids = [
        {r["id"] for r in tenant_rows(makers, HELPDESK.order, 9, (n, str(n)), 30)["attachment"]}
        for n in (1, 2)
    ]
    assert not ids[0] & ids[1]


def test_tenants_have_one_text_form_and_a_schema_each() -> None:
    tenants = Tenants.numbered(HELPDESK, 3)
    assert tenants.texts == ("1", "2", "3")
    assert tenants.schemas["article"] == {"1": "org_1", "2": "org_2", "3": "org_3"}
    assert tenants.table(HELPDESK, "vote", "2") == ("org_2", "article_votes")
    assert tenants.table(HELPDESK, "reply", "2") == ("public", "replies")
    assert schema_for(r"^tenant_(\w+)$", "a_b") == "tenant_a_b"
    assert schema_for(r"t\.x_(\d+)", "5") == "t.x_5"
    assert schema_for(r"org_(\d+)", "abc") is None


def only_schemas(pattern: str) -> Catalog:
    tenant = {"schema_pattern": pattern}
    columns = [{"name": "id", "type": "integer", "nullable": False}]
    return parse_catalog(
        {"entities": {"a": {"table": "a", "key": ["id"], "tenant": tenant, "columns": columns}}},
        "test",
    )


def test_a_schema_pattern_that_cannot_name_the_tenants_is_refused() -> None:
    assert Tenants.numbered(only_schemas(r"shop_([a-z]\d+)"), 2).texts == ("t1", "t2")
    with pytest.raises(CatalogError, match="no tenant name fits"):
        Tenants.numbered(only_schemas("fixed"), 1)
    with pytest.raises(CatalogError, match=r"cannot name a schema for tenant 'x'.*org_\(\\d\+\)"):
        Tenants.of(HELPDESK, ["x"])


def seeded_state(tenants: Tenants, rows_per_tenant: int) -> CatalogState:
    makers = {name: RowMaker(HELPDESK, name) for name in HELPDESK.order}
    state = CatalogState()
    for number, tenant in enumerate(tenants.texts, start=1):
        rows = tenant_rows(makers, HELPDESK.order, 5, (number, tenant), rows_per_tenant)
        for name in HELPDESK.order:
            for row in rows[name]:
                state.add(tenant, name, makers[name].key_of(row), makers[name].parents_of(row))
    return state


def test_churn_keeps_every_reference_valid() -> None:
    """A model of the source replays the planned ops: inserts point at live parents of their
    tenant, updates touch live rows and no key, deletes take rows nothing live references."""
    tenants = Tenants.numbered(HELPDESK, 2)
    planner = CatalogPlanner(random.Random(2), HELPDESK, tenants, seeded_state(tenants, 8))
    live = {(t, n): set(p.keys) for (t, n), p in planner.state.pools.items()}
    refs: dict[tuple[str, str, Any], list[tuple[str, Any]]] = dict(planner.state.parents)
    ops = planner.batch(3000, datetime.now(UTC))
    for op in ops:
        maker, where = planner.makers[op.entity], (op.tenant_id, op.entity)
        if op.op == "c":
            assert op.values is not None and op.key not in live[where]
            refs[op.tenant_id, op.entity, op.key] = parents = maker.parents_of(op.values)
            assert all(key in live[op.tenant_id, parent] for parent, key in parents)
            live[where].add(op.key)
        elif op.op == "u":
            assert op.key in live[where] and op.values
            assert not set(op.values) & set(maker.entity.key)
        else:
            live[where].remove(op.key)
            target = (op.entity, op.key)
            holders = [
                k for k, parents in refs.items() if target in parents and k[0] == op.tenant_id
            ]
            assert all(k[2] not in live[k[0], k[1]] for k in holders), op
    assert set(Counter(op.op for op in ops)) == {"c", "u", "d"}
    assert {op.entity for op in ops if op.op == "d"} == set(HELPDESK.order)


def test_ledger_lines_hold_the_record_key_as_an_array() -> None:
    tenants = Tenants.numbered(HELPDESK, 1)
    planner = CatalogPlanner(random.Random(3), HELPDESK, tenants, seeded_state(tenants, 4))
    ops = planner.batch(200, datetime.now(UTC))
    commit = Commit(7, "0/16B3748", datetime(2026, 1, 1, tzinfo=UTC))
    lines = [json.loads(line) for line in ledger_lines(ops, commit).splitlines()]
    assert [line["seq"] for line in lines] == list(range(len(ops)))
    for op, line in zip(ops, lines, strict=True):
        assert line["id"] == list(op.key) and line["tenant_id"] == op.tenant_id
        assert len(line["id"]) == len(HELPDESK.entity(op.entity).record_key)
        assert {line["xid"], line["commit_lsn_upper"]} == {7, "0/16B3748"}


def test_a_uuid_ending_in_digits_is_no_counter() -> None:
    """A random uuid's last group can be all decimal digits: it must not raise the counter
    that fills the integer part of a composite key (reply.n), or churn inserts a value out of
    the column's range."""
    state = CatalogState()
    ticket = "5b0e1c2d-0000-4000-8000-050211348484"
    state.add("1", "ticket", (ticket,), [])
    state.add("1", "reply", (ticket, 3), [("ticket", (ticket,))])
    assert state.counters["reply"] == 4
    assert state.counters["ticket"] == 1
    state.add("1", "label", ("label-41",), [])
    assert state.counters["label"] == 42


BAD_CATALOGS = {
    "missing": (None, "cannot read it"),
    "unmapped": (
        {"table": "s.a", "key": ["id"], "tenant": {"column": "t"},
         "columns": [{"name": "id", "type": "integer"}, {"name": "x", "type": "tsvector"}]},
        "s.a.x (tsvector): type 'tsvector' has no mapping",
    ),
    "pattern": (
        {"table": "a", "key": ["id"], "tenant": {"schema_pattern": "fixed"},
         "columns": [{"name": "id", "type": "integer"}]},
        "no tenant name fits every tenant.schema_pattern of ['fixed']",
    ),
}  # fmt: skip


@pytest.mark.parametrize("command", ["seed", "churn"])
@pytest.mark.parametrize("case", sorted(BAD_CATALOGS))
def test_a_bad_catalog_is_refused_in_one_line_before_connecting(
    case: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity, expected = BAD_CATALOGS[case]
    path = tmp_path / "catalog.yaml"
    if entity is not None:
        path.write_text(yaml.safe_dump({"entities": {"a": entity}}))
    if case == "pattern" and command == "churn":
        expected = "cannot name a schema for tenant 'x'"  # churn is told its tenants
    for module in (catalog_churn, catalog_seed):
        monkeypatch.setattr(module, "connect", lambda _pg: pytest.fail("connected"))
    args = [
        "source",
        command,
        "--catalog",
        str(path),
        "--tenants",
        "1" if command == "seed" else "x",
    ]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == exit_codes.BAD_INPUT, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


def test_key_pool_groups_follow_adds_and_removes() -> None:
    rng = random.Random(4)
    pool = KeyPool([(rng.randrange(5), n) for n in range(50)])
    for step in range(2000):
        if pool and rng.random() < 0.4:
            pool.remove(rng.choice(pool.keys))
        else:
            pool.add((rng.randrange(5), 100 + step))
        ticket = rng.randrange(5)
        assert sorted(pool.matching({0: ticket})) == sorted(k for k in pool.keys if k[0] == ticket)
    assert pool.matching({}) == pool.keys


def test_domains_over_one_another_are_refused_not_looped_on() -> None:
    catalog = parse_catalog(
        {
            "types": {"a_dom": {"kind": "domain", "base": "b_dom"},
                      "b_dom": {"kind": "domain", "base": "a_dom"}},
            "entities": {"e": {"table": "e", "key": ["id"], "tenant": {"column": "t"},
                               "columns": [{"name": "id", "type": "integer"}]}},
        },
        "test",
    )  # fmt: skip

    class NoQueries:
        def execute(self, *_args: Any) -> None:
            pytest.fail("no type can be created first")

    with pytest.raises(CatalogError, match=r"types \['a_dom', 'b_dom'\] are domains over one"):
        catalog_seed._create_types(NoQueries(), catalog)


def test_foreign_keys_go_through_the_tenant_only_where_both_keys_allow() -> None:
    reply, attachment, ticket = (HELPDESK.entity(n) for n in ("reply", "attachment", "ticket"))
    fk = catalog_seed._foreign_key
    # the parent's key holds the tenant column: the foreign key goes through it
    assert fk(HELPDESK, attachment, attachment.references[0]) == (
        ["org_id", "ticket_id", "reply_n"],
        ["org_id", "ticket_id", "n"],
    )
    assert fk(HELPDESK, reply, reply.references[1]) == (
        ["org_id", "ticket_id", "parent_n"],
        ["org_id", "ticket_id", "n"],
    )
    # the parent's key is its record key alone
    assert fk(HELPDESK, ticket, ticket.references[0]) == (["customer_id"], ["id"])
    # across tenant rules no foreign key can say "the same tenant": none is declared
    mixed = parse_catalog(
        {
            "entities": {
                "shelf": {"table": "shelves", "key": ["id"], "tenant": {"schema_pattern": "s_(.*)"},
                          "columns": [{"name": "id", "type": "integer"}]},
                "tag": {"table": "public.tags", "key": ["t", "id"], "tenant": {"column": "t"},
                        "references": [{"entity": "shelf", "columns": ["shelf_id"]}],
                        "columns": [{"name": "id", "type": "integer"},
                                    {"name": "shelf_id", "type": "integer"}]},
                "note": {"table": "notes", "key": ["id"], "tenant": {"schema_pattern": "s_(.*)"},
                         "references": [{"entity": "tag", "columns": ["tag_id"]}],
                         "columns": [{"name": "id", "type": "integer"},
                                     {"name": "tag_id", "type": "integer"}]},
            }
        },
        "test",
    )  # fmt: skip
    for child in ("tag", "note"):
        entity = mixed.entity(child)
        assert fk(mixed, entity, entity.references[0]) is None, child


def test_wide_decimals_keep_every_digit() -> None:
    """A numeric(30,10) edge value has 30 digits: built with Decimal's 28-digit context it
    rounded up to 10^20, which the column refuses (numeric field overflow)."""
    kind = kind_of("numeric(30,10)", {})
    drawn = {text_form(kind, value(kind, random.Random(seed), edge=True)) for seed in range(20)}
    assert "9" * 20 + "." + "9" * 10 in drawn
    assert all(len(t.lstrip("-").replace(".", "")) <= 30 for t in drawn)


def test_times_never_round_up_to_midnight_in_a_time_p_column() -> None:
    """time(3) rounds 23:59:59.999999 to 24:00:00, a value capture refuses."""
    kind = kind_of("time(3) without time zone", {})
    drawn = [value(kind, random.Random(seed), edge=True) for seed in range(40)]
    assert drawn and all(t.hour < 23 or t.second < 59 for t in drawn)
