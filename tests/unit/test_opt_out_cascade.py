"""Opt-out cascading against its definition, on random catalogs and random rows.

A catalog here is a random DAG of references over a few entities, the first one holding the
opted-out field, with a forced chain of at least three levels below it and random
self-references. The rows are random too, some written in two versions (the last one
counts). The oracle is the definition itself, computed over the rows alone: a row is
opted out when it is a row of the opted-out entity holding an opted-out value, or when one
of its references (its own entity's included) names an opted-out row of its tenant; the
least set closed under that rule. The per-event path and the batch path must keep exactly
the rows outside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.common.avro_batch import BatchDecoder
from sluiceway.common.catalog import Catalog, Column, Entity, OptOut, Reference, Tenant
from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import set_active_catalog
from sluiceway.common.spec import parse_spec
from sluiceway.processors.batch import transform_frame
from sluiceway.processors.opt_out import cascade_of, verdicts_of
from sluiceway.processors.transforms import transform

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANTS = ("t1", "t2")
VALUES = ("X", "Y", None)  # the spec opts out "X"
RowId = tuple[str, str, int]  # entity, tenant, id


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    """Entities e0..en: e_i references e_(i-1) for the first three (a chain of three levels
    below e0), any earlier ones at random, and itself at random."""
    count = draw(st.integers(4, 6))
    entities = {}
    for i in range(count):
        parents = {i - 1} if 1 <= i <= 3 else set()
        if i:
            parents |= set(draw(st.lists(st.integers(0, i - 1), max_size=2)))
        if draw(st.booleans()):
            parents.add(i)  # a self-reference: a row answering a row of its own entity
        refs = tuple(Reference(entity=f"e{p}", columns=(f"ref_{p}",)) for p in sorted(parents))
        columns = (
            Column(name="id", type="bigint", nullable=False),
            Column(name="flag", type="text"),
            *(Column(name=f"ref_{p}", type="bigint") for p in sorted(parents)),
            Column(name="updated", type="timestamp with time zone", nullable=False),
        )
        entities[f"e{i}"] = Entity(
            table=f"public.e{i}", key=("tenant_id", "id"), tenant=Tenant(column="tenant_id"),
            updated="updated", references=refs, columns=columns,
        )  # fmt: skip
    return Catalog(entities=entities, opt_out=OptOut(entity="e0", field="flag"))


def _row(draw: st.DrawFn, entity: Entity, row_id: int, size: int) -> dict[str, Any]:
    row: dict[str, Any] = {"id": row_id, "flag": draw(st.sampled_from(VALUES)), "updated": T0}
    for ref in entity.references:
        # ids past size name rows that do not exist
        row[ref.columns[0]] = draw(st.one_of(st.none(), st.integers(1, size + 1)))
    return row


@st.composite
def histories(draw: st.DrawFn, catalog: Catalog) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Every row's versions in the order they were written; some rows have two."""
    size = draw(st.integers(1, 5))
    versions = []
    for name, entity in catalog.entities.items():
        for tenant in TENANTS:
            for row_id in range(1, size + 1):
                for _ in range(draw(st.integers(1, 2))):
                    versions.append((name, tenant, row_id, _row(draw, entity, row_id, size)))
    return draw(st.permutations(versions)) if draw(st.booleans()) else versions


def definition(catalog: Catalog, rows: dict[RowId, dict[str, Any]]) -> set[RowId]:
    """The opted-out rows, by the rule alone: a fixed point over the rows."""
    opted = {r for r, row in rows.items() if r[0] == "e0" and row["flag"] == "X"}
    grew = True
    while grew:
        grew = False
        for (entity, tenant, row_id), row in rows.items():
            if (entity, tenant, row_id) in opted:
                continue
            for ref in catalog.entities[entity].references:
                if (ref.entity, tenant, row[ref.columns[0]]) in opted:
                    opted.add((entity, tenant, row_id))
                    grew = True
                    break
    return opted


def _event(entity: str, tenant: str, row_id: int, row: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "tenant_id": tenant, "entity": entity, "entity_id": row_id, "op": "u" if row else "d",
        "position": 1, "source_ts": T0, "snapshot": False, "after": row,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_catalog() -> Iterator[None]:
    yield
    set_active_catalog(None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_kept_rows_are_those_outside_the_closure(data: st.DataObject) -> None:
    catalog = data.draw(catalogs())
    set_active_catalog(catalog)
    versions = data.draw(histories(catalog))
    # each key's last written version counts
    last = {(e, t, i): row for e, t, i, row in versions}
    expected = {r for r in last if r not in definition(catalog, last)}
    spec = parse_spec({"tenants": list(TENANTS), "destination": "/l", "opt_out": ["X"]})
    opted = verdicts_of(cascade_of(catalog), spec.opt_out, versions)
    kept = {r for r, row in last.items() if transform(_event(*r, row), spec, opted) is not None}
    assert kept == expected
    codec, decoder = Codec(catalog=catalog), BatchDecoder()
    batch: set[RowId] = set()
    for entity in catalog.names:
        rows = [(r, row) for r, row in last.items() if r[0] == entity]
        events = [_event(*r, row) for r, row in rows]
        keys = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
        frame = decoder.decode(codec.schemas[entity], [codec.encode(e) for e in events], keys)
        assert frame is not None
        out = transform_frame(frame, entity, spec, opted)
        batch |= {(entity, t, i) for t, i in zip(out["tenant_id"], out["entity_id"], strict=True)}
    assert batch == expected
    # the delete of a row that others reference follows the row's verdict, by its id
    for entity in cascade_of(catalog).judged:  # type: ignore[union-attr]
        for e, tenant, row_id in last:
            if e == entity:
                dropped = transform(_event(entity, tenant, row_id, None), spec, opted) is None
                assert dropped == ((e, tenant, row_id) not in expected)
