"""Export schema versions: which columns each entity has in an export of a given version.

An older version is a frozen column list per entity, so a dashboard built on it keeps
working when the Avro schemas gain columns; new columns only ever reach the latest
version, which is always every column of the schemas. A new version is introduced only for
a breaking change (a column removed, or its meaning changed); the older ones are then
marked deprecated but stay exportable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sluiceway.common.settings import ENTITIES
from sluiceway.common.spec import entity_columns

VersionStatus = Literal["ACTIVE", "DEPRECATED"]

# Version 1 predates the project category, the user's time zone and locale, the issue's
# environment and story points, and the worklog's update author.
_V1: dict[str, tuple[str, ...]] = {
    "project": ("id", "key", "name", "description", "lead_id", "project_type", "url",
                "created", "updated"),
    "user": ("id", "account_id", "display_name", "email_address", "active", "created",
             "updated"),
    "issue": ("id", "key", "project_id", "project_key", "issue_type", "summary", "description",
              "creator_id", "reporter_id", "assignee_id", "parent_id", "status",
              "status_category", "priority", "resolution", "labels",
              "original_estimate_seconds", "time_spent_seconds", "created", "updated",
              "due_date", "resolution_date"),
    "comment": ("id", "issue_id", "author_id", "update_author_id", "body", "created",
                "updated"),
    "worklog": ("id", "issue_id", "author_id", "comment", "started", "time_spent_seconds",
                "created", "updated"),
}  # fmt: skip
FROZEN: dict[int, dict[str, tuple[str, ...]]] = {1: _V1}
LATEST = 2
VERSIONS = (*sorted(FROZEN), LATEST)


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    status: VersionStatus
    columns: dict[str, tuple[str, ...]]  # entity -> columns in schema order


def columns_of(version: int, entity: str) -> tuple[str, ...]:
    """The entity's columns in ``version``; KeyError for an unknown version."""
    if version == LATEST:
        return entity_columns(entity)
    frozen = FROZEN[version][entity]
    # schema order, so files of every version list their columns alike
    return tuple(c for c in entity_columns(entity) if c in frozen)


def schema_version(version: int) -> SchemaVersion:
    if version not in VERSIONS:
        known = ", ".join(map(str, VERSIONS))
        raise KeyError(f"schema version {version} does not exist; known: {known}")
    status: VersionStatus = "ACTIVE" if version == LATEST else "DEPRECATED"
    return SchemaVersion(version, status, {e: columns_of(version, e) for e in ENTITIES})


def fields_of(version: int) -> dict[str, list[str]]:
    """The run spec's ``fields`` that export exactly ``version``'s columns."""
    return {e: list(cols) for e, cols in schema_version(version).columns.items()}
