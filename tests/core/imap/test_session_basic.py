"""The IMAP session over a real socket: greeting, states, login, CAPABILITY, LIST, SELECT,
FETCH basics, driven by a raw client (exact bytes) and by imaplib.

The harness here (``imap`` fixture, ``Client``) is shared by the other test_session_* files.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
from dataclasses import dataclass
from pathlib import Path

import argon2
import pytest
from gomail import logins
from gomail.app import App
from gomail.config import Config
from gomail.imap.server import ImapListener
from gomail.passwords import PasswordHasher
from gomail.pipeline import PipelineSet
from gomail.plugins import PluginManager
from gomail.store.sqlite import SqliteStore
from gomail.tls import server_context

USER = "alice@example.org"
OTHER = "bob@example.org"
PASSWORD = "secret-pw"

_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n\Z")


def message(n: int = 1, subject: str | None = None, body: str = "hello world", **headers) -> bytes:
    lines = [
        "From: Ann Example <ann@example.net>",
        f"To: {USER}",
        f"Subject: {subject if subject is not None else f'test {n}'}",
        f"Message-ID: <{n}@example.net>",
        "Date: " + headers.pop("Date", "Tue, 03 Mar 2026 12:00:00 +0100"),
    ]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


class Client:
    """A raw IMAP client: sends lines, returns every response line up to the tagged one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.n = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        return cls(reader, writer)

    async def line(self, wait: float = 5) -> bytes:
        """One response, literals inline, without the final CRLF."""
        out = b""
        while True:
            part = await asyncio.wait_for(self.reader.readline(), wait)
            if not part:
                raise EOFError(out)
            out += part
            m = _LITERAL.search(part)
            if not m:
                return out[:-2]
            out += await self.reader.readexactly(int(m.group(1)))

    async def greeting(self) -> bytes:
        return await self.line()

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, text: bytes | str, tag: str | None = None) -> list[bytes]:
        if isinstance(text, str):
            text = text.encode()
        if tag is None:
            self.n += 1
            tag = f"a{self.n}"
        await self.send(tag.encode() + b" " + text + b"\r\n")
        return await self.until(tag)

    async def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def login(self, user: str = USER, password: str = PASSWORD) -> list[bytes]:
        out = await self.cmd(f'LOGIN {user} "{password}"', tag="L")
        assert out[-1].split()[1] == b"OK", out
        return out

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except Exception:
            pass


@dataclass
class Imap:
    app: App
    store: SqliteStore
    listener: ImapListener
    port: int
    clients: list

    async def client(self, login: bool = True, user: str = USER) -> Client:
        c = await Client.connect(self.port)
        self.clients.append(c)
        greeting = await c.greeting()
        assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
        if login:
            await c.login(user)
        return c

    async def deliver(self, raw: bytes, user: str = USER, folder: str = "INBOX") -> int:
        from gomail.imap.meta import message_meta

        _v, uid = await self.store.append(user, folder, raw, meta=message_meta(raw))
        return uid

    def imaplib(self) -> imaplib.IMAP4:
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        m.login(USER, PASSWORD)
        return m


_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
async def imap(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(logins, "DELAY_STEP", 0.0)
    config = Config(data_dir=tmp_path, hostname="mx.test")
    store = SqliteStore(tmp_path)
    await store.open()
    hasher = PasswordHasher(argon2_hasher=_HASHER)
    await store.add_domain("example.org")
    for user in (USER, OTHER):
        await store.add_user(user, hasher.hash_sync(PASSWORD), None)
    app = App(config, PluginManager(), PipelineSet(tmp_path / "p.yaml", {}, {}), store, hasher)
    listener = ImapListener(app, "imap", _tls(tmp_path, config), implicit_tls=False)
    await listener.start("127.0.0.1", 0)
    port = listener.server.sockets[0].getsockname()[1]
    env = Imap(app, store, listener, port, [])
    try:
        yield env
    finally:
        for c in env.clients:
            await c.close()
        await listener.stop()
        await store.close()


def _tls(tmp_path: Path, config: Config):
    return server_context(config)


# --- tests ------------------------------------------------------------------------------------


async def test_greeting_capability_logout(imap: Imap):
    c = await imap.client(login=False)
    out = await c.cmd("CAPABILITY")
    assert out[0].startswith(b"* CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert b"AUTH=PLAIN" in out[0] and b"STARTTLS" in out[0]
    assert b"LOGINDISABLED" not in out[0]  # loopback
    assert out[1] == b"a1 OK CAPABILITY completed"
    out = await c.cmd("NOOP")
    assert out == [b"a2 OK NOOP completed"]
    out = await c.cmd("LOGOUT")
    assert out == [b"* BYE gomail logging out", b"a3 OK LOGOUT completed"]
    assert await c.reader.read() == b""


async def test_login_states_and_bad_input(imap: Imap):
    c = await imap.client(login=False)
    assert await c.cmd("SELECT INBOX") == [b"a1 BAD Log in first"]
    assert await c.cmd("FETCH 1 FLAGS") == [b"a2 BAD Log in first"]
    assert await c.cmd("FROB") == [b"a3 BAD Unknown command FROB"]
    out = await c.cmd(f'LOGIN {USER} "wrong"')
    assert out == [b"a4 NO [AUTHENTICATIONFAILED] Authentication failed"]
    out = await c.cmd(f'LOGIN {USER} "{PASSWORD}"')
    assert out[-1].startswith(b"a5 OK [CAPABILITY IMAP4rev1 ")
    assert b"IDLE" in out[-1] and b"MOVE" in out[-1] and b"AUTH=PLAIN" not in out[-1]
    assert await c.cmd(f"LOGIN {USER} x") == [b"a6 BAD Already authenticated"]
    assert await c.cmd("FETCH 1 FLAGS") == [b"a7 BAD No mailbox selected"]
    await c.send(b"(((\r\n")
    assert await c.line() == b"* BAD Missing or bad tag"
    assert await c.cmd("NOOP") == [b"a8 OK NOOP completed"]


async def test_login_failure_event_and_disconnect(imap: Imap):
    seen = []
    imap.app.emit = lambda name, **data: seen.append((name, data))
    c = await imap.client(login=False)
    for i in range(1, 5):
        out = await c.cmd(f'LOGIN {USER} "bad{i}"')
        assert out == [f"a{i} NO [AUTHENTICATIONFAILED] Authentication failed".encode()]
    out = await c.cmd(f'LOGIN {USER} "bad5"')
    assert out == [
        b"* BYE Too many failed authentications",
        b"a5 NO [AUTHENTICATIONFAILED] Authentication failed",
    ]
    assert await c.reader.read() == b""
    failed = [d for n, d in seen if n == "security.login_failed"]
    assert len(failed) == 5 and failed[-1]["protocol"] == "imap" and failed[-1]["failures"] == 5


async def test_authenticate_plain(imap: Imap):
    import base64

    c = await imap.client(login=False)
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    out = await c.cmd(f"AUTHENTICATE PLAIN {token}")
    assert out[-1].startswith(b"a1 OK [CAPABILITY ")
    c2 = await imap.client(login=False)
    await c2.send("x AUTHENTICATE PLAIN\r\n")
    assert await c2.line() == b"+ "
    await c2.send(token + "\r\n")
    assert (await c2.until("x"))[-1].startswith(b"x OK")
    c3 = await imap.client(login=False)
    await c3.send("y AUTHENTICATE PLAIN\r\n")
    assert await c3.line() == b"+ "
    await c3.send("*\r\n")
    assert await c3.until("y") == [b"y BAD Authentication cancelled"]


async def test_list_and_folders(imap: Imap):
    c = await imap.client()
    out = await c.cmd('LIST "" "*"')
    assert out == [
        b'* LIST (\\HasNoChildren) "/" INBOX',
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive',
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk',
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent',
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash',
        b"a1 OK LIST completed",
    ]
    assert await c.cmd('LIST "" ""') == [b'* LIST (\\Noselect) "/" ""', b"a2 OK LIST completed"]
    assert await c.cmd("CREATE Work/Projekte/Gr&APw-n") == [b"a3 OK CREATE completed"]
    out = await c.cmd('LIST "" "Work/%"')
    assert out == [b'* LIST (\\HasChildren) "/" Work/Projekte', b"a4 OK LIST completed"]
    out = await c.cmd('LIST "" "Work*"')
    assert out[2] == b'* LIST (\\HasNoChildren) "/" Work/Projekte/Gr&APw-n'
    assert await c.cmd("CREATE Work") == [b"a6 NO [ALREADYEXISTS] Mailbox exists already"]
    assert await c.cmd("DELETE Nope") == [b"a7 NO [NONEXISTENT] No such mailbox"]
    assert await c.cmd("RENAME Nope X") == [b"a8 NO [NONEXISTENT] No such mailbox"]
    assert await c.cmd("RENAME Work Sent") == [b"a9 NO [ALREADYEXISTS] Mailbox exists already"]
    assert await c.cmd("RENAME Work Job") == [b"a10 OK RENAME completed"]
    assert await c.cmd("UNSUBSCRIBE Job") == [b"a11 OK UNSUBSCRIBE completed"]
    assert await c.cmd('LSUB "" Job%') == [b'* LSUB (\\Noselect) "/" Job', b"a12 OK LSUB completed"]
    await c.cmd("SUBSCRIBE Job", tag="s")
    out = await c.cmd('LIST (SUBSCRIBED) "" Job RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))')
    assert out == [
        b'* LIST (\\HasChildren \\Subscribed) "/" Job',
        b"* STATUS Job (MESSAGES 0 UIDNEXT 1)",
        b"a13 OK LIST completed",
    ]
    out = await c.cmd('LIST (SPECIAL-USE) "" *')
    assert len(out) == 6 and out[0] == b'* LIST (\\HasNoChildren \\Archive) "/" Archive'
    assert await c.cmd("DELETE INBOX") == [b"a15 NO [CANNOT] INBOX cannot be deleted"]
    assert await c.cmd("DELETE Job/Projekte/Gr&APw-n") == [b"a16 OK DELETE completed"]
    assert await c.cmd("ENABLE UTF8=ACCEPT") == [
        b"* ENABLED UTF8=ACCEPT",
        b"a17 OK ENABLE completed",
    ]
    assert await c.cmd('CREATE "Job/Grün"') == [b"a18 OK CREATE completed"]
    out = await c.cmd('LIST "" Job/*')
    assert b'* LIST (\\HasNoChildren) "/" "Job/Gr\xc3\xbcn"' in out


async def test_select_fetch_basics(imap: Imap):
    for n in (1, 2, 3):
        await imap.deliver(message(n))
    c = await imap.client()
    out = await c.cmd("SELECT INBOX")
    assert out[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    assert (
        out[1] == b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
        b" Flags permitted"
    )
    assert out[2:5] == [b"* 3 EXISTS", b"* 3 RECENT", b"* OK [UNSEEN 1] First unseen"]
    assert re.fullmatch(rb"\* OK \[UIDVALIDITY \d+\] UIDs valid", out[5])
    assert out[6] == b"* OK [UIDNEXT 4] Predicted next UID"
    assert out[7].startswith(b"* OK [HIGHESTMODSEQ ")
    assert out[8] == b"a1 OK [READ-WRITE] SELECT completed"
    out = await c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE)")
    size = len(message(1))
    assert out == [
        b"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %d)" % size,
        b"* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE %d)" % size,
        b"* 3 FETCH (UID 3 FLAGS (\\Recent) RFC822.SIZE %d)" % size,
        b"a2 OK FETCH completed",
    ]
    out = await c.cmd("FETCH 2 (ENVELOPE)")
    assert out[0] == (
        b'* 2 FETCH (ENVELOPE ("Tue, 03 Mar 2026 12:00:00 +0100" "test 2" '
        b'(("Ann Example" NIL "ann" "example.net")) (("Ann Example" NIL "ann" "example.net")) '
        b'(("Ann Example" NIL "ann" "example.net")) ((NIL NIL "alice" "example.org")) '
        b'NIL NIL NIL "<2@example.net>"))'
    )
    out = await c.cmd("FETCH 2 BODY.PEEK[HEADER.FIELDS (Subject)]")
    assert out[0] == b"* 2 FETCH (BODY[HEADER.FIELDS (Subject)] {19}\r\nSubject: test 2\r\n\r\n)"
    out = await c.cmd("FETCH 2 (BODY[TEXT]<0.5>)")
    assert out == [
        b"* 2 FETCH (BODY[TEXT]<0> {5}\r\nhello FLAGS (\\Seen \\Recent))",
        b"a5 OK FETCH completed",
    ]
    out = await c.cmd("UID FETCH 3 (FLAGS)")
    assert out == [b"* 3 FETCH (UID 3 FLAGS (\\Recent))", b"a6 OK UID FETCH completed"]
    assert await c.cmd("FETCH 4 FLAGS") == [b"a7 BAD Invalid sequence set: no such message"]
    assert (await c.cmd("FETCH x FLAGS"))[-1].startswith(b"a8 BAD Expected a sequence set")
    assert await c.cmd("UID FETCH 99 FLAGS") == [b"a9 OK UID FETCH completed"]
    out = await c.cmd("EXAMINE INBOX")
    assert out[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert b"* 0 RECENT" in out
    assert out[-1] == b"a10 OK [READ-ONLY] EXAMINE completed"
    assert await c.cmd("SELECT Nope") == [
        b"* OK [CLOSED] Previous mailbox closed",
        b"a11 NO [NONEXISTENT] No such mailbox",
    ]
    assert await c.cmd("FETCH 1 FLAGS") == [b"a12 BAD No mailbox selected"]


async def test_imaplib(imap: Imap):
    await imap.deliver(message(1, subject="hi there"))

    def run():
        m = imap.imaplib()
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: hi there\r\n\r\n"
        typ, data = m.fetch("1", "(RFC822)")
        assert data[0][1] == message(1, subject="hi there")
        typ, data = m.list()
        assert b'(\\HasNoChildren) "/" INBOX' in data
        typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
        assert data == [b"INBOX (MESSAGES 1 UNSEEN 0 UIDNEXT 2)"]
        m.logout()

    await asyncio.to_thread(run)
