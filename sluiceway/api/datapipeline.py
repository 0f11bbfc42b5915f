"""Atlassian Data pipeline's export endpoints, so its clients drive Sluiceway unchanged.

Served under both ``/rest/datapipeline/1.0`` and ``/rest/datapipeline/latest``. An export
is a numbered job of the whole instance (every tenant capture knows, unless narrowed with
the Sluiceway-only ``/config/tenants``) written under ``<export path>/<jobId>/``; one job
runs at a time. Refusals carry Data pipeline's ``errors[{key, message}]`` beside the usual
one-line ``error``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from sluiceway.api.app import ApiError, Services, get_services
from sluiceway.api.auth import bearer_scheme
from sluiceway.api.config_store import TENANTS
from sluiceway.api.destinations import (
    DestinationNotAllowedError,
    allowed_destination,
    allowed_spec,
)
from sluiceway.api.dp_jobs import (
    DataPipelineSettings,
    Job,
    export_path,
    job_spec,
    jobs,
    new_job,
    save_job,
)
from sluiceway.api.dp_models import (
    ErrorsBody,
    ExportConfig,
    JobState,
    JobStatus,
    Message,
    OptedOutEntity,
    SchemaInfo,
    Statistics,
)
from sluiceway.api.runs import cancel_run
from sluiceway.api.schedules import Schedule
from sluiceway.common import control_topics as control
from sluiceway.common.errors import ConfigError, RunConflictError
from sluiceway.common.kafka_io import known_tenants, read_control
from sluiceway.common.runs import RunRecord
from sluiceway.common.schema_versions import schema_version, versions
from sluiceway.common.spec import parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control import registry
from sluiceway.control.runner import log_dir, start_run

PREFIXES = ("/rest/datapipeline/1.0", "/rest/datapipeline/latest")
STATUS: dict[str, JobState] = {
    "running": "STARTED",
    "complete": "COMPLETED",
    "cancelled": "CANCELLED",
    "failed": "FAILED",
}
ISO_EXAMPLE = "2026-01-01T00:00:00Z"

router = APIRouter(
    tags=["Data pipeline"],
    dependencies=[Depends(bearer_scheme)],
    responses={
        401: {"model": ErrorsBody, "description": "Missing or wrong bearer token."},
        503: {"model": ErrorsBody, "description": "Kafka or the object store does not answer."},
    },
)


class DataPipelineError(ApiError):
    """A refusal with Data pipeline's error key."""

    def __init__(self, status: int, key: str, message: str) -> None:
        super().__init__(status, message)
        self.key = key


def install(app: FastAPI, services: Services) -> None:
    """Mount the routers under both prefixes, render refusals, and hook the schedule."""
    from sluiceway.api import dp_config

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DataPipelineError)
        body = {"error": exc.message, "errors": [{"key": exc.key, "message": exc.message}]}
        return JSONResponse(body, status_code=exc.status)

    app.add_exception_handler(DataPipelineError, refused)
    for prefix in PREFIXES:
        app.include_router(router, prefix=prefix)
        app.include_router(dp_config.router, prefix=prefix)

    def scheduled(schedule: Schedule) -> RunRecord:
        params = schedule.params or {}
        from_date = datetime.fromisoformat(params["fromDate"]) if "fromDate" in params else None
        return start_job(services, from_date, False, params.get("schemaVersion"))[1]

    services.scheduler.job_starter = scheduled


def parse_from_date(value: str | None) -> datetime | None:
    """fromDate as an aware UTC datetime; a 422 naming the value otherwise."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.utcoffset() is None:
            raise ValueError(value)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise DataPipelineError(
            422,
            "export.fromDate.invalid",
            f"fromDate {value!r} is not an ISO 8601 date-time with a UTC offset; "
            f"expected e.g. {ISO_EXAMPLE}",
        ) from None


def start_job(
    services: Services, from_date: datetime | None, forced: bool, version: int | None
) -> tuple[Job, RunRecord]:
    """Start the next job of the export path; DataPipelineError when it cannot start."""
    _check_version(version)
    _refuse_while_running(services)
    config = services.config.load_all()
    tenants = [] if config.get(TENANTS) else sorted(known_tenants(services.kafka))
    if not config.get(TENANTS) and not tenants:
        raise DataPipelineError(
            422, "export.no.data", "capture has seen no tenant yet; start capture on the source"
        )
    settings = DataPipelineSettings()
    job = new_job(config, "", from_date, forced, version, settings.node_id)
    try:
        allowed_destination(job.path, services.allowed_roots)  # names the path the user set
        spec = parse_spec(job_spec(config, tenants, job), source="Data pipeline export")
        run, workers = start_run(
            allowed_spec(spec, services.allowed_roots), services.kafka, services.s3
        )
    except RunConflictError as exc:
        raise DataPipelineError(409, "export.in.progress", _line(exc)) from None
    except DestinationNotAllowedError as exc:
        raise DataPipelineError(403, "export.path.not.allowed", _line(exc)) from None
    except SpecError as exc:
        raise DataPipelineError(422, "export.config.invalid", _line(exc)) from None
    except ConfigError as exc:
        raise DataPipelineError(422, "export.not.started", _line(exc)) from None
    job = replace(job, etl_id=run.etl_id)
    save_job(services.config, job)
    if workers is not None:
        services.scheduler.watch(run.etl_id, workers)
    return job, run


def _check_version(version: int | None) -> None:
    if version is not None and version not in versions():
        known = ", ".join(map(str, versions()))
        raise DataPipelineError(
            422, "export.schema.version.unknown",
            f"schemaVersion {version} does not exist; known versions: {known} (GET /config/schema)",
        )  # fmt: skip


def _refuse_while_running(services: Services) -> None:
    running = [job for job, state in job_states(services) if state and state.active]
    if running:
        raise DataPipelineError(
            409, "export.in.progress", f"job {running[-1].job_id} is still running; wait for it "
            "or cancel it with DELETE /export",
        )  # fmt: skip


def _line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def job_states(
    services: Services, only: Job | None = None
) -> list[tuple[Job, registry.RunState | None]]:
    """Jobs (oldest first) with their runs' states; ``only``: just that job."""
    found = jobs(services.config.load_all()) if only is None else [only]
    if not found:
        return []
    wanted = {j.etl_id for j in found}
    states = {
        s.run.etl_id: s
        for s in registry.states(services.kafka, services.s3, lambda r: r.etl_id in wanted)
    }
    return [(j, states.get(j.etl_id)) for j in found]


def workers_alive(etl_id: str) -> bool:
    """Whether a worker this machine started for the run still runs (zombies do not)."""
    for pid_file in log_dir(etl_id).glob("*.pid"):
        try:
            stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
        except (ValueError, OSError):
            continue
        if stat.rpartition(")")[2].split()[0] != "Z":
            return True
    return False


def _status_at(services: Services, etl_id: str) -> str | None:
    """When the run's last state change (cancelled, failed) was recorded; an unreadable
    status record is skipped (and counted), never a 500."""
    raw = read_control(services.kafka, "status")
    found = control.decode_each("status", raw, control.json_object).get(etl_id)
    return str(found["at"]) if found and found.get("at") else None


def job_status(job: Job, state: registry.RunState | None, at: str | None = None) -> JobStatus:
    """A job in Data pipeline's words; ``at``: when its run was cancelled or failed."""
    manifest = state.manifest if state else None
    status, errors, warnings = _state_and_messages(job, state)
    rows = manifest.totals.rows if manifest else 0
    return JobStatus(
        jobId=job.job_id,
        nodeId=job.node_id,
        status=status,
        startTime=state.run.created_at if state else None,
        completedTime=manifest.completed_at if manifest else (at if status == "FAILED" else None),
        cancelledTime=at if state is not None and state.status == "cancelled" else None,
        config=ExportConfig(empty=False, exportFrom=job.export_from, forcedExport=job.forced),
        errors=errors,
        warnings=warnings,
        optedOutEntities=[OptedOutEntity(type=t, identifiers=k) for t, k in job.opted_out.items()],
        rootExportPath=job.root,
        schema=SchemaInfo(
            version=job.schema_version, status=schema_version(job.schema_version).status
        ),
        statistics=Statistics(
            empty=manifest is None,
            exportedEntities=len(manifest.tables) if manifest else 0,
            writtenRows=rows,
        ),
    )


def _state_and_messages(
    job: Job, state: registry.RunState | None
) -> tuple[JobState, list[Message], list[Message]]:
    """The job's state in Data pipeline's words, with its errors and warnings."""
    manifest = state.manifest if state else None
    status: JobState = STATUS[state.status] if state else "FAILED"
    errors, warnings = [], []
    if state is None:
        errors.append(Message(key="export.run.missing", message="the job's run is not recorded"))
    elif state.status == "failed":
        errors.append(Message(key="export.failed", message=state.reason or "the export failed"))
    elif state.status == "cancelled" and workers_alive(job.etl_id):
        status = "CANCELLATION_REQUESTED"
    if state is not None and state.manifest_error and state.manifest_error != state.reason:
        # the run's manifest or destination cannot be read: said on this job only
        errors.append(Message(key="export.manifest.unreadable", message=state.manifest_error))
    if state is not None and state.note:
        warnings.append(Message(key="export.waiting", message=state.note))
    dead = manifest.dead_letters if manifest else 0
    if dead:
        warnings.append(
            Message(
                key="export.dead.letters",
                message=f"{dead} rows went to dead letters instead of the files",
            )
        )
    return status, errors, warnings


def _status(services: Services, job: Job, state: registry.RunState | None) -> JobStatus:
    final = state is not None and state.status in ("cancelled", "failed")
    return job_status(job, state, _status_at(services, job.etl_id) if final else None)


@router.post(
    "/export",
    status_code=202,
    response_model=JobStatus,
    responses={
        409: {"model": ErrorsBody, "description": "Another export is running."},
        422: {"model": ErrorsBody, "description": "The export cannot start; `errors` says why."},
    },
)
def start_export(
    fromDate: str | None = Query(
        None,
        description=f"Leave out data updated before this instant, e.g. {ISO_EXAMPLE}; "
        "default: 365 days ago.",
    ),
    forceExport: bool = Query(False, description="Recorded as the job's `forcedExport`."),
    schemaVersion: int | None = Query(None, description="Export schema version; latest if absent."),
    services: Services = Depends(get_services),
) -> JobStatus:
    """Start exporting the whole instance to the export path, minus opted-out entities."""
    job, run = start_job(services, parse_from_date(fromDate), forceExport, schemaVersion)
    return job_status(job, registry.RunState(run, "running", None, None))


@router.get("/export", response_model=JobStatus)
def export_status(services: Services = Depends(get_services)) -> JobStatus:
    """The running export's status, else the latest one's; `NOT_STARTED` before the first."""
    found = jobs(services.config.load_all())
    if not found:
        return JobStatus(status="NOT_STARTED")
    (job, state), *_ = job_states(services, found[-1])
    return _status(services, job, state)


@router.delete(
    "/export",
    response_model=JobStatus,
    responses={
        404: {"model": ErrorsBody, "description": "No job has that id."},
        409: {"model": ErrorsBody, "description": "The job is not running."},
    },
)
def cancel_export(
    jobId: str | None = Query(None, description="The job to cancel; the latest when blank."),
    services: Services = Depends(get_services),
) -> JobStatus:
    """Cancel a running export, also one whose workers died; files written so far remain."""
    found = jobs(services.config.load_all())
    job = _pick(found, jobId, services)
    (job, state), *_ = job_states(services, job)
    if state is None or not state.active:
        where = state.status if state else "not recorded"
        raise DataPipelineError(
            409, "export.not.running", f"job {job.job_id} is {where}; nothing to cancel"
        )
    after = cancel_run(services, state)  # complete if it finished before the cancel took
    at = None if after.status == "complete" else datetime.now(UTC).isoformat()
    return job_status(job, after, at)


def _pick(found: list[Job], job_id: str | None, services: Services) -> Job:
    if not found:
        raise DataPipelineError(404, "export.not.found", "no export has run yet")
    if job_id is None or not job_id.strip():
        return found[-1]
    if not job_id.strip().isdigit():
        raise DataPipelineError(
            422, "export.jobId.invalid", f"jobId {job_id!r} is not a job number, e.g. 3"
        )
    number = int(job_id)
    path = export_path(services.config.load_all())  # numbers repeat across paths
    matches = [j for j in found if j.job_id == number]
    current = [j for j in matches if j.path == path]
    if not matches:
        raise DataPipelineError(404, "export.not.found", f"no job {number}")
    return (current or matches)[-1]


@router.get("/history", response_model=list[JobStatus])
def history(services: Services = Depends(get_services)) -> list[JobStatus]:
    """Every export job, newest first."""
    return [_status(services, job, state) for job, state in reversed(job_states(services))]


@router.get("/ping")
def ping() -> dict[str, str]:
    """Answers while the server runs."""
    return {"status": "OK"}
