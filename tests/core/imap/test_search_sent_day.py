"""SENTBEFORE / SENTON / SENTSINCE compare the Date header's day as written (RFC 3501: time and
zone disregarded), not the UTC day of its instant; the store keeps that day as sent_day."""

from __future__ import annotations

import dataclasses
import datetime as _dt

from gomail.imap.meta import message_meta

from . import test_session_basic as _base
from .test_session_basic import USER, Imap, message

imap = _base.imap  # the fixture

WEST = "Mon, 1 Jan 2024 23:30:00 -0800"  # 2 Jan 07:30 UTC; written day 1 Jan
EAST = "Tue, 2 Jan 2024 05:00:00 +1400"  # 1 Jan 15:00 UTC; written day 2 Jan


async def _search(imap: Imap, cases: dict[str, bytes]) -> None:
    c = await imap.client()
    out = await c.cmd("SELECT INBOX", tag="S")
    assert out[-1].startswith(b"S OK")
    for text, expect in cases.items():
        out = await c.cmd(text)
        assert out[0] == expect, (text, out)
        assert out[-1].endswith(b"OK SEARCH completed"), (text, out)


async def test_sent_keys_use_the_day_as_written(imap: Imap):
    await imap.deliver(message(1, Date=WEST))
    await imap.deliver(message(2, Date=EAST))
    await _search(
        imap,
        {
            "SEARCH SENTON 1-Jan-2024": b"* SEARCH 1",
            "SEARCH SENTON 2-Jan-2024": b"* SEARCH 2",
            "SEARCH SENTBEFORE 2-Jan-2024": b"* SEARCH 1",
            "SEARCH SENTBEFORE 3-Jan-2024": b"* SEARCH 1 2",
            "SEARCH SENTBEFORE 1-Jan-2024": b"* SEARCH",
            "SEARCH SENTSINCE 1-Jan-2024": b"* SEARCH 1 2",
            "SEARCH SENTSINCE 2-Jan-2024": b"* SEARCH 2",
            "SEARCH SENTSINCE 3-Jan-2024": b"* SEARCH",
            "SEARCH NOT SENTON 1-Jan-2024": b"* SEARCH 2",
        },
    )


async def test_without_sent_day_falls_back_to_the_utc_day(imap: Imap):
    # meta stored before the sent_day column existed: the UTC day of the Date instant
    for n, date in ((1, WEST), (2, EAST)):
        raw = message(n, Date=date)
        meta = dataclasses.replace(message_meta(raw), sent_day=None)
        await imap.store.append(USER, "INBOX", raw, meta=meta)
    await _search(
        imap,
        {
            "SEARCH SENTON 1-Jan-2024": b"* SEARCH 2",
            "SEARCH SENTON 2-Jan-2024": b"* SEARCH 1",
        },
    )


async def test_store_returns_sent_day(imap: Imap):
    await imap.deliver(message(1, Date=WEST))
    await imap.deliver(message(2, Date=EAST))
    await imap.deliver(message(3, Date="not a date"))
    await imap.store.append(USER, "INBOX", message(4))  # no meta at all
    rows = await imap.store.fetch_sort_keys(USER, "INBOX")
    assert [(r.uid, r.sent_day) for r in rows] == [
        (1, 20240101),
        (2, 20240102),
        (3, None),
        (4, None),
    ]
    # date stays the true instant (SORT DATE)
    assert rows[0].date == _dt.datetime(2024, 1, 2, 7, 30, tzinfo=_dt.UTC).timestamp()
    assert rows[1].date == _dt.datetime(2024, 1, 1, 15, 0, tzinfo=_dt.UTC).timestamp()
    assert message_meta(message(1, Date=WEST)).sent_day == 20240101
    assert message_meta(message(1, Date=EAST)).sent_day == 20240102


async def test_set_meta_stores_sent_day(imap: Imap):
    raw = message(1, Date=WEST)
    _v, uid = await imap.store.append(USER, "INBOX", raw)  # stored without meta
    assert (await imap.store.fetch_sort_keys(USER, "INBOX"))[0].sent_day is None
    await imap.store.set_meta(USER, "INBOX", uid, message_meta(raw))
    assert (await imap.store.fetch_sort_keys(USER, "INBOX"))[0].sent_day == 20240101
