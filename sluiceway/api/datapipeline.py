"""Atlassian Data pipeline's REST endpoints, so its clients can drive Sluiceway unchanged.

The export endpoints act on the runs of the configured export path (every run when none is
configured yet): that destination is the Data pipeline's one job stream. ``GET /export``
answers 200 with status ``NOT_STARTED`` and null fields when that stream has no run, as Data
pipeline answers 200 before its first job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from processors.spec import UTC_RANGE, parse_spec
from sluiceway import control, registry
from sluiceway.api.app import ApiError, Services, get_services
from sluiceway.api.auth import bearer_scheme
from sluiceway.api.config_store import EXPORT_PATH, OPT_OUT, TENANTS, datapipeline_spec
from sluiceway.api.destinations import allowed_destination, allowed_spec
from sluiceway.api.models import (
    ErrorBody,
    ExportPath,
    ExportPathRequest,
    JobConfig,
    JobError,
    JobState,
    JobStatus,
    OptOut,
    ScheduleConfig,
    ScheduleView,
    Statistics,
    Tenants,
    TenantsRequest,
)
from sluiceway.api.runs import cancel_run
from sluiceway.api.scheduler import DATAPIPELINE, Schedule, first_due, interval_problem
from sluiceway.export import absolute_destination, check_destination
from sluiceway.kafka_io import known_tenants, read_control
from sluiceway.runner import start_run

PREFIX = "/rest/datapipeline/latest"
STATUS: dict[str, JobState] = {
    "running": "STARTED", "complete": "COMPLETED", "cancelled": "CANCELLED", "failed": "FAILED",
}  # fmt: skip
# States whose time is only on the status topic: the manifest records completion.
STATUS_AT = ("cancelled", "failed")
ISO_EXAMPLE = "2026-01-01T00:00:00Z"

router = APIRouter(
    prefix=PREFIX,
    tags=["Data pipeline"],
    dependencies=[Depends(bearer_scheme)],
    responses={
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        403: {"model": ErrorBody, "description": "The export path is outside the allowed roots."},
        413: {"model": ErrorBody, "description": "The request body is too large."},
        503: {"model": ErrorBody, "description": "Kafka or the object store does not answer."},
    },
)


def parse_from_date(value: str | None) -> datetime | None:
    """fromDate as an aware UTC datetime; ApiError 400 naming the value otherwise."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise ApiError(
            400,
            f"fromDate {value!r} is not an ISO 8601 date-time with a UTC offset; "
            f"expected e.g. {ISO_EXAMPLE}",
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, f"fromDate {value!r} {UTC_RANGE}") from None


def job_status(state: registry.RunState | None, status_at: str | None = None) -> JobStatus:
    """A run state in Data pipeline's words."""
    if state is None:
        return JobStatus(status="NOT_STARTED")
    manifest, spec = state.manifest or {}, state.run.spec
    errors = []
    if state.status == "failed":
        errors.append(JobError(key="failed", message=state.reason or "the run failed"))
    if state.manifest_error and state.manifest_error != state.reason:
        errors.append(JobError(key="manifest_error", message=state.manifest_error))
    dead = int(manifest.get("dead_letters") or 0)
    if dead:
        errors.append(JobError(key="dead_letters", message=f"{dead} events went to dead letters"))
    return JobStatus(
        jobId=state.run.etl_id,
        status=STATUS[state.status],
        startTime=state.run.created_at,
        completedTime=manifest.get("completed_at") or _when(state, "failed", status_at),
        cancelledTime=_when(state, "cancelled", status_at),
        config=JobConfig(fromDate=spec.get("from_date")),
        errors=errors,
        optedOutEntities=list(spec.get("opt_out") or []),
        rootExportPath=state.run.destination,
        statistics=Statistics(
            exportedEntities=len(manifest.get("tables") or {}),
            writtenRows=int((manifest.get("totals") or {}).get("rows") or 0),
        ),
    )


def _when(state: registry.RunState, status: str, at: str | None) -> str | None:
    return at if state.status == status else None


def _stream(services: Services) -> list[registry.RunState]:
    """The runs of the Data pipeline's destination, oldest first."""
    path = services.config.load_all().get(EXPORT_PATH)
    found = registry.states(services.kafka, services.s3)
    if path is None:
        return found
    # Runs record their destination as start_run resolved it (symlinks too).
    wanted = absolute_destination(path)
    return [s for s in found if s.run.destination == wanted]


def _status_at(services: Services, etl_id: str) -> str | None:
    """When the run's last state change (cancelled, failed) was recorded."""
    raw = read_control(services.kafka, "status")
    found = control.decode_each("status", raw, control.json_object).get(etl_id)
    return str(found["at"]) if found and found.get("at") else None


@router.post(
    "/export",
    status_code=202,
    response_model=JobStatus,
    responses={
        400: {"model": ErrorBody, "description": "Bad fromDate, or no tenants or export path."},
        409: {"model": ErrorBody, "description": "An export of the path is already running."},
    },
)
def start_export(
    fromDate: str | None = Query(  # Data pipeline's parameter name
        None, description=f"Only entities updated at or after this instant, e.g. {ISO_EXAMPLE}."
    ),
    services: Services = Depends(get_services),
) -> JobStatus:
    """Start a full export of the configured tenants to the export path, minus opt-outs."""
    from_date = parse_from_date(fromDate)
    data = datapipeline_spec(services.config.load_all())
    if from_date is not None:
        data["from_date"] = from_date.isoformat()
    spec = allowed_spec(parse_spec(data, source="Data pipeline config"), services.allowed_roots)
    run, workers = start_run(spec, services.kafka, services.s3)
    if workers is not None:
        services.scheduler.watch(run.etl_id, workers)
    return job_status(registry.RunState(run, "running", None, None))


@router.get("/export", response_model=JobStatus)
def export_status(services: Services = Depends(get_services)) -> JobStatus:
    """The latest export's status; `NOT_STARTED` when there is none."""
    stream = _stream(services)
    if not stream:
        return job_status(None)
    latest = stream[-1]
    at = _status_at(services, latest.run.etl_id) if latest.status in STATUS_AT else None
    return job_status(latest, at)


@router.delete(
    "/export",
    response_model=JobStatus,
    responses={409: {"model": ErrorBody, "description": "No export is running."}},
)
def cancel_export(services: Services = Depends(get_services)) -> JobStatus:
    """Cancel the running export, also one whose workers died."""
    active = [s for s in _stream(services) if s.active]
    if not active:
        raise ApiError(409, "no export is running; nothing to cancel")
    cancelled = cancel_run(services, active[-1])
    return job_status(cancelled, datetime.now(UTC).isoformat())


# -- config -------------------------------------------------------------------------------


@router.get("/config/optout", response_model=OptOut)
def get_optout(services: Services = Depends(get_services)) -> OptOut:
    """Projects left out of exports."""
    return OptOut(projectKeys=services.config.load_all().get(OPT_OUT) or [])


@router.put("/config/optout", response_model=OptOut)
def put_optout(body: OptOut, services: Services = Depends(get_services)) -> OptOut:
    """Replace the opted-out projects; the next export leaves them out."""
    services.config.put(OPT_OUT, body.projectKeys)
    return body


@router.get("/config/export-path", response_model=ExportPath)
def get_export_path(services: Services = Depends(get_services)) -> ExportPath:
    """Where exports go; `path` is null until set."""
    return ExportPath(path=services.config.load_all().get(EXPORT_PATH))


@router.put("/config/export-path", response_model=ExportPath)
def put_export_path(
    body: ExportPathRequest, services: Services = Depends(get_services)
) -> ExportPath:
    """Set where exports go: under the server's allowed roots, where it can write."""
    check_destination(allowed_destination(body.path, services.allowed_roots), services.s3)
    services.config.put(EXPORT_PATH, body.path)
    return ExportPath(path=body.path)


@router.delete("/config/export-path", status_code=204)
def delete_export_path(services: Services = Depends(get_services)) -> Response:
    """Forget the export path; exports are refused until a new one is set."""
    services.config.delete(EXPORT_PATH)
    return Response(status_code=204)


@router.get("/config/tenants", response_model=Tenants)
def get_tenants(services: Services = Depends(get_services)) -> Tenants:
    """Sluiceway extension: the tenants exports cover."""
    return Tenants(tenants=services.config.load_all().get(TENANTS) or [])


@router.put(
    "/config/tenants",
    response_model=Tenants,
    responses={422: {"model": ErrorBody, "description": "A tenant is unknown to capture."}},
)
def put_tenants(body: TenantsRequest, services: Services = Depends(get_services)) -> Tenants:
    """Sluiceway extension: set the tenants exports cover; each must be known to capture."""
    from processors.errors import SpecError

    known = known_tenants(services.kafka)
    unknown = [(f"tenants[{i}]", t) for i, t in enumerate(body.tenants) if t not in known]
    if unknown:
        hint = f"known: {', '.join(sorted(known)[:10])}" if known else "no tenant is known yet"
        raise SpecError([(f, f"unknown tenant {t!r} ({hint})") for f, t in unknown])
    services.config.put(TENANTS, body.tenants)
    return Tenants(tenants=body.tenants)


@router.get(
    "/config/schedule",
    response_model=ScheduleView,
    responses={404: {"model": ErrorBody, "description": "No schedule is set."}},
)
def get_schedule(services: Services = Depends(get_services)) -> ScheduleView:
    """When scheduled exports run, and how the last one went."""
    schedule = services.scheduler.get(DATAPIPELINE)
    if schedule is None:
        raise ApiError(404, "no schedule is set; PUT one to /config/schedule")
    return _schedule_view(schedule)


@router.put(
    "/config/schedule",
    response_model=ScheduleView,
    responses={400: {"model": ErrorBody, "description": "No tenants or export path set."}},
)
def put_schedule(body: ScheduleConfig, services: Services = Depends(get_services)) -> ScheduleView:
    """Export on a schedule; each run reads the config (tenants, path, opt-outs) as it is then."""
    # refuse a schedule that could never run
    path = datapipeline_spec(services.config.load_all())["destination"]
    allowed_destination(path, services.allowed_roots)
    anchor = body.startTime  # UTC already: the model converts it
    interval = body.repeatIntervalInSeconds
    if (problem := interval_problem(interval)) is not None:
        raise ApiError(400, f"repeatIntervalInSeconds {problem}")
    schedule = Schedule(
        name=DATAPIPELINE, spec=None, mode=body.type, interval_s=interval, anchor=anchor,
        next_due=first_due(anchor, interval, datetime.now(UTC)),
    )  # fmt: skip
    services.scheduler.put(schedule)
    return _schedule_view(schedule)


@router.delete(
    "/config/schedule",
    status_code=204,
    responses={404: {"model": ErrorBody, "description": "No schedule is set."}},
)
def delete_schedule(services: Services = Depends(get_services)) -> Response:
    """Stop scheduled exports; a running export is left to finish."""
    if not services.scheduler.delete(DATAPIPELINE):
        raise ApiError(404, "no schedule is set")
    return Response(status_code=204)


def _schedule_view(schedule: Schedule) -> ScheduleView:
    fields: dict[str, Any] = {
        "startTime": schedule.anchor,
        "repeatIntervalInSeconds": schedule.interval_s,
        "type": schedule.mode,
        "nextRunTime": schedule.next_due,
        "lastJobId": schedule.last_etl_id,
        "lastError": schedule.last_error,
    }
    return ScheduleView(**fields)
