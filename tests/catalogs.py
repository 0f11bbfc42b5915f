"""Catalogs the tests run on: the active one (the bundled Jira example unless
``SLUICEWAY_PG_CATALOG`` names another) and variants built from it."""

from __future__ import annotations

from sluiceway.common.catalog import Catalog, Column, Entity, Reference, Tenant
from sluiceway.common.entities import active_catalog, entity_names

ENTITIES: tuple[str, ...] = entity_names()


def with_attachment(base: Catalog | None = None) -> Catalog:
    """``base`` (default: the active catalog) plus a sixth entity, ``attachment``, whose
    rows reference an issue and a user."""
    base = base or active_catalog()
    attachment = Entity(
        table="public.attachments",
        key=("tenant_id", "id"),
        tenant=Tenant(column="tenant_id"),
        updated="updated",
        references=(
            Reference(entity="issue", columns=("issue_id",)),
            Reference(entity="user", columns=("author_id",)),
        ),
        columns=(
            Column(name="id", type="bigint", nullable=False),
            Column(name="issue_id", type="bigint", nullable=False),
            Column(name="author_id", type="bigint"),
            Column(name="file_name", type="text", nullable=False),
            Column(name="size_bytes", type="bigint", nullable=False),
            Column(name="created", type="timestamp with time zone", nullable=False),
            Column(name="updated", type="timestamp with time zone", nullable=False),
        ),
        doc="A file attached to an issue.",
    )
    return extended(base, attachment=attachment)


def extended(base: Catalog, **entities: Entity) -> Catalog:
    """``base`` with ``entities`` added, validated anew (``model_copy`` would keep the
    base's cached load order)."""
    fields = {name: getattr(base, name) for name in Catalog.model_fields}
    return Catalog(**{**fields, "entities": {**base.entities, **entities}})
