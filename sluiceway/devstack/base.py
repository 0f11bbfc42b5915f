"""What every server of the local stack shares: its status record and process handling.

Servers run detached (their own session, output to a log file, pid in a file) so they
outlive the command that started them. Every wait is a bounded poll with a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sluiceway.common.errors import StackDownError

POLL_S = 0.25
POLL_MAX_S = 1.0


@dataclass(frozen=True)
class ServerStatus:
    """Where one server of the local stack runs and whether it answers."""

    name: str
    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "pid": self.pid,
            "address": self.address,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
        }


class Server(Protocol):
    """One server of the local stack."""

    name: str

    def up(self) -> ServerStatus: ...

    def status(self) -> ServerStatus: ...

    def down(self) -> ServerStatus: ...


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    """The pid on the first line of path, or None when the file is missing or garbled."""
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when pid runs, is not a zombie and (if /proc tells) its command line has marker."""
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return True
    # an empty command line tells nothing (a process between fork and exec, or re-executing
    # itself as java's launcher may): only a zombie is known to be gone
    return state != "Z" and (marker is None or not cmdline.strip() or marker in cmdline)


def live_pid(pid_file: Path, marker: str | None = None) -> int | None:
    """The pid recorded in pid_file if that process still runs, else None."""
    pid = read_pid(pid_file)
    return pid if pid_alive(pid, marker) else None


def spawn(
    cmd: Sequence[str],
    log_file: Path,
    pid_file: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start cmd detached from this process, output appended to log_file; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {cmd[0]} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def terminate(pid: int | None, marker: str | None, timeout_s: float) -> None:
    """SIGTERM pid's process group, wait up to timeout_s, then SIGKILL it."""
    if not pid_alive(pid, marker):
        return
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid, marker):
        time.sleep(POLL_S)
    if pid_alive(pid, marker):
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and pid_alive(pid, marker):
            time.sleep(POLL_S)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _last_error(log_file: Path) -> str:
    """The log's last error line, shortened, for the one-line message (a test's temporary
    log may be gone by the time someone reads a CI report)."""
    try:
        with log_file.open("rb") as log:
            log.seek(max(0, log_file.stat().st_size - 65536))
            tail = log.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    found = [ln for ln in tail if any(w in ln for w in ("ERROR", "FATAL", "Exception"))]
    return f" ({found[-1].strip()[:300]})" if found else ""


def wait_until(
    check: Callable[[], bool],
    *,
    name: str,
    address: str,
    log_file: Path,
    timeout_s: float,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll check until it returns True; raise StackDownError at the deadline or on death."""
    deadline = time.monotonic() + timeout_s
    pause = POLL_S
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackDownError(
                f"{name} exited while starting{_last_error(log_file)}; see the last lines of "
                f"{log_file}"
            )
        if time.monotonic() >= deadline:
            raise StackDownError(
                f"{name} did not answer on {address} within {timeout_s:g}s; "
                f"see the last lines of {log_file}"
            )
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_S)


def file_digest(path: Path) -> str:
    """sha256 of a file, to notice when a pom changed and its jars must be resolved again."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_logged(cmd: Sequence[str], log_file: Path, what: str, timeout_s: float) -> None:
    """Run a short command to completion, output to log_file; one-line error on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        try:
            result = subprocess.run(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackDownError(f"{what} took longer than {timeout_s:g}s; see {log_file}") from exc
    if result.returncode != 0:
        raise StackDownError(
            f"{what} failed with exit code {result.returncode}; see the last lines of {log_file}"
        )
