"""Where the control API may write: under its allowed roots, and nowhere else.

A token holder must not be able to aim a run or the export path at any folder of the server
or any bucket the server's keys reach. A local destination is resolved first (symlinks,
``..``), so a link inside a root that points outside is outside; the check runs before the
destination is opened, so nothing is created outside the roots. The refusal is the same
for every refused path, whether it exists or not. The CLI, run by the local user with
their own rights, does not apply this check.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pydantic_core import PydanticCustomError

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import S3Settings, StackSettings
from sluiceway.common.spec import RunSpec
from sluiceway.common.spec_fields import check_destination

SETTING = "SLUICEWAY_API_ROOTS"


class DestinationNotAllowedError(ConfigError):
    """A destination outside the API's allowed roots (answered 403)."""


def default_roots(s3: S3Settings) -> tuple[str, ...]:
    """The lake and Data pipeline folders of the state home, and the configured bucket."""
    home = StackSettings().home
    return (str(home / "lake"), str(home / "data-pipeline"), f"s3://{s3.bucket}")


def parse_roots(text: str, s3: S3Settings) -> tuple[str, ...]:
    """The roots of a comma-separated setting, each normalised; empty: ``default_roots``."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    roots = []
    for root in given:
        try:
            normal = check_destination(root)
        except PydanticCustomError as exc:
            raise ConfigError(f"{SETTING}: root {root!r} {exc.message()}") from None
        if not normal.startswith("s3://") and not Path(normal).is_absolute():
            raise ConfigError(f"{SETTING}: root {root!r} is relative; give an absolute directory")
        roots.append(normal)
    return tuple(roots) or default_roots(s3)


def resolved(destination: str) -> str:
    """The destination as it will be written: a local path with its symlinks followed."""
    if destination.startswith("s3://"):
        return destination
    # no expanduser: a client's ~ would be the server's home
    return str(Path(destination).resolve())


def _inside(path: str, root: str) -> bool:
    if path.startswith("s3://") != root.startswith("s3://"):
        return False
    if path.startswith("s3://"):
        # bucket and prefix compared by path segment: s3://lake is not under s3://la
        return PurePosixPath(path[5:]).is_relative_to(PurePosixPath(root[5:]))
    return Path(path).is_relative_to(resolved(root))


def allowed_destination(destination: str, roots: tuple[str, ...]) -> str:
    """The resolved destination when it lies under one of ``roots``; else the refusal."""
    try:
        normal = check_destination(destination)
        # relative: to the server's working directory, an accident of how it was started
        local = not normal.startswith("s3://")
        path = None if local and not Path(normal).is_absolute() else resolved(normal)
    except (PydanticCustomError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        path = None
    if path is None or not any(_inside(path, root) for root in roots):
        raise DestinationNotAllowedError(
            f"destination {destination!r} is not allowed: the control API writes only under "
            f"{', '.join(roots)} ({SETTING} of the server)"
        )
    return path


def allowed_spec(spec: RunSpec, roots: tuple[str, ...]) -> RunSpec:
    """``spec`` with its destination resolved, or the refusal."""
    return spec.model_copy(update={"destination": allowed_destination(spec.destination, roots)})
