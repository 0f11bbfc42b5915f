"""A quiet machine before measuring, and the last few results kept to show a regression.

Figures taken while something else keeps the cores busy say more about that something than
about Sluiceway, so a bench waits (a bounded time) for the 1-minute load average to drop to
``max_load`` and, if it does not, refuses to publish: the figures are still printed, but
saved apart (``results/busy/``) so they never become the ``latest-*`` ones the docs are
rendered from, nor one of the kept runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEEP = 5
"""Timestamped results kept per bench (older ones are removed when a new one is saved)."""


@dataclass(frozen=True)
class Quiet:
    """How quiet the machine was when the bench started."""

    load_at_start: float
    max_load: float
    waited_s: float
    quiet: bool

    def line(self) -> str:
        """One line for the console; says plainly when the figures will not be published."""
        if self.quiet:
            return f"machine quiet: 1-minute load {self.load_at_start:.2f} <= {self.max_load:g}"
        return (
            f"machine busy: 1-minute load {self.load_at_start:.2f} > {self.max_load:g} after "
            f"waiting {self.waited_s:.0f} s; the figures below are NOT published "
            "(saved under results/busy/)"
        )


def load_1m() -> float:
    return os.getloadavg()[0]


def host_speed(megabytes: int = 256) -> dict[str, float]:
    """What the load average cannot see: how fast this machine touches fresh memory and
    sorts, now. On a virtual machine whose host reclaims the guest's free memory, both
    drop several-fold while the guest looks idle, and every figure of a bench with them."""
    import mmap

    import numpy as np  # a bench dependency already (pyarrow, polars)

    # anonymous pages of 4 KiB, the kind the workers' allocators get (numpy's own large
    # arrays ask for huge pages, which such a host backs ten times slower again)
    with mmap.mmap(-1, megabytes * 2**20) as fresh:
        pages = np.frombuffer(fresh, dtype=np.uint8)
        started = time.perf_counter()
        pages[:: mmap.PAGESIZE] = 1  # the first touch of each page
        touched = time.perf_counter() - started
        del pages
    values = np.random.default_rng(17).random(2_000_000)
    started = time.perf_counter()
    values.sort()
    sorted_s = time.perf_counter() - started
    return {
        "fresh_memory_gb_s": round(megabytes / 1024 / touched, 2),
        "sort_2m_floats_ms": round(sorted_s * 1000, 1),
    }


def wait_for_quiet(
    max_load: float,
    max_wait_s: float,
    poll_s: float = 5.0,
    read_load: Callable[[], float] = load_1m,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> Quiet:
    """Poll the load average until it is at most ``max_load`` or ``max_wait_s`` has passed."""
    start = clock()
    while True:
        load = read_load()
        waited = clock() - start
        if load <= max_load or waited >= max_wait_s:
            return Quiet(round(load, 2), max_load, round(waited, 1), load <= max_load)
        pause(min(poll_s, max_wait_s - waited))


def with_load(
    res: dict[str, Any], quiet: Quiet, speed_at_start: dict[str, float] | None = None
) -> dict[str, Any]:
    """The result with the load at start (and the gate's verdict) and at end recorded, and
    the host's speed at start and end when it was probed (``host_speed``)."""
    load: dict[str, Any] = {**asdict(quiet), "load_at_end": round(load_1m(), 2)}
    if speed_at_start is not None:
        load |= {"host_speed_at_start": speed_at_start, "host_speed_at_end": host_speed()}
    return {**res, "load": load, "published": quiet.quiet}


def prune(results: Path, name: str, keep: int = KEEP) -> list[Path]:
    """Remove all but the ``keep`` newest timestamped results of ``name``; the removed."""
    runs = sorted(results.glob(f"{name}-2*.json"))  # names sort by their UTC timestamp
    old = runs[:-keep] if keep > 0 else runs
    for path in old:
        path.unlink()
    return old


def previous(results: Path, name: str, newest: Path) -> dict[str, Any] | None:
    """The kept run of ``name`` just before ``newest``, if there is one."""
    runs = sorted(p for p in results.glob(f"{name}-2*.json") if p.name < newest.name)
    if not runs:
        return None
    loaded: dict[str, Any] = json.loads(runs[-1].read_text(encoding="utf-8"))
    return loaded


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("quiet machine")
    group.add_argument(
        "--max-load", type=float, default=1.5,
        help="publish only figures taken with a 1-minute load average at most this at start",
    )  # fmt: skip
    group.add_argument(
        "--quiet-wait", type=float, default=180.0,
        help="seconds to wait for the load to drop before measuring anyway (unpublished)",
    )  # fmt: skip
