"""Fuzzing a logged-in IMAP session of a real server with grammar-built commands (the
generators of the parser fuzzer), on a mailbox holding a few MIME messages: every response
line is well-formed (tagged OK/NO/BAD, untagged, or a continuation; literals as announced),
no command is answered with SERVERBUG or leaves a traceback in the log, and after each
command the connection still answers NOOP."""

from __future__ import annotations

import contextlib
import re
import socket

import pytest
from hypothesis import assume, given

from .budget import fuzz_settings
from .imap_grammar import TAGGED, wire_commands

USER = "alice@example.org"
# a literal announcement at the end of a line: {n} from the server; {n} or {n+} from a client
LITERAL_AT_END = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n\Z")
SERVER_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n\Z")

MULTIPART = (
    b"From: Ann <ann@example.net>\r\nTo: alice@example.org\r\nSubject: Re: [x] parts\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\naGVsbG8=\r\n--b1--\r\n"
)


class Hung(AssertionError):
    pass


class ImapClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.n = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _raw_line(self) -> bytes:
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise Hung(f"no answer; have {self.buf!r}") from None
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def _exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def response(self) -> bytes:
        """One response line with its literals left out (checked as announced)."""
        out = b""
        while True:
            part = self._raw_line()
            assert part.endswith(b"\r\n"), f"line without CRLF: {part!r}"
            m = SERVER_LITERAL.search(part)
            if not m:
                line = out + part[:-2]
                check_line(line)
                return line
            out += part[: m.start()] + b"{}"
            self._exactly(int(m.group(1)))

    def tag(self) -> bytes:
        self.n += 1
        return b"s%d" % self.n

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.response()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, text: bytes) -> list[bytes]:
        tag = self.tag()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def send_fuzzed(self, segments: list[bytes]) -> list[bytes]:
        """Send a command in segments, each but the last ending with a synchronizing literal
        announcement: the rest goes only after the server's '+'. Then NOOP, until answered."""
        lines: list[bytes] = []
        for i, segment in enumerate(segments):
            self.sock.sendall(segment)
            if i == len(segments) - 1:
                break
            line = self.response()
            lines.append(line)
            if not line.startswith(b"+"):
                break  # the command was refused before its literal
        while True:
            tag = self.tag()
            self.sock.sendall(tag + b" NOOP\r\n")
            while True:
                line = self.response()
                lines.append(line)
                if line.startswith(tag + b" "):
                    assert line.startswith(tag + b" OK"), lines
                    return lines
                if line.startswith(b"+"):
                    break  # IDLE or AUTHENTICATE took the NOOP line: send another


def check_line(line: bytes) -> None:
    assert b"\r" not in line and b"\n" not in line and b"\0" not in line, line
    assert b"SERVERBUG" not in line, line
    if line.startswith(b"* "):
        assert len(line) > 2, line
    elif line.startswith(b"+"):
        assert line == b"+" or line.startswith(b"+ "), line
    else:
        assert TAGGED.match(line), f"malformed response line {line!r}"


def segments_of(data: bytes) -> list[bytes] | None:
    """data (a command with literals inline) cut after each synchronizing literal's
    announcement, as the server will read it; None when a literal is longer than the data
    left (the server would wait for bytes that never come)."""
    out, start, pos = [], 0, 0
    given = len(data)
    data += b"\r\n"
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            return None  # cannot happen: data ends with CRLF
        line = data[pos : end + 1]
        pos = end + 1
        m = LITERAL_AT_END.search(line)
        if m is None:
            continue
        size = int(m.group(1))
        if size > given - pos or size > 100_000:  # (the final CRLF is not literal data)
            return None
        if not m.group(2):
            out.append(data[start:pos])
            start = pos
        pos += size
    out.append(data[start:])
    return out


class Session:
    """A logged-in client, made afresh after a failed example (it may be out of step)."""

    def __init__(self, g, login: bool = True) -> None:
        self.g = g
        self.login = login
        self.client: ImapClient | None = None

    def get(self) -> ImapClient:
        if self.client is None:
            c = ImapClient(self.g.ports["imap"])
            assert c.response().startswith(b"* OK")
            if self.login:
                out = c.command(f'LOGIN {USER} "{self.g.PASSWORD}"'.encode())
                assert out[-1].split()[1] == b"OK", out
            self.client = c
        return self.client

    def reset(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None


@pytest.fixture(scope="module")
def session(fuzz_gomail):
    s = Session(fuzz_gomail)
    c = s.get()
    for raw in (fuzz_gomail.make_message()[1], MULTIPART, b"Subject: bare\r\n\r\nno headers"):
        c.sock.sendall(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (len(raw), len(raw), raw))
        assert c.until(b"a%d" % len(raw))[-1].split()[1] == b"OK"
    yield s
    s.reset()


def run_fuzzed(session: Session, g, tagged: tuple[bytes, bytes], select: bool) -> None:
    tag, data = tagged
    upper = data.upper()
    assume(b"DEFLATE" not in upper and b"LOGOUT" not in upper and b"STARTTLS" not in upper)
    segments = segments_of(data)
    assume(segments is not None)
    log_start = len(g.log)
    c = session.get()
    try:
        if select:
            out = c.command(b"SELECT INBOX")
            assert out[-1].split()[1] == b"OK", out
        lines = c.send_fuzzed(segments)
    except BaseException:
        session.reset()
        raise
    if data.startswith(tag + b" ") and not any(ln.startswith(b"+ idling") for ln in lines):
        answered = [ln for ln in lines if ln.startswith((tag + b" ", b"* BAD"))]
        assert answered, (data, lines)
    log = g.log[log_start:]
    assert "Traceback" not in log, log[-3000:]


@fuzz_settings(600, deadline=None)
@given(wire_commands())
def test_session_commands(session, fuzz_gomail, tagged):
    run_fuzzed(session, fuzz_gomail, tagged, select=True)


@pytest.fixture(scope="module")
def anonymous(fuzz_gomail):
    s = Session(fuzz_gomail, login=False)
    yield s
    s.reset()


@fuzz_settings(300, deadline=None)
@given(wire_commands())
def test_commands_before_login(anonymous, fuzz_gomail, tagged):
    upper = tagged[1].upper()
    # a failed login costs a growing delay; logins are fuzzed in the parser tests
    assume(b"LOGIN" not in upper and b"AUTHENTICATE" not in upper)
    run_fuzzed(anonymous, fuzz_gomail, tagged, select=False)
