"""The store's IMAP methods: folders, snapshots, flags and MODSEQ, copy/move/expunge, append,
full-text and header search, change feeds."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from gomail.context import LocalDelivery
from gomail.store import (
    AppendMessage,
    Change,
    Delivery,
    FolderExists,
    MessageMeta,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
    StoreError,
    canonical_flags,
)
from gomail.store.blobs import sha256_hex
from gomail.store.sqlite import MIGRATIONS_DIR, SqliteStore, connect, migrate
from storebed import opened_store

DOMAIN = "example.org"
USER = f"alice@{DOMAIN}"
OTHER = f"bob@{DOMAIN}"


@pytest.fixture
async def store(tmp_path: Path):
    async with opened_store(tmp_path / "data", users=[USER, OTHER], blob_inline_max=4096) as s:
        yield s


def message(n: int = 0, size: int = 0, body: str = "hello") -> bytes:
    head = f"From: a@example.net\r\nSubject: test {n}\r\n\r\n{body}\r\n".encode()
    return head + b"x" * max(size - len(head), 0)


def meta(n: int = 0, **kw) -> MessageMeta:
    fields = {
        "envelope": f'(NIL "test {n}" NIL NIL NIL NIL NIL NIL NIL NIL)',
        "bodystructure": '("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1 NIL NIL NIL)',
        "body": '("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1)',
        "part_map": '{"1": [40, 45]}',
        "header_text": f"From: Ann <a@example.net>\nSubject: test {n}\nX-Tag: tag{n}",
        "text": f"hello number {n}",
        "subject": f"test {n}",
        "from_": "Ann <a@example.net>",
        "sort_subject": f"test {n}",
        "sort_from": "a",
        "date": 1_700_000_000.0 + n,
        "message_id": f"<{n}@example.net>",
    }
    fields.update(kw)
    return MessageMeta(**fields)


def db(store: SqliteStore) -> sqlite3.Connection:
    return connect(store.db_path)


def blob_refcount(store: SqliteStore, raw: bytes) -> int | None:
    conn = db(store)
    try:
        row = conn.execute(
            "SELECT refcount FROM blobs WHERE sha256 = ?", (sha256_hex(raw),)
        ).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


async def deliver(store: SqliteStore, raw: bytes, *users: str, m: MessageMeta | None = None):
    local = tuple(LocalDelivery(u) for u in (users or (USER,)))
    await store.deliver(Delivery("q1", "s@example.net", raw, local, meta=m))


async def fill(store: SqliteStore, count: int, folder: str = "INBOX") -> list[int]:
    _v, uids = await store.append_many(
        USER, folder, [AppendMessage(message(n), meta=meta(n)) for n in range(count)]
    )
    return uids


# --- flags ------------------------------------------------------------------------------------


def test_canonical_flags():
    assert canonical_flags(["foo", "\\flagged", "\\SEEN", "Foo", "\\Recent", "$Junk"]) == (
        "\\Seen",
        "\\Flagged",
        "$Junk",
        "foo",
    )
    for bad in ["", "a b", "(x", "x\x00"]:
        with pytest.raises(StoreError):
            canonical_flags([bad])


# --- folders ----------------------------------------------------------------------------------


async def test_list_folders_of_a_new_account(store: SqliteStore):
    folders = await store.list_folders(USER)
    assert [f.name for f in folders] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    by_name = {f.name: f for f in folders}
    assert by_name["Sent"].special_use == "\\Sent"
    assert by_name["INBOX"].special_use is None
    inbox = by_name["INBOX"]
    assert (inbox.messages, inbox.unseen, inbox.recent, inbox.bytes) == (0, 0, 0, 0)
    assert inbox.subscribed and inbox.uidnext == 1 and inbox.highestmodseq == 1
    with pytest.raises(StoreError):
        await store.list_folders(f"nobody@{DOMAIN}")


async def test_list_folders_counts(store: SqliteStore):
    await fill(store, 3)
    await store.store_flags(USER, "INBOX", [1], ["\\Seen"], "add")
    inbox = (await store.list_folders(USER))[0]
    assert (inbox.messages, inbox.unseen, inbox.recent, inbox.uidnext) == (3, 2, 3, 4)
    assert inbox.bytes == sum(len(message(n)) for n in range(3))
    await store.select_folder(USER, "INBOX", claim_recent=True)
    assert (await store.list_folders(USER))[0].recent == 0


async def test_create_folder(store: SqliteStore):
    await store.create_folder(USER, "Projects/2024/Q1/")
    names = [f.name for f in await store.list_folders(USER)]
    assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= set(names)
    folders = {f.name: f for f in await store.list_folders(USER)}
    validities = {f.uidvalidity for n, f in folders.items() if n.startswith("Projects")}
    assert len(validities) == 3  # each its own
    with pytest.raises(FolderExists):
        await store.create_folder(USER, "Projects/2024")
    with pytest.raises(FolderExists):
        await store.create_folder(USER, "inbox")
    await store.create_folder(USER, "Projects/2024/Q2")  # parents exist: fine
    await store.create_folder(USER, "Everything", special_use="\\all")
    assert {f.name: f for f in await store.list_folders(USER)}["Everything"].special_use == "\\All"
    for bad in ["", "/", "a//b", "/a", "a*", "b%", "tab\there"]:
        with pytest.raises(StoreError):
            await store.create_folder(USER, bad)
    with pytest.raises(StoreError):
        await store.create_folder(USER, "Odd", special_use="\\Bogus")
    # INBOX is case-insensitive as a first level too
    await store.create_folder(USER, "inbox/sub")
    assert "INBOX/sub" in [f.name for f in await store.list_folders(USER)]


async def test_rename_folder_with_children(store: SqliteStore):
    await store.create_folder(USER, "a/b/c")
    await store.create_folder(USER, "ab")  # not a child of "a"
    await fill(store, 2, "a/b")
    before = {f.name: f for f in await store.list_folders(USER)}
    await store.rename_folder(USER, "a", "x/y")
    after = {f.name: f for f in await store.list_folders(USER)}
    assert "a" not in after and "a/b" not in after and "ab" in after
    assert {"x", "x/y", "x/y/b", "x/y/b/c"} <= set(after)
    assert after["x/y/b"].uidvalidity == before["a/b"].uidvalidity
    assert after["x/y/b"].messages == 2
    assert [uid for uid, _raw in await store.list_messages(USER, "x/y/b")] == [1, 2]
    with pytest.raises(NoSuchFolder):
        await store.rename_folder(USER, "a", "q")
    with pytest.raises(FolderExists):
        await store.rename_folder(USER, "ab", "Trash")
    with pytest.raises(StoreError):
        await store.rename_folder(USER, "x", "x/y/z")  # into itself
    # the special-use attribute goes with the folder
    await store.rename_folder(USER, "Sent", "Sent Items")
    assert {f.name: f for f in await store.list_folders(USER)}["Sent Items"].special_use == (
        "\\Sent"
    )


async def test_rename_inbox_moves_its_messages(store: SqliteStore):
    await fill(store, 3)
    await store.create_folder(USER, "INBOX/child")
    inbox = (await store.list_folders(USER))[0]
    await store.rename_folder(USER, "INBOX", "Old Mail")
    folders = {f.name: f for f in await store.list_folders(USER)}
    assert folders["INBOX"].messages == 0 and folders["INBOX"].uidnext == inbox.uidnext
    assert folders["INBOX"].uidvalidity == inbox.uidvalidity
    assert "INBOX/child" in folders  # RFC 3501: inferiors of INBOX stay
    old = folders["Old Mail"]
    assert old.messages == 3 and old.uidvalidity != inbox.uidvalidity
    assert [uid for uid, _ in await store.list_messages(USER, "Old Mail")] == [1, 2, 3]
    # INBOX's sessions learn of the removal through QRESYNC's expunge record
    assert list(await store.expunged_since(USER, "INBOX", inbox.highestmodseq)) == [1, 2, 3]
    assert folders["INBOX"].highestmodseq == inbox.highestmodseq + 1
    await deliver(store, message(9))
    assert [uid for uid, _ in await store.list_messages(USER)] == [4]
    # INBOX may go below itself: only its messages move
    await store.rename_folder(USER, "inbox", "INBOX/saved")
    assert [uid for uid, _ in await store.list_messages(USER, "INBOX/saved")] == [4]
    assert await store.list_messages(USER) == []


async def test_delete_folder(store: SqliteStore):
    big = message(1, size=10_000)  # a file
    await store.create_folder(USER, "Old/Sub")
    await store.append(USER, "Old/Sub", big, meta=meta(1))
    await store.append(USER, "Old/Sub", message(2), meta=meta(2))
    sha = sha256_hex(big)
    assert store.files.exists(sha)
    with pytest.raises(StoreError, match="subfolders"):
        await store.delete_folder(USER, "Old")
    with pytest.raises(StoreError, match="INBOX"):
        await store.delete_folder(USER, "inbox")
    with pytest.raises(NoSuchFolder):
        await store.delete_folder(USER, "Nope")
    await store.delete_folder(USER, "Old/Sub")
    assert not store.files.exists(sha)
    assert blob_refcount(store, big) is None and blob_refcount(store, message(2)) is None
    conn = db(store)
    assert conn.execute("SELECT count(*) FROM message_meta").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM message_fts").fetchone()[0] == 0
    conn.close()
    await store.delete_folder(USER, "Old")
    assert "Old" not in [f.name for f in await store.list_folders(USER)]
    # a folder created again under the old name gets a new UIDVALIDITY and starts at UID 1
    await store.create_folder(USER, "Old")
    assert (await store.append(USER, "Old", message(3)))[1] == 1


async def test_delete_folder_keeps_bodies_used_elsewhere(store: SqliteStore):
    raw = message(1)
    await store.create_folder(USER, "Box")
    await store.append(USER, "Box", raw, meta=meta(1))
    await deliver(store, raw, USER, OTHER)
    assert blob_refcount(store, raw) == 3
    await store.delete_folder(USER, "Box")
    assert blob_refcount(store, raw) == 2
    # the meta belongs to the body, so the copy that is left keeps it
    assert await store.search_text(OTHER, "INBOX", "number 1", "body") == {1}
    assert await store.list_messages(OTHER) == [(1, raw)]


async def test_subscribe(store: SqliteStore):
    await store.subscribe(USER, "Junk", False)
    folders = {f.name: f for f in await store.list_folders(USER)}
    assert not folders["Junk"].subscribed and folders["Sent"].subscribed
    await store.subscribe(USER, "Junk", True)
    assert {f.name: f for f in await store.list_folders(USER)}["Junk"].subscribed
    with pytest.raises(NoSuchFolder):
        await store.subscribe(USER, "Nope", True)


# --- select, fetch ----------------------------------------------------------------------------


async def test_select_snapshot(store: SqliteStore):
    await fill(store, 3)
    await store.store_flags(USER, "INBOX", [2], ["\\Seen", "$Label1"], "set")
    await store.store_flags(USER, "INBOX", [3], ["$label1", "\\seen"], "set")
    snap = await store.select_folder(USER, "inbox")
    assert snap.name == "INBOX" and snap.uidnext == 4
    assert snap.highestmodseq == 4  # one for the append, one for each STORE
    assert snap.messages == [
        (1, (), 2),
        (2, ("\\Seen", "$Label1"), 3),
        (3, ("\\Seen", "$label1"), 4),
    ]
    assert snap.recent == frozenset()  # not claimed
    with pytest.raises(NoSuchFolder):
        await store.select_folder(USER, "Nope")
    with pytest.raises(StoreError):
        await store.select_folder(f"nobody@{DOMAIN}", "INBOX")


async def test_recent_goes_to_one_session(store: SqliteStore):
    await fill(store, 2)
    examine = await store.select_folder(USER, "INBOX")
    assert examine.recent == frozenset()
    first = await store.select_folder(USER, "INBOX", claim_recent=True)
    second = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert first.recent == {1, 2} and second.recent == frozenset()
    await deliver(store, message(5))
    third = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert third.recent == {3}


async def test_select_ten_thousand_messages(store: SqliteStore):
    count = 10_000
    for start in range(0, count, 2000):
        await store.append_many(
            USER,
            "INBOX",
            [AppendMessage(message(n), ("\\Seen",)) for n in range(start, start + 2000)],
        )
    await store.store_flags(USER, "INBOX", range(1, 5001), ["\\Flagged"], "add")
    snap = await store.select_folder(USER, "INBOX", claim_recent=True)
    assert len(snap.messages) == count and len(snap.recent) == count
    assert [m[0] for m in snap.messages] == list(range(1, count + 1))
    assert snap.messages[0][1] == ("\\Seen", "\\Flagged") and snap.messages[-1][1] == ("\\Seen",)
    # equal flag sets are one tuple, so a snapshot of a big folder stays small
    assert len({id(m[1]) for m in snap.messages}) == 2
    rows = await store.fetch_meta(USER, "INBOX", range(1, snap.uidnext))
    assert len(rows) == count
    assert len(await store.fetch_meta(USER, "INBOX", list(range(2, count + 1, 2)))) == count // 2


async def test_fetch_meta(store: SqliteStore):
    await store.append(USER, "INBOX", message(1), ["\\Seen"], 1_600_000_000.0, meta(1))
    await deliver(store, message(2))  # without meta
    rows = await store.fetch_meta(USER, "INBOX", [1, 2, 99])
    assert [r.uid for r in rows] == [1, 2]
    first, second = rows
    assert first.flags == ("\\Seen",) and first.internal_date == 1_600_000_000.0
    assert first.size == len(message(1)) and first.modseq == 2
    assert first.envelope == meta(1).envelope and first.bodystructure == meta(1).bodystructure
    assert first.body == meta(1).body and first.part_map == meta(1).part_map
    assert (second.envelope, second.bodystructure, second.body, second.part_map) == (None,) * 4
    assert await store.fetch_meta(USER, "INBOX", []) == []
    assert [r.uid for r in await store.fetch_meta(USER, "INBOX", range(2, 10))] == [2]
    assert await store.missing_meta(USER, "INBOX") == [2]
    await store.set_meta(USER, "INBOX", 2, meta(2))
    assert await store.missing_meta(USER, "INBOX") == []
    assert (await store.fetch_meta(USER, "INBOX", [2]))[0].envelope == meta(2).envelope
    assert await store.search_text(USER, "INBOX", "number 2", "body") == {2}
    await store.set_meta(USER, "INBOX", 2, meta(2, text="replaced text"))  # replaces, FTS too
    assert await store.search_text(USER, "INBOX", "number 2", "body") == set()
    assert await store.search_text(USER, "INBOX", "replaced", "body") == {2}
    with pytest.raises(NoSuchMessage):
        await store.set_meta(USER, "INBOX", 42, meta(2))


async def test_fetch_raw(store: SqliteStore):
    small, big = message(1), message(2, size=50_000)
    await store.append(USER, "INBOX", small)
    await store.append(USER, "INBOX", big)
    assert store.files.exists(sha256_hex(big))
    assert await store.fetch_raw(USER, "INBOX", 1) == small
    assert await store.fetch_raw(USER, "INBOX", 2) == big
    assert await store.fetch_raw_many(USER, "INBOX", range(1, 10)) == [(1, small), (2, big)]
    assert await store.fetch_raw_many(USER, "INBOX", [2, 7]) == [(2, big)]
    assert await store.fetch_raw_many(USER, "INBOX", []) == []
    with pytest.raises(NoSuchMessage):
        await store.fetch_raw(USER, "INBOX", 3)
    with pytest.raises(NoSuchFolder):
        await store.fetch_raw(USER, "Nope", 1)


async def test_fetch_sort_keys(store: SqliteStore):
    await store.append(USER, "INBOX", message(1), meta=meta(1, sort_subject="b", sort_to="z"))
    await deliver(store, message(2))
    keys = await store.fetch_sort_keys(USER, "INBOX")
    assert [k.uid for k in keys] == [1, 2]
    assert (
        keys[0].sort_subject == "b" and keys[0].sort_to == "z" and keys[0].date == 1_700_000_001.0
    )
    assert keys[0].message_id == "<1@example.net>" and keys[0].size == len(message(1))
    assert keys[1].sort_subject == "" and keys[1].date is None
    assert [k.uid for k in await store.fetch_sort_keys(USER, "INBOX", [2])] == [2]


# --- flags and MODSEQ -------------------------------------------------------------------------


async def test_store_flags_modes_and_modseq(store: SqliteStore):
    await fill(store, 3)  # modseq 2
    changed, failed = await store.store_flags(USER, "INBOX", [1, 2], ["\\Seen"], "add")
    assert changed == [(1, ("\\Seen",), 3), (2, ("\\Seen",), 3)] and failed == []
    # one MODSEQ per call, only the messages that change get it
    changed, _ = await store.store_flags(USER, "INBOX", range(1, 4), ["\\seen", "$A"], "add")
    assert changed == [
        (1, ("\\Seen", "$A"), 4),
        (2, ("\\Seen", "$A"), 4),
        (3, ("\\Seen", "$A"), 4),
    ]
    changed, _ = await store.store_flags(USER, "INBOX", [1], ["$a"], "remove")
    assert changed == [(1, ("\\Seen",), 5)]
    changed, _ = await store.store_flags(USER, "INBOX", [1, 2], ["\\Seen"], "set")
    assert changed == [(2, ("\\Seen",), 6)]  # 1 already had exactly that
    changed, _ = await store.store_flags(USER, "INBOX", [1], ["\\Seen"], "add")
    assert changed == []
    snap = await store.select_folder(USER, "INBOX")
    assert snap.highestmodseq == 6
    assert snap.messages == [(1, ("\\Seen",), 5), (2, ("\\Seen",), 6), (3, ("\\Seen", "$A"), 4)]
    assert await store.changed_since(USER, "INBOX", 4) == [(1, ("\\Seen",), 5), (2, ("\\Seen",), 6)]
    assert (await store.list_folders(USER))[0].unseen == 0
    await store.store_flags(USER, "INBOX", [3], [], "set")
    assert (await store.list_folders(USER))[0].unseen == 1
    # UIDs that do not exist are skipped
    assert await store.store_flags(USER, "INBOX", [77], ["\\Seen"], "add") == ([], [])
    with pytest.raises(StoreError):
        await store.store_flags(USER, "INBOX", [1], ["\\Seen"], "toggle")  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await store.store_flags(USER, "INBOX", [1], ["bad flag"], "add")


async def test_store_flags_unchanged_since(store: SqliteStore):
    await fill(store, 3)  # all at modseq 2
    await store.store_flags(USER, "INBOX", [2], ["\\Flagged"], "add")  # 2 -> modseq 3
    changed, failed = await store.store_flags(
        USER, "INBOX", [1, 2, 3], ["\\Seen"], "add", unchanged_since=2
    )
    assert failed == [2]
    assert changed == [(1, ("\\Seen",), 4), (3, ("\\Seen",), 4)]
    snap = await store.select_folder(USER, "INBOX")
    assert snap.messages[1] == (2, ("\\Flagged",), 3)  # untouched
    # UNCHANGEDSINCE 0 fails for every message (RFC 7162)
    changed, failed = await store.store_flags(
        USER, "INBOX", [1, 2], ["$X"], "add", unchanged_since=0
    )
    assert changed == [] and failed == [1, 2]


# --- copy, move, expunge ------------------------------------------------------------------


async def test_copy_messages(store: SqliteStore):
    await store.append(USER, "INBOX", message(1), ["\\Seen"], 1_600_000_000.0, meta(1))
    await store.append(USER, "INBOX", message(2), ["\\Flagged"], 1_600_000_001.0)
    await store.append(USER, "Archive", message(3))  # Archive's uidnext is 2 now
    pairs = await store.copy_messages(USER, "INBOX", [2, 1, 5], "Archive")
    assert pairs == [(1, 2), (2, 3)]
    assert blob_refcount(store, message(1)) == 2 and blob_refcount(store, message(2)) == 2
    rows = await store.fetch_meta(USER, "Archive", [2, 3])
    assert [(r.uid, r.flags, r.internal_date) for r in rows] == [
        (2, ("\\Seen",), 1_600_000_000.0),
        (3, ("\\Flagged",), 1_600_000_001.0),
    ]
    assert rows[0].envelope == meta(1).envelope  # the meta goes with the body
    assert {r.modseq for r in rows} == {3}
    archive = {f.name: f for f in await store.list_folders(USER)}["Archive"]
    assert (archive.messages, archive.unseen, archive.uidnext, archive.highestmodseq) == (
        3,
        2,
        4,
        3,
    )
    assert await store.search_text(USER, "Archive", "number 1", "body") == {2}
    # the source is untouched
    assert [r.uid for r in await store.fetch_meta(USER, "INBOX", range(1, 9))] == [1, 2]
    with pytest.raises(NoSuchFolder):
        await store.copy_messages(USER, "INBOX", [1], "Nowhere")
    assert await store.copy_messages(USER, "INBOX", [], "Archive") == []
    assert await store.copy_messages(USER, "INBOX", [9], "Archive") == []
    # copy into the same folder
    assert await store.copy_messages(USER, "INBOX", [1], "INBOX") == [(1, 3)]


async def test_copy_respects_quota(store: SqliteStore):
    raw = message(1, size=1000)
    await store.append(USER, "INBOX", raw)
    await store.set_quota(USER, 1500)
    with pytest.raises(QuotaExceeded):
        await store.copy_messages(USER, "INBOX", [1], "Archive")
    assert await store.quota(USER) == (1000, 1500)
    assert blob_refcount(store, raw) == 1
    # a move takes no more room
    assert await store.move_messages(USER, "INBOX", [1], "Archive") == [(1, 1)]


async def test_move_messages(store: SqliteStore):
    await fill(store, 4)  # INBOX modseq 2
    await store.store_flags(USER, "INBOX", [2], ["\\Seen"], "add")  # modseq 3
    trash_before = {f.name: f for f in await store.list_folders(USER)}["Trash"]
    pairs = await store.move_messages(USER, "INBOX", [2, 3], "Trash")
    assert pairs == [(2, 1), (3, 2)]
    assert [uid for uid, _ in await store.list_messages(USER)] == [1, 4]
    assert await store.list_messages(USER, "Trash") == [(1, message(1)), (2, message(2))]
    assert blob_refcount(store, message(1)) == 1  # moved, not copied
    folders = {f.name: f for f in await store.list_folders(USER)}
    assert (folders["INBOX"].messages, folders["INBOX"].unseen) == (2, 2)
    assert (folders["Trash"].messages, folders["Trash"].unseen) == (2, 1)
    # the source records the move for VANISHED, with one new MODSEQ
    assert folders["INBOX"].highestmodseq == 4
    assert list(await store.expunged_since(USER, "INBOX", 3)) == [2, 3]
    assert list(await store.expunged_since(USER, "INBOX", 4)) == []
    # the target's copies are new there
    assert folders["Trash"].highestmodseq == trash_before.highestmodseq + 1
    changes = await store.changes_since(USER, "Trash", trash_before.highestmodseq)
    assert [c[0] for c in changes.changed] == [1, 2] and list(changes.expunged) == []
    assert changes.changed[0][1] == ("\\Seen",)
    assert await store.search_text(USER, "Trash", "number 1", "body") == {1}


async def test_move_is_atomic(store: SqliteStore):
    await fill(store, 2)
    with pytest.raises(NoSuchFolder):
        await store.move_messages(USER, "INBOX", [1, 2], "Nowhere")
    assert [uid for uid, _ in await store.list_messages(USER)] == [1, 2]
    assert list(await store.expunged_since(USER, "INBOX", 0)) == []
    assert (await store.list_folders(USER))[0].highestmodseq == 2


async def test_move_within_a_folder(store: SqliteStore):
    await fill(store, 2)
    assert await store.move_messages(USER, "INBOX", [1], "INBOX") == [(1, 3)]
    assert [uid for uid, _ in await store.list_messages(USER)] == [2, 3]
    inbox = (await store.list_folders(USER))[0]
    assert inbox.messages == 2 and inbox.highestmodseq == 3
    changes = await store.changes_since(USER, "INBOX", 2)
    assert list(changes.expunged) == [1] and [c[0] for c in changes.changed] == [3]


async def test_expunge(store: SqliteStore):
    await fill(store, 5)  # modseq 2
    await store.store_flags(USER, "INBOX", [1, 2, 4], ["\\Deleted"], "add")  # modseq 3
    # UID EXPUNGE: only the given ones that are \Deleted
    assert await store.expunge(USER, "INBOX", [2, 3]) == [2]
    assert await store.expunge(USER, "INBOX") == [1, 4]
    assert await store.expunge(USER, "INBOX") == []
    assert await store.expunge(USER, "INBOX", []) == []
    assert [uid for uid, _ in await store.list_messages(USER)] == [3, 5]
    assert list(await store.expunged_since(USER, "INBOX", 3)) == [1, 2, 4]
    assert list(await store.expunged_since(USER, "INBOX", 4)) == [1, 4]
    assert list(await store.expunged_since(USER, "INBOX", 5)) == []
    conn = db(store)
    rows = conn.execute("SELECT uid, modseq FROM expunged ORDER BY uid").fetchall()
    assert rows == [(1, 5), (2, 4), (4, 5)]
    conn.close()
    inbox = (await store.list_folders(USER))[0]
    assert (inbox.messages, inbox.highestmodseq, inbox.uidnext) == (2, 5, 6)
    # bodies no one uses any more are gone, with their meta and index entries
    assert blob_refcount(store, message(0)) is None
    assert await store.search_text(USER, "INBOX", "number", "body") == {3, 5}
    changes = await store.changes_since(USER, "INBOX", 3)
    assert changes.changed == [] and list(changes.expunged) == [1, 2, 4]


async def test_expunge_releases_files(store: SqliteStore):
    big = message(1, size=20_000)
    await store.append(USER, "INBOX", big, ["\\Deleted"])
    await store.copy_messages(USER, "INBOX", [1], "Archive")
    sha = sha256_hex(big)
    assert await store.expunge(USER, "INBOX") == [1]
    assert store.files.exists(sha) and blob_refcount(store, big) == 1
    assert await store.expunge(USER, "Archive") == [1]
    assert not store.files.exists(sha)


# --- append, quota ----------------------------------------------------------------------------


async def test_append(store: SqliteStore):
    inbox = (await store.list_folders(USER))[0]
    uidvalidity, uid = await store.append(
        USER, "inbox", message(1), ["\\Draft", "\\seen"], 1_500_000_000.5, meta(1)
    )
    assert (uidvalidity, uid) == (inbox.uidvalidity, 1)
    row = (await store.fetch_meta(USER, "INBOX", [1]))[0]
    assert row.flags == ("\\Seen", "\\Draft") and row.internal_date == 1_500_000_000.5
    assert await store.append(USER, "INBOX", message(2)) == (inbox.uidvalidity, 2)
    assert (await store.fetch_meta(USER, "INBOX", [2]))[0].internal_date > 1_600_000_000
    big = message(3, size=100_000)
    await store.append(USER, "Sent", big)
    assert store.files.exists(sha256_hex(big))
    assert await store.fetch_raw(USER, "Sent", 1) == big
    with pytest.raises(NoSuchFolder):
        await store.append(USER, "Nope", message(4))
    with pytest.raises(StoreError):
        await store.append(USER, "INBOX", b"")
    with pytest.raises(StoreError):
        await store.append(f"nobody@{DOMAIN}", "INBOX", message(4))


async def test_append_many_is_all_or_nothing(store: SqliteStore):
    uidvalidity, uids = await store.append_many(
        USER, "Drafts", [AppendMessage(message(n), ("\\Draft",)) for n in range(3)]
    )
    assert uids == [1, 2, 3]
    modseqs = {r.modseq for r in await store.fetch_meta(USER, "Drafts", uids)}
    assert len(modseqs) == 1
    await store.set_quota(USER, await store.quota_usage(USER) + 100)
    with pytest.raises(QuotaExceeded):
        await store.append_many(
            USER, "Drafts", [AppendMessage(message(10)), AppendMessage(message(11, size=500))]
        )
    assert [uid for uid, _ in await store.list_messages(USER, "Drafts")] == [1, 2, 3]
    assert blob_refcount(store, message(10)) is None
    assert (await store.append(USER, "Drafts", message(10)))[1] == 4  # still fits
    with pytest.raises(StoreError):
        await store.append_many(USER, "Drafts", [])


async def test_quota(store: SqliteStore):
    assert await store.quota(USER) == (0, None)
    await store.append(USER, "INBOX", message(1, size=300))
    await store.append(USER, "Sent", message(2, size=200))
    await store.set_quota(USER, 600)
    assert await store.quota(USER) == (500, 600)
    with pytest.raises(QuotaExceeded):
        await store.append(USER, "INBOX", message(3, size=101))
    await store.append(USER, "INBOX", message(3, size=100))
    assert await store.quota(USER) == (600, 600)
    with pytest.raises(StoreError):
        await store.quota(f"nobody@{DOMAIN}")


# --- delivery with meta -----------------------------------------------------------------------


async def test_delivery_meta_is_shared_by_every_copy(store: SqliteStore):
    raw = message(7)
    await store.deliver(
        Delivery(
            "q7",
            "s@example.net",
            raw,
            (
                LocalDelivery(USER),
                LocalDelivery(OTHER),
                LocalDelivery(USER, "Archive", ("\\Seen",)),
            ),
            meta=meta(7),
        )
    )
    conn = db(store)
    assert conn.execute("SELECT count(*) FROM message_meta").fetchone()[0] == 1
    conn.close()
    for user, folder in [(USER, "INBOX"), (OTHER, "INBOX"), (USER, "Archive")]:
        assert (await store.fetch_meta(user, folder, [1]))[0].envelope == meta(7).envelope
        assert await store.search_text(user, folder, "number 7", "body") == {1}
    assert (await store.fetch_meta(USER, "Archive", [1]))[0].flags == ("\\Seen",)


async def test_database_from_version_1_is_migrated(tmp_path: Path):
    only_v1 = tmp_path / "v1"
    only_v1.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_initial.sql", only_v1)
    data = tmp_path / "data"
    data.mkdir()
    conn = connect(data / "gomail.db")
    assert migrate(conn, only_v1) == [1]
    conn.close()
    async with SqliteStore(data) as s:
        await s.add_domain(DOMAIN)
        await s.add_user(USER, "x", None)
        await deliver(s, message(1))
    # the old messages have no meta: found by missing_meta, not by searches
    async with SqliteStore(data) as s:
        assert await s.missing_meta(USER, "INBOX") == [1]
        assert await s.search_text(USER, "INBOX", "hello", "text") == set()


# --- search -----------------------------------------------------------------------------------


async def test_search_text(store: SqliteStore):
    await store.append(
        USER,
        "INBOX",
        message(1),
        meta=meta(1, text='The Quick brown fox said "hi" — Grüße', header_text="Subject: zebra"),
    )
    await store.append(USER, "INBOX", message(2), meta=meta(2, text="lazy dog 50%_off"))
    await store.append(USER, "INBOX", message(3))  # no meta: never found
    await store.append(OTHER, "INBOX", message(1), meta=meta(1))
    search = store.search_text
    assert await search(USER, "INBOX", "quick BROWN", "body") == {1}
    assert await search(USER, "INBOX", "uick", "body") == set()  # starts inside a word
    assert await search(USER, "INBOX", "GRÜße", "body") == {1}
    assert await search(USER, "INBOX", 'said "hi"', "body") == {1}
    assert await search(USER, "INBOX", "zebra", "body") == set()
    assert await search(USER, "INBOX", "zebra", "text") == {1}
    assert await search(USER, "INBOX", "o", "body") == {2}  # a word prefix ("off")
    assert await search(USER, "INBOX", "%_", "body") == {2}
    assert await search(USER, "INBOX", "ze", "text") == {1}
    assert await search(USER, "INBOX", "ze", "body") == set()
    assert await search(USER, "INBOX", "", "body") == {1, 2, 3}
    assert await search(USER, "INBOX", "nothing like it", "text") == set()
    assert await search(USER, "INBOX", "NEAR AND OR (", "text") == set()  # no query syntax
    assert await search(USER, "Archive", "quick", "body") == set()
    with pytest.raises(StoreError):
        await search(USER, "INBOX", "x", "subject")  # type: ignore[arg-type]
    with pytest.raises(NoSuchFolder):
        await search(USER, "Nope", "quick", "body")


async def test_search_header(store: SqliteStore):
    await store.append(
        USER,
        "INBOX",
        message(1),
        meta=meta(
            1,
            from_="Jörg <joerg@example.de>",
            to="team@example.org",
            subject="Quarterly Report",
            header_text="From: Jörg <joerg@example.de>\nX-Priority: 1 (Highest)\nList-Id: <x.y>",
        ),
    )
    await store.append(USER, "INBOX", message(2), meta=meta(2, bcc="boss@example.org"))
    await store.append(USER, "INBOX", message(3))
    search = store.search_header
    assert await search(USER, "INBOX", "FROM", "JÖRG") == {1}
    assert await search(USER, "INBOX", "from", "ann") == {2}
    assert await search(USER, "INBOX", "to", "TEAM@") == {1}
    assert await search(USER, "INBOX", "bcc", "boss") == {2}
    assert await search(USER, "INBOX", "subject", "report") == {1}
    assert await search(USER, "INBOX", "x-priority", "highest") == {1}
    assert await search(USER, "INBOX", "X-Priority", "") == {1}  # has the field
    assert await search(USER, "INBOX", "x-tag", "TAG2") == {2}
    assert await search(USER, "INBOX", "list-id", "x.y") == {1}
    assert await search(USER, "INBOX", "x-missing", "") == set()
    with pytest.raises(StoreError):
        await search(USER, "INBOX", "bad field:", "x")


# --- change notification ----------------------------------------------------------------------


async def test_delivery_wakes_a_feed(store: SqliteStore):
    feed = store.subscribe_changes(USER)
    other = store.subscribe_changes(OTHER)
    waiting = asyncio.create_task(anext(feed))
    await asyncio.sleep(0)
    await deliver(store, message(1))
    assert await asyncio.wait_for(waiting, 1.0) == Change(USER, "INBOX", "exists")
    assert other.pending() == []
    feed.close()
    other.close()


async def test_feed_sees_every_kind_of_change(store: SqliteStore):
    async with store.subscribe_changes(USER) as feed:
        await store.append(USER, "INBOX", message(1))
        await store.store_flags(USER, "INBOX", [1], ["\\Deleted"], "add")
        await store.copy_messages(USER, "INBOX", [1], "Trash")
        await store.expunge(USER, "INBOX")
        await store.create_folder(USER, "New")
        await store.move_messages(USER, "Trash", [1], "New")
        await asyncio.sleep(0.05)
        assert feed.pending() == [
            Change(USER, "INBOX", "exists"),
            Change(USER, "INBOX", "flags"),
            Change(USER, "Trash", "exists"),
            Change(USER, "INBOX", "expunge"),
            Change(USER, "New", "folders"),
            Change(USER, "Trash", "expunge"),
            Change(USER, "New", "exists"),
        ]
        # a STORE that changes nothing, and a failed job, are not news
        await store.store_flags(USER, "New", [1], ["\\Deleted"], "add")
        with pytest.raises(QuotaExceeded):
            await store.set_quota(USER, 1)
            await store.append(USER, "INBOX", message(2))
        await asyncio.sleep(0.05)
        assert feed.pending() == []


async def test_feed_coalesces_and_closes(store: SqliteStore):
    feed = store.subscribe_changes(USER)
    for n in range(20):
        await deliver(store, message(n))
    await asyncio.sleep(0.05)
    assert feed.pending() == [Change(USER, "INBOX", "exists")]
    waiting = asyncio.create_task(anext(feed, None))
    await asyncio.sleep(0)
    feed.close()
    assert await asyncio.wait_for(waiting, 1.0) is None  # iteration ends
    await deliver(store, message(99))
    await asyncio.sleep(0.05)
    assert feed.pending() == []
    assert store._feeds == {}
