"""Child processes for the benchmark scripts: start them in their own process group, stop them
(and anything they forked) for sure, and read their logs. Shared by smtp_accept.py and
imap_vs_dovecot.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

# Children still alive, killed by kill_all() whatever happens.
CHILDREN: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], logfile: Path, **kw) -> subprocess.Popen:
    """Start a child in its own process group, output to logfile."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
    CHILDREN.append(proc)
    return proc


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
    """Signal the child's process group, wait up to `grace` s, then SIGKILL the group and any
    descendant that left it (Dovecot's processes do). Returns the child's exit code."""
    tree = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"  pid {proc.pid} ignored signal {sig} for {grace:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc in CHILDREN:
        CHILDREN.remove(proc)
    return proc.returncode


def kill_all(sig: int = signal.SIGKILL, grace: float = 5.0) -> None:
    for proc in list(CHILDREN):
        stop(proc, sig, grace)


def tail(path: Path, lines: int = 15, sep: str = "\n") -> str:
    """The last lines of a log file, joined by sep ("" when it cannot be read)."""
    try:
        return sep.join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
