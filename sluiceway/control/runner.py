"""Starting a run and following it: shared by the CLI and the control API."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from sluiceway.common.errors import ConfigError, RunConflictError, RunFailedError, TransientError
from sluiceway.common.health import HEALTH
from sluiceway.common.kafka_io import set_status, shared_admins
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import SECRET_ENV, KafkaSettings, S3Settings, StackSettings
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.common.spec import RunSpec
from sluiceway.control import registry
from sluiceway.control.claim import ClaimLost, DestinationClaim
from sluiceway.control.export import (
    absolute_destination,
    announce,
    discard,
    launch_workers,
    plan_run,
    scanned,
    validate_request,
    worker_failure,
)

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

Workers = dict[str, subprocess.Popen[bytes]]
Progress = Callable[[int, int], None]
LaunchMode = Literal["subprocess", "pool"]


class LaunchSettings(SluicewaySettings):
    """Who runs a started run's workers: this process's children, or the worker pools."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_", frozen=True)

    launch: LaunchMode = Field(
        "subprocess",
        description="subprocess: start `process`/`sink --run` here; pool: only announce the "
        "run, for `process --pool` and `sink --pool` (Deployments) to pick up.",
    )


def launch_mode() -> LaunchMode:
    """SLUICEWAY_LAUNCH, read when a run starts; a bad value is one line naming it."""
    try:
        return LaunchSettings().launch
    except ValidationError as exc:
        found = os.environ.get("SLUICEWAY_LAUNCH")
        raise ConfigError(
            f"SLUICEWAY_LAUNCH={found!r} is not a launch mode; expected subprocess or pool"
        ) from exc


def log_dir(etl_id: str) -> Path:
    return StackSettings().home / "runs" / etl_id


def start_run(
    spec: RunSpec, kafka: KafkaSettings, s3: S3Settings, launch: bool = True,
    replay_to: datetime | None = None, now: datetime | None = None,
) -> tuple[RunRecord, Workers | None]:  # fmt: skip
    """Validate, refuse a busy destination, announce the run and (optionally) launch its workers.

    ``replay_to``: a full run of the destination as of that time (``sluiceway replay``).
    With SLUICEWAY_LAUNCH=pool the pools run the workers: Workers is then empty ({})."""
    mode = launch_mode() if launch else None
    if mode != "subprocess":
        check_remote_secret(spec, mode)
    spec = spec.model_copy(update={"destination": absolute_destination(spec.destination)})
    with shared_admins():  # a dozen questions to the brokers in a row
        validate_request(spec, kafka, s3)
        run = claim_and_announce(spec, kafka, s3, replay_to, now)
    if mode is None:
        return run, None
    if mode == "pool":
        return run, {}
    secret = spec.pii_secret.get_secret_value() if spec.pii_secret else None
    return run, launch_workers(run, kafka, log_dir(run.etl_id), secret)


def check_remote_secret(spec: RunSpec, mode: LaunchMode | None) -> None:
    """Workers this process does not start hash with their own SLUICEWAY_PII_SECRET, which a
    spec's pii_secret cannot reach: the spec may only carry that same key. (Its fingerprint
    goes into the run record, and each processor checks its own key against it.)"""
    given = spec.pii_secret.get_secret_value() if spec.pii_secret else None
    own = os.environ.get(SECRET_ENV) or None
    if given is None or given == own:
        return
    workers = "the pools (SLUICEWAY_LAUNCH=pool)" if mode == "pool" else "workers started elsewhere"
    here = f"has no {SECRET_ENV}" if own is None else f"has another key in {SECRET_ENV}"
    raise ConfigError(
        f"pii_secret cannot reach {workers}: they hash PII with their own {SECRET_ENV}, and "
        f"this process {here}; set the same key as {SECRET_ENV} here and for the workers, or "
        "launch the workers from here"
    )


def claim_and_announce(
    spec: RunSpec,
    kafka: KafkaSettings,
    s3: S3Settings,
    replay_to: datetime | None,
    now: datetime | None = None,
) -> RunRecord:
    """Check that the destination is free and announce the run, as one atomic step: of
    starters that race for a destination exactly one gets it (``sluiceway.control.claim``)."""
    run: RunRecord | None = None
    try:
        with DestinationClaim(kafka, spec.destination) as claim:
            _refuse_busy(kafka, s3, spec.destination)
            run = announce(plan_run(spec, kafka, s3, replay_to, now), kafka, claim.publish)
            claim.commit()
            return run
    except ClaimLost as lost:
        if run is not None:
            discard(run, kafka)
        _refuse_busy(kafka, s3, spec.destination)  # names the winner once it is visible
        raise RunConflictError(
            f"destination {spec.destination} is busy: {lost}; see: sluiceway export status --all"
        ) from None


def _refuse_busy(kafka: KafkaSettings, s3: S3Settings, destination: str) -> None:
    busy = registry.active_at(kafka, s3, destination)
    if busy is not None:
        raise RunConflictError(
            f"destination {destination} is busy with run {busy.run.etl_id}; wait for it or "
            f"cancel it with: sluiceway export cancel {busy.run.etl_id}"
        )


def follow(
    run: RunRecord, kafka: KafkaSettings, workers: Workers, timeout: float, progress: Progress,
    s3: S3Settings,
) -> None:  # fmt: skip
    """Wait for the sink to finish; a worker that fails marks the run failed.

    No workers (the pools run them): wait for the registry to call the run final."""
    if not workers:
        return _follow_registry(run, kafka, s3, timeout, progress)
    deadline, logs = time.monotonic() + timeout, log_dir(run.etl_id)
    while workers["sink"].poll() is None:
        HEALTH.beat()  # following is the caller's main loop (the migration worker's too)
        _fail_on_worker_failure(run, kafka, workers, logs)
        if time.monotonic() > deadline:
            raise TransientError(
                f"run {run.etl_id} not complete after {timeout:.0f}s; logs in {logs}"
            )
        progress(*scanned(run, kafka))
        time.sleep(0.5)
    _fail_on_worker_failure(run, kafka, workers, logs)


def _follow_registry(
    run: RunRecord, kafka: KafkaSettings, s3: S3Settings, timeout: float, progress: Progress
) -> None:
    deadline = time.monotonic() + timeout
    while (item := registry.state(kafka, s3, run.etl_id)).active:
        HEALTH.beat()
        if time.monotonic() > deadline:
            raise TransientError(
                f"run {run.etl_id} not complete after {timeout:.0f}s; see the pools' logs"
            )
        progress(*scanned(run, kafka))
        time.sleep(0.5)
    if item.status != "complete":
        raise RunFailedError(f"run {run.etl_id} is {item.status}: {item.reason}")


def _fail_on_worker_failure(
    run: RunRecord, kafka: KafkaSettings, workers: Workers, logs: Path
) -> None:
    failure = worker_failure(workers, logs)
    if failure:
        set_status(kafka, run.etl_id, "failed", failure)
        raise RunFailedError(failure)


def read_manifest(run: RunRecord, s3: S3Settings) -> RunManifest:
    from sluiceway.lake import reader

    manifest = reader.run_manifest(reader.open_readonly(run.destination, s3), run.etl_id)
    if manifest is None:
        raise ConfigError(f"run {run.etl_id} finished without a manifest in {run.destination}")
    return manifest
