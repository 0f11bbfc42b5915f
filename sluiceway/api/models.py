"""Request and response bodies of the control API; their field docs become the OpenAPI schema.

Data pipeline bodies are in ``dp_models`` (Atlassian's camelCase names); the native
``/runs`` bodies use the snake_case names of the run spec and run status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


# -- Data pipeline extension ---------------------------------------------------------------


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
    read_path: dict[str, Any] | None = Field(
        None,
        description="How the run reads the change topics, decided with its cut: `path` "
        "(`scan` or `index`), the `rule`, and its `inputs` (offsets a scan reads, offsets "
        "no index block covers, the tenants' records, reads through the index).",
    )
    schedule: FeedView | None = Field(
        None, description="For a `continuous` spec: the feed that now runs it every interval."
    )
