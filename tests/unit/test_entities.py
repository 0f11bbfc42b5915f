"""Every stage reads the active catalog: envelopes, specs, remap, opt-out, load orders.

The sixth-entity tests run on the Jira example plus ``attachment`` (referencing an issue
and a user), the case where hard-wired entity lists used to fail silently: its rows were
not opted out with their project, migrate skipped it and remap left its references alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sluiceway.common.avro_batch import BatchDecoder
from sluiceway.common.catalog import Catalog, CatalogError, Column, Entity, Reference, Tenant
from sluiceway.common.codec import Codec, event_key, load_event_schema, plain_schema
from sluiceway.common.entities import (
    active_catalog,
    active_catalog_path,
    load_order,
    set_active_catalog,
)
from sluiceway.common.resources import example_catalog, schema_dir
from sluiceway.common.schema_versions import columns_of, latest_version, versions
from sluiceway.common.spec import SpecError, parse_spec
from sluiceway.processors.batch import opted_out_rows, remapped
from sluiceway.processors.opt_out import OptedOut, cascade_of, verdicts_of
from sluiceway.processors.transforms import opted_out, remap
from sluiceway.tools.migrate.logic import map_row
from sluiceway.tools.restore import restore_order
from tests.catalogs import extended, with_attachment

T0 = datetime(2026, 3, 1, tzinfo=UTC)
JIRA = example_catalog("jira")


@pytest.fixture
def sixth() -> Iterator[Catalog]:
    """The Jira example plus ``attachment``, active for one test (read as if from the
    Jira example's folder, so its export versions apply)."""
    catalog = with_attachment()
    set_active_catalog(catalog, JIRA)
    yield catalog
    set_active_catalog(None)


def _other(**entity: Any) -> Catalog:
    """A one-entity catalog keyed as ``entity`` says."""
    fields = {
        "table": "public.things", "key": ("tenant_id", "id"), "tenant": Tenant(column="tenant_id"),
        "columns": (Column(name="id", type="bigint"), Column(name="name", type="text")),
    } | entity  # fmt: skip
    return Catalog(entities={"thing": Entity(**fields)})


def test_default_catalog_is_the_bundled_jira_example() -> None:
    assert active_catalog().names == ("project", "user", "issue", "comment", "worklog")
    assert active_catalog_path() == JIRA


def test_pg_catalog_setting_names_the_active_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(_other().to_yaml())
    monkeypatch.setenv("SLUICEWAY_PG_CATALOG", str(path))
    set_active_catalog(None)
    try:
        assert active_catalog().names == ("thing",)
        assert Codec().schemas.keys() == {"thing"}
        assert versions() == (1,) and latest_version() == 1  # no export_versions.yaml there
    finally:
        monkeypatch.delenv("SLUICEWAY_PG_CATALOG")
        set_active_catalog(None)
    assert active_catalog().names[0] == "project"


@pytest.mark.parametrize("entity", ["project", "user", "issue", "comment", "worklog"])
def test_derived_envelope_equals_the_checked_in_file(entity: str) -> None:
    derived = Codec().schemas[entity]
    checked_in = load_event_schema(schema_dir(), entity)
    assert plain_schema(derived.parsed) == plain_schema(checked_in.parsed)
    assert derived.header == checked_in.header  # the fingerprint lakes and topics carry


# The Jira example's envelope fingerprints: lakes and topics written since the first
# release carry them, so they must never change.
JIRA_FINGERPRINTS = {
    "project": "253b1cffe8d36982", "user": "d97534ab592fa8a1", "issue": "67b211765936a7c8",
    "comment": "013b1616e4208881", "worklog": "5ed0f82114c310f5",
}  # fmt: skip


def test_jira_envelopes_keep_their_fingerprints() -> None:
    derived = {e: s.header[2:].hex() for e, s in Codec().schemas.items()}
    checked_in = {e: load_event_schema(schema_dir(), e).header[2:].hex() for e in derived}
    assert derived == checked_in == JIRA_FINGERPRINTS


UUID_AVRO = {"type": "string", "logicalType": "uuid"}


@pytest.mark.parametrize(
    ("entity", "key"),
    [
        ({"key": ("tenant_id", "id", "name")}, {"id": "long", "name": "string"}),
        ({"columns": (Column(name="id", type="uuid"),)}, {"id": UUID_AVRO}),
        ({"columns": (Column(name="id", type="text"),)}, {"id": "string"}),
    ],
)
def test_other_keys_get_the_envelope_with_a_typed_key(
    entity: dict[str, Any], key: dict[str, Any]
) -> None:
    envelope = plain_schema(Codec(catalog=_other(**entity)).schemas["thing"].parsed)
    fields = {f["name"]: f["type"] for f in envelope["fields"]}
    assert fields["entity_id"] == "string"
    assert {f["name"]: f["type"] for f in fields["key"]["fields"]} == key


def test_codec_refuses_a_key_column_without_one_text_form() -> None:
    with pytest.raises(CatalogError) as caught:
        Codec(catalog=_other(columns=(Column(name="id", type="date"),)))
    assert str(caught.value) == (
        "entity 'thing': key column 'id' has type 'date'; a record key holds smallint, "
        "integer, bigint, text, varchar, char or uuid columns"
    )


def test_spec_fields_are_checked_against_the_catalog() -> None:
    spec = parse_spec({"tenants": ["t"], "destination": "/l", "fields": {"issue": None}})
    assert spec.fields == {}
    with pytest.raises(SpecError) as caught:
        parse_spec({"tenants": ["t"], "destination": "/l", "fields": {"attachment": ["id"]}})
    assert "fields.attachment: unknown entity 'attachment' (known: project, user, issue" in str(
        caught.value
    )


def test_sixth_entity_is_accepted_by_the_spec(sixth: Catalog) -> None:
    spec = parse_spec(
        {
            "tenants": ["t"], "destination": "/l", "entities": ["attachment"],
            "fields": {"attachment": ["file_name"]}, "pii": {"attachment.file_name": "mask"},
        }
    )  # fmt: skip
    assert spec.columns("attachment") == ("id", "file_name")
    assert parse_spec({"tenants": ["t"], "destination": "/l"}).entities[-1] == "attachment"


def _attachment(issue_id: int | None, deleted: bool = False) -> dict[str, Any]:
    after = {"id": 5, "issue_id": issue_id, "author_id": 8, "file_name": "a.png",
             "size_bytes": 10, "created": T0, "updated": T0}  # fmt: skip
    return {
        "tenant_id": "t1", "entity": "attachment", "entity_id": 5, "op": "d" if deleted else "c",
        "position": 1, "source_ts": T0, "snapshot": False, "after": None if deleted else after,
    }  # fmt: skip


def _verdicts(values: list[str]) -> OptedOut:
    """What the pass before a run finds: issue 1 is in the opted-out project 10."""
    return verdicts_of(
        cascade_of(active_catalog()),
        values,
        [
            ("project", "t1", 10, {"id": 10, "key": "SECRET"}),
            ("project", "t1", 20, {"id": 20, "key": "OPEN"}),
            ("issue", "t1", 1, {"id": 1, "project_id": 10}),
            ("issue", "t1", 2, {"id": 2, "project_id": 20}),
        ],
    )


def test_opt_out_of_a_project_cascades_to_the_sixth_entity(sixth: Catalog) -> None:
    spec = parse_spec({"tenants": ["t1"], "destination": "/l", "opt_out": ["SECRET"]})
    opted = _verdicts(["SECRET"])
    assert opted_out(_attachment(1), spec, opted)
    assert not opted_out(_attachment(2), spec, opted)
    events = [_attachment(1), _attachment(2)]
    codec = Codec()
    keys = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
    values = [codec.encode(e) for e in events]
    frame = BatchDecoder().decode(codec.schemas["attachment"], values, keys)
    assert frame is not None
    rows = opted_out_rows(frame, "attachment", spec, opted)
    assert rows.to_list() == [True, False]  # the batch path agrees


def test_opt_out_reaches_a_descendant_through_a_chain(sixth: Catalog) -> None:
    reaction = sixth.entities["attachment"].model_copy(
        update={"table": "public.reactions", "references": (
            Reference(entity="attachment", columns=("issue_id",)),)}
    )  # fmt: skip
    set_active_catalog(extended(sixth, r=reaction))
    spec = parse_spec({"tenants": ["t1"], "destination": "/l", "opt_out": ["SECRET"]})
    opted = verdicts_of(
        cascade_of(active_catalog()),
        ["SECRET"],
        [
            ("project", "t1", 10, {"id": 10, "key": "SECRET"}),
            ("issue", "t1", 1, {"id": 1, "project_id": 10}),
            ("attachment", "t1", 5, {"id": 5, "issue_id": 1}),
            ("attachment", "t1", 6, {"id": 6, "issue_id": 2}),
        ],
    )
    # a reaction's issue_id names an attachment here: four levels below the project
    assert opted_out({**_attachment(5), "entity": "r"}, spec, opted)
    assert not opted_out({**_attachment(6), "entity": "r"}, spec, opted)


def test_remap_moves_the_sixth_entitys_key_and_references(sixth: Catalog) -> None:
    spec = parse_spec(
        {"tenants": ["t1"], "destination": "/l", "remap": {"tenant": "t9", "id_offset": 100}}
    )
    after = remap(_attachment(1), spec)["after"]
    assert (after["id"], after["issue_id"], after["author_id"], after["size_bytes"]) == (
        105,
        101,
        108,
        10,
    )
    frame = pl.DataFrame(
        {"tenant_id": ["t1"], "entity_id": [5], "after": [_attachment(1)["after"]]}
    )
    moved = remapped(frame, "attachment", spec)["after"].to_list()[0]
    assert (moved["id"], moved["issue_id"], moved["author_id"]) == (105, 101, 108)
    assert map_row("attachment", _attachment(1)["after"], 100, "b") == after


def test_load_orders_include_the_sixth_entity_after_its_parents(sixth: Catalog) -> None:
    order = load_order()
    assert order.index("issue") < order.index("attachment")
    assert order.index("user") < order.index("attachment")
    restored = restore_order(["attachment", "comment", "issue", "user", "project"])
    assert restored.index("issue") < restored.index("attachment")
    assert len(restored) == 5


def test_export_versions_belong_to_the_catalog(sixth: Catalog) -> None:
    assert versions() == (1, 2)
    assert "story_points" not in columns_of(1, "issue")
    assert columns_of(1, "attachment") == sixth.entities["attachment"].column_names
    set_active_catalog(sixth)  # set in code: no folder, so no frozen versions
    assert versions() == (1,)
    assert "story_points" in columns_of(1, "issue")
