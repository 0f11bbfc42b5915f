"""The run spec: what an export run selects and how it transforms rows.

The fields and their meaning are in docs/guide.md ("Export runs").

Validation reports every problem at once, each naming the field path and what is allowed,
so a user fixes a spec in one round trip. The checks of single fields (entity and column
names, PII targets, destinations) are in ``sluiceway.common.spec_fields``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sluiceway.common.entities import entity_names, opt_out_gaps
from sluiceway.common.feed_timing import check_cron, check_timezone, check_window
from sluiceway.common.runs import FORMATS, RUN_TYPES
from sluiceway.common.schema_versions import versions
from sluiceway.common.spec_errors import SpecError
from sluiceway.common.spec_fields import (
    ChosenFields,
    EntityName,
    NonEmpty,
    PiiRule,
    PiiTarget,
    check_destination,
    choices_ctx,
    entity_columns,
    one_of,
    record_key,
    unique,
)

LAYOUTS = ("lake", "datapipeline")
MAX_INTERVAL_S = 86_400
# Ids are per tenant (primary key tenant_id, id), so an offset must leave int64 headroom.
MAX_ID_OFFSET = 2**62
# What a date-time whose offset pushes it past year 1 or 9999 is told (it has no UTC form).
UTC_RANGE = "falls outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z once converted to UTC"


class Remap(BaseModel):
    """Where a tenant-to-tenant copy lands: the target tenant and an offset added to ids."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: NonEmpty
    id_offset: int = Field(0, ge=0, le=MAX_ID_OFFSET)


class RunSpec(BaseModel):
    """A validated run spec. Field order matters: later validators read earlier fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenants: tuple[NonEmpty, ...] = Field(min_length=1)
    entities: tuple[EntityName, ...] = Field(default_factory=entity_names, min_length=1)
    fields: ChosenFields = Field(default_factory=dict)
    from_date: datetime | None = None
    opt_out: tuple[NonEmpty, ...] = ()
    pii: dict[PiiTarget, PiiRule] = Field(default_factory=dict)
    pii_secret: SecretStr | None = Field(None, repr=False, validate_default=True)
    remap: Remap | None = None
    type: Annotated[str, AfterValidator(one_of(RUN_TYPES))] = "full"
    cron: Annotated[str | None, AfterValidator(check_cron)] = None
    timezone: Annotated[str | None, AfterValidator(check_timezone)] = None
    full_window: Annotated[str | None, AfterValidator(check_window)] = None
    interval: int | None = Field(None, ge=1, le=MAX_INTERVAL_S, validate_default=True)
    destination: str
    format: Annotated[str, AfterValidator(one_of(FORMATS))] = "parquet"
    # "datapipeline": one CSV per entity named <entity>s_job<job_id>_<version>_<time>.csv
    layout: Annotated[str, AfterValidator(one_of(LAYOUTS))] = "lake"
    job_id: int | None = Field(None, ge=1, le=2**62)
    schema_version: int | None = Field(None, validate_default=True)

    @field_validator("tenants", "entities", "opt_out")
    @classmethod
    def _dedupe(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return unique(value)

    @field_validator("opt_out")
    @classmethod
    def _opt_out_reaches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        gaps = opt_out_gaps() if value else []
        if gaps:
            raise PydanticCustomError("opt_out_gaps", "{problem}", {"problem": "; ".join(gaps)})
        return value

    @field_validator("from_date")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError(
                "naive_datetime",
                "{value} has no UTC offset; add one, e.g. 2026-01-01T00:00:00Z",
                {"value": repr(value.isoformat())},
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise PydanticCustomError(
                "datetime_range",
                "{value} {problem}",
                {"value": repr(value.isoformat()), "problem": UTC_RANGE},
            ) from None

    @field_validator("pii_secret")
    @classmethod
    def _secret_for_hash(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise PydanticCustomError("empty_secret", "must not be empty")
        needs = "hash" in info.data.get("pii", {}).values()
        if needs and value is None:
            raise PydanticCustomError(
                "secret_required",
                "required when a pii rule is 'hash' (the destination's HMAC key)",
            )
        return value

    @field_validator("remap")
    @classmethod
    def _one_source_tenant(cls, value: Remap | None, info: ValidationInfo) -> Remap | None:
        tenants = info.data.get("tenants", ())
        # Ids are unique per tenant only: merging tenants into one would collide.
        if value is not None and len(tenants) > 1:
            raise PydanticCustomError(
                "remap_tenants",
                "needs exactly one tenant in tenants, got {count}",
                {"count": len(tenants)},
            )
        return value

    @field_validator("interval")
    @classmethod
    def _interval_for_continuous(cls, value: int | None, info: ValidationInfo) -> int | None:
        run_type, timed = info.data.get("type"), info.data.get("cron") is not None
        if run_type == "continuous" and value is None and not timed:
            raise PydanticCustomError(
                "interval_required",
                "required when type is 'continuous' without a cron (seconds, 1 to {max})",
                {"max": MAX_INTERVAL_S},
            )
        if info.data.get("full_window") is not None and (value is None or value % 3600):
            raise PydanticCustomError(
                "interval_hours", "with a full_window, deltas run every whole hours: 3600 to 86400"
            )
        if run_type not in (None, "continuous") and (value is not None or timed):
            raise PydanticCustomError(
                "interval_forbidden",
                "only allowed when type is 'continuous', not {type}",
                {"type": repr(run_type)},
            )
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        return check_destination(value)

    @field_validator("schema_version")
    @classmethod
    def _datapipeline(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value not in versions():
            raise PydanticCustomError(
                "schema_version",
                "{value} is not one of {allowed}",
                choices_ctx(value, map(str, versions())),
            )
        if info.data.get("layout") == "datapipeline":
            if info.data.get("format") != "csv":
                raise PydanticCustomError("layout_format", "layout 'datapipeline' needs format csv")
            if info.data.get("job_id") is None:
                raise PydanticCustomError(
                    "job_id_required", "job_id is required with layout 'datapipeline' (1, 2, ...)"
                )
        return value

    def columns(self, entity: str, known: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The columns the spec keeps for ``entity``, in schema order; its key always.
        ``known``: the columns of the schema version at hand (default: the catalog's);
        without a choice of fields the spec keeps them all, columns added since included."""
        known = known or entity_columns(entity)
        chosen = self.fields.get(entity)
        if chosen is None:
            return known
        key = record_key(entity)
        return tuple(c for c in known if c in key or c in chosen)

    def pii_rules(self, entity: str) -> dict[str, str]:
        """column -> rule for ``entity``."""
        prefix = f"{entity}."
        return {t.removeprefix(prefix): r for t, r in self.pii.items() if t.startswith(prefix)}

    def public_dict(self) -> dict[str, Any]:
        """The spec as JSON-able data without the secret: safe for manifests and logs."""
        return self.model_dump(mode="json", exclude={"pii_secret"}, exclude_none=True)


# Loc parent -> names allowed there, to say what an unknown key could have been.
_ALLOWED_KEYS: dict[tuple[str | int, ...], tuple[str, ...]] = {
    (): tuple(RunSpec.model_fields),
    ("remap",): tuple(Remap.model_fields),
}


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _message(error: Mapping[str, Any]) -> str:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx", {})
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        allowed = _ALLOWED_KEYS.get(loc[:-1], ())
        return f"unknown field {loc[-1]!r} (allowed: {', '.join(allowed)})"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {error['input']!r}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}, got {error['input']!r}"
    if kind == "too_short" and not ctx.get("actual_length"):
        return "must not be empty" if ctx.get("min_length", 1) == 1 else str(error["msg"])
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, got {type(error['input']).__name__}"
    if kind == "dict_type":
        return f"must be a mapping, got {type(error['input']).__name__}"
    if kind == "string_too_short":
        return "must not be empty"
    msg = str(error["msg"])
    return msg[:1].lower() + msg[1:]


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for every error pydantic found, in field order."""
    return [(_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]


def parse_spec(data: Mapping[str, Any], source: str | None = None) -> RunSpec:
    """Validate a spec; raises SpecError listing every problem."""
    if not isinstance(data, Mapping):
        raise SpecError([("", f"a spec is a mapping of fields, got {type(data).__name__}")], source)
    try:
        return RunSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(problems_of(exc), source) from None


def check_tenants(spec: RunSpec, known: set[str]) -> None:
    """Raise SpecError naming each tenant of ``spec`` that the change topics do not know."""
    missing = [(i, t) for i, t in enumerate(spec.tenants) if t not in known]
    if not missing:
        return
    shown = sorted(known)[:10]
    more = f", and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
    hint = f"known: {', '.join(shown)}{more}" if known else "no tenant is known yet"
    raise SpecError([(f"tenants[{i}]", f"unknown tenant {t!r} ({hint})") for i, t in missing])


def load_spec_file(path: str | Path) -> RunSpec:
    """A spec from a .json, .yaml or .yml file; errors name the file."""
    file = Path(path)
    name = str(file)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise SpecError(
            [("", f"unsupported spec file type {suffix!r}; expected .json, .yaml or .yml")], name
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([("", f"cannot read: {reason}")], name) from None
    return parse_spec(_parse_text(text, suffix, name), name)


def _parse_text(text: str, suffix: str, name: str) -> Any:
    kind = "JSON" if suffix == ".json" else "YAML"
    try:
        if suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or type(exc).__name__
        problem = f"invalid YAML{where}: {reason}"
    except RecursionError:
        problem = f"invalid {kind}: nested too deeply for a spec"
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        reason = " ".join(str(exc).split(";")[0].split())[:200] or type(exc).__name__
        problem = f"invalid {kind}: {reason}"
    raise SpecError([("", problem)], name)


# The run schemas do not depend on the secret, so a worker that only decodes (the sink)
# rebuilds the spec with this stand-in; the processor, which hashes, needs the real one.
SCHEMA_ONLY_SECRET = "schema-only"


def spec_of_run(public: Mapping[str, Any], secret: str | None, etl_id: str) -> RunSpec:
    """The spec a run was started with, from its record (which never holds the secret)."""
    data = dict(public)
    if secret:
        data["pii_secret"] = secret
    return parse_spec(data, source=f"run {etl_id}")


def schema_spec_of_run(public: Mapping[str, Any], etl_id: str) -> RunSpec:
    needs_secret = "hash" in dict(public.get("pii") or {}).values()
    return spec_of_run(public, SCHEMA_ONLY_SECRET if needs_secret else None, etl_id)
