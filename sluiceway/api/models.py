"""Request and response bodies of the control API; their field docs become the OpenAPI schema.

Data pipeline bodies keep Atlassian's camelCase names so its clients work unchanged; the
native ``/runs`` bodies use the snake_case names of the run spec and run status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from processors.spec import UTC_RANGE
from sluiceway.api.config_store import normal_export_path
from sluiceway.errors import ConfigError

MIN_REPEAT_S = 60
MAX_REPEAT_S = 86_400 * 7


class Problem(BaseModel):
    field: str = Field(description="Path of the bad field, e.g. `tenants[0]`; empty for the body.")
    message: str = Field(description="What is wrong and what is allowed.")


class ErrorBody(BaseModel):
    error: str = Field(description="One line saying what went wrong.")
    problems: list[Problem] | None = Field(
        None, description="Every field-level problem, when the request body was invalid."
    )


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok` while the server answers.")
    version: str = Field(description="Sluiceway version of this server.")


# -- Data pipeline ------------------------------------------------------------------------


class JobConfig(BaseModel):
    exportForgeAppsData: bool = Field(False, description="Always false: there are no Forge apps.")
    fromDate: str | None = Field(None, description="The run's fromDate (ISO 8601), if any.")


class JobError(BaseModel):
    key: str = Field(
        description="Kind of problem: `failed`, `dead_letters` or `manifest_error` (its manifest "
        "or destination cannot be read)."
    )
    message: str = Field(description="One line explaining it.")


class Statistics(BaseModel):
    exportedEntities: int = Field(0, description="Tables written by the run.")
    writtenRows: int = Field(0, description="Rows written across all tables.")


JobState = Literal["NOT_STARTED", "STARTED", "COMPLETED", "CANCELLED", "FAILED"]


class JobStatus(BaseModel):
    """Data pipeline's export status; `NOT_STARTED` with null fields when no run exists yet."""

    jobId: str | None = Field(None, description="The run's etl_id.")
    status: JobState = Field(description="Where the run stands.")
    startTime: str | None = Field(None, description="When the run started (ISO 8601, UTC).")
    completedTime: str | None = Field(None, description="When its manifest was written.")
    cancelledTime: str | None = Field(None, description="When it was cancelled.")
    config: JobConfig = Field(default_factory=JobConfig, description="What the run was asked.")
    errors: list[JobError] = Field(default_factory=list, description="Why it failed, if so.")
    optedOutEntities: list[str] = Field(
        default_factory=list, description="Project keys left out of the run."
    )
    rootExportPath: str | None = Field(None, description="The run's destination.")
    statistics: Statistics = Field(default_factory=Statistics, description="What was written.")


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projectKeys: list[str] = Field(
        description="Project keys whose issues, comments and worklogs are left out."
    )

    @field_validator("projectKeys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("project keys must not be empty")
        return list(dict.fromkeys(k.strip() for k in value))


class ExportPath(BaseModel):
    path: str | None = Field(
        description="Absolute directory or `s3://bucket/prefix` exports go to; null when unset."
    )


class ExportPathRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Absolute directory or `s3://bucket/prefix`.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return normal_export_path(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class Tenants(BaseModel):
    """Sluiceway extension: the tenants a Data pipeline export covers."""

    tenants: list[str] = Field(description="Tenant ids, as capture knows them.")


class TenantsRequest(Tenants):
    model_config = ConfigDict(extra="forbid")

    tenants: list[str] = Field(min_length=1, description="Tenant ids, as capture knows them.")

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: list[str]) -> list[str]:
        if any(not t.strip() for t in value):
            raise ValueError("tenant ids must not be empty")
        return list(dict.fromkeys(t.strip() for t in value))


class ScheduleConfig(BaseModel):
    """When scheduled exports run: every `repeatIntervalInSeconds` from `startTime`."""

    model_config = ConfigDict(extra="forbid")

    startTime: AwareDatetime = Field(
        description="First run and origin of the grid of runs (ISO 8601 with an offset)."
    )
    repeatIntervalInSeconds: int = Field(
        ge=MIN_REPEAT_S, le=MAX_REPEAT_S, description="Seconds between runs (60 to 604800)."
    )
    type: Literal["delta", "full"] = Field(
        "delta",
        description="`delta`: a full export first, then changes since the previous run; "
        "`full`: a full export every time.",
    )

    @field_validator("startTime")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()!r} {UTC_RANGE}") from None


class ScheduleView(ScheduleConfig):
    model_config = ConfigDict(extra="ignore")

    nextRunTime: datetime | None = Field(None, description="When the next run is due.")
    lastJobId: str | None = Field(None, description="etl_id of the last run it started.")
    lastError: str | None = Field(None, description="Why its last attempt started no run.")


# -- native ---------------------------------------------------------------------------------


class FeedView(BaseModel):
    """A continuous feed (or the Data pipeline schedule) as the scheduler stores it."""

    name: str = Field(description="`datapipeline`, or `feed-<hash of the destination>`.")
    spec: dict[str, Any] | None = Field(
        description="The public run spec (no secret); null: the Data pipeline config."
    )
    mode: str = Field(description="`delta` (full first, then deltas) or `full`.")
    interval_s: int = Field(description="Seconds between runs.")
    anchor: datetime = Field(description="Origin of the grid of due times.")
    next_due: datetime = Field(description="When the next run is due (UTC).")
    needs_secret: bool = Field(description="Reads its PII secret from the environment.")
    last_etl_id: str | None = Field(None, description="The last run it started.")
    last_error: str | None = Field(None, description="Why its last attempt started no run.")


class RunView(BaseModel):
    """A run's state: `running`, `complete`, `cancelled` or `failed`."""

    etl_id: str = Field(
        description="Sortable, unique run id, e.g. 20261121T235959Z-4f2a9c01d3b7e655."
    )
    type: str = Field(description="`full` or `delta`.")
    status: Literal["running", "complete", "cancelled", "failed"] = Field(
        description="`complete` once the manifest exists."
    )
    reason: str | None = Field(None, description="Why it was cancelled or failed.")
    tenants: list[str] = Field(description="Tenants the run reads.")
    destination: str = Field(description="Where its files go.")
    started_at: str = Field(description="When it was announced (ISO 8601, UTC).")
    completed_at: str | None = Field(None, description="When its manifest was written.")
    rows: dict[str, int] = Field(default_factory=dict, description="Rows per table, when done.")
    files: int | None = Field(None, description="Files written, when done.")
    dead_letters: int | None = Field(None, description="Events dead-lettered, when done.")
    manifest_error: str | None = Field(
        None,
        description="Why the run's manifest or destination cannot be read; an invalid manifest "
        "makes the run `failed`, other runs are listed as usual.",
    )
    schedule: FeedView | None = Field(
        None, description="For a `continuous` spec: the feed that now runs it every interval."
    )
