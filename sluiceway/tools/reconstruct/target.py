"""Where ``--out`` sends the result. Pure: parsing only, nothing is opened here.

Three forms, told apart by scheme:

- a Parquet file: ``out.parquet``, ``/abs/out.parquet``, ``file:///abs/out.parquet`` or
  ``s3://bucket/key.parquet`` (the name must end in ``.parquet``);
- a DuckDB table: ``duckdb:///abs/file.db#table`` or ``duckdb://relative/file.db#table``;
- a PostgreSQL table: ``postgresql://user[:password]@host[:port]/db#schema.table``
  (``postgres://`` too; without a password libpq's PGPASSWORD or ~/.pgpass is used).

The ``#fragment`` names the table; left out, it is the reconstructed table's name
(in schema ``public`` for PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from sluiceway.tools.reconstruct.errors import TargetError

FORMS = (
    "a .parquet path (local, file:// or s3://), duckdb:///path/file.db#table, "
    "or postgresql://user@host:port/db#schema.table"
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Target:
    kind: Literal["parquet", "duckdb", "postgresql"]
    location: str  # parquet: abs path or s3://...; duckdb: abs file path; postgresql: URL
    schema: str | None  # postgresql only
    table: str | None  # duckdb and postgresql
    display: str  # safe to print: a password is replaced by ***

    @property
    def on_s3(self) -> bool:
        return self.location.startswith("s3://")


def parse_target(out: str, table: str, cwd: Path | None = None) -> Target:
    text = out.strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme == "duckdb":
        return _duckdb(text, table, cwd)
    if scheme in ("postgresql", "postgres"):
        return _postgresql(text, table)
    if scheme in ("", "file", "s3"):
        return _parquet(text, cwd)
    raise TargetError(f"--out {out!r} has an unsupported scheme; expected {FORMS}")


def _parquet(text: str, cwd: Path | None) -> Target:
    if not text.endswith(".parquet") or text.endswith("/.parquet"):
        raise TargetError(f"--out {text!r} is not a .parquet file name; expected {FORMS}")
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://") :].partition("/")
        if not bucket or not key:
            raise TargetError(f"--out {text!r} needs a bucket and a key: s3://bucket/key.parquet")
        return Target("parquet", text, None, None, text)
    path = _absolute(text.removeprefix("file://"), cwd)
    return Target("parquet", str(path), None, None, str(path))


def _absolute(text: str, cwd: Path | None) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (cwd or Path.cwd()) / path


def _duckdb(text: str, table: str, cwd: Path | None) -> Target:
    rest, _, fragment = text[len("duckdb://") :].partition("#")
    if not rest:
        raise TargetError(
            f"--out {text!r} names no database file; expected duckdb:///path.db#table"
        )
    name = _identifier(fragment or table, text)
    path = _absolute(rest, cwd)
    return Target("duckdb", str(path), None, name, f"duckdb://{path}#{name}")


def _postgresql(text: str, table: str) -> Target:
    url, _, fragment = text.partition("#")
    parts = urlsplit(url)
    if not parts.hostname or not parts.path.strip("/"):
        raise TargetError(
            f"--out {_redact(url)!r} needs a host and a database: "
            "postgresql://user@host:port/db#schema.table"
        )
    schema, _, name = (fragment or table).rpartition(".")
    schema = _identifier(schema or "public", text)
    name = _identifier(name, text)
    shown = f"{_redact(url)}#{schema}.{name}"
    return Target("postgresql", url, schema, name, shown)


def _identifier(name: str, text: str) -> str:
    if not _IDENT.match(name):
        raise TargetError(
            f"--out {_redact(text)!r} names table {name!r}; expected letters, digits and _ "
            "(not starting with a digit)"
        )
    return name


def _redact(url: str) -> str:
    """The URL without its password, for messages and summaries."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
