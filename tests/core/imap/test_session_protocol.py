"""IMAP session protocol edges: STARTTLS and LOGINDISABLED, limits and bad input, timeouts,
BINARY/BODYSTRUCTURE, meta computed on the fly, IMAP4rev2, and a larger FETCH."""

from __future__ import annotations

import base64
import ssl

from gomail.imap import session as session_mod

from . import test_session_basic as _base
from .test_session_basic import PASSWORD, USER, Imap, message

imap = _base.imap  # the fixture


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_starttls_and_logindisabled(imap: Imap, monkeypatch):
    monkeypatch.setattr(session_mod, "_is_loopback", lambda host: False)
    c = await imap.client(login=False)
    out = await c.cmd("CAPABILITY")
    assert b" STARTTLS LOGINDISABLED" in out[0] and b"AUTH=PLAIN" not in out[0]
    assert await c.cmd(f"LOGIN {USER} {PASSWORD}") == [
        b"a2 NO [PRIVACYREQUIRED] Use STARTTLS first"
    ]
    assert await c.cmd("AUTHENTICATE PLAIN") == [b"a3 NO [PRIVACYREQUIRED] Use STARTTLS first"]
    assert await c.cmd("STARTTLS") == [b"a4 OK Begin TLS negotiation now"]
    await c.writer.start_tls(_client_tls())
    out = await c.cmd("CAPABILITY")
    assert b"AUTH=PLAIN" in out[0] and b"STARTTLS" not in out[0]
    assert b"LOGINDISABLED" not in out[0]
    out = await c.cmd(f"LOGIN {USER} {PASSWORD}")
    assert out[-1].startswith(b"a6 OK [CAPABILITY")
    assert await c.cmd("STARTTLS") == [b"a7 BAD Already authenticated"]


async def test_limits_and_bad_input(imap: Imap):
    c = await imap.client()
    # A line over 64 KiB: skipped to its end, answered with the tag, connection kept.
    await c.send(b"t1 NOOP " + b"x" * 70_000 + b"\r\n")
    assert await c.line() == b"t1 BAD Line too long"
    assert await c.cmd("NOOP") == [b"a1 OK NOOP completed"]
    # A literal over the limit outside APPEND, synchronizing: refused before it is sent.
    await c.send(b"t2 CREATE {200000}\r\n")
    assert await c.line() == b"t2 BAD Literal too big"
    # ... and non-synchronizing: skipped.
    await c.send(b"t3 CREATE {70000+}\r\n" + b"y" * 70000 + b"\r\n")
    assert await c.line() == b"t3 BAD Literal too big"
    assert await c.cmd("NOOP") == [b"a2 OK NOOP completed"]
    # Synchronizing literal in a normal command.
    await c.send(b"t4 CREATE {4}\r\n")
    assert await c.line() == b"+ Ready for literal data"
    await c.send(b"Lit1\r\n")
    assert await c.line() == b"t4 OK CREATE completed"
    bad = {
        "SELECT": b"BAD Expected a space",
        "FETCH 1 (FLAGS": b"BAD Expected a space",
        'LIST "" (': b"BAD",
        "UID FROB 1": b"BAD Unknown UID command FROB",
        "CREATE INBOX": b"NO [ALREADYEXISTS] INBOX exists already",
        "STATUS Nope (MESSAGES)": b"NO [NONEXISTENT] No such mailbox",
        "STATUS INBOX (BOGUS)": b"BAD Unknown status item BOGUS",
        "SELECT INBOX (QRESYNC (1 1))": b"BAD QRESYNC is not enabled",
        "ENABLE FOO": None,
    }
    for text, expect in bad.items():
        out = await c.cmd(text)
        if expect is None:
            assert out[-1].split(b" ", 1)[1] == b"OK ENABLE completed"
            continue
        assert out[-1].split(b" ", 1)[1].startswith(expect), (text, out)
    await c.cmd("SELECT INBOX", tag="S")
    assert (await c.cmd("FETCH 0 FLAGS"))[-1].split(b" ", 1)[1].startswith(b"BAD")
    assert (await c.cmd("FETCH 1:* (FLAGS"))[-1].split(b" ", 1)[1].startswith(b"BAD")
    assert (await c.cmd("FETCH 1:* FLAGS"))[-1].split(b" ", 1)[1] == (
        b"BAD Invalid sequence set: no such message"
    )
    assert await c.cmd("ENABLE CONDSTORE") == [
        f"a{c.n} BAD ENABLE is not allowed while a mailbox is selected".encode()
    ]
    assert await c.cmd("NOOP") == [f"a{c.n} OK NOOP completed".encode()]


async def test_autologout_before_login(imap: Imap, monkeypatch):
    monkeypatch.setattr(session_mod, "LOGIN_TIMEOUT", 0.3)
    c = await imap.client(login=False)
    assert await c.line(wait=2) == b"* BYE Autologout; idle for too long"
    assert await c.reader.read() == b""


async def test_idle_autologout(imap: Imap, monkeypatch):
    monkeypatch.setattr(session_mod, "IDLE_TIMEOUT", 0.3)
    c = await imap.client()
    await c.send("i IDLE\r\n")
    assert await c.line() == b"+ idling"
    assert await c.line(wait=2) == b"* BYE Autologout; idle for too long"


async def test_structure_binary_and_meta_on_the_fly(imap: Imap):
    raw = (
        b"From: a@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + base64.b64encode(b"\x00\x01bin") + b"\r\n--b--\r\n"
    )
    # Stored without meta, as a plain delivery without it would be.
    await imap.store.append(USER, "INBOX", raw)
    c = await imap.client()
    await c.cmd("SELECT INBOX", tag="S")
    out = await c.cmd("FETCH 1 (BODYSTRUCTURE)")
    assert out[0].startswith(b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii")')
    assert await imap.store.missing_meta(USER, "INBOX") == []
    out = await c.cmd("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[1] BODY.PEEK[2.MIME])")
    assert out[0] == (
        b"* 1 FETCH (BINARY[2] ~{5}\r\n\x00\x01bin BINARY.SIZE[2] 5 BODY[1] {2}\r\nhi "
        b"BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n)"
    )
    out = await c.cmd("FETCH 1 (BINARY[1]<0.1>)")
    assert out[0] == b"* 1 FETCH (BINARY[1]<0> {1}\r\nh FLAGS (\\Seen \\Recent))"
    out = await c.cmd("SEARCH SUBJECT parts")
    assert out[0] == b"* SEARCH 1"


async def test_imap4rev2(imap: Imap):
    await imap.deliver(message(1))
    c = await imap.client()
    assert await c.cmd("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2", b"a1 OK ENABLE completed"]
    out = await c.cmd("SELECT INBOX")
    assert b"* 1 RECENT" not in out and b'* LIST () "/" INBOX' in out
    out = await c.cmd("SEARCH ALL", tag="r")
    assert out == [b'* ESEARCH (TAG "r") ALL 1', b"r OK SEARCH completed"]
    out = await c.cmd("FETCH 1 FLAGS")
    assert out[0] == b"* 1 FETCH (FLAGS ())"


async def test_large_fetch_streams(imap: Imap):
    from gomail.store import AppendMessage

    raws = [AppendMessage(message(i)) for i in range(2000)]
    await imap.store.append_many(USER, "INBOX", raws)
    c = await imap.client()
    await c.cmd("SELECT INBOX", tag="S")
    out = await c.cmd("UID FETCH 1:* (FLAGS RFC822.SIZE)")
    assert len(out) == 2001 and out[-1] == b"a1 OK UID FETCH completed"
    out = await c.cmd("FETCH 1:500 (BODY.PEEK[])")
    assert len(out) == 501 and out[-2].endswith(b"hello world\r\n)")


async def test_server_stop_says_bye(imap: Imap):
    c = await imap.client()
    await c.cmd("SELECT INBOX", tag="S")
    await imap.listener.stop()
    assert await c.line() == b"* BYE Server shutting down"
