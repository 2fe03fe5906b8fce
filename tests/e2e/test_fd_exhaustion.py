"""Out of file descriptors: the server logs a few lines, not a traceback per failed accept(),
and answers again once the flood is gone; at start it raises its open-file limit to what the
connection limits need."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import sys
import time
from pathlib import Path

import pytest

FLOOD = 400  # connections, well past the 256 descriptors the server gets
HOLD = 2.5  # seconds the flood is held: asyncio retries accept() every second

# Runs the command given after it with RLIMIT_NOFILE set to (soft, hard) from argv[1:3].
WITH_NOFILE = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def limited(g, soft: int, hard: int):
    """g, whose `gomail run` starts with the given open-file limits."""
    plain = g.base_command

    def base_command() -> list[str]:
        return [sys.executable, "-c", WITH_NOFILE, str(soft), str(hard), *plain()]

    g.base_command = base_command
    return g


def this_run(g) -> str:
    return g.log.rsplit("=== gomail run at", 1)[1]


def answers_normally(g) -> bool:
    try:
        with g.smtp("mx") as s:
            if s.ehlo("client.test")[0] != 250:
                return False
        imap = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=5)
        try:
            return imap.login("alice@example.org", g.PASSWORD)[0] == "OK"
        finally:
            with contextlib.suppress(Exception):
                imap.logout()
    except (OSError, imaplib.IMAP4.error):
        return False


def test_descriptor_exhaustion_is_logged_once_per_interval(gomail_factory):
    g = limited(gomail_factory("fds"), 256, 256)
    # Per-address connection limits would refuse the flood before the descriptors run out.
    g.start({"limits": {"connections_per_ip": 5000}})
    assert "below the" in this_run(g)  # the hard limit is lower than the limits need
    socks = []
    try:
        for i in range(FLOOD):
            port = g.ports["mx" if i % 2 else "imaps"]
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(HOLD)
        assert g.running
    finally:
        for s in socks:
            s.close()
    assert g.wait_for(lambda: answers_normally(g), timeout=15), this_run(g)[-3000:]
    g.stop()
    log = this_run(g)
    lines = log.splitlines()
    assert "cannot accept connections: Too many open files" in log
    assert "Traceback" not in log, log[-3000:]
    assert len(lines) < 40, f"{len(lines)} lines:\n" + "\n".join(lines[:60])
    # The ones not logged were counted, and the count was reported.
    assert "more times since the last report" in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/limits")
def test_soft_limit_is_raised_to_what_the_limits_need(gomail_factory):
    g = limited(gomail_factory("fds"), 256, 4096)
    g.start({"limits": {"connections": 100}, "delivery": {"concurrency": 20}})
    limits = Path(f"/proc/{g.proc.pid}/limits").read_text()
    row = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    # 5 listeners x 100 connections x 2, 20 deliveries x 2, and the margin of 512.
    assert row.split()[3:5] == ["1552", "4096"], row
    assert "open-file limit" not in this_run(g)
    g.stop()
