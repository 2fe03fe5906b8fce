"""Client-controlled sizes and times in the IMAP session (issue 10): what is refused before
"+", the login deadline against a client that drips, bounded AUTHENTICATE and line lengths,
the literals of one command together, the session counter, and a client that never reads.

The attacks as a whole, with the server's memory measured, are in tests/e2e/test_imap_limits.py;
here the limits are made small or short with monkeypatch so that each runs in a moment.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time

from gomail.imap import session as session_mod

from . import test_session_basic as _base
from .test_session_basic import OTHER, PASSWORD, USER, Imap, message

imap = _base.imap


async def test_state_is_checked_before_continuation(imap: Imap):
    c = await imap.client(login=False)
    await c.send(b"a UID FETCH 1 (BODY[HEADER.FIELDS ({7}\r\n")
    assert await c.line() == b"a BAD Log in first"
    await c.login()
    await c.send(b"b FETCH 1 (BODY[HEADER.FIELDS ({7}\r\n")
    assert await c.line() == b"b BAD No mailbox selected"
    await c.send(b"c APPEND INBOX {60000000}\r\n")
    assert await c.line() == b"c NO [TOOBIG] Message over the APPENDLIMIT of 52428800 bytes"
    assert await c.cmd("NOOP") == [f"a{c.n} OK NOOP completed".encode()]


async def test_literals_of_one_command_are_bounded(imap: Imap, monkeypatch):
    monkeypatch.setattr(session_mod, "MAX_COMMAND_LITERALS", 100)
    c = await imap.client()
    await c.send(b"a APPEND INBOX {60}\r\n")
    assert (await c.line()).startswith(b"+ ")
    await c.send(b"x" * 60 + b" {60}\r\n")
    assert await c.line() == (b"a NO [TOOBIG] Messages over 100 bytes in all; append fewer at once")
    raw = message(1)
    monkeypatch.setattr(session_mod, "MAX_COMMAND_LITERALS", 2 * len(raw))
    await c.send(b"b APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(raw), raw, len(raw), raw))
    assert (await c.until("b"))[-1].startswith(b"b OK [APPENDUID ")


async def test_preauth_limits_on_lines_and_literals(imap: Imap):
    c = await imap.client(login=False)
    await c.send(b"a LOGIN " + b"x" * 20_000 + b" y\r\n")
    assert await c.line() == b"a BAD Line too long"
    await c.send(b"b LOGIN {8193}\r\n")
    assert await c.line() == b"b BAD Literal too big"
    # Two literals, each under the limit, over the limit of a whole command before login.
    await c.send(b"c LOGIN {5000}\r\n")
    assert (await c.line()).startswith(b"+ ")
    await c.send(b"u" * 5000 + b" {5000}\r\n")
    assert await c.line() == b"c BAD Command too long"
    await c.send(b"d LOGIN {%d}\r\n" % len(USER))
    assert (await c.line()).startswith(b"+ ")
    await c.send(USER.encode() + b" {%d+}\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode()))
    assert (await c.until("d"))[-1].startswith(b"d OK [CAPABILITY ")


async def test_authenticate_continuation_is_bounded(imap: Imap):
    c = await imap.client(login=False)
    await c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert await c.line() == b"+ "
    await c.send(base64.b64encode(b"\0" + b"u" * 20_000 + b"\0pw") + b"\r\n")
    assert await c.line() == b"a BAD SASL response too long"
    await c.send(b"b AUTHENTICATE PLAIN\r\n")
    assert await c.line() == b"+ "
    await c.send(base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()) + b"\r\n")
    assert (await c.line()).startswith(b"b OK [CAPABILITY ")


async def test_login_deadline_holds_against_a_slow_drip(imap: Imap, monkeypatch):
    """One byte every 0.1 s keeps every single read short; the deadline is for the login as
    a whole, so the client is still logged out when it passes."""
    monkeypatch.setattr(session_mod, "LOGIN_TIMEOUT", 1.0)
    c = await imap.client(login=False)
    started = time.monotonic()
    got = None
    for byte in b"a LOGIN " + b"x" * 100:
        try:
            await c.send(bytes([byte]))
        except ConnectionError:
            break
        try:
            got = await asyncio.wait_for(c.reader.readline(), 0.1)
            break
        except TimeoutError:
            continue
    assert got == b"* BYE Autologout; idle for too long\r\n"
    assert time.monotonic() - started < 2.5


async def test_session_counter_is_released(imap: Imap, monkeypatch):
    imap.app.imap_sessions.limit = 2
    key = f"{USER}\x00127.0.0.1"
    a = await imap.client()
    b = await imap.client()
    assert imap.app.imap_sessions.count(key) == 2
    c = await imap.client(login=False)
    out = await c.cmd(f'LOGIN {USER} "{PASSWORD}"')
    assert out == [b"a1 NO [LIMIT] Maximum number of connections from user+IP exceeded (2)"]
    await c.login(OTHER)
    await a.cmd("LOGOUT")
    await b.close()
    for _ in range(50):
        if imap.app.imap_sessions.count(key) == 0:
            break
        await asyncio.sleep(0.02)
    assert imap.app.imap_sessions.count(key) == 0


async def test_client_that_does_not_read_is_dropped(imap: Imap, monkeypatch):
    """Answers wait for the client only as long as a read would (autologout); a FETCH to a
    client that reads nothing ends the session instead of holding it for ever."""
    monkeypatch.setattr(session_mod, "IDLE_TIMEOUT", 1.0)
    body = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 5000
    for _ in range(20):
        await imap.deliver(body)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", imap.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    c = _base.Client(reader, writer)
    imap.clients.append(c)
    await c.greeting()
    await c.login()
    await c.cmd("SELECT INBOX", tag="S")
    writer.transport.pause_reading()  # read nothing more
    await c.send(b"f FETCH 1:* BODY.PEEK[]\r\n")
    started = time.monotonic()
    await asyncio.wait(set(imap.listener.sessions), timeout=5)
    assert not imap.listener.sessions
    assert time.monotonic() - started < 2.5  # the autologout time, not more
