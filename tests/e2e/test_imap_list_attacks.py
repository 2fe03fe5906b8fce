"""Issue 10, findings 1 and 2, against a real `gomail run`: a LIST pattern of many wildcards
and folder trees too deep for LIST, tried as an attacker would, while other clients (IMAP and
the MX) must be answered normally throughout."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import time

ALICE = "alice@example.org"
BOB = "bob@example.org"


def login(g, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=15)
    typ, data = m.login(user, g.PASSWORD)
    assert typ == "OK", data
    return m


@contextlib.contextmanager
def session(g, user: str = ALICE):
    m = login(g, user)
    try:
        yield m
    finally:
        with contextlib.suppress(Exception):
            m.logout()


class RawImap:
    """A logged-in raw connection, to send a command and read its answer later."""

    def __init__(self, g, user: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", g.ports["imap"]), timeout=30)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.send(f'L LOGIN {user} "{g.PASSWORD}"'.encode())
        assert self.answer(b"L").startswith(b"L OK")

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def answer(self, tag: bytes) -> bytes:
        while True:
            line = self.file.readline()
            if not line or line.startswith(tag + b" "):
                return line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_wildcard_pattern_does_not_stop_the_server(shared_gomail):
    g = shared_gomail
    with session(g) as m:
        for name in ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Lists/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"):
            m.create(name)
    other = login(g, BOB)
    attacker = RawImap(g, ALICE)
    try:
        start = time.monotonic()
        for n in range(3):
            attacker.send(b'X%d LIST "" "' % n + b"*" * 60 + b'x"')
        # Meanwhile another user's IMAP session and the MX answer at once.
        for _ in range(5):
            assert other.noop()[0] == "OK"
        with socket.create_connection(("127.0.0.1", g.ports["mx"]), timeout=10) as smtp:
            assert smtp.makefile("rb").readline().startswith(b"220 ")
        assert time.monotonic() - start < 3
        for n in range(3):
            assert attacker.answer(b"X%d" % n).startswith(b"X%d OK LIST completed" % n)
        assert time.monotonic() - start < 5
        attacker.send(b'Y LIST "" "' + b"*" * 2000 + b'x"')
        assert attacker.answer(b"Y").startswith(b"Y NO [LIMIT] Pattern too long")
    finally:
        attacker.close()
        with contextlib.suppress(Exception):
            other.logout()


def test_deep_and_long_folder_names_are_refused(shared_gomail):
    g = shared_gomail
    too_deep = "/".join(f"e{i}" for i in range(17))
    with session(g) as m:
        typ, data = m.create(too_deep)
        assert typ == "NO" and b"[LIMIT]" in data[0], data
        typ, data = m.create("Top/" + "n" * 256)
        assert typ == "NO" and b"[LIMIT]" in data[0], data
        fits = "/".join(f"e{i}" for i in range(16))
        assert m.create(fits)[0] == "OK"
        assert m.create("r/s/t")[0] == "OK"
        typ, data = m.rename("r", "/".join(f"e{i}" for i in range(14)) + "/r")
        assert typ == "NO" and b"[LIMIT]" in data[0], data
        typ, data = m.list('""', "e0/*")
        assert typ == "OK" and len(data) == 15
        typ, data = m.list('""', "r*")
        assert typ == "OK" and len(data) == 3
