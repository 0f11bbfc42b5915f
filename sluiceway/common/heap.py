"""The garbage collector's settings for a long-running worker.

A worker's hot loops allocate many short-lived containers (a tuple per record, a list per
batch), and CPython starts a collection every 700 of them. Each collection of the oldest
generation walks every tracked object the process holds, and a worker holds hundreds of
thousands from start-up alone (faust, polars, pyarrow, the codec's schemas), none of which
will ever be garbage. Profiled, that walking was a third of a processor's CPU on a full
export (docs/performance.md). So, once a worker has started:

- what start-up made is moved out of the collector's sight (``gc.freeze``), after one
  collection so that no garbage is frozen with it;
- a young collection runs every ``YOUNG`` allocations instead of 700. Nearly every record
  a worker makes is freed by its reference count when its batch is done, so the collector
  has little to find however often it looks; what it does find (reference cycles, rare
  here) is freed a little later, not never.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # allocations between young collections (CPython's default: 700)
MIDDLE = 20  # young collections between middle ones (default 10)
OLD = 100  # middle collections between full ones (default 10)


def settle() -> None:
    """Call once, after start-up and before the worker's main loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
