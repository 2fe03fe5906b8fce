"""Fuzzing the SMTP listeners with command lines a client may send: MAIL FROM and RCPT TO
with ESMTP parameters, EHLO/HELO arguments, AUTH, BDAT, VRFY, unknown commands and random
bytes (bare CR and LF, NUL, 8-bit), on one connection reused with RSET.

Every reply must be a well-formed SMTP reply (three digits, space or dash, printable text,
an enhanced status code where RFC 2034 wants one), never the 451 of an exception that escaped,
and the server log must hold no traceback."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from .budget import fuzz_settings

ADDRESS_PARTS = st.sampled_from(
    [
        "alice",
        "Alice",
        "a.b",
        '"a b"',
        '"a\\"b"',
        "a+tag",
        "sr%s",
        "x!y",
        "ü",
        "",
        ".",
        "a..b",
        "@r1,@r2:bob",
        "a@b",
        "\\",
        "(c)",
        "%",
        '"',
        "a" * 70,
    ]
)
DOMAIN_PARTS = st.sampled_from(
    [
        "example.org",
        "EXAMPLE.ORG.",
        "bücher.example",
        "xn--bcher-kva.example",
        "[127.0.0.1]",
        "[IPv6:::1]",
        "[300.1.1.1]",
        "[IPv6:zz]",
        "-a.example",
        "a_b.example",
        "xn--zz.example",
        "",
        ".",
        "a..b",
        "localhost",
        "x" * 64 + ".example",
        "1.2.3.4",
        "\u3002",
        "[",
        "]",
    ]
)
PARAMS = st.sampled_from(
    [
        "SIZE=100",
        "SIZE=999999999999999999999",
        "SIZE=-1",
        "SIZE=",
        "SIZE=1x",
        "BODY=8BITMIME",
        "BODY=BINARYMIME",
        "BODY=7BIT",
        "BODY=",
        "SMTPUTF8",
        "SMTPUTF8=yes",
        "RET=HDRS",
        "ENVID=abc",
        "NOTIFY=NEVER",
        "NOTIFY=SUCCESS,FAILURE",
        "ORCPT=rfc822;a@b",
        "AUTH=<>",
        "AUTH=a@b",
        "X=\u00e9",
        "=",
        "==",
        "A=B=C",
        "XFORWARD",
        "REQUIRETLS",
    ]
)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)


@st.composite
def paths(draw) -> str:
    local = draw(st.one_of(ADDRESS_PARTS, TEXT))
    domain = draw(st.one_of(DOMAIN_PARTS, TEXT))
    addr = draw(st.sampled_from([f"{local}@{domain}", local, f"@{domain}", ""]))
    return draw(st.sampled_from([f"<{addr}>", addr, f"<{addr}", f"{addr}>", f" <{addr}> "]))


def _line(*parts) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


params = st.lists(PARAMS, max_size=3).map(lambda ps: "".join(" " + p for p in ps))
commands = st.one_of(
    _line(
        st.sampled_from(["MAIL FROM:", "mail from:", "MAIL FROM: ", "MAIL FROM"]), paths(), params
    ),
    _line(st.sampled_from(["RCPT TO:", "rcpt to:", "RCPT TO: ", "RCPT"]), paths(), params),
    _line(st.sampled_from(["EHLO ", "HELO ", "EHLO", "helo  "]), st.one_of(DOMAIN_PARTS, TEXT)),
    _line(
        st.sampled_from(["AUTH ", "AUTH PLAIN ", "AUTH LOGIN ", "AUTH CRAM-MD5", "AUTH PLAIN"]),
        # no credentials that reach the password check: each failure costs a growing delay
        st.sampled_from(["", "=", "AGFsaWNl", "!!", "*", "YWxpY2VAZXhhbXBsZS5vcmcAeA==", "a b"]),
    ),
    _line(
        st.sampled_from(["BDAT ", "bdat ", "BDAT"]),
        st.sampled_from(["0", "5", "3 LAST", "0 LAST", "x", "1 2", "-1", "5 last", "\u0663", ""]),
    ),
    _line(st.sampled_from(["VRFY ", "EXPN ", "NOOP ", "RSET ", "DATA "]), st.one_of(paths(), TEXT)),
    st.sampled_from(["NOOP", "RSET", "VRFY", "DATA", "EHLO client.test", "QUIT x"]),
    _line(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10), st.just(" "), TEXT),
)


@st.composite
def fuzz_lines(draw) -> bytes:
    """One line as the client sends it (CRLF added by the sender), possibly broken."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=80))
    line = draw(commands).encode("utf-8")
    if kind == 1:  # an inserted bare CR, LF, NUL or 8-bit octet
        i = draw(st.integers(0, len(line)))
        line = line[:i] + draw(st.sampled_from([b"\r", b"\n", b"\0", b"\xff", b"\x80"])) + line[i:]
    return line


# --- a client that survives whatever the line did ----------------------------------------------

REPLY = re.compile(rb"([2-5]\d\d)([ -])([^\x00-\x1f\x7f]*)\Z")
ENHANCED = re.compile(rb"([245])\.\d{1,3}\.\d{1,3}( |\Z)")
NO_ENHANCED = (b"220", b"334", b"354")  # greeting, SASL challenge, DATA go-ahead
# Each exchange ends with "HELP <command>", whose "250 Syntax: <command> ..." reply no fuzz
# line can produce (lines starting with HELP are left out). The command rotates, so that a
# late answer to an earlier exchange's HELP (one the server read after AUTH or DATA took the
# first) is recognised and skipped. An unknown command would do too, but aiosmtpd closes the
# connection after five of those.
SYNC_COMMANDS = (b"MAIL", b"RCPT", b"NOOP", b"RSET", b"VRFY", b"DATA", b"HELO", b"QUIT")
SYNC_REPLY = re.compile(rb"250 (?:2\.0\.0 )?Syntax: (\w+)")


def sends_help(line: bytes) -> bool:
    return any(sub.split(b" ")[0].strip(b"\r\t").upper() == b"HELP" for sub in line.split(b"\n"))


class Closed(Exception):
    pass


class Client:
    def __init__(self, g, listener: str) -> None:
        self.g = g
        self.listener = listener
        self.sock: socket.socket | None = None
        self.syncs = 0
        self.buf = b""

    def connect(self) -> None:
        self.close()
        sock = socket.create_connection(("127.0.0.1", self.g.ports[self.listener]), timeout=10)
        if self.listener == "smtps":
            sock = self.g.tls_client_context().wrap_socket(sock, server_hostname="localhost")
        self.sock, self.buf = sock, b""
        assert self.reply()[0][:4] == b"220 "
        self.exchange(b"EHLO client.test")

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionError, TimeoutError, OSError) as e:
                raise Closed(str(e)) from None
            if not chunk:
                raise Closed("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            m = REPLY.match(line)
            assert m, f"malformed reply line {line!r} (reply so far {lines!r})"
            line.decode("utf-8")  # ASCII, or UTF-8 after SMTPUTF8
            assert m.group(1) == lines[0][:3], f"code changed inside a reply: {lines!r}"
            if m.group(2) == b" ":
                return lines

    def exchange(self, line: bytes) -> list[list[bytes]]:
        """Send line, then HELP (whose reply ends the exchange); every reply checked."""
        self.syncs += 1
        sync = b"HELP " + SYNC_COMMANDS[self.syncs % len(SYNC_COMMANDS)]
        ehlo = any(sub.lstrip(b"\r").upper().startswith(b"EHLO") for sub in line.split(b"\n"))
        self.sock.sendall(line + b"\r\n" + self._chunk_for(line) + sync + b"\r\n")
        replies = []
        while True:
            reply = self.reply()
            m = SYNC_REPLY.match(reply[0])
            if m and m.group(1).upper() == sync[5:]:
                return replies
            if m:
                continue  # an earlier exchange's
            replies.append(reply)
            check_reply(reply, ehlo=ehlo)
            code = reply[0][:3]
            if code in (b"334", b"354"):  # the sync line went into AUTH or DATA
                self.sock.sendall((b"*\r\n" if code == b"334" else b".\r\n") + sync + b"\r\n")
            elif code in (b"221", b"421") or (code == b"220" and b"TLS" in reply[0]):
                raise Closed(repr(reply))

    @staticmethod
    def _chunk_for(line: bytes) -> bytes:
        """The chunk after a BDAT the server will read (its own reading of the size)."""
        cmd = line.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        verb, _, arg = cmd.partition(" ")
        parts = arg.split()
        if verb.upper() != "BDAT" or not 1 <= len(parts) <= 2:
            return b""
        if not (parts[0].isascii() and parts[0].isdigit()):
            return b""  # "BDAT ٣" or "BDAT ²" is a syntax error: no chunk is read
        if len(parts) == 1 or parts[1].upper() == "LAST":
            return b"x" * int(parts[0])
        return b""


def check_reply(reply: list[bytes], *, ehlo: bool) -> None:
    text = b"\n".join(reply)
    code = reply[0][:3]
    assert b"Local error in processing" not in text, f"an exception escaped: {reply!r}"
    if code in NO_ENHANCED or (ehlo and code == b"250"):
        return
    for line in reply:
        m = ENHANCED.match(line[4:])
        assert m, f"no enhanced status code: {reply!r}"
        assert m.group(1) == code[:1], f"enhanced code of another class: {reply!r}"


@pytest.fixture(scope="module")
def clients(fuzz_gomail):
    made = {name: Client(fuzz_gomail, name) for name in ("mx", "smtps")}
    yield made
    for c in made.values():
        c.close()


@pytest.mark.parametrize("listener", ["mx", "smtps"])
@fuzz_settings(400, deadline=None)
@given(st.lists(fuzz_lines(), min_size=1, max_size=4))
def test_smtp_commands(clients, fuzz_gomail, listener, lines):
    for line in lines:
        assume(not sends_help(line))
        if line[:4].upper() == b"BDAT":
            assume(len(Client._chunk_for(line)) <= 100_000)
    log_start = len(fuzz_gomail.log)
    c = clients[listener]
    if c.sock is None:
        c.connect()
    try:
        for line in lines:
            c.exchange(line)
        c.exchange(b"RSET")
    except Closed:
        c.close()  # QUIT, STARTTLS, a 421: the next example reconnects
    except BaseException:
        c.close()  # out of step after a failure: start afresh
        raise
    new_log = fuzz_gomail.log[log_start:]
    assert "Traceback" not in new_log, new_log[-3000:]


# What the fuzzer found, kept as plain tests.


def test_control_characters_are_not_echoed_into_replies(fuzz_gomail):
    """aiosmtpd echoes an unknown command: a bare CR or a NUL in it made a broken reply."""
    with fuzz_gomail.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd(b"\rMAIL\0 FROM:<a@example.org>")
        assert code == 500 and text.startswith("5.5.1 ")
        assert "\r" not in text and "\0" not in text and '"?MAIL?"' in text


def test_ehlo_errors_carry_an_enhanced_status_code(fuzz_gomail):
    with fuzz_gomail.raw() as c:
        fuzz_gomail.assert_reply(c.cmd("EHLO"), 501, "5.5.4")
        fuzz_gomail.assert_reply(c.cmd("EHLO client.test"), 250)


@pytest.mark.parametrize("path", ["alice@", "alice@[", '"a"@'])
def test_paths_the_email_parser_trips_on_are_syntax_errors(fuzz_gomail, path):
    """aiosmtpd parses a path without <> with the email package, which raised IndexError
    or AttributeError on these: the client got 451 and the log a traceback."""
    with fuzz_gomail.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd(f"MAIL FROM:{path}")
        assert code in (501, 553) and text[:1] == "5", (code, text)
        code, text = c.cmd(f"VRFY {path}")
        assert code not in (451,) and "Local error" not in text, (code, text)


def test_commands_pipelined_past_the_bogus_limit_on_tls(fuzz_gomail):
    """aiosmtpd closes the connection after five unknown commands, and again for each one
    pipelined after that: a reply after the second close raised inside asyncio's SSL
    transport and logged a traceback."""
    start = len(fuzz_gomail.log)
    with fuzz_gomail.raw("smtps") as c:
        c.send(b"EHLO x\r\n" + b"XX\r\n" * 7 + b"NOOP\r\n")
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                c.reply()
    time.sleep(0.3)  # the server answers the NOOP after the client saw the close
    assert "Traceback" not in fuzz_gomail.log[start:], fuzz_gomail.log[start:][-2000:]


def test_server_still_answers(fuzz_gomail):
    with fuzz_gomail.raw() as c:
        fuzz_gomail.assert_reply(c.cmd("EHLO client.test"), 250)
        fuzz_gomail.assert_reply(c.cmd("MAIL FROM:<someone@sender.example>"), 250, "2.1.0")
        fuzz_gomail.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 250, "2.1.5")
    assert "Traceback" not in fuzz_gomail.log


def test_bdat_size_in_other_digits_is_a_syntax_error(fuzz_gomail):
    with fuzz_gomail.raw() as c:
        c.cmd("EHLO client.test")
        fuzz_gomail.assert_reply(c.cmd("BDAT \u00b2"), 501, "5.5.4")
