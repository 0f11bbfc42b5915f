"""Export schema versions: which columns each entity has in an export of a given version.

An older version is a frozen column list per entity, so a dashboard built on it keeps
working when the catalog gains columns; new columns only ever reach the latest version,
which is always every column of the catalog. A new version is introduced only for a
breaking change (a column removed, or its meaning changed); the older ones are then marked
deprecated but stay exportable.

Frozen versions belong to a catalog: they are read from ``export_versions.yaml`` beside the
catalog file (the Jira example ships its version 1 there). A catalog without that file has
only its latest version, 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from sluiceway.common.catalog import Catalog, CatalogError
from sluiceway.common.entities import active_catalog, active_catalog_path
from sluiceway.common.spec_fields import entity_columns

VersionStatus = Literal["ACTIVE", "DEPRECATED"]
VERSIONS_FILE = "export_versions.yaml"

Frozen = dict[int, dict[str, tuple[str, ...]]]


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    status: VersionStatus
    columns: dict[str, tuple[str, ...]]  # entity -> columns in schema order


# (catalog, its file) -> its frozen versions; the catalog is kept so its id is not reused.
_FROZEN: dict[tuple[int, Path | None], tuple[Catalog, Frozen]] = {}


def frozen_versions() -> Frozen:
    """The active catalog's frozen versions: version -> entity -> columns."""
    catalog, path = active_catalog(), active_catalog_path()
    cached = _FROZEN.get((id(catalog), path))
    if cached is None or cached[0] is not catalog:
        found = load_frozen(path.parent / VERSIONS_FILE, catalog) if path is not None else {}
        cached = _FROZEN[(id(catalog), path)] = (catalog, found)
    return cached[1]


def load_frozen(path: Path, catalog: Catalog) -> Frozen:
    """The frozen versions in ``path`` (none when it does not exist), checked against
    ``catalog``: every entity and column must be the catalog's."""
    if not path.is_file():
        return {}
    document: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping of version -> entity -> columns")
    frozen: Frozen = {}
    for version, entities in document.items():
        if not isinstance(version, int) or not isinstance(entities, dict):
            raise CatalogError(f"{path}: version {version!r} must be an integer with entities")
        for entity, columns in entities.items():
            known = catalog.entity(entity).column_names
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise CatalogError(f"{path}: version {version}, {entity}: unknown {unknown}")
        frozen[version] = {e: tuple(c) for e, c in entities.items()}
    return frozen


def latest_version() -> int:
    """The version that exports every column: one past the highest frozen one."""
    return max(frozen_versions(), default=0) + 1


def versions() -> tuple[int, ...]:
    """Every exportable version, oldest first."""
    return (*sorted(frozen_versions()), latest_version())


def columns_of(version: int, entity: str) -> tuple[str, ...]:
    """The entity's columns in ``version``; KeyError for an unknown version."""
    if version == latest_version():
        return entity_columns(entity)
    frozen = frozen_versions()[version].get(entity)
    if frozen is None:  # an entity the catalog gained after this version: it has all
        return entity_columns(entity)
    # schema order, so files of every version list their columns alike
    return tuple(c for c in entity_columns(entity) if c in frozen)


def schema_version(version: int) -> SchemaVersion:
    if version not in versions():
        known = ", ".join(map(str, versions()))
        raise KeyError(f"schema version {version} does not exist; known: {known}")
    status: VersionStatus = "ACTIVE" if version == latest_version() else "DEPRECATED"
    columns = {e: columns_of(version, e) for e in active_catalog().names}
    return SchemaVersion(version, status, columns)


def fields_of(version: int) -> dict[str, list[str]]:
    """The run spec's ``fields`` that export exactly ``version``'s columns."""
    return {e: list(cols) for e, cols in schema_version(version).columns.items()}
