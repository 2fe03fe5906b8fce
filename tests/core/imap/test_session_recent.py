"""\\Recent over a real IMAP socket: a message that arrives while several sessions have the
folder selected read-write is \\Recent in exactly one of them (RFC 3501 section 2.3.2), and
never in an EXAMINE session."""

from __future__ import annotations

import asyncio

from . import test_session_basic as _base
from .test_session_basic import Imap, message

imap = _base.imap  # the fixture


def recent_count(out: list[bytes]) -> int:
    (line,) = [x for x in out if x.startswith(b"* ") and x.endswith(b" RECENT")]
    return int(line.split()[1])


async def test_new_message_is_recent_in_one_session(imap: Imap):
    a = await imap.client()
    b = await imap.client()
    e = await imap.client()
    for c in (a, b):
        out = await c.cmd("SELECT INBOX", tag="S")
        assert b"* 0 EXISTS" in out and b"* 0 RECENT" in out
        assert out[-1].startswith(b"S OK [READ-WRITE]")
    out = await e.cmd("EXAMINE INBOX", tag="E")
    assert out[-1].startswith(b"E OK [READ-ONLY]")

    await imap.deliver(message(1))
    await asyncio.sleep(0.05)
    # Both read-write sessions pick the message up at the same moment.
    outs = await asyncio.gather(a.cmd("NOOP"), b.cmd("NOOP"), e.cmd("NOOP"))
    for out in outs:
        assert b"* 1 EXISTS" in out and out[-1] == b"a1 OK NOOP completed", out
    assert sorted(recent_count(out) for out in outs[:2]) == [0, 1]
    assert recent_count(outs[2]) == 0
    flags = await asyncio.gather(*(c.cmd("FETCH 1 (FLAGS)") for c in (a, b, e)))
    lines = sorted(out[0] for out in flags[:2])
    assert lines == [b"* 1 FETCH (FLAGS ())", b"* 1 FETCH (FLAGS (\\Recent))"], flags
    assert flags[2][0] == b"* 1 FETCH (FLAGS ())"
    winner, loser = (a, b) if recent_count(outs[0]) == 1 else (b, a)

    # One after the other: the first session to see new mail gets it, the other does not.
    await imap.deliver(message(2))
    await imap.deliver(message(3))
    await asyncio.sleep(0.05)
    out = await loser.cmd("NOOP")
    assert b"* 3 EXISTS" in out and b"* 2 RECENT" in out, out
    out = await winner.cmd("NOOP")
    assert b"* 3 EXISTS" in out and b"* 1 RECENT" in out, out
    out = await loser.cmd("FETCH 1:3 (FLAGS)")
    assert out[:3] == [
        b"* 1 FETCH (FLAGS ())",
        b"* 2 FETCH (FLAGS (\\Recent))",
        b"* 3 FETCH (FLAGS (\\Recent))",
    ], out
    out = await winner.cmd("FETCH 1:3 (FLAGS)")
    assert out[:3] == [
        b"* 1 FETCH (FLAGS (\\Recent))",
        b"* 2 FETCH (FLAGS ())",
        b"* 3 FETCH (FLAGS ())",
    ], out

    # Everything is claimed: a later SELECT and STATUS see nothing \Recent.
    c = await imap.client()
    out = await c.cmd("STATUS INBOX (MESSAGES RECENT)")
    assert out[0] == b"* STATUS INBOX (MESSAGES 3 RECENT 0)", out
    out = await c.cmd("SELECT INBOX", tag="S")
    assert b"* 3 EXISTS" in out and b"* 0 RECENT" in out, out
