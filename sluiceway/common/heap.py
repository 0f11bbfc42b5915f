"""The garbage collector's settings for a long-running worker.

A worker's hot loops allocate many short-lived containers (a tuple per record, a list per
batch), and CPython starts a collection every 700 of them; every so often that collection
reaches the oldest generation and walks every tracked object the process holds. A worker
holds hundreds of thousands from start-up alone (faust, polars, pyarrow, the codec's
schemas), none of which will ever be garbage. Profiled, those walks were a third of a
processor's CPU on a full export (docs/performance.md). So once a worker has started, what
start-up made is moved out of the collector's sight (``gc.freeze``), after one collection
so that no garbage is frozen with it.

The collection thresholds stay CPython's: raising them saved no more CPU than the freeze
alone, and let the young garbage of a sink near its memory cap grow by a few MB.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Call once, after start-up and before the worker's main loop."""
    gc.collect()
    gc.freeze()
