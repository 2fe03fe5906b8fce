"""IMAP interop: a real `gomail run` driven by the clients people use (issue 4).

Python's imaplib (plain LOGIN on loopback, STARTTLS, implicit TLS), imapclient, mbsync (Debian
isync) and curl's imap:// support, plus a raw socket for what none of them sends (MULTIAPPEND,
LITERAL+, COMPRESS=DEFLATE, ESEARCH …). Each test checks something a user of the account can
see: folders listed, created, renamed, deleted and subscribed; messages read, flagged, copied,
moved, deleted and appended; search, sort and thread; quota; and what one client does being
visible to the next.

Most tests share one server per module and keep out of each other's way with folders of their
own (``unique()``); tests that need an INBOX nobody else touches start a server of their own.
"""

from __future__ import annotations

import contextlib
import datetime
import imaplib
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import pytest

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
TINY = "tiny@example.org"


# --- helpers ------------------------------------------------------------------------------


def unique(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def ok(result, what: str = "") -> list:
    """The data of an imaplib (typ, data) result that must be OK."""
    typ, data = result
    assert typ == "OK", f"{what}: expected OK, got {typ} {data!r}"
    return data


def login(g, user: str = ALICE, how: str = "plain") -> imaplib.IMAP4:
    """A logged-in imaplib session: "plain" (LOGIN on loopback without TLS), "starttls" or
    "imaps" (implicit TLS)."""
    if how == "imaps":
        m = imaplib.IMAP4_SSL("127.0.0.1", g.ports["imaps"], ssl_context=tls_context(), timeout=15)
    else:
        m = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=15)
        if how == "starttls":
            ok(m.starttls(ssl_context=tls_context()), "STARTTLS")
    ok(m.login(user, g.PASSWORD), "LOGIN")
    return m


@contextlib.contextmanager
def session(g, user: str = ALICE, how: str = "plain"):
    m = login(g, user, how)
    try:
        yield m
    finally:
        with contextlib.suppress(Exception):
            m.logout()


def message(
    subject: str = "hello",
    body: str = "Hello.\r\n",
    sender: str = "someone@sender.example",
    to: str = ALICE,
    date: str = "Mon, 24 Nov 2025 10:00:00 +0000",
    msgid: str | None = None,
    extra: str = "",
) -> bytes:
    msgid = msgid or f"<{uuid.uuid4().hex}@sender.example>"
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: {msgid}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        f"{extra}\r\n{body}"
    ).encode()


def append(m: imaplib.IMAP4, folder: str, raw: bytes, flags: str = "", date=None) -> int:
    """APPEND; the new message's UID from the APPENDUID response code (UIDPLUS)."""
    data = ok(m.append(folder, flags or None, date, raw), f"APPEND to {folder}")
    found = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[-1] or b"")
    assert found, f"APPEND gave no APPENDUID: {data!r}"
    return int(found.group(2))


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<d>[^"]*)"|NIL) (?P<name>.+)$')


def list_names(lines) -> dict[str, set[str]]:
    """{folder name: set of attributes} from imaplib's LIST/LSUB data."""
    out = {}
    for line in lines:
        if line is None:
            continue
        if isinstance(line, tuple):  # name sent as a literal
            head, name = line
            m = LIST_RE.match(head.rsplit(b" ", 1)[0] + b" x")
            out[name.decode()] = set(m.group("attrs").decode().split()) if m else set()
            continue
        m = LIST_RE.match(line)
        assert m, f"unparsable LIST line {line!r}"
        name = m.group("name")
        if name.startswith(b'"'):
            name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        out[name.decode()] = {a.lower() for a in m.group("attrs").decode().split()}
    return out


def folders(m: imaplib.IMAP4, pattern: str = "*") -> dict[str, set[str]]:
    return list_names(ok(m.list('""', pattern), "LIST"))


def search(m: imaplib.IMAP4, *criteria: str, uid: bool = False) -> list[int]:
    if uid:
        data = ok(m.uid("SEARCH", *criteria), f"UID SEARCH {criteria}")
    else:
        data = ok(m.search(None, *criteria), f"SEARCH {criteria}")
    return [int(n) for n in b" ".join(d for d in data if d).split()]


def fetch_one(m: imaplib.IMAP4, seq: str, item: str, uid: bool = False) -> bytes:
    """The value of one FETCH item that comes back as a literal (BODY[...], RFC822 ...)."""
    res = m.uid("FETCH", seq, item) if uid else m.fetch(seq, item)
    data = ok(res, f"FETCH {seq} {item}")
    for part in data:
        if isinstance(part, tuple):
            return part[1]
    raise AssertionError(f"no literal in FETCH {seq} {item}: {data!r}")


def fetch_text(m: imaplib.IMAP4, seq: str, items: str, uid: bool = False) -> bytes:
    """The FETCH responses as one byte string (literals inlined), for regex checks."""
    res = m.uid("FETCH", seq, items) if uid else m.fetch(seq, items)
    data = ok(res, f"FETCH {seq} {items}")
    out = b""
    for part in data:
        if isinstance(part, tuple):
            out += part[0] + b"\r\n" + part[1]
        elif part:
            out += part
        out += b"\n"
    return out


def flags_of(m: imaplib.IMAP4, seq: str, uid: bool = False) -> set[str]:
    text = fetch_text(m, seq, "(FLAGS)", uid=uid)
    found = re.search(rb"FLAGS \(([^)]*)\)", text)
    assert found, f"no FLAGS in {text!r}"
    return set(found.group(1).decode().split()) - {"\\Recent"}  # a session flag


def untagged(m: imaplib.IMAP4, name: str) -> list:
    """Take imaplib's collected untagged responses of one kind (EXISTS, EXPUNGE, FETCH …)."""
    typ, data = m.response(name)
    return [d for d in data if d is not None]


class Raw:
    """A line-level IMAP client for what the libraries do not send: exact lines out, every
    response line back (literals inlined after their {n} CRLF)."""

    def __init__(
        self, port: int, tls: bool = False, timeout: float = 15.0, source: str = "127.0.0.1"
    ):
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        if tls:
            sock = tls_context().wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.inflate = None
        self.deflate = None
        self.greeting = self.line()

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed; buffered {self.buf!r}")
        if self.inflate is not None:
            data = self.inflate.decompress(data)
        self.buf += data

    def line(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._recv()
            ln, self.buf = self.buf.split(b"\r\n", 1)
            out += ln
            lit = re.search(rb"~?\{(\d+)\}$", ln)
            if not lit:
                return out
            size = int(lit.group(1))
            while len(self.buf) < size:
                self._recv()
            out += b"\r\n" + self.buf[:size]
            self.buf = self.buf[size:]

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def tagged(self, tag: bytes) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return lines, ln[len(tag) + 1 :]
            lines.append(ln)

    def cmd(self, *parts: bytes | str) -> tuple[list[bytes], bytes]:
        """Send a command: text parts and, between them, synchronizing literals (bytes parts
        after the first are literals: "{n}" is added and the "+" awaited). Returns (untagged
        and continuation lines, the tagged status line without its tag)."""
        self.n += 1
        tag = f"r{self.n}".encode()
        first, *rest = parts
        pending = tag + b" " + (first.encode() if isinstance(first, str) else first)
        for i, part in enumerate(rest):
            if i % 2 == 0:  # a literal
                assert isinstance(part, bytes)
                self.send(pending + b"{%d}\r\n" % len(part))
                cont = self.line()
                if not cont.startswith(b"+"):
                    return [cont], cont
                pending = part
            else:
                pending += part.encode() if isinstance(part, str) else part
        self.send(pending + b"\r\n")
        return self.tagged(tag)

    def login(self, user: str = ALICE, password: str = "secret-pw") -> None:
        _, status = self.cmd(f'LOGIN "{user}" "{password}"')
        assert status.startswith(b"OK"), status

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- connecting and logging in ------------------------------------------------------------


EXTENSIONS = (
    "IMAP4rev1",
    "IMAP4rev2",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "LITERAL+",
    "NAMESPACE",
    "ID",
    "ENABLE",
    "UNSELECT",
    "SPECIAL-USE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "MULTIAPPEND",
    "BINARY",
    "COMPRESS=DEFLATE",
)


def test_greeting_and_capabilities_before_login(shared_gomail):
    g = shared_gomail
    with Raw(g.ports["imap"]) as c:
        assert c.greeting.startswith(b"* OK"), c.greeting
        lines, status = c.cmd("CAPABILITY")
        assert status.startswith(b"OK"), status
        caps = set(b" ".join(lines).decode().upper().split())
        for cap in ("IMAP4REV1", "STARTTLS", "AUTH=PLAIN", "SASL-IR", "LITERAL+", "ID"):
            assert cap in caps, f"{cap} missing before login: {lines!r}"
        assert "LOGINDISABLED" not in caps, "plaintext LOGIN is allowed from loopback"
    with Raw(g.ports["imaps"], tls=True) as c:
        assert c.greeting.startswith(b"* OK"), c.greeting
        lines, status = c.cmd("CAPABILITY")
        caps = set(b" ".join(lines).decode().upper().split())
        assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps, lines


def test_capabilities_after_login_list_the_extensions(shared_gomail):
    with session(shared_gomail) as m:
        data = ok(m.capability(), "CAPABILITY")
        caps = set(data[0].decode().upper().split())
        missing = [e for e in EXTENSIONS if e.upper() not in caps]
        assert not missing, f"not advertised after login: {missing}; got {data[0]!r}"
        assert any(c.startswith("APPENDLIMIT") for c in caps), data


@pytest.mark.parametrize("how", ["plain", "starttls", "imaps"])
def test_imaplib_login_select_logout(shared_gomail, how):
    m = login(shared_gomail, ALICE, how)
    data = ok(m.select("INBOX"), "SELECT INBOX")
    assert data[0].isdigit(), data
    ok(m.noop(), "NOOP")
    typ, data = m.logout()
    assert typ == "BYE", (typ, data)


def test_authenticate_plain_with_imaplib(shared_gomail):
    g = shared_gomail
    m = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=15)
    try:
        ok(
            m.authenticate("PLAIN", lambda _: f"\0{BOB}\0{g.PASSWORD}".encode()),
            "AUTHENTICATE PLAIN",
        )
        ok(m.select("INBOX"), "SELECT")
    finally:
        m.logout()


def test_sasl_ir_and_literal_login(shared_gomail):
    g = shared_gomail
    with Raw(g.ports["imap"]) as c:
        _, status = c.cmd("AUTHENTICATE PLAIN " + g.auth_plain(CAROL, g.PASSWORD))
        assert status.startswith(b"OK"), status
    with Raw(g.ports["imap"]) as c:
        _, status = c.cmd(b"LOGIN ", CAROL.encode(), b" ", g.PASSWORD.encode())
        assert status.startswith(b"OK"), status


def test_wrong_password_is_refused_and_session_stays_usable(gomail):
    g = gomail
    m = imaplib.IMAP4("127.0.0.1", g.ports["imap"], timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error) as err:
            m.login(ALICE, "wrong-password")
        assert "AUTHENTICATIONFAILED" in str(err.value).upper(), err.value
        ok(m.login(ALICE, g.PASSWORD), "LOGIN after a failure")
    finally:
        with contextlib.suppress(Exception):
            m.logout()


def test_commands_before_login_are_refused(shared_gomail):
    with Raw(shared_gomail.ports["imap"]) as c:
        _, status = c.cmd("SELECT INBOX")
        assert status.startswith((b"BAD", b"NO")), status
        _, status = c.cmd("NOOP")
        assert status.startswith(b"OK"), status


# --- folders ------------------------------------------------------------------------------


def test_list_shows_the_special_folders_with_their_use(shared_gomail):
    with session(shared_gomail) as m:
        names = folders(m)
        for name in ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"):
            assert name in names, f"{name} missing from LIST: {names}"
        typ, data = m._simple_command("LIST", '""', "*", "RETURN", "(SPECIAL-USE)")
        data = ok(m._untagged_response(typ, data, "LIST"), "LIST RETURN (SPECIAL-USE)")
        attrs = list_names(data)
        for name, use in (
            ("Sent", "\\sent"),
            ("Drafts", "\\drafts"),
            ("Trash", "\\trash"),
            ("Junk", "\\junk"),
            ("Archive", "\\archive"),
        ):
            assert use in attrs[name], f"{name}: {attrs[name]}"


def test_create_rename_delete_a_folder_tree(shared_gomail):
    top = unique("proj")
    with session(shared_gomail) as m, session(shared_gomail) as other:
        ok(m.create(f"{top}/2024/q1"), "CREATE with missing parents")
        names = folders(other)
        for name in (top, f"{top}/2024", f"{top}/2024/q1"):
            assert name in names, f"{name} not listed to another client: {names}"
        assert "\\haschildren" in names[top], names[top]
        assert "\\hasnochildren" in names[f"{top}/2024/q1"], names[f"{top}/2024/q1"]
        append(m, f"{top}/2024/q1", message(subject="inside"))

        typ, data = m.create(f"{top}/2024/q1")
        assert typ == "NO", (typ, data)
        assert b"ALREADYEXISTS" in data[0].upper(), data

        new = unique("renamed")
        ok(m.rename(top, new), "RENAME with children")
        names = folders(other)
        assert top not in names and f"{top}/2024/q1" not in names, names
        assert f"{new}/2024/q1" in names, names
        data = ok(other.select(f"{new}/2024/q1"), "SELECT renamed child")
        assert data == [b"1"], data
        other.close()

        typ, data = m.rename(unique("missing"), unique("x"))
        assert typ == "NO", (typ, data)

        ok(m.delete(f"{new}/2024/q1"), "DELETE leaf")
        ok(m.delete(f"{new}/2024"), "DELETE")
        ok(m.delete(new), "DELETE")
        names = folders(other)
        assert not [n for n in names if n.startswith(new)], names
        typ, data = m.select(new)
        assert typ == "NO", (typ, data)


def test_inbox_cannot_be_deleted_and_is_case_insensitive(shared_gomail):
    with session(shared_gomail) as m:
        typ, data = m.delete("INBOX")
        assert typ == "NO", (typ, data)
        data = ok(m.select("inbox"), "SELECT inbox (any case)")
        assert data[0].isdigit()
        child = "iNbOx/" + unique("sub")
        ok(m.create(child), "CREATE below INBOX")
        names = folders(m, "INBOX/*")
        assert "INBOX/" + child.split("/", 1)[1] in names, names
        ok(m.delete(child), "DELETE")


def test_subscribe_unsubscribe_lsub_and_list_subscribed(shared_gomail):
    name = unique("news")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        ok(m.subscribe(name), "SUBSCRIBE")
        assert name in list_names(ok(m.lsub('""', "*"), "LSUB"))
        typ, data = m._simple_command("LIST", "(SUBSCRIBED)", '""', "*")
        subscribed = list_names(ok(m._untagged_response(typ, data, "LIST"), "LIST (SUBSCRIBED)"))
        assert name in subscribed and "\\subscribed" in subscribed[name], subscribed.get(name)
        with session(shared_gomail) as other:  # kept across sessions
            assert name in list_names(ok(other.lsub('""', "*"), "LSUB"))
        ok(m.unsubscribe(name), "UNSUBSCRIBE")
        assert name not in list_names(ok(m.lsub('""', "*"), "LSUB"))
        ok(m.delete(name), "DELETE")


def test_status_of_a_folder(shared_gomail):
    name = unique("status")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        uid1 = append(m, name, message(subject="one"), flags="(\\Seen)")
        append(m, name, message(subject="two"))
        data = ok(m.status(name, "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)"), "STATUS")
        text = data[0].decode()
        assert re.search(r"MESSAGES 2\b", text), text
        assert re.search(r"UNSEEN 1\b", text), text
        assert re.search(rf"UIDNEXT {uid1 + 2}\b", text), text
        assert re.search(r"UIDVALIDITY \d+", text), text


def test_list_status_returns_counters_with_the_list(shared_gomail):
    name = unique("ls")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        append(m, name, message())
        typ, data = m._simple_command("LIST", '""', name, "RETURN", "(STATUS (MESSAGES UNSEEN))")
        ok((typ, data), "LIST RETURN STATUS")
        status = [d for d in m.response("STATUS")[1] if d]
        assert any(re.search(rb"MESSAGES 1 UNSEEN 1|UNSEEN 1 MESSAGES 1", s) for s in status), (
            status
        )


def test_unicode_folder_names_in_modified_utf7(shared_gomail):
    with session(shared_gomail) as m:
        name = "Entw&APw-rfe-" + uuid.uuid4().hex[:6]  # "Entwürfe-…"
        ok(m.create(name), "CREATE mUTF-7")
        assert name in folders(m), folders(m)
        ok(m.delete(name), "DELETE")


# --- reading and changing messages --------------------------------------------------------


def test_append_then_fetch_the_message_back(shared_gomail):
    name = unique("read")
    raw = message(subject="Fetch me", body="Line one.\r\nLine two.\r\n")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        uid = append(m, name, raw, flags="(\\Flagged $Label1)", date='"24-Nov-2025 10:00:00 +0000"')
        ok(m.select(name), "SELECT")
        assert fetch_one(m, "1", "(BODY.PEEK[])") == raw
        assert "\\Seen" not in flags_of(m, "1"), "BODY.PEEK set \\Seen"
        assert {"\\Flagged", "$Label1"} <= flags_of(m, "1")
        text = fetch_text(m, "1", "(UID RFC822.SIZE INTERNALDATE ENVELOPE)")
        assert re.search(rb"UID %d\b" % uid, text), text
        assert re.search(rb"RFC822.SIZE %d\b" % len(raw), text), text
        date = re.search(rb'INTERNALDATE "([^"]+)"', text)
        assert date, text
        when = datetime.datetime.strptime(date.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
        assert when == datetime.datetime(2025, 11, 24, 10, tzinfo=datetime.UTC), text
        assert b'"Fetch me"' in text, text
        head = fetch_one(m, "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert head == b"Subject: Fetch me\r\n\r\n", head
        assert fetch_one(m, "1", "(BODY.PEEK[TEXT])") == b"Line one.\r\nLine two.\r\n"
        assert fetch_one(m, "1", "(BODY.PEEK[]<0.7>)") == raw[:7]
        assert fetch_one(m, "1", "(RFC822.HEADER)") == raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert fetch_one(m, "1", "(BODY[])") == raw
        assert "\\Seen" in flags_of(m, "1"), "BODY[] did not set \\Seen"


def test_fetch_bodystructure_and_parts_of_a_multipart(shared_gomail):
    name = unique("mime")
    raw = (
        b"From: a@sender.example\r\nTo: alice@example.org\r\nSubject: parts\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nthe text\r\n"
        b"--XX\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n"
    )
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        append(m, name, raw)
        ok(m.select(name), "SELECT")
        text = fetch_text(m, "1", "(BODYSTRUCTURE)")
        assert re.search(rb'\("text" "plain" \("charset" "us-ascii"\)', text, re.I), text
        assert re.search(rb'"mixed"', text, re.I), text
        assert fetch_one(m, "1", "(BODY.PEEK[1])") == b"the text"
        assert fetch_one(m, "1", "(BODY.PEEK[2])") == b"AAECAw=="
        assert fetch_one(m, "1", "(BINARY.PEEK[2])") == b"\x00\x01\x02\x03"


def test_flags_set_by_one_client_are_seen_by_the_next(shared_gomail):
    name = unique("flags")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        for i in range(3):
            append(m, name, message(subject=f"m{i}"))
        ok(m.select(name), "SELECT")
        ok(m.store("1", "+FLAGS", "(\\Flagged \\Seen)"), "STORE +FLAGS")
        ok(m.store("2", "+FLAGS.SILENT", "(Work)"), "STORE +FLAGS.SILENT keyword")
        ok(m.store("1", "-FLAGS", "(\\Seen)"), "STORE -FLAGS")
        ok(m.store("3", "FLAGS", "(\\Answered)"), "STORE FLAGS")
    with session(shared_gomail) as m:
        ok(m.select(name, readonly=True), "EXAMINE")
        assert flags_of(m, "1") == {"\\Flagged"}
        assert flags_of(m, "2") == {"Work"}
        assert flags_of(m, "3") == {"\\Answered"}
        assert search(m, "FLAGGED") == [1]
        assert search(m, "KEYWORD", "Work") == [2]
        assert search(m, "UNSEEN") == [1, 2, 3]
        assert search(m, "ANSWERED") == [3]
        flags_line = untagged(m, "FLAGS")
        assert flags_line, "SELECT gave no FLAGS"


def test_examine_is_read_only(shared_gomail):
    name = unique("ro")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        append(m, name, message())
        typ, data = m.select(name, readonly=True)
        assert typ == "OK", (typ, data)
        assert m.response("READ-ONLY")[1] != [None], "EXAMINE did not say [READ-ONLY]"
        fetch_one(m, "1", "(BODY[])")
        typ, data = m.store("1", "+FLAGS", "(\\Flagged)")  # refused, or ignored
        assert typ in ("NO", "OK"), (typ, data)
        m.close()
        ok(m.select(name), "SELECT")
        assert flags_of(m, "1") == set(), "a read-only fetch set flags"


def test_copy_keeps_flags_and_reports_copyuid(shared_gomail):
    src, dst = unique("src"), unique("dst")
    with session(shared_gomail) as m:
        ok(m.create(src), "CREATE")
        ok(m.create(dst), "CREATE")
        raw = message(subject="copied")
        uid = append(m, src, raw, flags="(\\Flagged)")
        ok(m.select(src), "SELECT")
        typ, data = m._simple_command("UID", "COPY", str(uid), dst)
        assert typ == "OK", (typ, data)
        assert re.search(rb"\[COPYUID \d+ %d \d+\]" % uid, data[-1]), data
        typ, data = m.copy("1", unique("missing"))
        assert typ == "NO" and b"TRYCREATE" in data[0].upper(), (typ, data)
        assert search(m, "ALL") == [1], "COPY removed the source"
    with session(shared_gomail) as m:
        ok(m.select(dst), "SELECT")
        assert fetch_one(m, "1", "(BODY.PEEK[])") == raw
        assert "\\Flagged" in flags_of(m, "1")


def test_move_is_seen_as_expunge_by_another_client(shared_gomail):
    src, dst = unique("src"), unique("dst")
    with session(shared_gomail) as m, session(shared_gomail) as watcher:
        ok(m.create(src), "CREATE")
        ok(m.create(dst), "CREATE")
        raws = [message(subject=f"move {i}") for i in range(3)]
        uids = [append(m, src, raw) for raw in raws]
        ok(watcher.select(src), "SELECT (watcher)")
        ok(m.select(src), "SELECT")
        typ, data = m._simple_command("UID", "MOVE", str(uids[1]), dst)
        assert typ == "OK", (typ, data)
        copyuid = untagged(m, "COPYUID")
        assert copyuid and re.match(rb"\d+ %d \d+" % uids[1], copyuid[0]), copyuid
        assert untagged(m, "EXPUNGE") == [b"2"]
        ok(watcher.noop(), "NOOP (watcher)")
        assert untagged(watcher, "EXPUNGE") == [b"2"]
        assert search(watcher, "ALL", uid=True) == [uids[0], uids[2]]
        ok(watcher.select(dst), "SELECT target")
        assert fetch_one(watcher, "1", "(BODY.PEEK[])") == raws[1]


def test_delete_and_expunge_seen_by_another_client(shared_gomail):
    name = unique("del")
    with session(shared_gomail) as m, session(shared_gomail) as watcher:
        ok(m.create(name), "CREATE")
        uids = [append(m, name, message(subject=f"d{i}")) for i in range(4)]
        ok(m.select(name), "SELECT")
        ok(watcher.select(name), "SELECT (watcher)")
        ok(m.store("2:3", "+FLAGS", "(\\Deleted)"), "STORE \\Deleted")
        data = ok(m.expunge(), "EXPUNGE")
        assert data == [b"3", b"2"] or data == [b"2", b"2"], f"EXPUNGE responses {data!r}"
        ok(watcher.noop(), "NOOP")
        expunged = untagged(watcher, "EXPUNGE")
        assert len(expunged) == 2, expunged
        assert search(watcher, "ALL", uid=True) == [uids[0], uids[3]]
        # UID EXPUNGE only removes the UIDs given
        ok(m.store("1:2", "+FLAGS", "(\\Deleted)"), "STORE")
        typ, data = m._simple_command("UID", "EXPUNGE", str(uids[3]))
        assert typ == "OK", (typ, data)
        assert search(m, "ALL", uid=True) == [uids[0]]
        # CLOSE expunges silently
        ok(m.close(), "CLOSE")
        ok(m.select(name), "SELECT")
        assert search(m, "ALL") == []


def test_new_message_from_one_client_is_exists_in_another(shared_gomail):
    name = unique("exists")
    with session(shared_gomail) as m, session(shared_gomail) as watcher:
        ok(m.create(name), "CREATE")
        append(m, name, message())
        ok(watcher.select(name), "SELECT")
        untagged(watcher, "EXISTS")
        append(m, name, message(subject="second"))
        ok(watcher.noop(), "NOOP")
        assert untagged(watcher, "EXISTS") == [b"2"]
        ok(m.select(name), "SELECT")
        ok(m.store("2", "+FLAGS", "(\\Flagged)"), "STORE")
        ok(watcher.noop(), "NOOP")
        fetches = b" ".join(untagged(watcher, "FETCH"))
        assert re.search(rb"2 \(.*FLAGS \([^)]*\\Flagged", fetches), fetches


def test_recent_goes_to_the_first_session_only(shared_gomail):
    name = unique("recent")
    with session(shared_gomail) as m:
        ok(m.create(name), "CREATE")
        append(m, name, message())
        append(m, name, message())
    with session(shared_gomail) as first, session(shared_gomail) as second:
        ok(first.select(name), "SELECT")
        assert untagged(first, "RECENT") == [b"2"]
        assert search(first, "RECENT") == [1, 2]
        ok(second.select(name), "SELECT")
        assert untagged(second, "RECENT") == [b"0"]


def test_smtp_delivery_shows_up_at_once(gomail):
    g = gomail
    msgid = f"{uuid.uuid4().hex}@sender.example"
    _, raw = g.make_message(to=ALICE, subject="over smtp", msgid=msgid)
    with session(g) as m:
        data = ok(m.select("INBOX"), "SELECT")
        assert data == [b"0"], data
        untagged(m, "EXISTS")  # imaplib keeps SELECT's own
        g.send("someone@sender.example", [ALICE], raw)
        ok(m.noop(), "NOOP")
        assert untagged(m, "EXISTS") == [b"1"]
        head = fetch_one(m, "1", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])")
        assert msgid.encode() in head and b"over smtp" in head, head


def test_append_to_a_missing_folder_says_trycreate(shared_gomail):
    with session(shared_gomail) as m:
        typ, data = m.append(unique("nope"), None, None, message())
        assert typ == "NO" and b"TRYCREATE" in data[0].upper(), (typ, data)


# --- search, sort, thread -----------------------------------------------------------------


@pytest.fixture(scope="module")
def search_folder(_module_gomail):
    """A folder of five messages for the search, sort and thread tests: a thread of three
    (Plan, Re: Plan, Re: Re: Plan), and two others."""
    g = _module_gomail.ensure_running()
    name = unique("search")
    msgs = [
        message(
            subject="Plan for the banana release",
            sender="Zed <zed@sender.example>",
            date="Mon, 24 Nov 2025 10:00:00 +0000",
            msgid="<m1@sender.example>",
            body="We ship the zeppelin on Friday.\r\n",
        ),
        message(
            subject="Re: Plan for the banana release",
            sender="Adam <adam@sender.example>",
            date="Mon, 24 Nov 2025 11:00:00 +0000",
            msgid="<m2@sender.example>",
            extra="In-Reply-To: <m1@sender.example>\r\nReferences: <m1@sender.example>\r\n",
            body="Friday is fine.\r\n",
        ),
        message(
            subject="Apple pie",
            sender="Mike <mike@sender.example>",
            date="Mon, 24 Nov 2025 09:00:00 +0000",
            msgid="<m3@sender.example>",
            extra="X-Tracker: quokka-42\r\n",
            body="Grüße aus der Küche, mit Äpfeln.\r\n",
        ),
        message(
            subject="Re: Re: Plan for the banana release",
            sender="Zed <zed@sender.example>",
            date="Tue, 25 Nov 2025 08:00:00 +0000",
            msgid="<m4@sender.example>",
            extra=(
                "In-Reply-To: <m2@sender.example>\r\n"
                "References: <m1@sender.example> <m2@sender.example>\r\n"
            ),
            body="Then Friday it is.\r\n" + "padding line\r\n" * 100,
        ),
        message(
            subject="cherry season",
            sender="Bea <bea@sender.example>",
            date="Wed, 26 Nov 2025 08:00:00 +0000",
            msgid="<m5@sender.example>",
            body="Nothing about fruit vessels.\r\n",
        ),
    ]
    with session(g) as m:
        ok(m.create(name), "CREATE")
        for raw in msgs:
            append(m, name, raw)
    return name


def test_search_header_subject_from_body_text(shared_gomail, search_folder):
    with session(shared_gomail) as m:
        ok(m.select(search_folder, readonly=True), "EXAMINE")
        assert search(m, "SUBJECT", "banana") == [1, 2, 4]
        assert search(m, "HEADER", "Subject", "apple") == [3]
        assert search(m, "HEADER", "X-Tracker", "quokka") == [3]
        assert search(m, "HEADER", "X-Tracker", '""') == [3]
        assert search(m, "FROM", "zed@sender.example") == [1, 4]
        assert search(m, "BODY", "zeppelin") == [1]
        assert search(m, "BODY", "friday") == [1, 2, 4]
        assert search(m, "TEXT", "cherry") == [5]
        assert search(m, "BODY", "banana") == [], "BODY searched the header"
        assert search(m, "NOT", "BODY", "friday") == [3, 5]
        assert search(m, "OR", "SUBJECT", "apple", "SUBJECT", "cherry") == [3, 5]
        assert search(m, "LARGER", "1000") == [4]
        assert search(m, "SENTBEFORE", "25-Nov-2025") == [1, 2, 3]
        assert search(m, "2:4", "SUBJECT", "plan") == [2, 4]
        uids = search(m, "ALL", uid=True)
        assert search(m, "HEADER", "Subject", "apple", uid=True) == [uids[2]]


def test_search_charset_utf8_in_body(shared_gomail, search_folder):
    with session(shared_gomail) as m:
        ok(m.select(search_folder, readonly=True), "EXAMINE")
        m.literal = "Küche".encode()
        assert search_with_charset(m, "BODY") == [3]
        m.literal = "äpfeln".encode()  # case-insensitive beyond ASCII
        assert search_with_charset(m, "BODY") == [3]


def search_with_charset(m, *criteria):
    data = ok(m.search("UTF-8", *criteria), f"SEARCH CHARSET UTF-8 {criteria}")
    return [int(n) for n in b" ".join(d for d in data if d).split()]


def test_esearch_return_options(shared_gomail, search_folder):
    g = shared_gomail
    with Raw(g.ports["imap"]) as c:
        c.login()
        _, status = c.cmd(f'EXAMINE "{search_folder}"')
        assert status.startswith(b"OK"), status
        lines, status = c.cmd("SEARCH RETURN (MIN MAX COUNT) SUBJECT banana")
        assert status.startswith(b"OK"), status
        es = [ln for ln in lines if ln.startswith(b"* ESEARCH")]
        assert es, lines
        assert re.search(rb"MIN 1\b", es[0]) and re.search(rb"MAX 4\b", es[0]), es
        assert re.search(rb"COUNT 3\b", es[0]), es


def test_sort(shared_gomail, search_folder):
    with session(shared_gomail) as m:
        ok(m.select(search_folder, readonly=True), "EXAMINE")
        # base subjects: plan…, plan…, apple pie, plan…, cherry season
        assert ok(m.sort("(SUBJECT)", "UTF-8", "ALL"), "SORT")[0].split() == [
            b"3",
            b"5",
            b"1",
            b"2",
            b"4",
        ]
        assert ok(m.sort("(DATE)", "UTF-8", "ALL"), "SORT DATE")[0].split() == [
            b"3",
            b"1",
            b"2",
            b"4",
            b"5",
        ]
        assert ok(m.sort("(REVERSE DATE)", "UTF-8", "ALL"), "SORT")[0].split() == [
            b"5",
            b"4",
            b"2",
            b"1",
            b"3",
        ]
        # From mailboxes: zed, adam, mike, zed, bea
        assert ok(m.sort("(FROM)", "UTF-8", "ALL"), "SORT FROM")[0].split() == [
            b"2",
            b"5",
            b"3",
            b"1",
            b"4",
        ]
        assert ok(m.sort("(SIZE)", "UTF-8", "SUBJECT", "plan"), "SORT SIZE")[0].split()[-1] == b"4"
        uids = search(m, "ALL", uid=True)
        data = ok(m.uid("SORT", "(REVERSE DATE)", "UTF-8", "ALL"), "UID SORT")
        assert [int(x) for x in data[0].split()] == [uids[i] for i in (4, 3, 1, 0, 2)]


def test_thread(shared_gomail, search_folder):
    with session(shared_gomail) as m:
        ok(m.select(search_folder, readonly=True), "EXAMINE")
        data = ok(m.thread("REFERENCES", "UTF-8", "ALL"), "THREAD REFERENCES")
        # threads by the date of their first message: Apple pie (9:00), the Plan thread
        # (10:00), cherry (26 Nov)
        assert data[0] == b"(3)(1 2 4)(5)", data
        data = ok(m.thread("ORDEREDSUBJECT", "UTF-8", "ALL"), "THREAD ORDEREDSUBJECT")
        assert data[0] == b"(3)(1 (2)(4))(5)", data


# --- quota --------------------------------------------------------------------------------


def test_quota_usage_and_over_quota(shared_gomail):
    with session(shared_gomail, TINY) as m:
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK", (typ, data)
        roots, quotas = data
        assert roots and re.match(rb'"?INBOX"? ', roots[0]), data
        text = b" ".join(q for q in quotas if q)
        found = re.search(rb"STORAGE (\d+) (\d+)", text)
        assert found, data
        assert int(found.group(1)) == 0 and int(found.group(2)) in (3, 4), data
        append(m, "INBOX", message(body="x" * 1500 + "\r\n"))
        _, data = m.getquotaroot("INBOX")
        found = re.search(rb"STORAGE (\d+) (\d+)", b" ".join(q for q in data[1] if q))
        assert found and int(found.group(1)) in (1, 2), data
        typ, data = m.append("INBOX", None, None, message(body="y" * 3000 + "\r\n"))
        assert typ == "NO" and b"OVERQUOTA" in data[0].upper(), (typ, data)


def test_quota_of_an_unlimited_account(shared_gomail):
    with session(shared_gomail, CAROL) as m:
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK", (typ, data)


# --- extensions through a raw socket ------------------------------------------------------


def test_multiappend_and_literal_plus(shared_gomail):
    g = shared_gomail
    name = unique("multi")
    a, b = message(subject="first"), message(subject="second")
    with Raw(g.ports["imap"]) as c:
        c.login()
        _, status = c.cmd(f'CREATE "{name}"')
        assert status.startswith(b"OK"), status
        _, status = c.cmd(f'APPEND "{name}" (\\Seen) ', a, " ", b)
        assert status.startswith(b"OK"), status
        assert re.search(rb"\[APPENDUID \d+ 1:2\]", status), status
        # LITERAL+: no continuation request
        c.send(b'r99 APPEND "%s" {%d+}\r\n%s\r\n' % (name.encode(), len(a), a))
        lines, status = c.tagged(b"r99")
        assert status.startswith(b"OK") and not any(ln.startswith(b"+") for ln in lines), (
            lines,
            status,
        )
        lines, status = c.cmd(f'STATUS "{name}" (MESSAGES UNSEEN)')
        assert any(b"MESSAGES 3" in ln and b"UNSEEN 2" in ln for ln in lines), lines


def test_id_namespace_enable_unselect(shared_gomail):
    with Raw(shared_gomail.ports["imap"]) as c:
        c.login()
        lines, status = c.cmd('ID ("name" "pytest")')
        assert status.startswith(b"OK") and any(ln.startswith(b"* ID ") for ln in lines), lines
        lines, status = c.cmd("NAMESPACE")
        assert status.startswith(b"OK"), status
        assert any(re.match(rb'\* NAMESPACE \(\("[^"]*" "/"\)\) NIL NIL', ln) for ln in lines), (
            lines
        )
        lines, status = c.cmd("ENABLE CONDSTORE")
        assert status.startswith(b"OK") and b"* ENABLED CONDSTORE" in lines, lines
        lines, status = c.cmd("SELECT INBOX")
        assert any(b"HIGHESTMODSEQ" in ln for ln in lines), lines
        _, status = c.cmd("UNSELECT")
        assert status.startswith(b"OK"), status
        _, status = c.cmd("FETCH 1 FLAGS")
        assert status.startswith((b"BAD", b"NO")), status


def test_condstore_modseq_and_unchangedsince(shared_gomail):
    g = shared_gomail
    name = unique("modseq")
    with session(g) as m:
        ok(m.create(name), "CREATE")
        append(m, name, message())
        append(m, name, message())
    with Raw(g.ports["imap"]) as c:
        c.login()
        lines, status = c.cmd(f'SELECT "{name}" (CONDSTORE)')
        hms = [re.search(rb"HIGHESTMODSEQ (\d+)", ln) for ln in lines]
        hms = [int(h.group(1)) for h in hms if h]
        assert hms, lines
        lines, status = c.cmd("FETCH 1:2 (MODSEQ)")
        modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", ln).group(1)) for ln in lines]
        assert len(modseqs) == 2 and max(modseqs) <= hms[0], (lines, hms)
        lines, status = c.cmd(f"STORE 1 (UNCHANGEDSINCE {modseqs[0]}) +FLAGS (\\Seen)")
        assert status.startswith(b"OK"), status
        lines, status = c.cmd(f"STORE 1 (UNCHANGEDSINCE {modseqs[0]}) +FLAGS (\\Flagged)")
        assert b"MODIFIED 1" in status, (lines, status)
        lines, status = c.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms[0]})")
        assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH"), lines


def test_compress_deflate(shared_gomail):
    with Raw(shared_gomail.ports["imap"]) as c:
        c.login()
        _, status = c.cmd("COMPRESS DEFLATE")
        assert status.startswith(b"OK"), status
        c.inflate = zlib.decompressobj(-15)
        c.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        lines, status = c.cmd("SELECT INBOX")
        assert status.startswith(b"OK") and any(b"EXISTS" in ln for ln in lines), lines
        lines, status = c.cmd('LIST "" "*"')
        assert any(b"INBOX" in ln for ln in lines), lines


def test_bad_commands_keep_the_connection(shared_gomail):
    with Raw(shared_gomail.ports["imap"]) as c:
        c.login()
        _, status = c.cmd("SELECT INBOX")
        assert status.startswith(b"OK"), status
        for line in (
            "FETCH 1:* (FLAGS",
            "SELECT",
            "FROB",
            "FETCH 0:x FLAGS",
            "UID FETCH 1 (BODY[1.2.3.HEADER.FIELDS)",
        ):
            _, status = c.cmd(line)
            assert status.startswith((b"BAD", b"NO")), (line, status)
        _, status = c.cmd("NOOP")
        assert status.startswith(b"OK"), status


# --- imapclient ---------------------------------------------------------------------------


def imapclient_login(g, user: str = ALICE, tls: bool = False):
    from imapclient import IMAPClient

    if tls:
        c = IMAPClient("127.0.0.1", port=g.ports["imaps"], ssl=True, ssl_context=tls_context())
    else:
        c = IMAPClient("127.0.0.1", port=g.ports["imap"], ssl=False, timeout=15)
    c.login(user, g.PASSWORD)
    return c


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "imaps"])
def test_imapclient_full_round(shared_gomail, tls):
    import imapclient
    from imapclient.imapclient import SENT, TRASH

    g = shared_gomail
    c = imapclient_login(g, tls=tls)
    try:
        assert c.has_capability("IDLE") and c.has_capability("MOVE")
        name = "Entwürfe " + uuid.uuid4().hex[:6]  # imapclient encodes modified UTF-7 itself
        c.create_folder(name)
        assert c.folder_exists(name)
        listed = {f[2] for f in c.list_folders()}
        assert name in listed, listed
        assert c.find_special_folder(SENT) == "Sent"
        assert c.find_special_folder(TRASH) == "Trash"

        raw = message(subject="=?utf-8?q?K=C3=BCche?= news", body="Fresh zucchini.\r\n")
        c.append(name, raw, flags=[imapclient.FLAGGED])
        info = c.select_folder(name)
        assert info[b"EXISTS"] == 1, info
        uids = c.search(["SUBJECT", "news"])
        assert len(uids) == 1, uids
        uid = uids[0]
        assert c.search(["BODY", "zucchini"]) == [uid]
        data = c.fetch([uid], ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[]"])[uid]
        env = data[b"ENVELOPE"]
        assert env.subject == b"=?utf-8?q?K=C3=BCche?= news", env
        assert env.from_[0].mailbox == b"someone" and env.from_[0].host == b"sender.example"
        assert imapclient.FLAGGED in data[b"FLAGS"]
        assert data[b"RFC822.SIZE"] == len(raw)
        assert data[b"BODY[]"] == raw

        c.add_flags([uid], [imapclient.SEEN, b"$Important"])
        assert set(c.get_flags([uid])[uid]) >= {imapclient.SEEN, b"$Important"}
        c.remove_flags([uid], [imapclient.FLAGGED])
        assert imapclient.FLAGGED not in c.get_flags([uid])[uid]

        c.copy([uid], "Archive")
        c.move([uid], "Trash")
        assert c.search(["ALL"]) == []
        c.select_folder("Trash")
        moved = c.search(["SUBJECT", "news", "BODY", "zucchini"])
        assert moved, "the moved message is not in Trash"
        c.delete_messages(moved)
        c.expunge()
        assert c.search(["BODY", "zucchini"]) == []

        st = c.folder_status(name, ["MESSAGES", "UIDNEXT"])
        assert st[b"MESSAGES"] == 0 and st[b"UIDNEXT"] == uid + 1, st
        c.unselect_folder()
        c.rename_folder(name, name + " alt")
        assert c.folder_exists(name + " alt") and not c.folder_exists(name)
        c.delete_folder(name + " alt")

        ns = c.namespace()
        assert ns.personal and ns.personal[0][1] == "/", ns
        assert c.id_({"name": "imapclient-test"}) is not None
    finally:
        with contextlib.suppress(Exception):
            c.logout()


def test_imapclient_quota(shared_gomail):
    c = imapclient_login(shared_gomail, TINY)
    try:
        roots, quotas = c.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots, roots
        storage = [q for q in quotas if q.resource.upper() == "STORAGE"]
        assert storage and storage[0].limit in (3, 4), quotas
    finally:
        c.logout()


def test_imapclient_sort_and_thread(shared_gomail, search_folder):
    c = imapclient_login(shared_gomail)
    try:
        c.select_folder(search_folder, readonly=True)
        uids = c.search(["ALL"])
        assert c.sort(["SUBJECT"]) == [uids[i] for i in (2, 4, 0, 1, 3)]
        assert c.sort(["REVERSE", "DATE"], ["SUBJECT", "plan"]) == [uids[i] for i in (3, 1, 0)]
        threads = c.thread("REFERENCES")
        assert list(threads) == [(uids[2],), (uids[0], uids[1], uids[3]), (uids[4],)], threads
    finally:
        c.logout()


# --- curl's imap:// -----------------------------------------------------------------------


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def curl(g, url_path: str, *args: str, user: str = ALICE, scheme: str = "imap") -> bytes:
    port = g.ports["imaps" if scheme == "imaps" else "imap"]
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-u",
            f"{user}:{g.PASSWORD}",
            *args,
            f"{scheme}://127.0.0.1:{port}/{url_path}",
        ],
        capture_output=True,
        timeout=40,
    )
    assert proc.returncode == 0, f"curl {url_path} exited {proc.returncode}: {proc.stderr!r}"
    return proc.stdout


@needs_curl
def test_curl_lists_fetches_searches_and_uploads(gomail):
    g = gomail
    raw = message(subject="curl me", body="Body for curl.\r\n")
    with session(g) as m:
        ok(m.create("INBOX/curl-sub"), "CREATE")
        append(m, "INBOX", raw)
    listing = curl(g, "")
    for name in (b"INBOX", b"Sent", b"Trash"):
        assert name in listing, listing
    assert re.search(rb"^\* LIST .*INBOX", listing, re.M), listing
    inbox = curl(g, "INBOX")
    assert b"INBOX/curl-sub" in inbox, inbox
    assert curl(g, "INBOX;UID=1") == raw
    assert curl(g, "INBOX;MAILINDEX=1") == raw
    assert curl(g, "INBOX;UID=1;SECTION=TEXT") == b"Body for curl.\r\n"
    found = curl(g, "INBOX?SUBJECT%20curl")
    assert re.search(rb"^\* SEARCH 1\s*$", found, re.M), found
    # upload: APPEND
    upload = message(subject="uploaded by curl")
    path = g.root / "upload.eml"
    path.write_bytes(upload)
    curl(g, "INBOX", "-T", str(path))
    with session(g) as m:
        ok(m.select("INBOX"), "SELECT")
        assert search(m, "SUBJECT", '"uploaded by curl"') == [2]
    # custom command
    out = curl(g, "", "-X", "STATUS INBOX (MESSAGES)")
    assert re.search(rb"MESSAGES 2", out), out


@needs_curl
@pytest.mark.parametrize("scheme", ["starttls", "imaps"])
def test_curl_over_tls(shared_gomail, scheme):
    g = shared_gomail
    if scheme == "imaps":
        out = curl(g, "", "-k", scheme="imaps", user=BOB)
    else:
        out = curl(g, "", "-k", "--ssl-reqd", user=BOB)
    assert b"INBOX" in out, out


# --- mbsync (isync) -----------------------------------------------------------------------


needs_mbsync = pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync not installed")


def maildir_flags(folder: Path) -> dict[str, str]:
    """{Subject: flags of its Maildir file} for every message in a Maildir folder."""
    out = {}
    for sub in ("cur", "new"):
        for f in (folder / sub).iterdir() if (folder / sub).exists() else ():
            subject = re.search(rb"^Subject: (.*)\r?$", f.read_bytes(), re.M)
            flags = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
            out[subject.group(1).decode().strip() if subject else "?"] = flags
    return out


def mbsync_config(g, tmp: Path, user: str, mode: str) -> Path:
    local = tmp / "Mail"
    local.mkdir(exist_ok=True)
    if mode == "none":
        ssl_lines = "SSLType None\nAuthMechs LOGIN\n"
        port = g.ports["imap"]
    else:
        port = g.ports["imaps" if mode == "imaps" else "imap"]
        cert = tmp / "server.pem"
        cert.write_text(ssl.get_server_certificate(("127.0.0.1", g.ports["imaps"])))
        ssl_type = "IMAPS" if mode == "imaps" else "STARTTLS"
        ssl_lines = f"SSLType {ssl_type}\nCertificateFile {cert}\n"
    cfg = tmp / "mbsyncrc"
    cfg.write_text(
        "IMAPAccount gomail\n"
        "Host localhost\n"  # mbsync checks the name in the certificate; gomail's has localhost
        f"Port {port}\n"
        f"User {user}\n"
        f"Pass {g.PASSWORD}\n"
        f"{ssl_lines}"
        "Timeout 20\n"
        "\n"
        "IMAPStore remote\n"
        "Account gomail\n"
        "\n"
        "MaildirStore local\n"
        f"Path {local}/\n"
        f"Inbox {local}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel sync\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Remove Both\n"
        "Expunge Both\n"
        "SyncState *\n"
        "Sync All\n"
    )
    return cfg


def run_mbsync(cfg: Path) -> str:
    proc = subprocess.run(
        ["mbsync", "-c", str(cfg), "-a"], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, (
        f"mbsync exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc.stdout + proc.stderr


@needs_mbsync
@pytest.mark.parametrize("mode", ["imaps", "starttls", "none"])
def test_mbsync_two_way_sync(gomail, tmp_path, mode):
    g = gomail
    user = BOB
    with session(g, user) as m:
        append(m, "INBOX", message(subject="plain one", to=user))
        append(m, "INBOX", message(subject="seen one", to=user), flags="(\\Seen)")
        append(m, "INBOX", message(subject="flagged one", to=user), flags="(\\Flagged)")
        append(m, "INBOX", message(subject="doomed one", to=user))
        ok(m.create("Work/2025"), "CREATE")
        append(m, "Work/2025", message(subject="work one", to=user), flags="(\\Seen)")

    cfg = mbsync_config(g, tmp_path, user, mode)
    run_mbsync(cfg)
    local = tmp_path / "Mail"
    inbox = maildir_flags(local / "INBOX")
    assert inbox == {
        "plain one": "",
        "seen one": "S",
        "flagged one": "F",
        "doomed one": "",
    }, inbox
    assert maildir_flags(local / "Work" / "2025") == {"work one": "S"}
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()

    # local changes: flag one, trash one, a new message, a new folder
    def rename_with_flags(folder: Path, subject: str, flags: str) -> None:
        for sub in ("cur", "new"):
            for f in (folder / sub).iterdir():
                if f"Subject: {subject}".encode() in f.read_bytes():
                    base = f.name.split(":2,", 1)[0]
                    f.rename(folder / "cur" / f"{base}:2,{flags}")
                    return
        raise AssertionError(f"{subject} not in {folder}")

    rename_with_flags(local / "INBOX", "plain one", "FS")
    rename_with_flags(local / "INBOX", "doomed one", "T")
    (local / "INBOX" / "cur" / f"{int(time.time())}.local1.host:2,S").write_bytes(
        message(subject="written locally", to=user)
    )
    for sub in ("cur", "new", "tmp"):
        (local / "Local" / sub).mkdir(parents=True)
    (local / "Local" / "new" / f"{int(time.time())}.local2.host").write_bytes(
        message(subject="local folder one", to=user)
    )
    run_mbsync(cfg)

    with session(g, user) as m:
        assert "Local" in folders(m)
        ok(m.select("INBOX"), "SELECT")
        subjects = {}
        for n in search(m, "ALL"):
            head = fetch_one(m, str(n), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects[head.decode().split(":", 1)[1].strip()] = flags_of(m, str(n))
        assert set(subjects) == {"plain one", "seen one", "flagged one", "written locally"}, (
            subjects
        )
        assert subjects["plain one"] == {"\\Flagged", "\\Seen"}, subjects
        assert subjects["written locally"] == {"\\Seen"}, subjects
        ok(m.select("Local"), "SELECT Local")
        assert search(m, "SUBJECT", '"local folder one"') == [1]

        # server-side changes flow back
        ok(m.select("INBOX"), "SELECT")
        n = search(m, "SUBJECT", '"seen one"')[0]
        ok(m.store(str(n), "+FLAGS", "(\\Answered)"), "STORE")
        append(m, "INBOX", message(subject="late arrival", to=user))
    run_mbsync(cfg)
    inbox = maildir_flags(local / "INBOX")
    assert inbox.get("seen one") == "RS", inbox
    assert inbox.get("late arrival") == "", inbox
    assert "doomed one" not in inbox, inbox
