"""QRESYNC and CONDSTORE over a pruned expunge history: VANISHED (EARLIER) names every UID
missing from the folder, in compact ranges, when the client's MODSEQ is older than what the
store remembers; IDLE and NOOP still announce exactly the selected view's messages."""

from __future__ import annotations

import asyncio
import re

import pytest
from gomail.store import sqlite as store_sqlite
from gomail.store.sqlite import connect

from . import test_session_basic as _base
from .test_session_basic import USER, Imap, message

imap = _base.imap  # the fixture

HISTORY = 5


@pytest.fixture(autouse=True)
def small_history(monkeypatch):
    monkeypatch.setattr(store_sqlite, "EXPUNGE_HISTORY", HISTORY)


async def highest(imap: Imap) -> int:
    return (await imap.store.select_folder(USER, "INBOX", claim_recent=False)).highestmodseq


async def expunge(imap: Imap, uids: list[int], flag: bool = True) -> int:
    """Expunge the messages in one write job; the folder's HIGHESTMODSEQ after it."""
    if flag:
        await imap.store.store_flags(USER, "INBOX", uids, ["\\Deleted"], "add")
    assert await imap.store.expunge(USER, "INBOX", uids) == uids
    return await highest(imap)


def expunge_floor(imap: Imap) -> int:
    conn = connect(imap.store.db_path)
    try:
        return conn.execute("SELECT expunge_floor FROM mailboxes WHERE name = 'INBOX'").fetchone()[
            0
        ]
    finally:
        conn.close()


async def test_qresync_vanished_after_pruning(imap: Imap):
    for n in range(1, 21):
        await imap.deliver(message(n))
    base = await highest(imap)
    gone = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]
    seen = {}
    for uid in gone:
        seen[uid] = await expunge(imap, [uid])
    floor = expunge_floor(imap)
    assert base < floor < seen[13]
    # A folder through which a million messages went (UIDNEXT set directly), one new message.
    conn = connect(imap.store.db_path)
    with conn:
        conn.execute("UPDATE mailboxes SET uidnext = 1000000 WHERE name = 'INBOX'")
    conn.close()
    assert await imap.deliver(message(99)) == 1_000_000
    v = (await imap.store.select_folder(USER, "INBOX", claim_recent=False)).uidvalidity

    def run() -> None:
        m = imap.imaplib()
        try:
            assert m.enable("QRESYNC")[0] == "OK"
            # Older than the history: every UID below UIDNEXT not in the folder.
            typ, _ = m.select(f"INBOX (QRESYNC ({v} {base}))")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 1:6,8:13,21:999999"]
            # known-uids limit it
            typ, _ = m.select(f"INBOX (QRESYNC ({v} {base} 1:20))")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 1:6,8:13"]
            # Within the history: exactly the recorded expunges, as before.
            typ, _ = m.select(f"INBOX (QRESYNC ({v} {seen[11]}))")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 12:13"]
            fetched = m.response("FETCH")[1]  # the message new since then
            assert len(fetched) == 1 and b"UID 1000000 " in fetched[0]
            typ, data = m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {base} VANISHED)")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 1:6,8:13,21:999999"]
            # the one message changed since base is the new one
            assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"1000000"]
            typ, _ = m.uid("FETCH", "5:15", f"(FLAGS) (CHANGEDSINCE {base} VANISHED)")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 5:6,8:13"]
            typ, _ = m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {seen[12]} VANISHED)")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [b"(EARLIER) 13"]
            typ, _ = m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {seen[13]} VANISHED)")
            assert typ == "OK"
            assert m.response("VANISHED")[1] == [None]  # nothing since the last expunge
        finally:
            m.logout()

    await asyncio.to_thread(run)


async def test_noop_and_idle_after_a_batch_beyond_the_history(imap: Imap):
    for n in range(1, 11):
        await imap.deliver(message(n))
    await expunge(imap, [1])  # before anyone selects: never announced
    batch = [3, 4, 5, 6, 7, 8, 9]
    await imap.store.store_flags(USER, "INBOX", batch, ["\\Deleted"], "add")
    plain = await imap.client()
    out = await plain.cmd("SELECT INBOX", tag="S")
    assert b"* 9 EXISTS" in out
    qr = await imap.client()
    assert (await qr.cmd("ENABLE QRESYNC"))[-1].startswith(b"a1 OK")
    out = await qr.cmd("EXAMINE INBOX", tag="S")
    assert b"* 9 EXISTS" in out
    await qr.send("i1 IDLE\r\n")
    assert await qr.line() == b"+ idling"
    # One expunge of more messages than the history holds: all of it is forgotten, so both
    # sessions' MODSEQs fall below the floor and their sync reads every missing UID.
    top = await expunge(imap, batch, flag=False)
    assert expunge_floor(imap) == top
    assert await qr.line(wait=2.0) == b"* VANISHED 3:9"
    await qr.send("DONE\r\n")
    assert await qr.line() == b"i1 OK IDLE terminated"
    out = await plain.cmd("NOOP")
    assert out == [b"* %d EXPUNGE" % seq for seq in range(8, 1, -1)] + [b"a1 OK NOOP completed"]
    out = await plain.cmd("UID FETCH 1:* (UID)")
    assert out == [b"* 1 FETCH (UID 2)", b"* 2 FETCH (UID 10)", b"a2 OK UID FETCH completed"]
