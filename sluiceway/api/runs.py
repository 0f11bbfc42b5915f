"""Native endpoints: start runs from a run spec, list and follow them, cancel them, and the
continuous feeds that ``type: continuous`` specs create."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from sluiceway.api.app import ApiError, Services, get_services
from sluiceway.api.auth import bearer_scheme
from sluiceway.api.destinations import allowed_spec
from sluiceway.api.models import ErrorBody, FeedView, RunView
from sluiceway.api.schedules import feed_of, next_slot
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.control import registry
from sluiceway.control.runner import log_dir, start_run

# ids made before runs took 64 random bits end in 4 hex digits
ETL_ID = re.compile(r"^\d{8}T\d{6}Z-(?:[0-9a-f]{16}|[0-9a-f]{4})$")

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Bad request, e.g. a malformed etl_id or an unwritable destination."),
        (401, "Missing or wrong bearer token."),
        (403, "The destination is outside the server's allowed roots (SLUICEWAY_API_ROOTS)."),
        (413, "The request body is larger than the server's SLUICEWAY_API_MAX_BODY_BYTES."),
        (503, "Kafka or the object store does not answer."),
    )
}
SPEC_EXAMPLE = {
    "tenants": ["tenant-001"],
    "entities": ["project", "issue"],
    "type": "full",
    "destination": "/srv/lake",
}

router = APIRouter(tags=["Runs"], dependencies=[Depends(bearer_scheme)], responses=ERRORS)


def find_run(services: Services, etl_id: str) -> registry.RunState | None:
    found = registry.states(services.kafka, services.s3, lambda r: r.etl_id == etl_id)
    return found[0] if found else None


def cancel_run(services: Services, state: registry.RunState) -> registry.RunState:
    """Mark a running run cancelled (also one whose workers died) and stop local workers;
    its state then: complete if it wrote its manifest first."""
    reason = "cancelled through the control API"
    services.scheduler.cancelled(state.run.etl_id)
    registry.cancel(services.kafka, state, log_dir(state.run.etl_id), reason)
    return registry.after_cancel(services.kafka, services.s3, state, reason)


def _checked_id(etl_id: str) -> str:
    if not ETL_ID.match(etl_id):
        raise ApiError(
            400, f"etl_id {etl_id!r} is malformed; expected YYYYMMDDTHHMMSSZ-<16 hex digits>"
        )
    return etl_id


@router.post(
    "/runs",
    status_code=202,
    response_model=RunView,
    responses={
        409: {"model": ErrorBody, "description": "The destination is busy with another run."},
        422: {"model": ErrorBody, "description": "The spec is invalid; `problems` says where."},
    },
)
def create_run(
    body: dict[str, Any] = Body(
        description="A run spec (docs/guide.md); `pii_secret` is used, never stored.",
        examples=[SPEC_EXAMPLE],
    ),
    launch: bool = Query(
        True,
        description="Start the run's workers here; false leaves them to other machines, which "
        "hash PII with their own SLUICEWAY_PII_SECRET: a spec's pii_secret must then be the "
        "server's SLUICEWAY_PII_SECRET (400 otherwise).",
    ),
    services: Services = Depends(get_services),
) -> RunView:
    """Start a run; a `continuous` spec also becomes a feed that runs every `interval`."""
    spec = allowed_spec(parse_spec(body), services.allowed_roots)
    if spec.type == "continuous":
        return _start_feed(spec, launch, services)
    run, workers = start_run(spec, services.kafka, services.s3, launch)
    if workers is not None:
        services.scheduler.watch(run.etl_id, workers)
    return RunView(**registry.RunState(run, "running", None, None).to_dict())


def _start_feed(spec: RunSpec, launch: bool, services: Services) -> RunView:
    if not launch:
        raise ApiError(400, "launch=false cannot go with type 'continuous': feeds launch runs")
    now = datetime.now(UTC)
    feed = feed_of(spec, now)
    # The first run starts before the feed is stored, so a spec that cannot run stores nothing.
    run = services.scheduler.run_now(feed)
    feed = replace(feed, next_due=next_slot(feed, now))
    feed = replace(feed, last_etl_id=run.etl_id)
    services.scheduler.put(feed)
    state = registry.RunState(run, "running", None, None).to_dict()
    return RunView(**state, schedule=FeedView(**feed.to_json()))


@router.get("/runs", response_model=list[RunView])
def list_runs(services: Services = Depends(get_services)) -> list[RunView]:
    """Every run, newest first."""
    found = registry.states(services.kafka, services.s3)
    return [RunView(**s.to_dict()) for s in reversed(found)]


@router.get(
    "/runs/{etl_id}",
    response_model=RunView,
    responses={404: {"model": ErrorBody, "description": "No run has this etl_id."}},
)
def get_run(
    etl_id: str = Path(description="The run's etl_id, e.g. 20261121T235959Z-4f2a9c01d3b7e655."),
    services: Services = Depends(get_services),
) -> RunView:
    """One run's state."""
    state = find_run(services, _checked_id(etl_id))
    if state is None:
        raise ApiError(404, f"run {etl_id} not found")
    return RunView(**state.to_dict())


@router.delete(
    "/runs/{etl_id}",
    response_model=RunView,
    responses={
        404: {"model": ErrorBody, "description": "No run has this etl_id."},
        409: {"model": ErrorBody, "description": "The run is not running."},
    },
)
def cancel(
    etl_id: str = Path(description="The run's etl_id."),
    services: Services = Depends(get_services),
) -> RunView:
    """Cancel a running run, also one left by a dead worker; its destination is released."""
    state = find_run(services, _checked_id(etl_id))
    if state is None:
        raise ApiError(404, f"run {etl_id} not found")
    if not state.active:
        raise ApiError(409, f"run {etl_id} is already {state.status}; nothing to cancel")
    return RunView(**cancel_run(services, state).to_dict())


@router.get("/schedules", response_model=list[FeedView])
def list_schedules(services: Services = Depends(get_services)) -> list[FeedView]:
    """Continuous feeds and the Data pipeline schedule."""
    return [FeedView(**s.to_json()) for s in services.scheduler.all()]


@router.delete(
    "/schedules/{name}",
    status_code=204,
    responses={404: {"model": ErrorBody, "description": "No schedule has this name."}},
)
def delete_schedule(
    name: str = Path(description="The schedule's name."),
    services: Services = Depends(get_services),
) -> Response:
    """Stop a feed: no further runs start; a run already going is left to finish."""
    if not services.scheduler.delete(name):
        raise ApiError(404, f"schedule {name!r} not found")
    return Response(status_code=204)
