"""The lake's filesystem: opening a destination, atomic writes, leftovers. I/O.

Locally a file is written under a hidden temporary name, fsynced and renamed, so a reader
(or a restarted sink) sees either the whole file or nothing. On S3 an object appears only
when its multipart upload completes on close, so objects are written to their final key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from sluiceway.common.settings import S3Settings
from sluiceway.lake import layout
from sluiceway.lake.errors import DestinationError, LakeWriteError
from sluiceway.lake.layout import Destination

log = logging.getLogger("sluiceway.sink")


@dataclass(frozen=True)
class Lake:
    """A destination root and the filesystem it lives on."""

    fs: pafs.FileSystem
    dest: Destination

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        return self.dest.join(relative)

    def listed(self, relative: object, owner: str) -> str:
        """The full path of a file a manifest lists; one outside the lake is refused."""
        return self.path(layout.listed_path(relative, owner))


def s3_filesystem(s3: S3Settings) -> pafs.FileSystem:
    """The object store as every AWS tool reaches it: static keys if configured, else the
    default credential chain; an optional role to assume; the configured addressing.

    With server-side encryption configured, objects are written through s3fs, which sends
    the encryption headers with every put, multipart upload and copy (pyarrow's own S3
    client cannot ask for SSE-S3 or SSE-KMS)."""
    if s3.sse is not None:
        return pafs.PyFileSystem(pafs.FSSpecHandler(_s3fs(s3)))
    url = urlparse(s3.endpoint_url)
    keys, role = s3.static_keys(), s3.role_arn
    token = s3.session_token.get_secret_value() if s3.session_token else None
    if role and keys:  # pyarrow assumes (and renews) a role only from the default chain
        (keys, token), role = assume_role(s3), None
    return pafs.S3FileSystem(
        access_key=keys[0] if keys else None,
        secret_key=keys[1] if keys else None,
        session_token=token,
        role_arn=role,
        session_name=s3.role_session_name if role else None,
        external_id=s3.external_id,
        region=s3.region,
        endpoint_override=url.netloc or s3.endpoint_url,
        scheme=url.scheme or "http",
        force_virtual_addressing=s3.addressing == "virtual",
    )


def _s3fs(s3: S3Settings) -> Any:
    import s3fs

    keys = s3.static_keys()
    token = s3.session_token.get_secret_value() if s3.session_token else None
    if s3.role_arn:
        keys, token = assume_role(s3)
    encryption: dict[str, str] = {"ServerSideEncryption": str(s3.sse)}
    if s3.kms_key_id:
        encryption["SSEKMSKeyId"] = s3.kms_key_id
    return s3fs.S3FileSystem(
        key=keys[0] if keys else None,
        secret=keys[1] if keys else None,
        token=token,
        endpoint_url=s3.endpoint_url,
        client_kwargs={"region_name": s3.region},
        config_kwargs={"s3": {"addressing_style": s3.addressing}},
        s3_additional_kwargs=encryption,
        skip_instance_cache=True,
    )


def assume_role(s3: S3Settings) -> tuple[tuple[str, str], str]:
    """Temporary keys of the configured role, from STS with the chain's or the static keys."""
    import boto3

    keys = s3.static_keys()
    session = boto3.session.Session(
        aws_access_key_id=keys[0] if keys else None,
        aws_secret_access_key=keys[1] if keys else None,
        aws_session_token=s3.session_token.get_secret_value() if s3.session_token else None,
        region_name=s3.region,
    )
    asked: dict[str, Any] = {"RoleArn": s3.role_arn, "RoleSessionName": s3.role_session_name}
    if s3.external_id:
        asked["ExternalId"] = s3.external_id
    creds = session.client("sts").assume_role(**asked)["Credentials"]
    return (creds["AccessKeyId"], creds["SecretAccessKey"]), creds["SessionToken"]


def open_lake(destination: str, s3: S3Settings, fs: pafs.FileSystem | None = None) -> Lake:
    """Parse and check a destination; raise DestinationError naming it if not writable."""
    dest = layout.parse_destination(destination)
    if fs is None:
        fs = s3_filesystem(s3) if dest.kind == "s3" else pafs.LocalFileSystem()
    lake = Lake(fs=fs, dest=dest)
    probe = lake.path(layout.temp_name("write-probe"))
    try:
        if lake.local:
            fs.create_dir(dest.root, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"probe")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as exc:
        raise DestinationError(
            f"destination {dest.display} ({dest.root}) is not writable: {_one_line(exc)}"
        ) from exc
    return lake


def open_readonly(destination: str, s3: S3Settings) -> Lake:
    """The destination for reading only: no write probe and no directory created, so asking
    about a run never recreates a destination that was deleted."""
    dest = layout.parse_destination(destination)
    return Lake(fs=s3_filesystem(s3) if dest.kind == "s3" else pafs.LocalFileSystem(), dest=dest)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(lake: Lake, relative_dir: str) -> None:
    if lake.local:  # object stores have no directories
        lake.fs.create_dir(lake.path(relative_dir), recursive=True)


def write_target(lake: Lake, relative: str) -> str:
    """Where to write ``relative`` before ``commit_target`` makes it visible."""
    if not lake.local:
        return lake.path(relative)
    name = layout.temp_name(layout.basename(relative), secrets.token_hex(4))
    return lake.path(layout.sibling(relative, name))


def commit_target(lake: Lake, written: str, relative: str) -> None:
    """Make a closed file durable under its final name."""
    if not lake.local:
        return
    final = lake.path(relative)
    try:
        fsync_path(written)
        lake.fs.move(written, final)
        fsync_path(lake.path(layout.parent(relative)), directory=True)
    except OSError as exc:
        raise LakeWriteError(f"cannot publish {final}: {_one_line(exc)}") from exc


def discard(lake: Lake, written: str) -> None:
    """Drop a file that will not be published (local temporaries only)."""
    if lake.local:
        with contextlib.suppress(OSError, FileNotFoundError):
            lake.fs.delete_file(written)


def write_bytes_atomic(lake: Lake, relative: str, data: bytes) -> None:
    ensure_dir(lake, layout.parent(relative))
    target = write_target(lake, relative)
    try:
        with lake.fs.open_output_stream(target) as out:
            out.write(data)
    except OSError as exc:
        discard(lake, target)
        raise LakeWriteError(f"cannot write {lake.path(relative)}: {_one_line(exc)}") from exc
    commit_target(lake, target, relative)


def read_bytes(lake: Lake, relative: str) -> bytes | None:
    """The object's content, or None when it does not exist."""
    path = lake.path(relative)
    if lake.fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with lake.fs.open_input_stream(path) as src:
        data: bytes = src.read()
    return data


def list_names(lake: Lake, relative_dir: str) -> list[pafs.FileInfo]:
    """Files directly under a directory (none if it does not exist)."""
    selector = pafs.FileSelector(lake.path(relative_dir), allow_not_found=True)
    return [i for i in lake.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def remove_temporaries(lake: Lake, relative_dirs: list[str], prefix: str = "") -> int:
    """Delete leftovers of a crashed writer in these directories; returns how many."""
    removed = 0
    for directory in relative_dirs:
        for info in list_names(lake, directory):
            if layout.is_temp_name(info.base_name) and info.base_name.startswith(prefix):
                lake.fs.delete_file(info.path)
                log.info("removed leftover temporary %s", info.path)
                removed += 1
    return removed
