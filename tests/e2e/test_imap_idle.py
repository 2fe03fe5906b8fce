"""IMAP IDLE against a real `gomail run` (issue 4): new mail is pushed within a second of
delivery to every connection that has the folder selected, and what another client does
(flags, expunges, appends) shows up on an idling connection without it asking.

Mail is delivered over SMTP (smtplib to the mx listener); the second is counted from the
server's 250 after the message data, when the message is durably stored.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
import time
import uuid

import pytest

ALICE = "alice@example.org"
PUSH_DEADLINE = 1.0  # seconds from the SMTP 250 to the untagged EXISTS


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Idler:
    """A raw IMAP connection that logs in, selects a folder and idles; it reads untagged
    responses with a deadline."""

    def __init__(self, g, folder: str = "INBOX", user: str = ALICE, how: str = "plain"):
        port = g.ports["imaps" if how == "imaps" else "imap"]
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        if how == "imaps":
            sock = tls_context().wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.n = 0
        greeting = self.line(15)
        assert greeting.startswith(b"* OK"), greeting
        if how == "starttls":
            _, status = self.cmd("STARTTLS")
            assert status.startswith(b"OK"), status
            self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")
        _, status = self.cmd(f'LOGIN "{user}" "{g.PASSWORD}"')
        assert status.startswith(b"OK"), status
        self.selected, status = self.cmd(f'SELECT "{folder}"')
        assert status.startswith(b"OK"), (self.selected, status)
        self.idle_tag = None

    def line(self, timeout: float) -> bytes:
        """One line (literals are not expected here); socket.timeout when none comes."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete line within {timeout}s; buffered {self.buf!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(
                    f"no complete line within {timeout}s; buffered {self.buf!r}"
                ) from None
            if not data:
                raise ConnectionError(f"connection closed; buffered {self.buf!r}")
            self.buf += data
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, text: str, timeout: float = 15) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = f"i{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            ln = self.line(timeout)
            if ln.startswith(tag + b" "):
                return lines, ln[len(tag) + 1 :]
            lines.append(ln)

    def idle(self) -> None:
        self.n += 1
        self.idle_tag = f"i{self.n}".encode()
        self.sock.sendall(self.idle_tag + b" IDLE\r\n")
        ln = self.line(10)
        assert ln.startswith(b"+"), f"IDLE not accepted: {ln!r}"

    def wait_for(self, pattern: bytes, timeout: float) -> tuple[bytes, float, list[bytes]]:
        """Read untagged lines until one matches pattern: (that line, seconds waited, every
        line read)."""
        start = time.monotonic()
        seen = []
        while True:
            left = timeout - (time.monotonic() - start)
            try:
                ln = self.line(max(left, 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"no {pattern!r} within {timeout}s; got {seen!r}; buffered {self.buf!r}"
                ) from None
            seen.append(ln)
            if re.search(pattern, ln):
                return ln, time.monotonic() - start, seen

    def done(self) -> list[bytes]:
        """End IDLE; the untagged lines that came before the tagged OK."""
        self.sock.sendall(b"DONE\r\n")
        lines = []
        while True:
            ln = self.line(10)
            if ln.startswith(self.idle_tag + b" "):
                assert ln[len(self.idle_tag) + 1 :].startswith(b"OK"), ln
                return lines
            lines.append(ln)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"z LOGOUT\r\n")
        with contextlib.suppress(OSError):
            self.sock.close()


def exists_of(lines: list[bytes]) -> int:
    for ln in lines:
        m = re.match(rb"\* (\d+) EXISTS", ln)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no EXISTS in {lines!r}")


def deliver(g, subject: str) -> float:
    """Send a message to alice over SMTP; the monotonic time of the 250 after its data."""
    _, raw = g.make_message(to=ALICE, subject=subject)
    with g.smtp("mx") as s:
        s.ehlo("client.test")
        s.sendmail("someone@sender.example", [ALICE], raw)
        return time.monotonic()


@pytest.mark.parametrize("how", ["plain", "starttls", "imaps"])
def test_smtp_delivery_reaches_idle_within_a_second(gomail, how):
    g = gomail
    idler = Idler(g, how=how)
    try:
        before = exists_of(idler.selected)
        idler.idle()
        delivered = deliver(g, f"pushed over {how}")
        line, _, seen = idler.wait_for(rb"^\* \d+ EXISTS", timeout=5)
        elapsed = time.monotonic() - delivered
        assert int(line.split()[1]) == before + 1, seen
        assert elapsed < PUSH_DEADLINE, f"EXISTS came {elapsed:.3f}s after the SMTP 250"
        idler.done()
        lines, status = idler.cmd(f"FETCH {before + 1} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status.startswith(b"OK"), status
        assert any(f"pushed over {how}".encode() in ln for ln in lines), lines
    finally:
        idler.close()


def test_every_idling_connection_gets_the_new_mail(gomail):
    g = gomail
    idlers = [Idler(g, how=how) for how in ("plain", "imaps", "plain", "starttls")]
    try:
        for i in idlers:
            i.idle()
        delivered = deliver(g, "for everyone")
        for n, i in enumerate(idlers):
            _, _, seen = i.wait_for(rb"^\* 1 EXISTS", timeout=5)
            elapsed = time.monotonic() - delivered
            assert elapsed < PUSH_DEADLINE, f"connection {n}: {elapsed:.3f}s; {seen!r}"
        for i in idlers:
            i.done()
    finally:
        for i in idlers:
            i.close()


def test_idle_on_another_folder_is_not_woken_by_inbox_mail(gomail):
    g = gomail
    with imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=15) as m:
        m.login(ALICE, g.PASSWORD)
        assert m.create("Quiet")[0] == "OK"
    idler = Idler(g, folder="Quiet")
    try:
        idler.idle()
        deliver(g, "not for Quiet")
        with pytest.raises(AssertionError):
            idler.wait_for(rb"EXISTS", timeout=1.5)
        assert idler.done() == []
    finally:
        idler.close()


def test_idle_sees_flags_expunge_and_append_by_another_client(gomail):
    g = gomail
    folder = "Shared-" + uuid.uuid4().hex[:6]
    other = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=15)
    try:
        other.login(ALICE, g.PASSWORD)
        assert other.create(folder)[0] == "OK"
        for i in range(3):
            _, raw = g.make_message(subject=f"shared {i}")
            assert other.append(folder, None, None, raw)[0] == "OK"
        idler = Idler(g, folder=folder)
        try:
            idler.idle()
            assert other.select(folder)[0] == "OK"

            t0 = time.monotonic()
            assert other.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
            line, _, seen = idler.wait_for(rb"^\* 2 FETCH ", timeout=5)
            assert time.monotonic() - t0 < PUSH_DEADLINE, seen
            assert b"\\Flagged" in line, line

            assert other.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
            assert other.expunge()[0] == "OK"
            t0 = time.monotonic()
            _, _, seen = idler.wait_for(rb"^\* 1 EXPUNGE", timeout=5)
            assert time.monotonic() - t0 < PUSH_DEADLINE, seen

            _, raw = g.make_message(subject="appended while idle")
            assert other.append(folder, None, None, raw)[0] == "OK"
            t0 = time.monotonic()
            _, _, seen = idler.wait_for(rb"^\* 3 EXISTS", timeout=5)
            assert time.monotonic() - t0 < PUSH_DEADLINE, seen

            idler.done()
            lines, status = idler.cmd("UID SEARCH ALL")
            assert status.startswith(b"OK") and len(lines[-1].split()) == 5, lines
        finally:
            idler.close()
    finally:
        with contextlib.suppress(Exception):
            other.logout()


def test_imapclient_idle_check_gets_smtp_delivery(gomail):
    from imapclient import IMAPClient

    g = gomail
    c = IMAPClient("127.0.0.1", port=g.ports["imap"], ssl=False, timeout=15)
    try:
        c.login(ALICE, g.PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        delivered = deliver(g, "imapclient idle")
        responses = c.idle_check(timeout=3)
        elapsed = time.monotonic() - delivered
        c.idle_done()
        assert (1, b"EXISTS") in responses, responses
        assert elapsed < PUSH_DEADLINE + 0.2, f"{elapsed:.3f}s {responses!r}"
    finally:
        with contextlib.suppress(Exception):
            c.logout()


def test_idle_can_be_left_and_entered_again(gomail):
    g = gomail
    idler = Idler(g)
    try:
        for round_ in range(3):
            idler.idle()
            deliver(g, f"round {round_}")
            idler.wait_for(rb"^\* %d EXISTS" % (round_ + 1), timeout=5)
            idler.done()
            _, status = idler.cmd("NOOP")
            assert status.startswith(b"OK"), status
    finally:
        idler.close()
