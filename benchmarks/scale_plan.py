"""The scale bench's plan, pure: Zipf-distributed tenant sizes, the tenants exported, the
tenants churned, and the verdict on the issue's targets (no I/O, so unit-tested alone)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHARE_TARGET = 0.01  # the smallest tenant's export reads under 1% of the change topics' events
SECONDS_TARGET = 5.0  # ... and finishes in under 5 s (issue 18, item 4)
FULL_ENV = "SLUICEWAY_BENCH_SCALE"  # "full" asks for the full size, as --scale-full does
ROLES = ("smallest", "median", "largest")


@dataclass(frozen=True)
class Size:
    tenants: int
    issues: int
    churn: int  # changes committed between the full runs and the delta runs


# small: a few minutes on the 2-core dev machine; full: the issue's 10,000 tenants, ~2M issues
SIZES = {"small": Size(200, 20_000, 2_000), "full": Size(10_000, 2_000_000, 20_000)}


def size_name(full_flag: bool, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return "full" if full_flag or env.get(FULL_ENV, "").strip().lower() == "full" else "small"


def zipf_sizes(tenants: int, issues: int, exponent: float, seed: int) -> tuple[int, ...]:
    """Issues per tenant (tenant i at index i - 1), summing to exactly ``issues``.

    Rank r gets 1 issue plus its share 1/r**exponent of the rest (largest remainders round),
    so every tenant has at least one; the ranks are then dealt to tenants by a shuffle with
    ``seed``, so the largest tenant is not always tenant-001 and sizes mix across partitions.
    """
    if tenants < 1 or issues < tenants:
        raise ValueError(f"need 1 <= tenants <= issues, got {tenants} tenants, {issues} issues")
    if exponent < 0:
        raise ValueError(f"the Zipf exponent must be >= 0, got {exponent}")
    weights = [1.0 / rank**exponent for rank in range(1, tenants + 1)]
    rest, total = issues - tenants, sum(weights)
    ideal = [rest * w / total for w in weights]
    shares = [int(x) for x in ideal]
    # the rounding's leftover goes to the largest fractions (the higher rank on a tie)
    by_fraction = sorted(range(tenants), key=lambda r: (-(ideal[r] - shares[r]), r))
    for rank in by_fraction[: rest - sum(shares)]:
        shares[rank] += 1
    by_rank = [1 + s for s in shares]
    order = list(range(tenants))
    random.Random(seed).shuffle(order)
    return tuple(by_rank[order[i]] for i in range(tenants))


def picks(sizes: Sequence[int]) -> dict[str, int]:
    """The smallest, median and largest tenant, as tenant numbers (from 1); ties go to the
    lower number, so the choice is as deterministic as the sizes."""
    ordered = sorted(range(1, len(sizes) + 1), key=lambda n: (sizes[n - 1], n))
    return {"smallest": ordered[0], "median": ordered[len(ordered) // 2], "largest": ordered[-1]}


def churned(chosen: Sequence[int], tenants: int, others: int, seed: int) -> list[int]:
    """The chosen tenants and ``others`` more drawn with ``seed``: the churn touches the
    exported tenants (their deltas have something to carry) and tenants no run exports
    (their events are in the change topics, not in any run)."""
    rest = sorted(set(range(1, tenants + 1)) - set(chosen))
    drawn = random.Random(seed).sample(rest, min(others, len(rest)))
    return sorted({*chosen, *drawn})


def share(read: int | None, topic_events: int) -> float | None:
    """Events read as a fraction of the events in the change topics (None: not known)."""
    if read is None or topic_events <= 0:
        return None
    return read / topic_events


def meets_targets(run: Mapping[str, Any]) -> bool:
    """A run meets the targets only when its output is right as well as cheap and fast:
    a fast run that wrote the wrong rows is not a pass."""
    s, secs = run.get("share"), run.get("seconds")
    return (
        bool(run.get("ok")) and run.get("correct") is True
        and s is not None and s < SHARE_TARGET
        and secs is not None and secs < SECONDS_TARGET
    )  # fmt: skip
