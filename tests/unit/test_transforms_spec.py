"""Spec-driven transforms: scope, opt-out, projection, PII redaction, remapping."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.common import entities
from sluiceway.common.codec import Codec
from sluiceway.common.entities import active_catalog, reference_columns
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.common.spec_fields import entity_columns
from sluiceway.processors.opt_out import cascade_of, verdicts_of
from sluiceway.processors.transforms import (
    MASK,
    in_scope,
    opted_out,
    output_key,
    project,
    redact,
    remap,
    transform,
)
from tests.catalogs import ENTITIES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "per-destination-key"
# what the pass before a run would find: project 1 is opted out, so its issue 7 is, and
# issue 9, a sub-issue of 7 in the open project 2
lookup = verdicts_of(
    cascade_of(active_catalog()),
    ["SECRET"],
    [
        ("project", "t1", 1, {"id": 1, "key": "SECRET"}),
        ("project", "t1", 2, {"id": 2, "key": "OPEN"}),
        ("issue", "t1", 7, {"id": 7, "project_id": 1, "parent_id": None}),
        ("issue", "t1", 8, {"id": 8, "project_id": 2, "parent_id": None}),
        ("issue", "t1", 9, {"id": 9, "project_id": 1, "parent_id": 8}),
        ("issue", "t1", 9, {"id": 9, "project_id": 2, "parent_id": 7}),  # its last version
    ],
)


def _spec(**extra: Any) -> RunSpec:
    return parse_spec({"tenants": ["t1"], "destination": "/tmp/lake", **extra})


def _event(entity: str = "issue", tenant: str = "t1", **after: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": 7, "updated": T0, "project_key": "OPEN", "issue_id": 8}
    row.update(after)
    return {
        "tenant_id": tenant,
        "entity": entity,
        "entity_id": row["id"],
        "op": "u",
        "position": 1,
        "source_ts": T0,
        "snapshot": False,
        "after": row,
    }


def _deleted(entity: str = "issue", entity_id: int = 7, ts: datetime = T0) -> dict[str, Any]:
    return _event(entity) | {"op": "d", "entity_id": entity_id, "after": None, "source_ts": ts}


def test_in_scope_selects_tenants_and_entities() -> None:
    spec = _spec(entities=["issue"])
    assert in_scope(_event(), spec)
    assert not in_scope(_event(tenant="t2"), spec)
    assert not in_scope(_event("comment"), spec)


def test_in_scope_from_date_uses_updated_and_for_deletes_source_ts() -> None:
    spec = _spec(from_date="2026-01-01T00:00:00Z")
    assert in_scope(_event(updated=T0), spec)
    assert not in_scope(_event(updated=T0 - timedelta(microseconds=1)), spec)
    assert in_scope(_deleted(ts=T0), spec)
    assert not in_scope(_deleted(ts=T0 - timedelta(seconds=1)), spec)


def test_opted_out_follows_projects_to_issues_comments_and_worklogs() -> None:
    spec = _spec(opt_out=["SECRET"])
    assert opted_out(_event("project", id=1, key="SECRET"), spec, lookup)
    assert not opted_out(_event("project", id=2, key="OPEN"), spec, lookup)
    assert opted_out(_event("issue", id=7), spec, lookup)
    assert not opted_out(_event("issue", id=8), spec, lookup)
    assert opted_out(_event("issue", id=9, project_id=2), spec, lookup)  # under issue 7
    assert opted_out(_event("comment", issue_id=9), spec, lookup)
    assert opted_out(_event("comment", issue_id=7), spec, lookup)
    assert opted_out(_event("worklog", issue_id=7), spec, lookup)
    assert not opted_out(_event("worklog", issue_id=8), spec, lookup)
    assert not opted_out(_event("comment", issue_id=99), spec, lookup)  # unknown issue
    assert not opted_out(_event("user"), spec, lookup)
    assert opted_out(_deleted("issue", 7), spec, lookup)
    assert not opted_out(_deleted("issue", 8), spec, lookup)
    assert not opted_out(_event("issue", project_key="SECRET"), _spec(), lookup)


def test_project_keeps_selected_fields_and_id() -> None:
    spec = _spec(fields={"issue": ["summary", "key"]})
    row = {"id": 1, "key": "A-1", "summary": "s", "description": "d"}
    assert project(row, "issue", spec) == {"id": 1, "key": "A-1", "summary": "s"}
    assert project(row, "issue", _spec()) == row  # no list: every column
    assert row == {"id": 1, "key": "A-1", "summary": "s", "description": "d"}


def test_redact_drops_hashes_and_masks() -> None:
    spec = _spec(
        pii={"user.email_address": "hash", "user.display_name": "mask", "user.locale": "drop"},
        pii_secret=SECRET,
    )
    row = {"id": 1, "email_address": "a@b.c", "display_name": "Ann", "locale": "en", "active": True}
    frozen = copy.deepcopy(row)
    out = redact(row, "user", spec)
    expected = hmac.new(SECRET.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    assert out == {"id": 1, "email_address": expected, "display_name": MASK, "active": True}
    assert row == frozen
    nulls = redact({"id": 1, "email_address": None, "display_name": None}, "user", spec)
    assert nulls == {"id": 1, "email_address": None, "display_name": None}


def test_hash_depends_on_the_secret() -> None:
    row = {"id": 1, "email_address": "a@b.c"}
    one = _spec(pii={"user.email_address": "hash"}, pii_secret="one")
    two = _spec(pii={"user.email_address": "hash"}, pii_secret="two")
    assert redact(row, "user", one) != redact(row, "user", two)
    assert redact(row, "user", one) == redact(dict(row), "user", one)


def test_remap_moves_tenant_ids_and_every_reference() -> None:
    spec = _spec(remap={"tenant": "t9", "id_offset": 100})
    issue = _event(project_id=3, creator_id=4, reporter_id=None, assignee_id=5, parent_id=6)
    out = remap(issue, spec)
    assert out["tenant_id"] == "t9" and out["entity_id"] == 107
    after = out["after"]
    assert (after["id"], after["project_id"], after["creator_id"]) == (107, 103, 104)
    assert (after["reporter_id"], after["assignee_id"], after["parent_id"]) == (None, 105, 106)
    assert after["project_key"] == "OPEN" and after["updated"] == T0
    assert issue["tenant_id"] == "t1" and issue["after"]["id"] == 7
    assert remap(_deleted(), spec)["entity_id"] == 107
    assert remap(issue, _spec()) == issue


def test_reference_map_covers_every_id_column_of_the_schemas() -> None:
    for entity in ENTITIES:
        id_columns = {c for c in entity_columns(entity) if c.endswith("_id")}
        id_columns -= {"account_id"}  # an external account id, not a row reference
        assert set(reference_columns(entity)) == id_columns


def test_transform_composes_and_keys_after_remap() -> None:
    spec = _spec(
        entities=["issue"],
        fields={"issue": ["summary", "project_id"]},
        pii={"issue.summary": "mask"},
        remap={"tenant": "t9", "id_offset": 1000},
        opt_out=["SECRET"],
    )
    event = _event(id=8, summary="secret plan", project_id=2, description="x")
    out = transform(event, spec, lookup)
    assert out is not None
    assert out["after"] == {"id": 1008, "project_id": 1002, "summary": MASK}
    assert output_key(out) == b"t9/1008"
    assert transform(_event(id=9), spec, lookup) is None
    assert transform(_event(tenant="t2"), spec, lookup) is None
    assert transform(_event("user"), spec, lookup) is None
    deleted = transform(_deleted(entity_id=8), spec, lookup)
    assert deleted is not None and deleted["after"] is None and output_key(deleted) == b"t9/1008"


# --- property: for any spec and event, no raw PII, no extra field, no other tenant -----------

TENANTS = ["t1", "t2", "t3"]
CODEC = Codec()


def _value(avro_type: Any) -> st.SearchStrategy[Any]:
    if isinstance(avro_type, list):
        return st.one_of(*(st.none() if b == "null" else _value(b) for b in avro_type))
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "timestamp-micros":
            return st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            )
        if logical == "date":
            return st.dates(min_value=date(2000, 1, 1))
        return _value(avro_type["type"])
    return {
        "long": st.integers(0, 2**40),
        "int": st.integers(-(2**30), 2**30),
        "string": st.text(max_size=12),
        "boolean": st.booleans(),
        "double": st.floats(allow_nan=False),
    }[avro_type]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    entity = draw(st.sampled_from(ENTITIES))
    fields = CODEC.schemas[entity].record["fields"]
    after = draw(st.fixed_dictionaries({f["name"]: _value(f["type"]) for f in fields}))
    deleted = draw(st.booleans())
    return {
        "tenant_id": draw(st.sampled_from(TENANTS)),
        "entity": entity,
        "entity_id": after["id"],
        "op": "d" if deleted else draw(st.sampled_from("rcu")),
        "position": draw(st.integers(0, 2**62)),
        "source_ts": draw(_value({"type": "long", "logicalType": "timestamp-micros"})),
        "snapshot": draw(st.booleans()),
        "after": None if deleted else after,
    }


@st.composite
def specs(draw: st.DrawFn) -> RunSpec:
    subset = st.lists(st.sampled_from(ENTITIES), min_size=1, unique=True)
    fields = {
        e: draw(st.lists(st.sampled_from(entity_columns(e)), unique=True))
        for e in draw(st.lists(st.sampled_from(ENTITIES), unique=True))
    }
    targets = [f"{e}.{c}" for e in ENTITIES for c in entity_columns(e) if c != "id"]
    pii = draw(st.dictionaries(st.sampled_from(targets), st.sampled_from(["drop", "hash", "mask"])))
    tenants = draw(
        st.lists(
            st.sampled_from(TENANTS),
            min_size=1,
            max_size=1 if draw(st.booleans()) else 3,
            unique=True,
        )
    )
    remap = (
        {"tenant": "t9", "id_offset": draw(st.integers(0, 2**40))}
        if len(tenants) == 1 and draw(st.booleans())
        else None
    )
    return parse_spec(
        {
            "tenants": tenants,
            "entities": draw(subset),
            "fields": fields,
            "pii": pii,
            "pii_secret": SECRET,
            "remap": remap,
            "opt_out": draw(st.lists(st.sampled_from(["A", "B"]), max_size=2)),
            "destination": "/tmp/lake",
        }
    )


def _check_row(original: dict[str, Any], out: dict[str, Any], entity: str, spec: RunSpec) -> None:
    rules = spec.pii_rules(entity)
    assert set(out) == {c for c in spec.columns(entity) if rules.get(c) != "drop"}
    offset = spec.remap.id_offset if spec.remap else 0
    for column, value in out.items():
        raw, rule = original[column], rules.get(column)
        if rule is None and column in entities.id_columns(entity):
            assert value == (None if raw is None else raw + offset)
        elif rule is None:
            assert value == raw
        elif raw is None:
            assert value is None
        elif rule == "mask":
            assert value == MASK
        else:
            assert isinstance(value, str) and len(value) == 64 and value != raw


@settings(max_examples=400, deadline=None)
@given(spec=specs(), event=events(), opted=st.sampled_from(["", "A", "B"]))
def test_output_never_leaks(spec: RunSpec, event: dict[str, Any], opted: str) -> None:
    frozen = copy.deepcopy(event)
    out = transform(event, spec, verdicts_of(cascade_of(active_catalog()), [opted], []))
    assert event == frozen
    if out is None:
        return
    assert event["tenant_id"] in spec.tenants and event["entity"] in spec.entities
    assert out["tenant_id"] == (spec.remap.tenant if spec.remap else event["tenant_id"])
    offset = spec.remap.id_offset if spec.remap else 0
    assert out["entity_id"] == event["entity_id"] + offset
    assert output_key(out) == f"{out['tenant_id']}/{out['entity_id']}".encode()
    if event["after"] is None:
        assert out["after"] is None
    else:
        _check_row(event["after"], out["after"], event["entity"], spec)


@pytest.mark.parametrize("entity", ENTITIES)
def test_unselected_tenant_never_passes(entity: str) -> None:
    spec = _spec(remap={"tenant": "t2", "id_offset": 1})
    # Remapping onto another tenant's id must not make that tenant's own rows selectable.
    assert transform(_event(entity, tenant="t2"), spec, lookup) is None
