"""Deterministic Jira-shaped demo and test data.

Generation is pure (a seed in, the same rows out); loading uses COPY, which is an order of
magnitude faster than INSERTs when a benchmark asks for a million issues.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.db import connect
from sluiceway.producers.source import column_list, columns, schema_sql, source_tables, table_name

Row = dict[str, Any]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
FIRST = ["Ada", "Bjørn", "Chloé", "Dmitri", "Eun-ji", "François", "Grace", "Håkon", "Ines", "José"]
LAST = ["Lovelace", "O'Neil", "Müller", "Nakamura", "Núñez", "Smith", "Søndergaard", "Zhang"]
WORDS = [
    "login",
    "export",
    "fails",
    "timeout",
    "dashboard",
    "report",
    "crash",
    "migration",
    "billing",
    "sync",
    "cache",
    "permission",
    "upload",
    "search",
    "filter",
    "latency",
    "webhook",
    "parquet",
    "tenant",
    "backlog",
    "sprint",
]
ODD = [
    'He said "ship it", then left.',
    "Commas, commas, and more commas",
    "Ünïcödé: café, naïve, 日本語, Ελληνικά, emoji 🚀",
    "Path C:\\temp\\new and a tab\there",
    "Line one\nLine two\r\nLine three",
]
STATUSES = [("To Do", "To Do"), ("In Progress", "In Progress"), ("Done", "Done")]


@dataclass(frozen=True)
class SeedPlan:
    tenants: int
    issues_per_tenant: int
    seed: int
    # issues of tenant i at sizes[i - 1], when tenants differ in size (the scale bench's
    # Zipf sizes); empty: every tenant has issues_per_tenant
    sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.sizes and len(self.sizes) != self.tenants:
            raise ValueError(f"{len(self.sizes)} sizes given for {self.tenants} tenants")

    def tenant_ids(self) -> list[str]:
        return [tenant_id(i) for i in range(1, self.tenants + 1)]

    def issues_of(self, index: int) -> int:
        """Issues of the tenant numbered ``index`` (from 1)."""
        return self.sizes[index - 1] if self.sizes else self.issues_per_tenant


# The entities gen_tenant writes rows of: the Jira example's, as the demo is Jira-shaped.
DEMO_ENTITIES = ("project", "user", "issue", "comment", "worklog")


def check_demo_catalog(codec: Codec, command: str) -> None:
    """One line when the catalog in effect lacks an entity the demo's generators write
    (their rows, ids and parents are the Jira example's)."""
    lacking = [e for e in DEMO_ENTITIES if e not in codec.catalog.entities]
    if lacking:
        raise ConfigError(
            f"{command} generates rows for the Jira-shaped demo only; the catalog in effect "
            f"has no {', '.join(lacking)}"
        )


def tenant_id(index: int) -> str:
    return f"tenant-{index:03d}"


def _text(rng: random.Random, sentences: int) -> str:
    parts = [
        " ".join(rng.choices(WORDS, k=rng.randint(4, 12))).capitalize() + "."
        for _ in range(sentences)
    ]
    parts.insert(rng.randrange(len(parts) + 1), rng.choice(ODD))
    return "\n".join(parts)


def _stamp(rng: random.Random, after: datetime | None = None) -> datetime:
    start = after or EPOCH
    return start + timedelta(
        seconds=rng.randint(0, 90 * 86400), microseconds=rng.randint(0, 999_999)
    )


def gen_user(rng: random.Random, i: int) -> Row:
    """The user with id 10_000 + i."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    created = _stamp(rng)
    return {
        "id": 10_000 + i,
        "account_id": f"5b10{rng.getrandbits(64):016x}",
        "display_name": f"{first} {last}",
        "email_address": f"{first}.{last}{i}@example.com".lower().replace("'", ""),
        "active": rng.random() > 0.1,
        "time_zone": rng.choice(["UTC", "Europe/Oslo", "Asia/Tokyo"]),
        "locale": rng.choice(["en_US", "fr_FR", "ja_JP"]),
        "created": created,
        "updated": _stamp(rng, created),
    }


def gen_users(rng: random.Random, count: int) -> list[Row]:
    return [gen_user(rng, i) for i in range(count)]


def gen_project(rng: random.Random, i: int, user_ids: Sequence[int]) -> Row:
    """The project with id 20_000 + i, led by one of ``user_ids``."""
    created = _stamp(rng)
    key = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=3)) + str(i)
    return {
        "id": 20_000 + i,
        "key": key,
        "name": f'Project {key}, "{rng.choice(WORDS)}"',
        "description": _text(rng, 2),
        "lead_id": rng.choice(user_ids),
        "project_type": rng.choice(["software", "business", "service_desk"]),
        "category": rng.choice([None, "Platform", "Apps"]),
        "url": f"https://example.com/{key.lower()}",
        "created": created,
        "updated": _stamp(rng, created),
    }


def gen_projects(rng: random.Random, count: int, users: list[Row]) -> list[Row]:
    user_ids = [u["id"] for u in users]
    return [gen_project(rng, i, user_ids) for i in range(count)]


def gen_issue(rng: random.Random, n: int, project: Row, user_ids: Sequence[int]) -> Row:
    """The issue with id 30_000 + n; ``project`` needs only id, key and created."""
    created = _stamp(rng, project["created"])
    status, category = rng.choice(STATUSES)
    done = category == "Done"
    return {
        "id": 30_000 + n,
        "key": f"{project['key']}-{n + 1}",
        "project_id": project["id"],
        "project_key": project["key"],
        "issue_type": rng.choice(["Bug", "Story", "Task", "Epic"]),
        "summary": " ".join(rng.choices(WORDS, k=6)).capitalize(),
        "description": _text(rng, 4),
        "environment": rng.choice([None, "prod", "staging"]),
        "creator_id": rng.choice(user_ids),
        "reporter_id": rng.choice(user_ids),
        "assignee_id": rng.choice([None, rng.choice(user_ids)]),
        "parent_id": None,
        "status": status,
        "status_category": category,
        "priority": rng.choice(["Highest", "High", "Medium", "Low"]),
        "resolution": "Done" if done else None,
        "labels": " ".join(rng.sample(WORDS, 2)),
        "story_points": rng.choice([None, 1.0, 2.0, 3.0, 5.0, 8.0]),
        "original_estimate_seconds": rng.choice([None, 3600, 28800]),
        "time_spent_seconds": rng.choice([None, 1800, 7200]),
        "created": created,
        "updated": _stamp(rng, created),
        "due_date": rng.choice([None, date(2025, 1, 1) + timedelta(days=rng.randint(0, 365))]),
        "resolution_date": _stamp(rng, created) if done else None,
    }


def gen_comment(rng: random.Random, n: int, issue: Row, user_ids: Sequence[int]) -> Row:
    """The comment with id 40_000 + n on ``issue`` (which needs only id and created)."""
    created = _stamp(rng, issue["created"])
    return {
        "id": 40_000 + n,
        "issue_id": issue["id"],
        "author_id": rng.choice(user_ids),
        "update_author_id": None,
        "body": _text(rng, 2),
        "created": created,
        "updated": _stamp(rng, created),
    }


def gen_worklog(rng: random.Random, n: int, issue: Row, user_ids: Sequence[int]) -> Row:
    """The worklog with id 50_000 + n on ``issue`` (which needs only id and created)."""
    started = _stamp(rng, issue["created"])
    return {
        "id": 50_000 + n,
        "issue_id": issue["id"],
        "author_id": rng.choice(user_ids),
        "update_author_id": None,
        "comment": rng.choice([None, _text(rng, 1)]),
        "started": started,
        "time_spent_seconds": rng.choice([900, 1800, 3600, 14400]),
        "created": started,
        "updated": _stamp(rng, started),
    }


def gen_children(
    rng: random.Random, issue: Row, user_ids: Sequence[int], counters: dict[str, int]
) -> tuple[list[Row], list[Row]]:
    comments = [
        gen_comment(rng, counters["comment"] + k, issue, user_ids) for k in range(rng.randint(1, 4))
    ]
    counters["comment"] += len(comments)
    worklogs = [
        gen_worklog(rng, counters["worklog"] + k, issue, user_ids) for k in range(rng.randint(0, 3))
    ]
    counters["worklog"] += len(worklogs)
    return comments, worklogs


# What an update may change, per entity: churn (sluiceway.devstack.churn) draws one or two of these.
Change = Callable[[random.Random, Sequence[int], datetime], Row]


def _user(rng: random.Random, users: Sequence[int]) -> int | None:
    return rng.choice(users) if users else None


def _issue_status(rng: random.Random, _users: Sequence[int], now: datetime) -> Row:
    status, category = rng.choice(STATUSES)
    done = category == "Done"
    return {
        "status": status,
        "status_category": category,
        "resolution": "Done" if done else None,
        "resolution_date": now if done else None,
    }


def _user_rename(rng: random.Random, _users: Sequence[int], _now: datetime) -> Row:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{rng.randrange(10_000)}@example.com".lower().replace("'", "")
    return {"display_name": f"{first} {last}", "email_address": email}


CHANGES: dict[str, tuple[Change, ...]] = {
    "issue": (
        lambda rng, _u, _n: {"summary": " ".join(rng.choices(WORDS, k=6)).capitalize()},
        _issue_status,
        lambda rng, users, _n: {"assignee_id": rng.choice([None, _user(rng, users)])},
        lambda rng, _u, _n: {"priority": rng.choice(["Highest", "High", "Medium", "Low"])},
        lambda rng, _u, _n: {"story_points": rng.choice([None, 1.0, 2.0, 3.0, 5.0, 8.0])},
        lambda rng, _u, _n: {"description": _text(rng, 3)},
    ),
    "comment": (
        lambda rng, users, _n: {"body": _text(rng, 2), "update_author_id": _user(rng, users)},
    ),
    "worklog": (
        lambda rng, _u, _n: {"time_spent_seconds": rng.choice([900, 1800, 3600, 14400])},
        lambda rng, users, _n: {
            "comment": rng.choice([None, _text(rng, 1)]),
            "update_author_id": _user(rng, users),
        },
    ),
    "user": (
        _user_rename,
        lambda rng, _u, _n: {"active": rng.random() > 0.1},
        lambda rng, _u, _n: {"time_zone": rng.choice(["UTC", "Europe/Oslo", "Asia/Tokyo"])},
    ),
    "project": (
        lambda rng, _u, _n: {"name": f"Project {' '.join(rng.choices(WORDS, k=2))}"},
        lambda rng, _u, _n: {"description": _text(rng, 2)},
        lambda rng, users, _n: {"lead_id": _user(rng, users)},
        lambda rng, _u, _n: {"category": rng.choice([None, "Platform", "Apps"])},
    ),
}


def gen_changes(rng: random.Random, entity: str, user_ids: Sequence[int], now: datetime) -> Row:
    """New values for one or two realistic columns of an ``entity`` row, updated at ``now``."""
    changes = CHANGES[entity]
    values: Row = {}
    for change in rng.sample(changes, rng.randint(1, min(2, len(changes)))):
        values.update(change(rng, user_ids, now))
    values["updated"] = now
    return values


def gen_tenant(plan: SeedPlan, index: int) -> Iterator[tuple[str, Row]]:
    """Every row of one tenant, as (entity, row), parents before children."""
    rng = random.Random(f"{plan.seed}/{index}")
    issues = plan.issues_of(index)
    users = gen_users(rng, max(5, issues // 20))
    projects = gen_projects(rng, max(1, min(5, issues // 10)), users)
    yield from (("user", u) for u in users)
    yield from (("project", p) for p in projects)
    user_ids = [u["id"] for u in users]
    counters = {"comment": 0, "worklog": 0}
    for n in range(issues):
        issue = gen_issue(rng, n, rng.choice(projects), user_ids)
        yield "issue", issue
        comments, worklogs = gen_children(rng, issue, user_ids, counters)
        yield from (("comment", c) for c in comments)
        yield from (("worklog", w) for w in worklogs)


def copy_value(value: Any) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


class _CopyBuffers:
    """One COPY buffer per table, flushed when it grows, so memory stays bounded."""

    def __init__(self, cur: Any, codec: Codec, limit: int = 8 << 20) -> None:
        self.cur, self.limit = cur, limit
        self.cols = {e: [c.name for c in columns(codec, e)] for e in source_tables()}
        self.bufs: dict[str, io.StringIO] = {e: io.StringIO() for e in source_tables()}

    def add(self, entity: str, tenant: str, row: Row) -> None:
        fields = [tenant] + [copy_value(row[c]) for c in self.cols[entity]]
        buf = self.bufs[entity]
        buf.write("\t".join(fields) + "\n")
        if buf.tell() > self.limit:
            self.flush(entity)

    def flush(self, entity: str) -> None:
        buf = self.bufs[entity]
        if buf.tell():
            buf.seek(0)
            names = column_list(["tenant_id", *self.cols[entity]])
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table_name(entity), names)
            self.cur.copy_expert(copy, buf)
            self.bufs[entity] = io.StringIO()


def seed(
    pg: PostgresSettings,
    plan: SeedPlan,
    codec: Codec,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Create the schema, replace the plan's tenants' rows, and return rows per entity."""
    check_demo_catalog(codec, "source seed (without --catalog)")
    counts = dict.fromkeys(source_tables(), 0)
    with closing(connect(pg)) as conn, conn, conn.cursor() as cur:
        for statement in schema_sql(codec):
            cur.execute(statement)
        tenants = plan.tenant_ids()
        for entity in source_tables():
            delete = sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s)").format(table_name(entity))
            cur.execute(delete, (tenants,))
        buffers = _CopyBuffers(cur, codec)
        for index, tenant in enumerate(tenants, start=1):
            for entity, row in gen_tenant(plan, index):
                buffers.add(entity, tenant, row)
                counts[entity] += 1
            if progress:
                progress(1)
        for entity in source_tables():
            buffers.flush(entity)
    return counts
