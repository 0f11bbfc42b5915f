"""Finding the programs the local stack runs: java, mvn and PostgreSQL's server binaries.

A missing program raises ToolMissingError, whose message says how to install it.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

from sluiceway.common.errors import ToolMissingError

JAVA_INSTALL = "apt-get install -y openjdk-17-jre-headless"
MVN_INSTALL = "apt-get install -y maven"
PG_INSTALL = "apt-get install -y postgresql"
JAVA_MIN_VERSION = 17
# Debian and Ubuntu keep every installed PostgreSQL major under its own folder.
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# Server programs the stack calls; a client-only install (libpq-dev's pg_config) lacks them.
PG_PROGRAMS: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")


def _which(tool: str, install: str) -> Path:
    found = shutil.which(tool)
    if found is None:
        raise ToolMissingError(tool, install)
    return Path(found)


def java_major(version_output: str) -> int | None:
    """The major version in `java -version` output ('17.0.15', '1.8.0_402' -> 8), or None."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def find_java() -> Path:
    """The java launcher on PATH; Kafka 4 and S3Proxy need Java 17 or newer."""
    java = _which("java", JAVA_INSTALL)
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissingError("a working java", JAVA_INSTALL) from exc
    major = java_major(out.stderr + out.stdout)
    if major is not None and major < JAVA_MIN_VERSION:
        raise ToolMissingError(f"java {JAVA_MIN_VERSION}+ (found {major})", JAVA_INSTALL)
    return java


def find_mvn() -> Path:
    """Maven, which resolves the Kafka and S3Proxy jars from Maven Central."""
    return _which("mvn", MVN_INSTALL)


def _has_server_programs(bindir: Path) -> bool:
    return all((bindir / program).is_file() for program in PG_PROGRAMS)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _major_of(bindir: str) -> float:
    """Sort key: the numeric version folder above bin/ (15, 9.6...), else 0."""
    try:
        return float(Path(bindir).parent.name)
    except ValueError:
        return 0.0


def find_pg_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres (newest major first)."""
    candidates: list[Path] = []
    from_config = _pg_config_bindir()
    if from_config is not None:
        candidates.append(from_config)
    candidates += [Path(p) for p in sorted(glob.glob(PG_BIN_GLOB), key=_major_of, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if _has_server_programs(bindir):
            return bindir
    raise ToolMissingError("PostgreSQL (initdb, pg_ctl)", PG_INSTALL)


def check_wal2json(bindir: Path) -> None:
    """Capture decodes the WAL with the wal2json plugin, packaged per PostgreSQL major."""
    libdir = bindir.parent / "lib"
    if not (libdir / "wal2json.so").is_file():
        major = bindir.parent.name
        raise ToolMissingError(
            f"wal2json for PostgreSQL {major} ({libdir}/wal2json.so)",
            f"apt-get install -y postgresql-{major}-wal2json",
        )
