"""A PostgreSQL of the bench's own, on its own core, and children on the other cores.

The source-impact bench asks how much the pipeline slows the source's other users. On a
machine where PostgreSQL and the pipeline share every core, the answer would mostly be CPU
contention on this one machine, which separate hosts (the production shape: the source on
its own server) do not have. So the bench starts a private PostgreSQL cluster (the local
stack's code, in a temporary home, on a free port), pins it and the bench's own process
(which sends the measured queries) to one core, and starts every pipeline process on the
others. While it measures, the local stack's Kafka and S3Proxy are moved to the pipeline's
core(s) too (and given back their cores afterwards): on separate hosts they would not share
the source's CPU either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.env import free_port
from sluiceway.common.settings import PostgresSettings, StackSettings
from sluiceway.devstack.base import live_pid
from sluiceway.devstack.postgres import PostgresServer


@dataclass(frozen=True)
class Cores:
    """Which cores the source side and the pipeline side run on (empty: not pinned)."""

    source: frozenset[int]
    pipeline: frozenset[int]

    @property
    def pinned(self) -> bool:
        return bool(self.source)

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned: PostgreSQL and the pipeline share every core"
        return (
            f"PostgreSQL and the query client on core(s) {sorted(self.source)}, capture and "
            f"the exports, Kafka and S3Proxy on core(s) {sorted(self.pipeline)}"
        )


def split_cores(pin: bool, available: set[int] | None = None) -> Cores:
    """The lowest core for the source, the rest for the pipeline; no split on one core."""
    cores = sorted(available if available is not None else os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return Cores(frozenset(), frozenset())
    return Cores(frozenset(cores[:1]), frozenset(cores[1:]))


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc; [] when it has gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def pin_tree(pid: int, cores: frozenset[int]) -> int:
    """Pin ``pid`` and its current children; later children inherit it. Returns how many."""
    done = 0
    for each in [pid, *children(pid)]:
        try:
            os.sched_setaffinity(each, cores)
            done += 1
        except (ProcessLookupError, PermissionError):
            continue  # a backend that just ended, or one we may not touch
    return done


def on_cores(cores: frozenset[int]) -> Callable[[], None] | None:
    """A ``preexec_fn`` that moves a child to ``cores`` (None when not pinning)."""
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


@contextmanager
def private_postgres(cores: Cores) -> Iterator[PostgresSettings]:
    """A fresh PostgreSQL cluster for the bench alone, on the source core(s); removed after."""
    home = Path(tempfile.mkdtemp(prefix="sw-impact-"))  # short: the socket path is limited
    pg = PostgresSettings().model_copy(update={"port": free_port(), "dbname": "sluiceway"})
    server = PostgresServer(StackSettings(home=home), pg)
    before = os.sched_getaffinity(0)
    try:
        status = server.up()
        if cores.pinned and status.pid is not None:
            pin_tree(status.pid, cores.source)
            os.sched_setaffinity(0, cores.source)  # the query client sits with the source
        yield pg
    finally:
        os.sched_setaffinity(0, before)
        server.down()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def stack_on(cores: Cores) -> Iterator[list[int]]:
    """The local stack's Kafka and S3Proxy (every thread) on the pipeline core(s) while the
    bench measures, as they would be on hosts other than the source's; their affinity is
    given back afterwards. Yields the pids moved (none when not pinned or not found)."""
    if not cores.pinned:
        yield []
        return
    home = StackSettings.for_dev_stack().home
    pids = [pid for name in ("kafka", "s3proxy") if (pid := live_pid(home / name / "pid"))]
    saved: dict[int, set[int]] = {}
    for pid in pids:
        for tid in _threads(pid):
            try:
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cores.pipeline)
            except OSError:
                continue  # the thread ended meanwhile
    try:
        yield pids
    finally:
        for tid, mask in saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                continue


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []
