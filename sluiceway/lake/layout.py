"""Where things live in the lake (docs/architecture.md). Pure: paths are relative to R.

Destinations are parsed here too, without touching the filesystem; ``storage`` checks
that a parsed destination can actually be written.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from sluiceway.common.runs import FORMATS
from sluiceway.lake.errors import DestinationError, UnsafePathError

RUNS_DIR = "_runs"
LATEST_MANIFEST = "manifest.json"
_TMP_MARK = ".tmp-"
# Temporaries are hidden (leading dot) so lake readers globbing part-*.parquet skip them,
# and end in .tmp-<hex> so a restarted sink recognises its own leftovers.
TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{8,}$")
# a format's name is its files' extension
PART_NAME = re.compile(rf"^part-(\d{{5}})-(\d{{20}})\.({'|'.join(FORMATS)})$")


@dataclass(frozen=True)
class Destination:
    """A parsed destination root: a local absolute directory or an S3 bucket + prefix."""

    kind: Literal["local", "s3"]
    root: str  # filesystem path of R: "/abs/dir" or "bucket/prefix" (no trailing slash)
    display: str  # what users wrote, for messages

    def join(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root


def parse_destination(destination: str, cwd: Path | None = None) -> Destination:
    """Accept ``/abs/dir``, ``file:///abs/dir``, ``~/dir``, a relative dir or ``s3://b/p``."""
    text = destination.strip()
    if not text:
        raise DestinationError("destination is empty; expected a directory or s3://bucket/prefix")
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise DestinationError(f"destination {text!r} has no bucket; expected s3://bucket/p")
        root = "/".join(p for p in [bucket, *prefix.split("/")] if p)
        return Destination(kind="s3", root=root, display=text)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise DestinationError(
            f"destination {destination!r} has an unsupported scheme; "
            "expected a directory or s3://bucket/prefix"
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    resolved = Path(_normalise(path))
    if not resolved.is_absolute() or str(resolved) == "/":
        raise DestinationError(f"destination {destination!r} must be an absolute directory")
    return Destination(kind="local", root=str(resolved), display=destination)


def _normalise(path: Path) -> str:
    # resolve() follows symlinks but works on paths that do not exist yet
    return str(path.resolve(strict=False))


def _ymd(day: date | datetime) -> str:
    return f"{day:%Y/%m/%d}"


def full_table_dir(export_date: date | datetime, table: str, etl_id: str) -> str:
    return f"{_ymd(export_date)}/daily-export/full-export/{table}/{etl_id}"


def delta_table_dir(
    full_date: date | datetime, delta_date: date | datetime, table: str, etl_id: str
) -> str:
    """The first date is the full export the delta chain builds on, the second the delta's."""
    return f"{_ymd(full_date)}/daily-export/delta-export/{_ymd(delta_date)}/{table}/{etl_id}"


def part_name(partition: int, start_offset: int, extension: str = "parquet") -> str:
    if partition < 0 or start_offset < 0:
        raise ValueError(f"partition {partition} and offset {start_offset} must be >= 0")
    return f"part-{partition:05d}-{start_offset:020d}.{extension}"


def parse_part_name(name: str) -> tuple[int, int] | None:
    """(partition, start_offset) of a final part file name, None for anything else."""
    found = PART_NAME.match(name)
    return (int(found.group(1)), int(found.group(2))) if found else None


def temp_name(final_name: str, token: str | None = None) -> str:
    return f".{final_name}{_TMP_MARK}{token or secrets.token_hex(4)}"


def temp_prefix(final_name: str) -> str:
    """What every temporary of ``final_name`` starts with, whatever its random token."""
    return f".{final_name}{_TMP_MARK}"


def is_temp_name(name: str) -> bool:
    return bool(TEMP_NAME.match(name))


def run_manifest_path(etl_id: str) -> str:
    return f"{RUNS_DIR}/{etl_id}.json"


def joined_note_path(etl_id: str) -> str:
    """Where a Data pipeline run notes its joined files between joining them and deleting
    their parts (the manifest, written last, lists them)."""
    return f"{RUNS_DIR}/{etl_id}.joined.json"


def part_record_path(etl_id: str, table: str, name: str) -> str:
    """Where the sink notes which offsets a published CSV file covers: CSV has no footer
    to carry them, and the table directories stay pure data for loaders that take every
    object under a prefix."""
    return f"{RUNS_DIR}/{etl_id}.parts/{table}/{name}.json"


def listed_path(relative: object, owner: str) -> str:
    """A file path a manifest lists (``owner`` names the manifest), proven to stay in the lake.

    Manifests are data: a lake copied from elsewhere may list ``/etc/x`` or ``../x``, and
    joining those to the root would read (and copy into a result) a file outside the lake."""
    text = relative if isinstance(relative, str) else ""
    segments = text.split("/")
    if (
        not text
        or text.startswith("/")
        or "\\" in text
        or "\0" in text
        or any(s in ("", ".", "..") for s in segments)
    ):
        raise UnsafePathError(
            f"{owner} lists file {relative!r}, which is not inside the lake; expected a path "
            "relative to the destination, without '..', '.', empty or absolute segments"
        )
    return text


def parent(relative: str) -> str:
    return relative.rpartition("/")[0]


def basename(relative: str) -> str:
    return relative.rpartition("/")[2]


def sibling(relative: str, name: str) -> str:
    """``name`` in the same directory as ``relative``."""
    directory = parent(relative)
    return f"{directory}/{name}" if directory else name
