"""Bodies of the Data pipeline endpoints, with Atlassian's camelCase names and types."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluiceway.api.dp_jobs import OPT_OUT_TYPES
from sluiceway.common.schema_versions import VersionStatus
from sluiceway.common.spec import UTC_RANGE

JobState = Literal[
    "NOT_STARTED", "STARTED", "COMPLETED", "CANCELLATION_REQUESTED", "CANCELLED", "FAILED"
]
Weekday = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
WEEKDAYS: tuple[Weekday, ...] = (
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
)


class Message(BaseModel):
    key: str = Field(description="Kind of problem, e.g. `export.failed`.")
    message: str = Field(description="One line explaining it.")


class ErrorsBody(BaseModel):
    """Why a request was refused: `errors[]` as Data pipeline lists them, `error` in one line."""

    error: str = Field(description="The first problem, in one line.")
    errors: list[Message] = Field(description="Every problem, each with a key.")


class ExportConfig(BaseModel):
    empty: bool = Field(description="True when the job was asked nothing beyond the defaults.")
    exportFrom: str | None = Field(None, description="Data updated before this is left out.")
    forcedExport: bool = Field(False, description="The job was started with forceExport.")


class OptedOutEntity(BaseModel):
    type: str = Field(description="`PROJECT` (also accepted as `SPACE` or `REPOSITORY`).")
    identifiers: list[str] = Field(description="Keys of the entities left out.")


class SchemaInfo(BaseModel):
    version: int = Field(description="Export schema version of the job's files.")
    status: VersionStatus = Field(description="`ACTIVE` (latest) or `DEPRECATED`.")


class Statistics(BaseModel):
    empty: bool = Field(description="True while nothing has been written.")
    exportedEntities: int = Field(0, description="Entity types (files) written by the job.")
    writtenRows: int = Field(0, description="Rows written across all entities.")


class JobStatus(BaseModel):
    """An export job's status; `NOT_STARTED` with null fields before the first job."""

    jobId: int | None = Field(None, description="1, 2, 3, ... per export path.")
    nodeId: str | None = Field(None, description="The server that started the job.")
    status: JobState = Field(description="Where the job stands.")
    startTime: str | None = Field(None, description="ISO 8601, UTC.")
    completedTime: str | None = Field(None, description="When it completed or failed.")
    cancelledTime: str | None = Field(None, description="When it was cancelled.")
    config: ExportConfig = Field(default_factory=lambda: ExportConfig(empty=True))
    errors: list[Message] = Field(default_factory=list, description="Why it failed, if so.")
    warnings: list[Message] = Field(default_factory=list, description="What to look at.")
    optedOutEntities: list[OptedOutEntity] = Field(default_factory=list)
    rootExportPath: str | None = Field(None, description="The job's folder, <path>/<jobId>.")
    schema_: SchemaInfo | None = Field(None, alias="schema", description="Its schema version.")
    statistics: Statistics = Field(default_factory=lambda: Statistics(empty=True))

    model_config = ConfigDict(populate_by_name=True)


class OptOutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(description=f"One of {', '.join(OPT_OUT_TYPES)}.")
    keys: list[str] = Field(min_length=1, description="Keys to add to or remove from the list.")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value.strip().upper() not in OPT_OUT_TYPES:
            raise ValueError(f"type {value!r} is not one of {', '.join(OPT_OUT_TYPES)}")
        return value.strip().upper()

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("keys must not be empty")
        return list(dict.fromkeys(k.strip() for k in value))


class OptOutList(BaseModel):
    entities: list[OptedOutEntity] = Field(description="What every export leaves out.")
    limit: int = Field(description="Most keys the list may hold (SLUICEWAY_DATAPIPELINE_...).")


class ExportPath(BaseModel):
    path: str = Field(description="Absolute directory or `s3://bucket/prefix` exports go to.")


class SchemaVersionView(BaseModel):
    version: int
    status: VersionStatus
    entities: dict[str, list[str]] = Field(description="entity -> columns, in file order.")


class SchemaList(BaseModel):
    current: int = Field(description="The version exports use unless asked otherwise.")
    versions: list[SchemaVersionView]


class ScheduleRequest(BaseModel):
    """Export on the given days at a time of day in the server's time zone."""

    model_config = ConfigDict(extra="forbid")

    fromDate: datetime = Field(
        description="Data updated before this is left out: a date (from its start, UTC) or a "
        "date-time with an offset."
    )
    repeatDays: list[Weekday] = Field(min_length=1, description="Days of the week to export on.")
    startTime: time = Field(description="Time of day (HH:MM), in the server's time zone.")
    schemaVersion: int | None = Field(None, description="Export schema version; latest if null.")

    @field_validator("repeatDays", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, list):
            return [v.strip().upper() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("fromDate", mode="before")
    @classmethod
    def _day(cls, value: object) -> object:
        if isinstance(value, str) and len(value.strip()) == len("2026-01-01"):
            return f"{value.strip()}T00:00:00Z"  # a bare date: from its start, in UTC
        return value

    @field_validator("fromDate")
    @classmethod
    def _from(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError("a date-time needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()!r} {UTC_RANGE}") from None


class ScheduleView(BaseModel):
    fromDate: str = Field(description="Data updated before this is left out.")
    repeatDays: list[Weekday]
    startTime: str = Field(description="HH:MM in `timeZone`.")
    timeZone: str = Field(description="The server's time zone when the schedule was saved.")
    schemaVersion: int
    nextRunTime: datetime | None = Field(None, description="When the next export is due (UTC).")
    lastJobId: int | None = Field(None, description="The last job it started.")
    lastError: str | None = Field(None, description="Why its last attempt started no job.")
