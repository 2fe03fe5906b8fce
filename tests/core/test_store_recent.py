"""Store.claim_recent: \\Recent for messages that arrive while a folder is selected read-write
goes to exactly one session (RFC 3501), through mailboxes.recent_from (migration 0002)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gomail.store import AppendMessage, NoSuchFolder
from gomail.store.sqlite import SqliteStore
from storebed import opened_store

DOMAIN = "example.org"
USER = f"alice@{DOMAIN}"


@pytest.fixture
async def store(tmp_path: Path):
    async with opened_store(tmp_path / "data", users=[USER]) as s:
        yield s


async def fill(store: SqliteStore, count: int, folder: str = "INBOX") -> list[int]:
    raws = [f"From: a@example.net\r\nSubject: {n}\r\n\r\nhi\r\n".encode() for n in range(count)]
    _v, uids = await store.append_many(USER, folder, [AppendMessage(r) for r in raws])
    return uids


async def inbox_recent(store: SqliteStore) -> int:
    (inbox,) = [f for f in await store.list_folders(USER) if f.name == "INBOX"]
    return inbox.recent


async def test_concurrent_claims_are_disjoint(store: SqliteStore):
    await fill(store, 2)
    first = await store.select_folder(USER, "INBOX", claim_recent=True)
    second = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert first.recent == {1, 2} and second.recent == frozenset()
    # Three messages arrive while both sessions have INBOX selected; both claim them at once.
    new = await fill(store, 3)
    assert new == [3, 4, 5]
    a, b = await asyncio.gather(
        store.claim_recent(USER, "INBOX", new), store.claim_recent(USER, "INBOX", new)
    )
    assert a.isdisjoint(b) and a | b == {3, 4, 5}
    assert {frozenset(a), frozenset(b)} == {frozenset(), frozenset({3, 4, 5})}
    assert await inbox_recent(store) == 0
    # A later SELECT gets none of them as \Recent.
    third = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert third.recent == frozenset()


async def test_many_racing_claims_of_overlapping_sets(store: SqliteStore):
    await store.select_folder(USER, "INBOX", claim_recent=True)
    new = await fill(store, 6)
    batches = [new[:2], new[:4], new, new[2:5], new[4:]]
    results = await asyncio.gather(*(store.claim_recent(USER, "INBOX", b) for b in batches))
    seen: set[int] = set()
    for got, asked in zip(results, batches, strict=True):
        assert got <= set(asked)
        assert seen.isdisjoint(got)
        seen |= got
    assert seen == set(new)


async def test_claim_never_lowers_recent_from(store: SqliteStore):
    await fill(store, 4)
    assert await store.claim_recent(USER, "INBOX", [3, 4]) == {3, 4}
    # Lower UIDs are below recent_from now (4 + 1): not claimed, and the mark stays at 5.
    assert await store.claim_recent(USER, "INBOX", [1, 2]) == set()
    assert await store.claim_recent(USER, "INBOX", [4, 2]) == set()
    assert await inbox_recent(store) == 0
    await fill(store, 1)
    assert await inbox_recent(store) == 1
    assert await store.claim_recent(USER, "INBOX", []) == set()
    assert await inbox_recent(store) == 1
    snap = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert snap.recent == {5}


async def test_select_then_claim_share_one_mark(store: SqliteStore):
    await fill(store, 1)
    # EXAMINE (no claim) leaves everything for the next claimer.
    assert (await store.select_folder(USER, "INBOX")).recent == frozenset()
    assert await store.claim_recent(USER, "INBOX", [1]) == {1}
    assert (await store.select_folder(USER, "INBOX", claim_recent=True)).recent == frozenset()
    await fill(store, 1)
    assert (await store.select_folder(USER, "INBOX", claim_recent=True)).recent == {2}
    assert await store.claim_recent(USER, "INBOX", [2]) == set()


async def test_claim_in_a_missing_folder(store: SqliteStore):
    with pytest.raises(NoSuchFolder):
        await store.claim_recent(USER, "Nope", [1])
