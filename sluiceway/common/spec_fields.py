"""The checks on single fields of a run spec: entity and column names, PII targets,
destinations, and a choice among allowed values.

Each raises pydantic's custom error naming the value and what is allowed, which
``sluiceway.common.spec`` turns into a (field path, message) problem. Column names come
from the Avro schemas, which are the contract the lake is built on.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from sluiceway.common.codec import Codec
from sluiceway.common.entities import active_catalog, entity_names

PII_RULES = ("drop", "hash", "mask")


@cache
def entity_columns(entity: str) -> tuple[str, ...]:
    """The entity's columns in schema order (the order run schemas and files use)."""
    return tuple(f["name"] for f in Codec().schemas[entity].record["fields"])


def record_key(entity: str) -> tuple[str, ...]:
    """The columns that identify a row of ``entity`` within its tenant."""
    return active_catalog().entity(entity).record_key


def one_of(allowed: Iterable[str] | Callable[[], Iterable[str]]) -> Callable[[str], str]:
    """A validator of a value among ``allowed`` (or what it returns, asked at each check)."""

    def check(value: str) -> str:
        choices = tuple(allowed() if callable(allowed) else allowed)
        if value not in choices:
            raise PydanticCustomError(
                "not_allowed", "{value} is not one of {allowed}", choices_ctx(value, choices)
            )
        return value

    return check


def choices_ctx(value: object, allowed: Iterable[str]) -> dict[str, str]:
    """The context of a "{value} is not one of {allowed}" error."""
    return {"value": repr(value), "allowed": ", ".join(allowed)}


def _check_pii_target(target: str) -> str:
    entity, dot, column = target.partition(".")
    if not dot or not column:
        problem = f"{target!r} is not of the form entity.column, e.g. user.email_address"
    elif entity not in entity_names():
        problem = f"unknown entity {entity!r} (known: {', '.join(entity_names())})"
    elif column in record_key(entity):
        problem = f"{column} keys the row and cannot carry a pii rule"
    elif column not in entity_columns(entity):
        problem = f"unknown column {column!r} (known: {', '.join(entity_columns(entity))})"
    else:
        return target
    raise PydanticCustomError("pii_target", "{problem}", {"problem": problem})


NonEmpty = Annotated[str, Field(min_length=1)]
EntityName = Annotated[str, AfterValidator(one_of(entity_names))]
PiiRule = Annotated[str, AfterValidator(one_of(PII_RULES))]
PiiTarget = Annotated[str, AfterValidator(_check_pii_target)]


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` without repeats, in first-seen order."""
    return tuple(dict.fromkeys(values))


# Per entity, the columns to keep; an entity left out (or null) keeps all of its columns.
EntityFields = dict[str, tuple[str, ...]]


def _drop_nulls(value: Any) -> Any:
    """``{entity: null}`` keeps every column, as leaving the entity out does."""
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    return value


def _check_fields(value: EntityFields) -> EntityFields:
    """Each entity of the catalog, each column of its entity; problems under their entity."""
    known_entities = entity_names()
    problems: list[InitErrorDetails] = []
    out: EntityFields = {}
    for entity, chosen in value.items():
        if entity not in known_entities:
            problem = PydanticCustomError(
                "unknown_entity", "unknown entity {value} (known: {allowed})",
                choices_ctx(entity, known_entities),
            )  # fmt: skip
            problems.append(InitErrorDetails(type=problem, loc=(entity,), input=chosen))
            continue
        known = entity_columns(entity)
        unknown = [c for c in chosen if c not in known]
        if unknown:
            noun = "column" if len(unknown) == 1 else "columns"
            problem = PydanticCustomError(
                "unknown_column",
                "unknown {noun} {names} (known: {allowed})",
                {"noun": noun, "names": ", ".join(map(repr, unknown)), "allowed": ", ".join(known)},
            )
            problems.append(InitErrorDetails(type=problem, loc=(entity,), input=chosen))
        out[entity] = unique(chosen)
    if problems:
        raise ValidationError.from_exception_data("fields", problems)
    return out


# The spec's ``fields``: ``{entity: null}`` dropped, then each entity and column checked.
ChosenFields = Annotated[EntityFields, BeforeValidator(_drop_nulls), AfterValidator(_check_fields)]


def check_destination(value: str) -> str:
    """A normalised destination: ``s3://bucket[/prefix]`` or a local directory."""
    text = value.strip()
    if not text:
        raise PydanticCustomError(
            "empty", "must not be empty; give a directory or s3://bucket/prefix"
        )
    scheme, sep, rest = text.partition("://")
    if sep and scheme != "s3":
        raise PydanticCustomError(
            "scheme",
            "scheme {scheme} not supported; use a directory or s3://bucket/prefix",
            {"scheme": repr(scheme)},
        )
    path = rest if sep else text
    bucket, _, prefix = path.partition("/") if sep else ("", "", path)
    if sep and not bucket:
        raise PydanticCustomError("no_bucket", "s3 URL has no bucket; expected s3://bucket/prefix")
    normal = posixpath.normpath(prefix) if prefix else ""
    if ".." in normal.split("/"):
        raise PydanticCustomError(
            "dotdot",
            "{value} escapes its root with '..'; give a path without '..'",
            {"value": repr(value)},
        )
    if not sep:
        return normal
    return f"s3://{bucket}/{normal}" if normal not in ("", ".") else f"s3://{bucket}"
