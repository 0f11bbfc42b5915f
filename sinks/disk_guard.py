"""Keep a local destination from filling its disk.

A run is refused when its destination is already below the minimum free space, and a
running sink pauses (polls nothing new) while writing would take it below, resuming once
space returns. ``should_pause`` decides; ``DiskGuard`` measures, through an injectable
``disk_usage`` so tests can simulate a full disk. Object stores are never guarded.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluiceway.common.errors import ConfigError
from sluiceway.lake import layout
from sluiceway.sinks import metrics

log = logging.getLogger("sluiceway.sink")

DiskUsage = Callable[[str], Any]  # shutil.disk_usage: anything with a .free in bytes


class LowDiskSpaceError(ConfigError):
    """The destination's disk has less free space than the configured minimum."""


def should_pause(free_bytes: int, minimum: int, pending_bytes: int = 0) -> bool:
    """True when writing ``pending_bytes`` would leave less than ``minimum`` free (-1: never)."""
    if minimum < 0:
        return False
    return free_bytes - max(0, pending_bytes) < minimum


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def low_space(path: str, free_bytes: int, minimum: int) -> str:
    return (
        f"free space at {path} is {gigabytes(free_bytes)} ({free_bytes} bytes), "
        f"below the minimum {gigabytes(minimum)} ({minimum} bytes)"
    )


def existing_dir(path: str) -> str:
    """The path itself or its nearest existing parent: where the bytes would land."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return str(probe)


def check_start(destination: str, minimum: int, disk_usage: DiskUsage = shutil.disk_usage) -> None:
    """Refuse a run whose local destination is already below the minimum free space."""
    dest = layout.parse_destination(destination)
    if dest.kind != "local" or minimum < 0:
        return
    free = int(disk_usage(existing_dir(dest.root)).free)
    if should_pause(free, minimum):
        raise LowDiskSpaceError(
            f"{low_space(dest.root, free, minimum)}; free some space or lower "
            "SLUICEWAY_SINK_MIN_FREE_BYTES (-1 disables the check)"
        )


@dataclass
class DiskGuard:
    """Measures free space at most every ``interval_s`` and reports pause/resume changes."""

    path: str
    minimum: int
    interval_s: float = 5.0
    disk_usage: DiskUsage = shutil.disk_usage
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str | None], None] | None = None  # the reason, or None on resume
    paused: bool = False
    _next_check: float = float("-inf")
    _reported: bool = False  # the first measurement is always reported: it clears stale notes

    def blocked(self, pending_bytes: int = 0) -> bool:
        """Whether the sink should wait now; measures only when the interval has passed."""
        now = self.clock()
        if self.minimum < 0 or now < self._next_check:
            return self.paused
        self._next_check = now + self.interval_s
        try:
            free = int(self.disk_usage(self.path).free)
        except OSError as exc:  # a vanished destination fails the next write, loudly
            log.warning("cannot measure free space at %s: %s", self.path, exc)
            return self.paused
        pause = should_pause(free, self.minimum, pending_bytes)
        if pause != self.paused or not self._reported:
            self._change(pause, free)
        return pause

    def _change(self, pause: bool, free: int) -> None:
        was, self.paused, self._reported = self.paused, pause, True
        metrics.DISK_GUARD_PAUSED.set(1 if pause else 0)
        reason = f"waiting: {low_space(self.path, free, self.minimum)}" if pause else None
        if pause:
            log.warning("pausing the sink: %s", reason)
        elif was:
            log.info("resuming the sink: free space at %s is %s", self.path, gigabytes(free))
        if self.on_change is not None:
            self.on_change(reason)
