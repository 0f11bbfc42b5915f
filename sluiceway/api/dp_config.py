"""Atlassian Data pipeline's config endpoints: opt-outs, export path, schema, schedule.

Plus one Sluiceway extension, ``/config/tenants``, which narrows exports to some tenants
(without it an export covers every tenant capture knows: the whole instance).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Response

from sluiceway.api.app import Services, get_services
from sluiceway.api.auth import bearer_scheme
from sluiceway.api.config_store import EXPORT_PATH, OPT_OUT, TENANTS, normal_export_path
from sluiceway.api.datapipeline import DataPipelineError
from sluiceway.api.destinations import DestinationNotAllowedError, allowed_destination
from sluiceway.api.dp_jobs import DataPipelineSettings, export_path, opted_out, server_timezone
from sluiceway.api.dp_models import (
    WEEKDAYS,
    ErrorsBody,
    ExportPath,
    OptedOutEntity,
    OptOutList,
    OptOutRequest,
    ScheduleRequest,
    ScheduleView,
    SchemaList,
    SchemaVersionView,
)
from sluiceway.api.models import Tenants, TenantsRequest
from sluiceway.api.schedules import DATAPIPELINE, Schedule, cron_next
from sluiceway.common.errors import ConfigError
from sluiceway.common.kafka_io import known_tenants
from sluiceway.common.schema_versions import latest_version, schema_version, versions
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.export import check_destination
from sluiceway.sinks.dp_layout import TENANT_COLUMN

router = APIRouter(
    tags=["Data pipeline config"],
    dependencies=[Depends(bearer_scheme)],
    responses={
        401: {"model": ErrorsBody, "description": "Missing or wrong bearer token."},
        422: {"model": ErrorsBody, "description": "The request is invalid; `errors` says why."},
    },
)


# -- opt-outs -------------------------------------------------------------------------------


def _optout_view(entities: dict[str, list[str]]) -> OptOutList:
    listed = [OptedOutEntity(type=t, identifiers=k) for t, k in entities.items()]
    return OptOutList(entities=listed, limit=DataPipelineSettings().optout_limit)


@router.get("/config/optout", response_model=OptOutList)
def get_optout(services: Services = Depends(get_services)) -> OptOutList:
    """The entities every export leaves out."""
    return _optout_view(opted_out(services.config.load_all()))


@router.post("/config/optout", response_model=OptOutList)
def add_optout(
    body: OptOutRequest,
    continueIfNotFound: bool = Query(
        False, description="Skip keys capture has not seen instead of refusing the request."
    ),
    services: Services = Depends(get_services),
) -> OptOutList:
    """Add keys to the opt-out list; later exports leave their entities out."""
    known = known_project_keys(services)
    missing = [k for k in body.keys if k not in known]
    if missing and not continueIfNotFound:
        raise DataPipelineError(
            404,
            "optout.key.not.found",
            f"{body.type.lower()} keys not found in the source: "
            f"{', '.join(missing)}; pass continueIfNotFound=true to skip them",
        )
    entities = opted_out(services.config.load_all())
    current = entities.get(body.type, [])
    added = [k for k in body.keys if k in known and k not in current]
    limit = DataPipelineSettings().optout_limit
    total = sum(len(v) for v in entities.values()) + len(added)
    if total > limit:
        raise DataPipelineError(
            422,
            "optout.limit.exceeded",
            f"the opt-out list would hold {total} keys; at most "
            f"{limit} are allowed (SLUICEWAY_DATAPIPELINE_OPTOUT_LIMIT)",
        )
    entities[body.type] = current + added
    services.config.put(OPT_OUT, entities)
    return _optout_view(entities)


@router.delete("/config/optout", response_model=OptOutList)
def remove_optout(
    body: OptOutRequest,
    continueIfNotFound: bool = Query(
        False, description="Skip keys that are not on the list instead of refusing the request."
    ),
    services: Services = Depends(get_services),
) -> OptOutList:
    """Remove keys from the opt-out list; later exports include their entities again."""
    entities = opted_out(services.config.load_all())
    current = entities.get(body.type, [])
    missing = [k for k in body.keys if k not in current]
    if missing and not continueIfNotFound:
        raise DataPipelineError(
            404,
            "optout.key.not.found",
            f"not on the {body.type} opt-out list: "
            f"{', '.join(missing)}; pass continueIfNotFound=true to skip them",
        )
    remaining = [k for k in current if k not in body.keys]
    if remaining:
        entities[body.type] = remaining
    else:
        entities.pop(body.type, None)
    services.config.put(OPT_OUT, entities)
    return _optout_view(entities)


def known_project_keys(services: Services) -> set[str]:
    """Project keys capture has seen (read from the project change topic)."""
    from sluiceway.api.dp_keys import project_keys

    return project_keys(services.kafka)


# -- export path ----------------------------------------------------------------------------


@router.get("/config/export-path", response_model=ExportPath)
def get_export_path(services: Services = Depends(get_services)) -> ExportPath:
    """Where exports go: the set path, else ``<home>/data-pipeline/export``."""
    return ExportPath(path=export_path(services.config.load_all()))


@router.put("/config/export-path", response_model=ExportPath)
def put_export_path(body: ExportPath, services: Services = Depends(get_services)) -> ExportPath:
    """Set where exports go: an absolute directory (or s3://bucket/prefix) the server may write."""
    try:
        path = normal_export_path(body.path)
        check_destination(allowed_destination(path, services.allowed_roots), services.s3)
    except DestinationNotAllowedError as exc:
        raise DataPipelineError(403, "export.path.not.allowed", str(exc)) from None
    except ConfigError as exc:
        raise DataPipelineError(422, "export.path.invalid", " ".join(str(exc).split())) from None
    services.config.put(EXPORT_PATH, path)
    return ExportPath(path=path)


@router.delete("/config/export-path", response_model=ExportPath)
def delete_export_path(services: Services = Depends(get_services)) -> ExportPath:
    """Forget the set path: exports go to the default path again."""
    services.config.delete(EXPORT_PATH)
    return ExportPath(path=export_path(services.config.load_all()))


# -- schema ---------------------------------------------------------------------------------


@router.get("/config/schema", response_model=SchemaList)
def get_schema() -> SchemaList:
    """The export schema versions, their status and columns."""
    views = []
    for number in versions():
        version = schema_version(number)
        # as the files have them: the tenant of each row last
        entities = {e: [*c, TENANT_COLUMN] for e, c in version.columns.items()}
        views.append(SchemaVersionView(version=number, status=version.status, entities=entities))
    return SchemaList(current=latest_version(), versions=views)


# -- tenants (Sluiceway extension) ----------------------------------------------------------


@router.get("/config/tenants", response_model=Tenants)
def get_tenants(services: Services = Depends(get_services)) -> Tenants:
    """Sluiceway extension: the tenants exports are narrowed to; empty: every tenant."""
    return Tenants(tenants=services.config.load_all().get(TENANTS) or [])


@router.put("/config/tenants", response_model=Tenants)
def put_tenants(body: TenantsRequest, services: Services = Depends(get_services)) -> Tenants:
    """Sluiceway extension: narrow exports to these tenants; each must be known to capture."""
    known = known_tenants(services.kafka)
    unknown = [(f"tenants[{i}]", t) for i, t in enumerate(body.tenants) if t not in known]
    if unknown:
        hint = f"known: {', '.join(sorted(known)[:10])}" if known else "no tenant is known yet"
        raise SpecError([(f, f"unknown tenant {t!r} ({hint})") for f, t in unknown])
    services.config.put(TENANTS, body.tenants)
    return Tenants(tenants=body.tenants)


@router.delete("/config/tenants", status_code=204)
def delete_tenants(services: Services = Depends(get_services)) -> Response:
    """Sluiceway extension: export every tenant again."""
    services.config.delete(TENANTS)
    return Response(status_code=204)


# -- schedule -------------------------------------------------------------------------------


@router.get(
    "/config/schedule",
    response_model=ScheduleView,
    responses={404: {"model": ErrorsBody, "description": "No schedule is set."}},
)
def get_schedule(services: Services = Depends(get_services)) -> ScheduleView:
    """When scheduled exports run, and how the last attempt went."""
    schedule = services.scheduler.get(DATAPIPELINE)
    if schedule is None or schedule.params is None:
        raise DataPipelineError(404, "schedule.not.found", "no schedule is set")
    return _schedule_view(services, schedule)


@router.put("/config/schedule", response_model=ScheduleView)
def put_schedule(body: ScheduleRequest, services: Services = Depends(get_services)) -> ScheduleView:
    """Export on the given weekdays at a time of day in the server's time zone."""
    version = latest_version() if body.schemaVersion is None else body.schemaVersion
    if version not in versions():
        known = ", ".join(map(str, versions()))
        raise DataPipelineError(
            422,
            "schedule.schema.version.unknown",
            f"schemaVersion {version} does not exist; known: {known}",
        )
    try:  # refuse a schedule that could never run
        allowed_destination(export_path(services.config.load_all()), services.allowed_roots)
    except DestinationNotAllowedError as exc:
        raise DataPipelineError(403, "export.path.not.allowed", str(exc)) from None
    tz = server_timezone(DataPipelineSettings())
    days = ",".join(d[:3] for d in WEEKDAYS if d in body.repeatDays)
    cron = f"{body.startTime.minute} {body.startTime.hour} * * {days}"
    now = datetime.now(UTC)
    params = {
        "fromDate": body.fromDate.isoformat(),
        "repeatDays": [d for d in WEEKDAYS if d in body.repeatDays],
        "startTime": f"{body.startTime:%H:%M}",
        "schemaVersion": version,
    }
    schedule = Schedule(
        name=DATAPIPELINE,
        spec=None,
        mode="full",
        interval_s=86_400,
        anchor=now,
        next_due=cron_next(cron, tz, now),
        cron=cron,
        tz=tz,
        params=params,
    )
    services.scheduler.put(schedule)
    return _schedule_view(services, schedule)


@router.delete(
    "/config/schedule",
    status_code=204,
    responses={404: {"model": ErrorsBody, "description": "No schedule is set."}},
)
def delete_schedule(services: Services = Depends(get_services)) -> Response:
    """Stop scheduled exports; a running export is left to finish."""
    if not services.scheduler.delete(DATAPIPELINE):
        raise DataPipelineError(404, "schedule.not.found", "no schedule is set")
    return Response(status_code=204)


def _schedule_view(services: Services, schedule: Schedule) -> ScheduleView:
    from sluiceway.api.dp_jobs import jobs

    params = schedule.params or {}
    last = [j.job_id for j in jobs(services.config.load_all()) if j.etl_id == schedule.last_etl_id]
    return ScheduleView(
        fromDate=params["fromDate"],
        repeatDays=params["repeatDays"],
        startTime=params["startTime"],
        timeZone=schedule.tz or "UTC",
        schemaVersion=params["schemaVersion"],
        nextRunTime=schedule.next_due,
        lastJobId=last[0] if last else None,
        lastError=schedule.last_error,
    )
