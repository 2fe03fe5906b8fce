"""Large IMAP APPEND literals go to the spool as they arrive and are held in memory only a
few at a time (``limits.large_messages_at_once``), so that many logged-in sessions appending
large messages at once cost disk, not memory (issue 10: memory under a stated bound)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from .test_imap_interop import ALICE
from .test_imap_limits import From, PeakRSS

PASSWORD = "secret-pw"
MB = 1024 * 1024
CLIENTS = 24
SIZE = 8 * MB


@pytest.fixture(scope="module")
def g(tmp_path_factory, gomail_template):
    from conftest import module_server

    with module_server(
        tmp_path_factory, gomail_template, "appendspool", {"limits": {"connections_per_ip": 30}}
    ) as server:
        yield server


def message(n: int, size: int) -> bytes:
    head = f"From: a@example.net\r\nSubject: big {n}\r\n\r\n".encode()
    line = b"x" * 998 + b"\r\n"
    return head + line * ((size - len(head)) // len(line)) + b"\r\n"


def spool_files(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "/spool/" in target:
            found.append(target)
    return found


def logged_in(port: int, source: str) -> From:
    client = From(port, source)
    assert client.cmd(f"LOGIN {ALICE} {PASSWORD}")[1].startswith(b"OK")
    return client


def test_concurrent_large_appends_are_spooled(g):
    port = g.ports["imap"]
    clients = [logged_in(port, f"127.0.3.{i + 1}") for i in range(CLIENTS)]
    before = int(clients[0].cmd("STATUS INBOX (MESSAGES)")[0][0].split()[-1].rstrip(b")"))
    bodies = [message(i, SIZE) for i in range(CLIENTS)]
    answers: list[bytes] = [b""] * CLIENTS

    def append(i: int) -> None:
        answers[i] = clients[i].cmd("APPEND INBOX ", bodies[i])[1]

    with PeakRSS(g.proc.pid) as peak:
        threads = [threading.Thread(target=append, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(a.startswith(b"OK") for a in answers), answers
    # Storing one 8 MiB message (its search text indexed) takes ~150 MiB here, whatever the
    # number of sessions; 24 sessions each holding its message took ~340 MiB.
    assert peak.growth < 220 * MB, f"server grew {peak.growth / MB:.0f} MiB"
    after = int(clients[0].cmd("STATUS INBOX (MESSAGES)")[0][0].split()[-1].rstrip(b")"))
    assert after == before + CLIENTS
    clients[0].cmd("SELECT INBOX")
    untagged, status = clients[0].cmd(f"FETCH {after} RFC822.SIZE")
    sizes = {f"RFC822.SIZE {len(body)})".encode() for body in bodies}
    assert status.startswith(b"OK") and any(untagged[0].endswith(size) for size in sizes)
    assert spool_files(g.proc.pid) == []
    for client in clients:
        client.sock.close()


def test_a_broken_off_literal_leaves_no_spool_file(g):
    client = logged_in(g.ports["imap"], "127.0.3.100")
    client.send(b"a1 APPEND INBOX {5000000}\r\n")
    assert client.line().startswith(b"+")
    client.send(b"y" * (3 * MB))
    pid = g.proc.pid
    deadline = 50
    while not spool_files(pid) and deadline:
        threading.Event().wait(0.1)
        deadline -= 1
    assert spool_files(pid), "3 MiB of a literal should be on disk by now"
    client.sock.close()
    deadline = 50
    while spool_files(pid) and deadline:
        threading.Event().wait(0.1)
        deadline -= 1
    assert spool_files(pid) == []
    other = logged_in(g.ports["imap"], "127.0.3.101")
    assert other.cmd("NOOP")[1].startswith(b"OK")
