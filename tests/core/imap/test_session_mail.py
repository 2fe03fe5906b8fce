"""Messages over a real IMAP socket: STORE, EXPUNGE, COPY/MOVE, APPEND, SEARCH, SORT, THREAD,
IDLE, CONDSTORE/QRESYNC, and two sessions seeing each other's changes."""

from __future__ import annotations

import asyncio
import re

from gomail.context import LocalDelivery
from gomail.imap.meta import message_meta
from gomail.store import Delivery

from . import test_session_basic as _base
from .test_session_basic import USER, Imap, message

imap = _base.imap  # the fixture


async def selected(imap: Imap, n: int = 3, folder: str = "INBOX"):
    for i in range(1, n + 1):
        await imap.deliver(message(i), folder=folder)
    c = await imap.client()
    out = await c.cmd(f"SELECT {folder}", tag="S")
    assert out[-1].startswith(b"S OK [READ-WRITE]")
    return c


async def test_store_flags_and_expunge(imap: Imap):
    c = await selected(imap, 4)
    out = await c.cmd("STORE 1:2 +FLAGS (\\Deleted $Work)")
    assert out == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
        b"* 1 FETCH (FLAGS (\\Deleted $Work \\Recent))",
        b"* 2 FETCH (FLAGS (\\Deleted $Work \\Recent))",
        b"a1 OK STORE completed",
    ]
    assert await c.cmd("STORE 3 +FLAGS.SILENT (\\Seen)") == [b"a2 OK STORE completed"]
    out = await c.cmd("UID STORE 3 -FLAGS (\\Seen)")
    assert out == [b"* 3 FETCH (UID 3 FLAGS (\\Recent))", b"a3 OK UID STORE completed"]
    assert await c.cmd("STORE 9 FLAGS (\\Seen)") == [
        b"a4 BAD Invalid sequence set: no such message"
    ]
    out = await c.cmd("STORE 1 FLAGS (\\Recent)")
    assert out[-1].startswith(b"a5 BAD")
    out = await c.cmd("SEARCH DELETED")
    assert out == [b"* SEARCH 1 2", b"a6 OK SEARCH completed"]
    out = await c.cmd("EXPUNGE")
    assert out == [b"* 2 EXPUNGE", b"* 1 EXPUNGE", b"a7 OK EXPUNGE completed"]
    out = await c.cmd("FETCH 1:* (UID)")
    assert out == [b"* 1 FETCH (UID 3)", b"* 2 FETCH (UID 4)", b"a8 OK FETCH completed"]
    await c.cmd("UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    out = await c.cmd("UID EXPUNGE 4")
    assert out == [b"* 2 EXPUNGE", b"a10 OK UID EXPUNGE completed"]
    assert await c.cmd("CLOSE") == [b"a11 OK CLOSE completed"]
    assert await imap.store.list_messages(USER) == []


async def test_copy_move_append(imap: Imap):
    c = await selected(imap, 3)
    folders = {f.name: f for f in await imap.store.list_folders(USER)}
    v = folders["Archive"].uidvalidity
    out = await c.cmd("COPY 1:2 Archive")
    assert out == [f"a1 OK [COPYUID {v} 1:2 1:2] COPY completed".encode()]
    assert await c.cmd("COPY 1 Nope") == [b"a2 NO [TRYCREATE] No such mailbox"]
    out = await c.cmd("UID MOVE 2:3 Archive")
    assert out == [
        f"* OK [COPYUID {v} 2:3 3:4] Moved".encode(),
        b"* 3 EXPUNGE",
        b"* 2 EXPUNGE",
        b"a3 OK UID MOVE completed",
    ]
    raw = message(9)
    await c.send(b'a4 APPEND Drafts (\\Draft) "03-Mar-2026 12:00:00 +0100" {%d}\r\n' % len(raw))
    assert await c.line() == b"+ Ready for literal data"
    await c.send(raw + b"\r\n")
    out = await c.until("a4")
    d = folders["Drafts"].uidvalidity
    assert out == [f"a4 OK [APPENDUID {d} 1] APPEND completed".encode()]
    # MULTIAPPEND with LITERAL+ into the selected folder: EXISTS comes with the reply.
    await c.send(
        b"a5 APPEND INBOX {%d+}\r\n%s (\\Seen) {%d+}\r\n%s\r\n" % (len(raw), raw, len(raw), raw)
    )
    out = await c.until("a5")
    assert (
        out[-1] == f"a5 OK [APPENDUID {folders['INBOX'].uidvalidity} 4:5] APPEND completed".encode()
    )
    assert b"* 3 EXISTS" in out
    out = await c.cmd("APPEND Nope {3+}\r\nabc", tag="a6")
    assert out == [b"a6 NO [TRYCREATE] No such mailbox"]
    out = await c.cmd("FETCH 2:3 (FLAGS)")
    assert out[:2] == [b"* 2 FETCH (FLAGS (\\Recent))", b"* 3 FETCH (FLAGS (\\Seen \\Recent))"]
    await c.cmd("SELECT Drafts", tag="S2")
    out = await c.cmd("FETCH 1 (FLAGS INTERNALDATE ENVELOPE)")
    assert out[0].startswith(
        b'* 1 FETCH (FLAGS (\\Draft \\Recent) INTERNALDATE "03-Mar-2026 11:00:00 +0000" ENVELOPE ('
    )


async def test_append_too_big_and_quota(imap: Imap):
    c = await selected(imap, 1)
    out = await c.cmd("APPEND INBOX {999999999}")
    assert out == [b"a1 NO [TOOBIG] Message over the APPENDLIMIT of 52428800 bytes"]
    await imap.store.set_quota(USER, 100)
    out = await c.cmd(b"APPEND INBOX {300+}\r\n" + message(1, body="x" * 200)[:300])
    assert out[-1].startswith(b"a2 NO [OVERQUOTA]")
    out = await c.cmd("GETQUOTAROOT INBOX")
    assert out[0] == b'* QUOTAROOT INBOX ""'
    assert re.fullmatch(rb'\* QUOTA "" \(STORAGE \d+ 0\)', out[1])
    assert await c.cmd('SETQUOTA "" (STORAGE 1)') == [
        b"a4 NO [NOPERM] Quotas are set by the administrator"
    ]


async def test_search(imap: Imap):
    await imap.deliver(message(1, subject="Lunch plans", body="pizza tonight"))
    await imap.deliver(message(2, subject="Re: lunch plans", body="sushi instead", Cc="bob@x.org"))
    await imap.deliver(message(3, subject="Report", body="quarterly numbers " + "z" * 3000))
    c = await imap.client()
    await c.cmd("SELECT INBOX", tag="S")
    await c.cmd("STORE 2 +FLAGS (\\Flagged)", tag="T")
    cases = {
        "SEARCH ALL": b"* SEARCH 1 2 3",
        "SEARCH SUBJECT lunch": b"* SEARCH 1 2",
        "SEARCH BODY sushi": b"* SEARCH 2",
        "SEARCH TEXT ann@example": b"* SEARCH 1 2 3",
        "SEARCH FLAGGED": b"* SEARCH 2",
        "SEARCH UNFLAGGED": b"* SEARCH 1 3",
        "SEARCH NOT FLAGGED SUBJECT lunch": b"* SEARCH 1",
        "SEARCH OR BODY pizza LARGER 2000": b"* SEARCH 1 3",
        "SEARCH SMALLER 1000": b"* SEARCH 1 2",
        "SEARCH 2:*": b"* SEARCH 2 3",
        "SEARCH UID 1,3": b"* SEARCH 1 3",
        'SEARCH HEADER Cc "bob"': b"* SEARCH 2",
        'SEARCH HEADER Cc ""': b"* SEARCH 2",
        "SEARCH SENTON 3-Mar-2026": b"* SEARCH 1 2 3",
        "SEARCH SENTBEFORE 1-Jan-2026": b"* SEARCH",
        "SEARCH RECENT": b"* SEARCH 1 2 3",
        "SEARCH NEW": b"* SEARCH 1 2 3",
        "SEARCH CHARSET UTF-8 FROM ann": b"* SEARCH 1 2 3",
        "UID SEARCH SUBJECT report": b"* SEARCH 3",
        "SEARCH (FROM ann SUBJECT report) ": None,
    }
    for text, expect in cases.items():
        out = await c.cmd(text)
        if expect is None:
            assert out[-1].split()[1] == b"BAD", (text, out)
            continue
        assert out[0] == expect, (text, out)
        assert out[-1].split(b" ", 2)[1] == b"OK", (text, out)
    out = await c.cmd("SEARCH CHARSET KOI8-R FROM x")
    assert out[-1].split(b" ", 1)[1].startswith(b"NO [BADCHARSET")
    out = await c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT lunch", tag="e1")
    assert out == [b'* ESEARCH (TAG "e1") MIN 1 MAX 2 ALL 1:2 COUNT 2', b"e1 OK SEARCH completed"]
    out = await c.cmd("UID SEARCH RETURN () ALL", tag="e2")
    assert out[0] == b'* ESEARCH (TAG "e2") UID ALL 1:3'
    out = await c.cmd("SEARCH RETURN (SAVE) BODY sushi", tag="e3")
    assert out == [b"e3 OK SEARCH completed"]
    out = await c.cmd("FETCH $ (UID)", tag="e4")
    assert out == [b"* 2 FETCH (UID 2)", b"e4 OK FETCH completed"]
    out = await c.cmd("SEARCH MODSEQ 1", tag="e5")
    assert re.fullmatch(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)", out[0])


async def test_sort_and_thread(imap: Imap):
    raws = [
        message(1, subject="b topic", Date="Wed, 04 Mar 2026 10:00:00 +0000"),
        message(2, subject="A topic", Date="Tue, 03 Mar 2026 10:00:00 +0000"),
        message(3, subject="Re: b topic", In_Reply_To="<1@example.net>",
                References="<1@example.net>", Date="Thu, 05 Mar 2026 10:00:00 +0000"),
        message(4, subject="Re: Re: b topic", References="<1@example.net> <3@example.net>",
                Date="Fri, 06 Mar 2026 10:00:00 +0000"),
    ]  # fmt: skip
    for raw in raws:
        await imap.deliver(raw)
    c = await imap.client()
    await c.cmd("SELECT INBOX", tag="S")
    assert (await c.cmd("SORT (SUBJECT) UTF-8 ALL"))[0] == b"* SORT 2 1 3 4"
    assert (await c.cmd("SORT (DATE) UTF-8 ALL"))[0] == b"* SORT 2 1 3 4"
    assert (await c.cmd("SORT (REVERSE DATE) UTF-8 ALL"))[0] == b"* SORT 4 3 1 2"
    assert (await c.cmd("SORT (ARRIVAL) US-ASCII ALL"))[0] == b"* SORT 1 2 3 4"
    assert (await c.cmd("UID SORT (REVERSE ARRIVAL) UTF-8 SUBJECT topic"))[0] == b"* SORT 4 3 2 1"
    assert (await c.cmd("SORT (FROOB) UTF-8 ALL"))[-1].startswith(b"a6 BAD")
    out = await c.cmd("THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert out[0] == b"* THREAD (2)(1 (3)(4))"
    out = await c.cmd("THREAD REFERENCES UTF-8 ALL")
    assert out[0] == b"* THREAD (2)(1 3 4)"
    out = await c.cmd("UID THREAD REFERENCES UTF-8 NOT SUBJECT A")
    assert out[0] == b"* THREAD (1 3 4)"


async def test_two_sessions(imap: Imap):
    a = await selected(imap, 3)
    b = await imap.client()
    await b.cmd("SELECT INBOX", tag="S")
    # A flags and expunges; B hears about it on NOOP, in the right order.
    await a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
    await a.cmd("STORE 3 +FLAGS.SILENT (\\Flagged)")
    await a.cmd("EXPUNGE")
    await imap.deliver(message(7))
    await asyncio.sleep(0.05)
    out = await b.cmd("NOOP")
    assert out == [
        b"* 3 FETCH (FLAGS (\\Flagged))",
        b"* 2 EXPUNGE",
        b"* 3 EXISTS",
        b"* 1 RECENT",
        b"a1 OK NOOP completed",
    ], out
    # Expunges are held back during FETCH (not UID FETCH).
    await a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    await a.cmd("EXPUNGE")
    await asyncio.sleep(0.05)
    out = await b.cmd("FETCH 1 (UID)")
    assert out == [b"a2 NO [EXPUNGEISSUED] Some of the requested messages no longer exist"]
    assert b"* 1 EXPUNGE" not in out
    out = await b.cmd("UID FETCH 1:* (UID)")
    assert b"* 1 EXPUNGE" in out


async def test_idle_wakeup(imap: Imap):
    c = await selected(imap, 1)
    await c.send("i1 IDLE\r\n")
    assert await c.line() == b"+ idling"
    delivery = Delivery(
        queue_id="q1",
        sender="x@example.net",
        raw=message(5),
        local=(LocalDelivery(USER, "INBOX"),),
        meta=message_meta(message(5)),
    )
    await imap.store.deliver(delivery)
    assert await c.line(wait=1.0) == b"* 2 EXISTS"
    assert await c.line(wait=1.0) == b"* 2 RECENT"
    other = await imap.client()
    await other.cmd("SELECT INBOX", tag="S")
    await other.cmd("STORE 1 +FLAGS (\\Seen)")
    assert await c.line(wait=1.0) == b"* 1 FETCH (FLAGS (\\Seen \\Recent))"
    await c.send("DONE\r\n")
    assert await c.line() == b"i1 OK IDLE terminated"


async def test_condstore_qresync(imap: Imap):
    c = await selected(imap, 3)
    out = await c.cmd("FETCH 1:* (MODSEQ)")
    m = re.fullmatch(rb"\* 3 FETCH \(MODSEQ \((\d+)\)\)", out[2])
    base = int(m.group(1))
    out = await c.cmd(f"STORE 1 (UNCHANGEDSINCE {base}) +FLAGS (\\Seen)")
    assert re.fullmatch(rb"\* 1 FETCH \(FLAGS \(\\Seen \\Recent\) MODSEQ \(\d+\)\)", out[0])
    out = await c.cmd(f"STORE 1:2 (UNCHANGEDSINCE {base}) +FLAGS (\\Answered)")
    assert out[-1] == b"a3 OK [MODIFIED 1] Conditional STORE failed"
    out = await c.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {base})")
    assert [line.split(b" ")[1] for line in out[:-1]] == [b"1", b"2"]
    await c.cmd("LOGOUT")
    c2 = await imap.client()
    assert await c2.cmd("ENABLE QRESYNC") == [b"* ENABLED QRESYNC", b"a1 OK ENABLE completed"]
    await c2.cmd("STORE 3 +FLAGS (\\Deleted)", tag="x") if False else None
    await imap.store.store_flags(USER, "INBOX", [3], ["\\Deleted"], "add")
    await imap.store.expunge(USER, "INBOX")
    v = (await imap.store.select_folder(USER, "INBOX")).uidvalidity
    out = await c2.cmd(f"SELECT INBOX (QRESYNC ({v} {base} 1:3))")
    assert b"* VANISHED (EARLIER) 3" in out
    assert any(line.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ") for line in out)
    assert out[-1] == b"a2 OK [READ-WRITE] SELECT completed"


async def test_imapclient(imap: Imap):
    from imapclient import IMAPClient

    for n in (1, 2):
        await imap.deliver(message(n))

    def run():
        c = IMAPClient("127.0.0.1", port=imap.port, ssl=False, timeout=10)
        c.login(USER, "secret-pw")
        caps = c.capabilities()
        assert b"MOVE" in caps and b"THREAD=REFERENCES" in caps and b"CONDSTORE" in caps
        names = [name for _flags, _delim, name in c.list_folders()]
        assert names[0] == "INBOX" and "Sent" in names
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] == 3
        assert c.search(["SUBJECT", "test 2"]) == [2]
        data = c.fetch([1, 2], ["ENVELOPE", "FLAGS", "RFC822.SIZE"])
        assert data[1][b"ENVELOPE"].subject == b"test 1"
        assert c.sort(["REVERSE", "ARRIVAL"]) == [2, 1]
        assert c.thread() == ((1,), (2,))
        c.add_flags([1], [b"\\Flagged"])
        assert c.get_flags([1])[1] == (b"\\Flagged", b"\\Recent")
        c.move([2], "Archive")
        assert c.search() == [1]
        c.create_folder("Neu/Ünter")
        assert ((b"\\HasNoChildren",), b"/", "Neu/Ünter") in c.list_folders("Neu/*")
        status = c.folder_status("Archive", ["MESSAGES", "UIDNEXT"])
        assert status[b"MESSAGES"] == 1
        c.idle()
        c.idle_done()
        c.logout()

    await asyncio.to_thread(run)


async def test_selected_folder_deleted_by_another_session(imap: Imap):
    await imap.store.create_folder(USER, "Work")
    a = await selected(imap, 1, folder="Work")
    b = await imap.client()
    assert (await b.cmd("DELETE Work"))[-1] == b"a1 OK DELETE completed"
    await asyncio.sleep(0.05)
    out = await a.cmd("NOOP")
    assert out[0] == b"* BYE The selected mailbox was deleted or renamed by another session"
