"""Parallel password guesses from one address: no more than the lock-out limit are ever
checked, on IMAP and on SMTP AUTH, and other addresses keep logging in meanwhile."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import socket

import pytest

LIMIT = 4
PARALLEL = 40  # below the per-address connection limit of a listener


def connect_from(source: str, port: int, tls_context=None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    if tls_context is not None:
        sock = tls_context.wrap_socket(sock, server_hostname="localhost")
    return sock


def read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed; buffered {bytes(buf)!r}")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\r\n")
    buf[:] = rest
    return line


@pytest.fixture
def server(gomail_factory):
    g = gomail_factory("parallel-lockout")
    g.start({"login_max_failures": LIMIT, "login_window": 600})
    yield g
    g.stop()


def login_elsewhere(g) -> None:
    """A right password from another address works while the flood is being answered."""
    imap = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=30)
    try:
        assert imap.login("bob@example.org", g.PASSWORD)[0] == "OK"
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def test_parallel_imap_guesses(server):
    g = server
    socks = [connect_from("127.0.0.2", g.ports["imap"]) for _ in range(PARALLEL)]
    bufs = [bytearray() for _ in socks]
    try:
        for sock, buf in zip(socks, bufs, strict=True):
            assert read_line(sock, buf).startswith(b"* OK")
        for sock in socks:  # all guesses are on the wire before the first is answered
            sock.sendall(b"a1 LOGIN alice@example.org wrong-guess\r\n")
        login_elsewhere(g)
        answers = []
        for sock, buf in zip(socks, bufs, strict=True):
            line = read_line(sock, buf)
            while line.startswith(b"* "):
                line = read_line(sock, buf)
            answers.append(line)
    finally:
        for sock in socks:
            sock.close()
    failed = [a for a in answers if a.startswith(b"a1 NO [AUTHENTICATIONFAILED]")]
    locked = [a for a in answers if a.startswith(b"a1 NO [UNAVAILABLE]")]
    assert len(failed) == LIMIT, answers
    assert len(locked) == PARALLEL - LIMIT, answers
    assert g.log.count("authentication failed") == LIMIT


def test_parallel_smtp_auth_guesses(server):
    g = server
    ctx = g.tls_client_context()
    socks = [connect_from("127.0.0.3", g.ports["smtps"], ctx) for _ in range(PARALLEL)]
    bufs = [bytearray() for _ in socks]
    guess = base64.b64encode(b"\0alice@example.org\0wrong-guess").decode()
    try:
        for sock, buf in zip(socks, bufs, strict=True):
            assert read_line(sock, buf).startswith(b"220 ")
            sock.sendall(b"EHLO client.test\r\n")
            while not read_line(sock, buf).startswith(b"250 "):
                pass
        for sock in socks:
            sock.sendall(f"AUTH PLAIN {guess}\r\n".encode())
        login_elsewhere(g)
        with g.smtp("smtps") as s:  # and over SMTP, from 127.0.0.1
            s.ehlo("client.test")
            assert s.login("alice@example.org", g.PASSWORD)[0] == 235
        answers = [read_line(sock, buf) for sock, buf in zip(socks, bufs, strict=True)]
    finally:
        for sock in socks:
            sock.close()
    failed = [a for a in answers if a.startswith(b"535 5.7.8")]
    locked = [a for a in answers if a.startswith(b"454 4.7.0")]
    assert len(failed) == LIMIT, answers
    assert len(locked) == PARALLEL - LIMIT, answers
