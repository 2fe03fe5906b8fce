"""The bounded expunge history (QRESYNC/CONDSTORE VANISHED): the store keeps the most recent
EXPUNGE_HISTORY expunges per folder, remembers the highest MODSEQ it forgot (expunge_floor),
and answers a question older than that with every UID missing from the folder, as ranges."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from gomail.store import AppendMessage, UidSet
from gomail.store import sqlite as store_sqlite
from gomail.store.sqlite import SqliteStore, connect
from storebed import opened_store

DOMAIN = "example.org"
USER = f"alice@{DOMAIN}"


@pytest.fixture
async def store(tmp_path: Path):
    async with opened_store(tmp_path / "data", users=[USER], blob_inline_max=4096) as s:
        yield s


@pytest.fixture
def small_history(monkeypatch):
    monkeypatch.setattr(store_sqlite, "EXPUNGE_HISTORY", 5)
    return 5


def message(n: int) -> bytes:
    return f"From: a@example.net\r\nSubject: test {n}\r\n\r\nbody {n}\r\n".encode()


async def fill(store: SqliteStore, count: int, folder: str = "INBOX", start: int = 0) -> list[int]:
    _v, uids = await store.append_many(
        USER, folder, [AppendMessage(message(n)) for n in range(start, start + count)]
    )
    return uids


def query(store: SqliteStore, sql: str, *params) -> list[tuple]:
    conn = connect(store.db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def folder_row(store: SqliteStore, folder: str = "INBOX") -> tuple[int, int, int, int]:
    """(id, expunge_floor, uidnext, highestmodseq) of one of USER's folders."""
    (row,) = query(
        store,
        "SELECT m.id, m.expunge_floor, m.uidnext, m.highestmodseq FROM mailboxes m"
        " JOIN users u ON u.id = m.user_id WHERE u.address = ? AND m.name = ?",
        USER,
        folder,
    )
    return row


def history(store: SqliteStore, folder: str = "INBOX") -> list[tuple[int, int]]:
    """(uid, modseq) rows of the folder's expunge history, by UID."""
    return query(
        store,
        "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? ORDER BY uid",
        folder_row(store, folder)[0],
    )


async def expunge_one(store: SqliteStore, uid: int, folder: str = "INBOX") -> int:
    """Flag and expunge one message; the MODSEQ of the expunge."""
    await store.store_flags(USER, folder, [uid], ["\\Deleted"], "add")
    assert await store.expunge(USER, folder, [uid]) == [uid]
    return folder_row(store, folder)[3]


# --- UidSet -----------------------------------------------------------------------------------


def test_uidset_operations():
    s = UidSet.of([9, 1, 2, 3, 7, 2])
    assert s.ranges == ((1, 3), (7, 7), (9, 9))
    assert list(s) == [1, 2, 3, 7, 9] and len(s) == 5 and s
    assert not UidSet() and list(UidSet()) == []
    assert 2 in s and 7 in s and 4 not in s and 10 not in s and 0 not in s
    assert UidSet.from_ranges([(5, 9), (1, 2), (3, 3), (8, 12), (20, 19)]).ranges == (
        (1, 3),
        (5, 12),
    )
    huge = UidSet(((1, 999_999),))
    assert len(huge) == 999_999 and 500_000 in huge
    assert huge.intersect([(10, 20), (999_990, 2**32)]).ranges == ((10, 20), (999_990, 999_999))
    assert s.intersect([(2, 8)]).ranges == ((2, 3), (7, 7))
    assert huge.without([1, 5, 6, 999_999]).ranges == ((2, 4), (7, 999_998))
    assert s.without([]).ranges == s.ranges and s.without([1, 2, 3, 7, 9]).ranges == ()
    assert huge.members_of([0, 3, 1_000_000, 2_000_000]) == [3]
    assert s.members_of([2, 4, 7, 8]) == [2, 7]


# --- the history is bounded ------------------------------------------------------------------


async def test_history_keeps_the_recent_expunges(store: SqliteStore, small_history: int):
    await fill(store, 15)  # UIDs 1..15
    gone = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]  # 7, 14 and 15 stay
    modseq_of = {}
    for uid in gone:
        modseq_of[uid] = await expunge_one(store, uid)
        assert len(history(store)) <= small_history
    rows = history(store)
    assert rows == [(u, modseq_of[u]) for u in gone[-small_history:]]
    _id, floor, uidnext, _hm = folder_row(store)
    assert uidnext == 16
    # The floor is the MODSEQ of the newest expunge forgotten.
    assert floor == modseq_of[gone[-small_history - 1]]
    # At or above the floor: exactly the recorded expunges, as before.
    assert list(await store.expunged_since(USER, "INBOX", floor)) == gone[-small_history:]
    assert list(await store.expunged_since(USER, "INBOX", modseq_of[11])) == [12, 13]
    assert list(await store.expunged_since(USER, "INBOX", modseq_of[13])) == []
    for since in range(floor, modseq_of[13] + 1):
        expected = [u for u, m in rows if m > since]
        assert list(await store.expunged_since(USER, "INBOX", since)) == expected
    # Below the floor: every UID below UIDNEXT that is not in the folder, as ranges.
    for since in (0, 1, floor - 1):
        answer = await store.expunged_since(USER, "INBOX", since)
        assert answer.ranges == ((1, 6), (8, 13))
    changes = await store.changes_since(USER, "INBOX", floor - 1)
    assert changes.expunged.ranges == ((1, 6), (8, 13)) and changes.uidnext == 16
    assert (await store.changes_since(USER, "INBOX", floor)).expunged == UidSet.of(
        gone[-small_history:]
    )


async def test_below_the_floor_with_a_large_uidnext(store: SqliteStore, small_history: int):
    await fill(store, 10)
    for uid in range(1, 10):
        await expunge_one(store, uid)  # 10 stays
    floor = folder_row(store)[1]
    assert floor > 0
    # A folder through which a million messages went: UIDNEXT far ahead (set directly, as
    # appending a million messages would take minutes), then a few new ones.
    conn = connect(store.db_path)
    with conn:
        conn.execute("UPDATE mailboxes SET uidnext = 1000000 WHERE id = ?", (folder_row(store)[0],))
    conn.close()
    assert await fill(store, 3, start=100) == [1_000_000, 1_000_001, 1_000_002]
    await expunge_one(store, 1_000_001)
    answer = await store.expunged_since(USER, "INBOX", 0)
    assert isinstance(answer, UidSet)
    assert answer.ranges == ((1, 9), (11, 999_999), (1_000_001, 1_000_001))
    assert len(answer) == 1_000_002 - 3  # every UID below UIDNEXT but the three present
    # the recent expunge alone, above the floor
    assert list(await store.expunged_since(USER, "INBOX", folder_row(store)[3] - 1)) == [1_000_001]


async def test_a_batch_larger_than_the_history(store: SqliteStore, small_history: int):
    await fill(store, 9)
    await expunge_one(store, 1)
    before = folder_row(store)[3]
    await store.store_flags(USER, "INBOX", list(range(2, 9)), ["\\Deleted"], "add")
    assert await store.expunge(USER, "INBOX") == list(range(2, 9))
    # Seven rows share one MODSEQ: keeping five of them would leave the floor wrong, so the
    # whole batch is forgotten and the floor is its MODSEQ.
    _id, floor, _n, highest = folder_row(store)
    assert history(store) == [] and floor == highest
    assert list(await store.expunged_since(USER, "INBOX", highest)) == []
    assert (await store.expunged_since(USER, "INBOX", before)).ranges == ((1, 8),)


async def test_move_and_rename_inbox_prune_the_source(store: SqliteStore, small_history: int):
    await fill(store, 12)
    for uid in range(1, 7):
        assert await store.move_messages(USER, "INBOX", [uid], "Archive") == [(uid, uid)]
        assert len(history(store)) <= small_history
    assert [u for u, _m in history(store)] == [2, 3, 4, 5, 6]
    floor = folder_row(store)[1]
    assert floor > 0
    assert (await store.expunged_since(USER, "INBOX", 0)).ranges == ((1, 6),)
    assert history(store, "Archive") == []  # the target records no expunges
    await store.rename_folder(USER, "INBOX", "Old")  # moves 7..12 out of INBOX
    assert len(history(store)) <= small_history
    assert folder_row(store)[1] > floor
    assert (await store.expunged_since(USER, "INBOX", 0)).ranges == ((1, 12),)


async def test_small_histories_are_untouched(store: SqliteStore):
    assert store_sqlite.EXPUNGE_HISTORY == 10_000
    await fill(store, 6)
    for uid in (2, 4, 6):
        await expunge_one(store, uid)
    assert [u for u, _m in history(store)] == [2, 4, 6]
    assert folder_row(store)[1] == 0
    assert list(await store.expunged_since(USER, "INBOX", 0)) == [2, 4, 6]


async def test_deleting_a_folder_drops_its_history(store: SqliteStore, small_history: int):
    await store.create_folder(USER, "Box")
    await fill(store, 8, "Box")
    for uid in range(1, 8):
        await expunge_one(store, uid, "Box")
    box_id = folder_row(store, "Box")[0]
    assert len(query(store, "SELECT * FROM expunged WHERE mailbox_id = ?", box_id)) == 5
    await store.delete_folder(USER, "Box")
    assert query(store, "SELECT * FROM expunged WHERE mailbox_id = ?", box_id) == []


def test_pruning_uses_the_modseq_index(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "x.db")
    store_sqlite.migrate(conn)
    plans = [
        conn.execute("EXPLAIN QUERY PLAN " + sql, (1, 5)).fetchall()
        for sql in (
            "SELECT modseq FROM expunged WHERE mailbox_id = ? ORDER BY modseq DESC"
            " LIMIT 1 OFFSET ?",
            "DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?",
        )
    ]
    for plan in plans:
        detail = " ".join(str(row[-1]) for row in plan)
        assert "expunged_modseq" in detail and "TEMP B-TREE" not in detail
    columns = [row[1] for row in conn.execute("PRAGMA table_info(mailboxes)")]
    assert "expunge_floor" in columns
    conn.close()
