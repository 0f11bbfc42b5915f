"""Data pipeline jobs: numbered exports of the whole instance, as Atlassian's clients expect.

Each export path has its own job counter starting at 1; job N of a path writes under
``<path>/<N>/``. A job is a Sluiceway run plus what Data pipeline reports about it (its
number, fromDate, forced flag, schema version, opt-outs, node), kept on the API's config
store under ``job:<etl_id>`` so numbers survive a restart and are shared by every server
on the same Kafka.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.api.config_store import EXPORT_PATH, OPT_OUT, TENANTS, KeyValueStore
from sluiceway.common import control_topics as control
from sluiceway.common.schema_versions import fields_of, latest_version
from sluiceway.common.settings import StackSettings
from sluiceway.common.settings_base import SluicewaySettings

JOB_PREFIX = "job:"
DEFAULT_FROM_DAYS = 365
# Sluiceway's data is grouped by project; the other products' words for their grouping unit
# are accepted too, so a client written for one of them works unchanged.
OPT_OUT_TYPES = ("PROJECT", "SPACE", "REPOSITORY")


class DataPipelineSettings(SluicewaySettings):
    """How the Data pipeline endpoints behave; read from ``SLUICEWAY_DATAPIPELINE_*``."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_DATAPIPELINE_", frozen=True)

    optout_limit: int = Field(
        1000, ge=1, description="Most entities the opt-out list may hold, over every type."
    )
    node_id: str = Field(
        default_factory=socket.gethostname, description="`nodeId` reported for jobs started here."
    )
    timezone: str | None = Field(
        None,
        description="IANA time zone of scheduled exports' time of day, e.g. Europe/Berlin; "
        "None: the server's (TZ, else /etc/localtime, else UTC).",
    )


def default_export_path() -> str:
    """``<home>/data-pipeline/export``: where exports go until a path is set."""
    return str(StackSettings().home / "data-pipeline" / "export")


def export_path(config: dict[str, Any]) -> str:
    return str(config.get(EXPORT_PATH) or default_export_path())


def opted_out(config: dict[str, Any]) -> dict[str, list[str]]:
    """type -> keys; a list stored by older versions holds project keys."""
    stored = config.get(OPT_OUT) or {}
    if isinstance(stored, list):
        return {"PROJECT": [str(k) for k in stored]} if stored else {}
    return {str(t): [str(k) for k in keys] for t, keys in stored.items() if keys}


def all_opted_out_keys(entities: dict[str, list[str]]) -> list[str]:
    return list(dict.fromkeys(k for keys in entities.values() for k in keys))


@dataclass(frozen=True)
class Job:
    """What Data pipeline reports about one export, beside its run's own state."""

    job_id: int
    etl_id: str
    path: str  # the export root; the job writes under <path>/<job_id>
    export_from: str
    forced: bool
    schema_version: int
    opted_out: dict[str, list[str]] = field(default_factory=dict)
    node_id: str | None = None

    @property
    def root(self) -> str:
        return f"{self.path.rstrip('/')}/{self.job_id}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def jobs(config: dict[str, Any]) -> list[Job]:
    """Every job, oldest first."""
    found = []
    for key, value in config.items():
        if not key.startswith(JOB_PREFIX) or not value:
            continue
        try:
            found.append(Job.from_json(value))
        except (TypeError, ValueError, AttributeError) as exc:  # one bad record stops nothing
            control.skipped("config", key, exc)
    return sorted(found, key=lambda j: j.etl_id)


def next_job_id(config: dict[str, Any], path: str) -> int:
    return 1 + max((j.job_id for j in jobs(config) if j.path == path), default=0)


def save_job(store: KeyValueStore, job: Job) -> None:
    store.put(JOB_PREFIX + job.etl_id, asdict(job))


def default_from(now: datetime) -> datetime:
    return now - timedelta(days=DEFAULT_FROM_DAYS)


def job_spec(config: dict[str, Any], tenants: list[str], job: Job) -> dict[str, Any]:
    """The run spec (JSON data) of ``job``: every tenant of the instance unless narrowed."""
    return {
        "tenants": list(config.get(TENANTS) or tenants),
        "destination": job.root,
        "opt_out": all_opted_out_keys(job.opted_out),
        "from_date": job.export_from,
        "fields": fields_of(job.schema_version),
        "type": "full",
        "format": "csv",
        "layout": "datapipeline",
        "job_id": job.job_id,
        "schema_version": job.schema_version,
    }


def new_job(
    config: dict[str, Any],
    etl_id: str,
    from_date: datetime | None,
    forced: bool,
    version: int | None,
    node_id: str,
    now: datetime | None = None,
) -> Job:
    path = export_path(config)
    moment = now or datetime.now(UTC)
    return Job(
        job_id=next_job_id(config, path),
        etl_id=etl_id,
        path=path,
        export_from=(from_date or default_from(moment)).isoformat(),
        forced=forced,
        schema_version=latest_version() if version is None else version,
        opted_out=opted_out(config),
        node_id=node_id,
    )


def server_timezone(settings: DataPipelineSettings) -> str:
    """The IANA name of the server's time zone, as schedules store it."""
    if settings.timezone:
        return settings.timezone
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return "UTC"
