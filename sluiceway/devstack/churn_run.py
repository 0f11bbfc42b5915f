"""How a churn runs, whatever tables it writes: its settings, the paced loop, the ledger file,
the commit each batch becomes and the summary of what was committed.

The Jira churn (``sluiceway.devstack.churn``) and the catalog churn
(``sluiceway.devstack.catalog_churn``) plan different rows; everything here they share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol, TextIO

import psycopg2

from sluiceway.common.errors import ConfigError, SluicewayError
from sluiceway.producers.errors import SourceSchemaError, SourceUnavailableError

OPS = ("c", "u", "d")
OP_CUM = list(accumulate((40, 45, 15)))
COMMITS_PER_SECOND = 50
# Draws a planner makes for a feasible change before it falls back to a safe one.
MAX_DRAWS = 50


@dataclass(frozen=True)
class ChurnSettings:
    rate: float
    seconds: float
    seed: int
    ledger: Path
    tenants: tuple[str, ...] = ()  # empty: every tenant found in the source

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigError(
                f"--rate must be greater than 0 changes per second, got {self.rate:g}"
            )
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be greater than 0, got {self.seconds:g}")

    @property
    def batch_size(self) -> int:
        return max(1, round(self.rate / COMMITS_PER_SECOND))

    @property
    def interval(self) -> float:
        return self.batch_size / self.rate

    @property
    def batches(self) -> int:
        return max(1, math.ceil(self.seconds / self.interval - 1e-9))


@dataclass(frozen=True)
class Commit:
    xid: int
    lsn: str
    at: datetime


def source_error(exc: psycopg2.Error) -> SluicewayError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return SourceUnavailableError(f"source PostgreSQL failed during churn: {first}")
    return SourceSchemaError(f"source rejected a churn change: {first}")


class Change(Protocol):
    """What the summary reads of a planned change (either churn's operation)."""

    @property
    def entity(self) -> str: ...

    @property
    def op(self) -> str: ...


@dataclass
class ChurnSummary:
    target_rate: float
    changes: int = 0
    transactions: int = 0
    seconds: float = 0.0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> op -> count

    @property
    def achieved_rate(self) -> float:
        return self.changes / self.seconds if self.seconds else 0.0

    def record(self, ops: Sequence[Change]) -> None:
        self.transactions += 1
        self.changes += len(ops)
        for op in ops:
            self.counts[op.entity][op.op] += 1

    def to_json(self) -> dict[str, Any]:
        rates = {"seconds": round(self.seconds, 3), "achieved_rate": round(self.achieved_rate, 1)}
        return {**asdict(self), **rates}


@dataclass(frozen=True)
class Clock:
    """Injectable time, so tests run the pacing loop without waiting."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def pace(settings: ChurnSettings, step: Callable[[], None], clock: Clock | None = None) -> float:
    """Call ``step`` at start + k * interval until the time is up; return the seconds covered.

    Deadlines are absolute, so a slow batch is caught up on instead of shifting every later
    one; a run that falls behind still stops at ``seconds``.
    """
    clock = clock or Clock()
    start = clock.monotonic()
    end, done = start + settings.seconds, 0
    for k in range(settings.batches):
        now = clock.monotonic()
        if now >= end:
            break
        due = start + k * settings.interval
        if due > now:
            clock.sleep(due - now)
        step()
        done += 1
    # The schedule's span, unless the wall clock says the batches took longer.
    return max(clock.monotonic() - start, done * settings.interval)


def open_ledger(path: Path) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the ledger {path}: {exc.strerror or exc}") from exc
