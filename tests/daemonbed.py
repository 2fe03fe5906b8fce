"""What the loopback DNS daemons of the tests (tests/knotbed.py, tests/unboundbed.py) share.

A ``Daemon`` gets a private directory and a port free for TCP and UDP on 127.0.0.1. A subclass
names the program (``name``, also the base of its log file's name), writes its configuration
(``_write()``), gives its command line (``command()``) and says when it is ready
(``_ready()``). ``start()`` writes the configuration, starts the command in the foreground
with its output in ``<dir>/<log_name>.log``, and waits up to 15 s until it is ready; ``stop()``
ends it by its PID. ``with X(...).start() as x:`` stops it on leaving the block.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import pytest

START_TIMEOUT = 15.0  # seconds


def program(name: str) -> str:
    """The program's path: on PATH, else in /usr/sbin (often not on a user's PATH)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def requires(path: str, package: str) -> pytest.MarkDecorator:
    """A mark skipping tests while the program at path is not installed."""
    name = Path(path).name
    return pytest.mark.skipif(
        not Path(path).exists(), reason=f"{name} not installed (apt-get install {package})"
    )


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Daemon:
    name = "daemon"  # the program, as error messages call it
    log_name = "daemon"  # its output goes to <dir>/<log_name>.log

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.port = free_udp_tcp_port()
        self.proc: subprocess.Popen | None = None

    def _write(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        self._write()
        logfile = self.dir / f"{self.log_name}.log"
        self.log = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {logfile.read_text()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT:g} s")

    def answers(self, zone: str) -> bool:
        """Whether the daemon answers a SOA query for zone with a record."""
        import dns.message
        import dns.query
        import dns.rcode

        q = dns.message.make_query(f"{zone}.", "SOA")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.3)
        except Exception:
            return False
        return r.rcode() == dns.rcode.NOERROR and bool(r.answer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        with contextlib.suppress(Exception):
            self.log.close()
