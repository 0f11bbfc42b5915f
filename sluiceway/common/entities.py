"""The catalog in effect for this process: what every stage reads instead of entity names.

``active_catalog()`` is the catalog the setting ``pg.catalog`` (``SLUICEWAY_PG_CATALOG``)
names, or the bundled Jira-shaped example when it is unset. It is read once per process:
every service builds its codec, topics and specs from it, and a catalog that changed under
a running process would make them disagree. Tests swap it with ``set_active_catalog``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sluiceway.common.catalog import Catalog, CatalogError, load_catalog
from sluiceway.common.resources import example_catalog

DEFAULT_EXAMPLE = "jira"

# The catalog in effect and the file it was read from (None when set in code).
_active: tuple[Catalog, Path | None] | None = None


def _loaded() -> tuple[Catalog, Path | None]:
    global _active
    if _active is None:
        from sluiceway.common.settings import PostgresSettings  # settings imports this module

        path = PostgresSettings().catalog or example_catalog(DEFAULT_EXAMPLE)
        _active = (load_catalog(path), path)
    return _active


def active_catalog() -> Catalog:
    """The catalog of this process: ``pg.catalog``, else the bundled Jira example."""
    return _loaded()[0]


def active_catalog_path() -> Path | None:
    """The file the active catalog was read from; None when a test set it in code."""
    return _loaded()[1]


def set_active_catalog(catalog: Catalog | None, path: Path | None = None) -> None:
    """Make ``catalog`` (read from ``path``, if from a file) the process's catalog; None
    reads ``pg.catalog`` again on next use.

    Caches built from the catalog (the spec's column lists) are cleared too."""
    global _active
    _active = None if catalog is None else (catalog, path)
    from sluiceway.common.spec_fields import entity_columns  # it builds on this module

    entity_columns.cache_clear()


T = TypeVar("T")


def per_catalog(build: Callable[[Catalog], T]) -> Callable[[Catalog], T]:
    """``build`` computed once per catalog object (the per-event paths ask for it often)."""
    # id -> (catalog, value): the catalog is kept so that its id is not reused
    found: dict[int, tuple[Catalog, T]] = {}

    def cached(catalog: Catalog) -> T:
        hit = found.get(id(catalog))
        if hit is None or hit[0] is not catalog:
            hit = found[id(catalog)] = (catalog, build(catalog))
        return hit[1]

    return cached


def entity_names() -> tuple[str, ...]:
    """Every entity of the active catalog, in catalog order."""
    return active_catalog().names


def load_order() -> tuple[str, ...]:
    """Parents before children: the order restore and migrate load in (deletes reverse it)."""
    return active_catalog().order


def reference_columns(entity: str) -> tuple[str, ...]:
    """The columns of ``entity`` that hold another row's key: what remap moves with the
    row's own key."""
    found = active_catalog().entity(entity)
    return tuple(dict.fromkeys(c for ref in found.references for c in ref.columns))


@per_catalog
def _id_columns(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    return {
        name: tuple(dict.fromkeys((*e.record_key, *(c for r in e.references for c in r.columns))))
        for name, e in catalog.entities.items()
    }


def id_columns(entity: str) -> tuple[str, ...]:
    """The record key and every reference column of ``entity``: the id spaces remap
    moves by its offset."""
    catalog = active_catalog()
    found = _id_columns(catalog).get(entity)
    return found if found is not None else catalog.entity(entity).record_key


def updated_column(entity: str) -> str | None:
    """The column ``from_date`` compares for ``entity``'s rows (the catalog's ``updated``,
    named as the source names it); None when the catalog gives the entity none."""
    return active_catalog().entity(entity).updated


def check_entity(name: str) -> str:
    """``name`` when the active catalog has it; else one line naming it and the known ones."""
    catalog = active_catalog()
    if name not in catalog.entities:
        raise CatalogError(f"unknown entity {name!r}; the catalog has {', '.join(catalog.names)}")
    return name


def opt_out_gaps() -> list[str]:
    """Why a spec of this catalog cannot opt out, one line each (none when it can: the
    rule cascades along every reference, so every descendant is reached)."""
    if active_catalog().opt_out is None:
        return ["the catalog names no opt_out entity and field, so a spec cannot opt out"]
    return []
