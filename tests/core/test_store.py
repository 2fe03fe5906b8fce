"""The SQLite store: every method, content-addressed bodies, group commit, backup."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from gomail.context import LocalDelivery
from gomail.store import SPECIAL_FOLDERS, Alias, Delivery, StoreError
from gomail.store.blobs import sha256_hex
from gomail.store.sqlite import (
    SqliteStore,
    connect,
    migrate,
    migrations,
    open_store,
    split_sql,
)
from storebed import opened_store

DOMAIN = "example.org"


@pytest.fixture
async def store(tmp_path: Path):
    async with opened_store(tmp_path / "data") as s:
        yield s


@pytest.fixture
async def users(store: SqliteStore) -> list[str]:
    await store.add_domain(DOMAIN)
    addresses = [f"user{i}@{DOMAIN}" for i in range(5)]
    for address in addresses:
        await store.add_user(address, "$argon2id$fake", None)
    return addresses


def message(n: int = 0, size: int = 0) -> bytes:
    head = f"From: a@example.net\r\nSubject: test {n}\r\n\r\n".encode()
    return head + b"x" * max(size - len(head), 10)


def db(store: SqliteStore) -> sqlite3.Connection:
    """A separate connection, as another process (or a curious admin) would open."""
    return connect(store.db_path)


# --- opening, migrations, persistence ---------------------------------------------------------


async def test_open_creates_wal_database(store: SqliteStore):
    assert store.db_path.is_file()
    conn = db(store)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [(number,) for number, _path in migrations()]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == versions
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


async def test_migrations_are_idempotent_on_reopen(tmp_path: Path):
    for _ in range(3):
        async with SqliteStore(tmp_path) as s:
            await s.add_domain(f"d{s.commits}-{len(await s.list_domains())}.example")
    conn = connect(tmp_path / "gomail.db")
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(migrations())
    assert migrate(conn) == []  # nothing left to apply
    conn.close()
    async with SqliteStore(tmp_path) as s:
        assert len(await s.list_domains()) == 3


def test_split_sql_keeps_trigger_bodies():
    script = (
        "-- c\nCREATE TABLE t (a);\n"
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n-- end\n"
    )
    statements = list(split_sql(script))
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(RuntimeError):
        list(split_sql("CREATE TABLE t (a)"))


async def test_reopen_keeps_everything(tmp_path: Path):
    async with SqliteStore(tmp_path, blob_inline_max=100) as s:
        await s.add_domain(DOMAIN)
        await s.add_user(f"a@{DOMAIN}", "h1", 1000)
        await s.add_admin("root", "h2")
        await s.add_alias(f"postmaster@{DOMAIN}", [f"a@{DOMAIN}"])
        await s.deliver(Delivery("Q1", "x@y", message(1, 50), (LocalDelivery(f"a@{DOMAIN}"),)))
        await s.deliver(Delivery("Q2", "x@y", message(2, 500), (LocalDelivery(f"a@{DOMAIN}"),)))
        await s.deliver(Delivery("Q3", "x@y", message(3), (), ("r@remote.example",)))
    async with open_store(tmp_path, 100) as s:
        assert await s.list_domains() == [DOMAIN]
        assert (await s.get_user(f"a@{DOMAIN}")).quota == 1000
        assert await s.get_password_hash(f"a@{DOMAIN}") == "h1"
        assert await s.get_admin_password_hash("root") == "h2"
        assert (await s.get_alias(f"postmaster@{DOMAIN}")).targets == (f"a@{DOMAIN}",)
        assert await s.list_messages(f"a@{DOMAIN}") == [(1, message(1, 50)), (2, message(2, 500))]
        assert [e.recipient for e in await s.list_queue()] == ["r@remote.example"]
        # UIDs continue after a reopen
        await s.deliver(Delivery("Q4", "x@y", message(4), (LocalDelivery(f"a@{DOMAIN}"),)))
        assert [uid for uid, _ in await s.list_messages(f"a@{DOMAIN}")] == [1, 2, 3]


async def test_closed_store_refuses(tmp_path: Path):
    s = SqliteStore(tmp_path)
    with pytest.raises(StoreError):
        await s.add_domain(DOMAIN)
    await s.open()
    await s.close()
    await s.close()  # twice is fine
    with pytest.raises(StoreError):
        await s.list_domains()
    with pytest.raises(StoreError):
        await s.add_domain(DOMAIN)


async def test_open_twice_is_an_error(store: SqliteStore):
    with pytest.raises(StoreError):
        await store.open()


# --- domains ----------------------------------------------------------------------------------


async def test_domains(store: SqliteStore):
    assert await store.list_domains() == []
    await store.add_domain("b.example")
    await store.add_domain("a.example")
    assert await store.list_domains() == ["a.example", "b.example"]
    assert await store.has_domain("a.example")
    assert not await store.has_domain("c.example")
    with pytest.raises(StoreError, match="already exists"):
        await store.add_domain("a.example")
    await store.remove_domain("a.example")
    assert await store.list_domains() == ["b.example"]
    with pytest.raises(StoreError, match="no such domain"):
        await store.remove_domain("a.example")
    with pytest.raises(StoreError):
        await store.add_domain("")


async def test_remove_domain_in_use(store: SqliteStore):
    await store.add_domain("a.example")
    await store.add_user("u@a.example", "h", None)
    with pytest.raises(StoreError, match=r"still has 1 user\(s\) and 0 alias"):
        await store.remove_domain("a.example")
    await store.remove_user("u@a.example")
    await store.add_alias("@a.example", ["x@elsewhere.example"])
    with pytest.raises(StoreError, match="remove them first"):
        await store.remove_domain("a.example")
    await store.remove_alias("@a.example")
    await store.remove_domain("a.example")
    assert not await store.has_domain("a.example")


# --- users ------------------------------------------------------------------------------------


async def test_add_user_creates_folders(store: SqliteStore):
    await store.add_domain(DOMAIN)
    await store.add_user(f"a@{DOMAIN}", "hash", 5000)
    user = await store.get_user(f"a@{DOMAIN}")
    assert user.address == f"a@{DOMAIN}" and user.quota == 5000 and user.created > 0
    status = await store.folder_status(f"a@{DOMAIN}")
    assert [f.name for f in status] == list(SPECIAL_FOLDERS)
    for folder in status:
        assert (folder.messages, folder.unseen, folder.bytes) == (0, 0, 0)
        assert folder.uidnext == 1 and folder.uidvalidity > 0
    conn = db(store)
    special = dict(conn.execute("SELECT name, special_use FROM mailboxes"))
    assert special["INBOX"] is None and special["Junk"] == "\\Junk"
    conn.close()


async def test_add_user_errors(store: SqliteStore):
    with pytest.raises(StoreError, match="unknown domain"):
        await store.add_user(f"a@{DOMAIN}", "h", None)
    await store.add_domain(DOMAIN)
    await store.add_user(f"a@{DOMAIN}", "h", None)
    with pytest.raises(StoreError, match="already exists"):
        await store.add_user(f"a@{DOMAIN}", "h", None)
    with pytest.raises(StoreError, match="not a mail address"):
        await store.add_user("nobody", "h", None)
    with pytest.raises(StoreError, match="quota"):
        await store.add_user(f"b@{DOMAIN}", "h", -1)
    assert await store.get_user(f"b@{DOMAIN}") is None


async def test_uidvalidity_is_new_for_a_recreated_user(store: SqliteStore):
    await store.add_domain(DOMAIN)
    await store.add_user(f"a@{DOMAIN}", "h", None)
    first = (await store.folder_status(f"a@{DOMAIN}"))[0].uidvalidity
    await store.remove_user(f"a@{DOMAIN}")
    await store.add_user(f"a@{DOMAIN}", "h", None)
    assert (await store.folder_status(f"a@{DOMAIN}"))[0].uidvalidity > first


async def test_list_users(store: SqliteStore):
    await store.add_domain("a.example")
    await store.add_domain("b.example")
    await store.add_user("z@a.example", "h", None)
    await store.add_user("y@b.example", "h", None)
    await store.add_user("x@a.example", "h", 10)
    assert [u.address for u in await store.list_users()] == [
        "x@a.example",
        "y@b.example",
        "z@a.example",
    ]
    assert [u.address for u in await store.list_users("a.example")] == [
        "x@a.example",
        "z@a.example",
    ]
    assert await store.list_users("c.example") == []


async def test_password_hash_and_quota(store: SqliteStore, users: list[str]):
    a = users[0]
    assert await store.get_password_hash(a) == "$argon2id$fake"
    await store.set_password_hash(a, "new")
    assert await store.get_password_hash(a) == "new"
    assert await store.get_password_hash("nobody@example.org") is None
    with pytest.raises(StoreError, match="no such user"):
        await store.set_password_hash("nobody@example.org", "x")
    await store.set_quota(a, 1 << 30)
    assert (await store.get_user(a)).quota == 1 << 30
    await store.set_quota(a, None)
    assert (await store.get_user(a)).quota is None
    with pytest.raises(StoreError, match="no such user"):
        await store.set_quota("nobody@example.org", 5)
    with pytest.raises(StoreError):
        await store.set_quota(a, -5)


async def test_quota_usage(store: SqliteStore, users: list[str]):
    a = users[0]
    assert await store.quota_usage(a) == 0
    body = message(1, 1000)
    await store.deliver(Delivery("Q", "s@x", body, (LocalDelivery(a), LocalDelivery(a, "Junk"))))
    assert await store.quota_usage(a) == 2 * len(body)
    assert await store.quota_usage(users[1]) == 0
    with pytest.raises(StoreError, match="no such user"):
        await store.quota_usage("nobody@example.org")


async def test_remove_user(store: SqliteStore, users: list[str]):
    a = users[0]
    await store.deliver(Delivery("Q", "s@x", message(1), (LocalDelivery(a),)))
    await store.remove_user(a)
    assert await store.get_user(a) is None
    assert await store.get_password_hash(a) is None
    with pytest.raises(StoreError, match="no such user"):
        await store.folder_status(a)
    with pytest.raises(StoreError, match="no such user"):
        await store.remove_user(a)
    conn = db(store)
    assert conn.execute("SELECT count(*) FROM mailboxes").fetchone()[0] == 6 * (len(users) - 1)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
    conn.close()


# --- administrators ---------------------------------------------------------------------------


async def test_admins(store: SqliteStore):
    assert await store.get_admin_password_hash("root") is None
    await store.add_admin("root", "h")
    assert await store.get_admin_password_hash("root") == "h"
    with pytest.raises(StoreError, match="already exists"):
        await store.add_admin("root", "other")
    with pytest.raises(StoreError):
        await store.add_admin("", "h")


# --- aliases ----------------------------------------------------------------------------------


async def test_aliases(store: SqliteStore):
    await store.add_domain("a.example")
    await store.add_domain("b.example")
    with pytest.raises(StoreError, match="unknown domain"):
        await store.add_alias("x@c.example", ["t@a.example"])
    await store.add_alias("sales@a.example", ["t1@a.example", "t2@remote.example"])
    await store.add_alias("sales@a.example", ["t3@a.example", "t1@a.example"])
    await store.add_alias("@b.example", ["catch@a.example"])
    assert await store.get_alias("sales@a.example") == Alias(
        "sales@a.example", ("t1@a.example", "t2@remote.example", "t3@a.example")
    )
    assert await store.get_alias("@b.example") == Alias("@b.example", ("catch@a.example",))
    assert await store.get_alias("nobody@a.example") is None
    with pytest.raises(StoreError, match="already has"):
        await store.add_alias("sales@a.example", ["t1@a.example"])
    with pytest.raises(StoreError, match="at least one target"):
        await store.add_alias("x@a.example", [])
    with pytest.raises(StoreError, match="not an alias source"):
        await store.add_alias("nodomain", ["t@a.example"])
    assert [a.source for a in await store.list_aliases()] == ["@b.example", "sales@a.example"]
    assert await store.list_aliases("b.example") == [Alias("@b.example", ("catch@a.example",))]

    await store.remove_alias("sales@a.example", "t2@remote.example")
    assert (await store.get_alias("sales@a.example")).targets == ("t1@a.example", "t3@a.example")
    with pytest.raises(StoreError, match="has no target"):
        await store.remove_alias("sales@a.example", "t2@remote.example")
    await store.remove_alias("sales@a.example")
    assert await store.get_alias("sales@a.example") is None
    with pytest.raises(StoreError, match="no such alias"):
        await store.remove_alias("sales@a.example")


# --- delivery ---------------------------------------------------------------------------------


async def test_deliver_to_folders(store: SqliteStore, users: list[str]):
    a = users[0]
    await store.deliver(Delivery("Q1", "s@x", message(1), (LocalDelivery(a),)))
    await store.deliver(
        Delivery("Q2", "s@x", message(2), (LocalDelivery(a, "inbox", ("\\Seen",)),))
    )
    await store.deliver(Delivery("Q3", "s@x", message(3), (LocalDelivery(a, "Junk"),)))
    assert await store.list_messages(a) == [(1, message(1)), (2, message(2))]
    assert await store.list_messages(a, "Junk") == [(1, message(3))]
    status = {f.name: f for f in await store.folder_status(a)}
    inbox = status["INBOX"]
    assert (inbox.messages, inbox.unseen, inbox.uidnext) == (2, 1, 3)
    assert inbox.bytes == len(message(1)) + len(message(2))
    assert inbox.highestmodseq == 3
    assert (status["Junk"].messages, status["Junk"].unseen, status["Junk"].uidnext) == (1, 1, 2)
    conn = db(store)
    rows = conn.execute(
        "SELECT uid, modseq, flags, seen FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE b.name = 'INBOX' ORDER BY uid"
    ).fetchall()
    assert rows == [(1, 2, "", 0), (2, 3, "\\Seen", 1)]
    # the counters follow flag changes made by anybody (IMAP STORE)
    conn.execute("UPDATE messages SET flags = '\\Seen \\Flagged' WHERE uid = 1")
    conn.close()
    assert (await store.folder_status(a))[0].unseen == 0


async def test_deliver_errors(store: SqliteStore, users: list[str]):
    with pytest.raises(StoreError, match="no such user"):
        await store.deliver(Delivery("Q", "s@x", message(), (LocalDelivery("nobody@x.example"),)))
    with pytest.raises(StoreError, match="has no folder Nope"):
        await store.deliver(Delivery("Q", "s@x", message(), (LocalDelivery(users[0], "Nope"),)))
    # a failing delivery is atomic: the copy for the good recipient is not kept either
    bad = Delivery(
        "Q", "s@x", message(9), (LocalDelivery(users[0]), LocalDelivery("nobody@x.example"))
    )
    with pytest.raises(StoreError):
        await store.deliver(bad)
    assert await store.list_messages(users[0]) == []
    with pytest.raises(StoreError):
        await store.list_messages(users[0], "Nope")
    with pytest.raises(StoreError):
        await store.list_messages("nobody@x.example")
    conn = db(store)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
    conn.close()


async def test_empty_delivery_is_a_no_op(store: SqliteStore):
    await store.deliver(Delivery("Q", "s@x", b"whatever"))
    assert store.commits == 0


async def test_outbound_queue(store: SqliteStore, users: list[str]):
    body = message(1)
    await store.deliver(
        Delivery(
            "QID1", "s@example.org", body, (LocalDelivery(users[0], "Sent"),), ("r1@x", "r2@y")
        )
    )
    entries = await store.list_queue()
    assert [(e.recipient, e.sender, e.queue_id) for e in entries] == [
        ("r1@x", "s@example.org", "QID1"),
        ("r2@y", "s@example.org", "QID1"),
    ]
    for e in entries:
        assert e.size == len(body) and e.state == "queued" and e.attempts == 0
        assert e.last_error is None and e.next_attempt >= e.created > 0
    assert len({e.id for e in entries}) == 2
    assert await store.list_messages(users[0], "Sent") == [(1, body)]


async def test_one_blob_for_many_recipients(store: SqliteStore, users: list[str]):
    body = message(7, 3000)
    await store.deliver(
        Delivery("Q1", "s@x", body, tuple(LocalDelivery(u) for u in users), ("r@remote.example",))
    )
    await store.deliver(Delivery("Q2", "s@x", body, (LocalDelivery(users[0], "Archive"),)))
    conn = db(store)
    assert conn.execute("SELECT sha256, size, refcount FROM blobs").fetchall() == [
        (sha256_hex(body), len(body), len(users) + 2)
    ]
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == len(users) + 1
    conn.close()
    for u in users:
        assert await store.list_messages(u) == [(1, body)]
    # removing users releases their references; the blob goes with the last one
    for u in users:
        await store.remove_user(u)
    conn = db(store)
    assert conn.execute("SELECT refcount FROM blobs").fetchall() == [(1,)]  # the queue's
    conn.execute("DELETE FROM queue")
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
    conn.close()


async def test_large_body_is_a_file(tmp_path: Path):
    async with SqliteStore(tmp_path, blob_inline_max=1000) as store:
        await store.add_domain(DOMAIN)
        a, b = f"a@{DOMAIN}", f"b@{DOMAIN}"
        await store.add_user(a, "h", None)
        await store.add_user(b, "h", None)
        big, small = message(1, 5000), message(2, 1000)
        assert len(small) == 1000  # at the limit: still inline
        await store.deliver(Delivery("Q", "s@x", big, (LocalDelivery(a), LocalDelivery(b))))
        await store.deliver(Delivery("Q", "s@x", small, (LocalDelivery(a),)))
        sha = sha256_hex(big)
        path = tmp_path / "blobs" / sha[:2] / sha[2:]
        assert path.read_bytes() == big
        assert list((tmp_path / "blobs").iterdir()) == [path.parent]
        conn = db(store)
        rows = dict(conn.execute("SELECT sha256, data IS NULL FROM blobs"))
        assert rows == {sha: 1, sha256_hex(small): 0}
        conn.close()
        assert await store.list_messages(a) == [(1, big), (2, small)]
        await store.remove_user(a)
        assert path.exists()  # b still has it
        await store.remove_user(b)
        assert not path.exists()
        assert not list(path.parent.glob(".*.tmp"))
        # delivered again after its file was removed: written again
        await store.add_user(a, "h", None)
        await store.deliver(Delivery("Q", "s@x", big, (LocalDelivery(a),)))
        assert path.read_bytes() == big


async def test_file_removed_behind_the_writer_is_written_again(tmp_path: Path):
    """The body file vanished between deliver() writing it and the commit (the last copy was
    removed meanwhile, possibly by another process): the writer writes it again."""
    async with SqliteStore(tmp_path, blob_inline_max=10) as store:
        await store.add_domain(DOMAIN)
        await store.add_user(f"a@{DOMAIN}", "h", None)
        body = message(1, 100)
        sha = sha256_hex(body)
        real_write = store.files.write
        calls = []

        def write_then_lose(sha256: str, data: bytes) -> None:
            calls.append(sha256)
            real_write(sha256, data)
            if len(calls) == 1:
                store.files.unlink(sha256)

        store.files.write = write_then_lose
        await store.deliver(Delivery("Q", "s@x", body, (LocalDelivery(f"a@{DOMAIN}"),)))
        assert calls == [sha, sha]
        assert store.files.read(sha) == body


async def test_orphan_files_wait_for_a_backup_hold(tmp_path: Path):
    async with SqliteStore(tmp_path, blob_inline_max=10) as store:
        await store.add_domain(DOMAIN)
        await store.add_user(f"a@{DOMAIN}", "h", None)
        body = message(1, 100)
        await store.deliver(Delivery("Q", "s@x", body, (LocalDelivery(f"a@{DOMAIN}"),)))
        path = store.files.path(sha256_hex(body))
        conn = db(store)
        conn.execute("INSERT INTO meta (key, value) VALUES ('gc_hold:test', unixepoch())")
        await store.remove_user(f"a@{DOMAIN}")
        assert path.exists()
        assert conn.execute("SELECT count(*) FROM orphan_files").fetchone()[0] == 1
        conn.execute("DELETE FROM meta WHERE key = 'gc_hold:test'")
        conn.close()
    async with SqliteStore(tmp_path, blob_inline_max=10):  # collected on open
        assert not path.exists()


# --- group commit and concurrency ---------------------------------------------------------------


async def test_group_commit(store: SqliteStore, users: list[str]):
    before = store.commits
    n = 200
    await asyncio.gather(
        *(
            store.deliver(Delivery(f"Q{i}", "s@x", message(i), (LocalDelivery(users[i % 5]),)))
            for i in range(n)
        )
    )
    commits = store.commits - before
    assert 1 <= commits < n
    total = 0
    for u in users:
        uids = [uid for uid, _ in await store.list_messages(u)]
        assert uids == list(range(1, len(uids) + 1))
        total += len(uids)
    assert total == n


async def test_failure_in_a_batch_does_not_lose_the_others(store: SqliteStore, users: list[str]):
    deliveries = []
    for i in range(100):
        if i % 10 == 3:
            targets = (LocalDelivery(users[0]), LocalDelivery(f"ghost{i}@{DOMAIN}"))
        else:
            targets = (LocalDelivery(users[i % 5]),)
        deliveries.append(Delivery(f"Q{i}", "s@x", message(i), targets))
    before = store.commits
    results = await asyncio.gather(*(store.deliver(d) for d in deliveries), return_exceptions=True)
    assert store.commits - before < 100  # they did share transactions
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [i for i in range(100) if i % 10 == 3]
    assert all(isinstance(results[i], StoreError) for i in failed)
    stored = set()
    for u in users:
        stored |= {raw for _, raw in await store.list_messages(u)}
    assert stored == {message(i) for i in range(100) if i % 10 != 3}
    # the failed ones took no UIDs
    inbox = (await store.folder_status(users[0]))[0]
    assert inbox.uidnext == inbox.messages + 1


async def test_concurrent_admin_writes_and_reads(store: SqliteStore):
    await store.add_domain(DOMAIN)

    async def make(i: int) -> None:
        await store.add_user(f"u{i}@{DOMAIN}", "h", None)
        assert await store.get_user(f"u{i}@{DOMAIN}") is not None  # read your own write

    await asyncio.gather(*(make(i) for i in range(50)))
    assert len(await store.list_users(DOMAIN)) == 50


async def test_event_loop_keeps_running_during_deliveries(tmp_path: Path):
    async with SqliteStore(tmp_path, blob_inline_max=1 << 16) as store:
        await store.add_domain(DOMAIN)
        await store.add_user(f"a@{DOMAIN}", "h", None)
        gaps: list[float] = []
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        async def ticker() -> None:
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = loop.time()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        bodies = [message(i, 2 << 20 if i % 10 == 0 else 2000) for i in range(100)]
        await asyncio.gather(
            *(
                store.deliver(Delivery("Q", "s@x", b, (LocalDelivery(f"a@{DOMAIN}"),)))
                for b in bodies
            )
        )
        stop.set()
        await task
        assert gaps and max(gaps) < 0.5


async def test_second_store_on_the_same_directory(tmp_path: Path):
    """The CLI opens the data directory next to the running server."""
    async with SqliteStore(tmp_path) as server, SqliteStore(tmp_path) as cli:
        await cli.add_domain(DOMAIN)
        await cli.add_user(f"a@{DOMAIN}", "h", None)

        async def deliveries() -> None:
            for i in range(50):
                await server.deliver(
                    Delivery("Q", "s@x", message(i), (LocalDelivery(f"a@{DOMAIN}"),))
                )

        async def admin() -> None:
            for i in range(20):
                await cli.add_user(f"b{i}@{DOMAIN}", "h", None)

        await asyncio.gather(deliveries(), admin())
        assert len(await server.list_users()) == 21
        assert (await cli.folder_status(f"a@{DOMAIN}"))[0].messages == 50


# --- backup -----------------------------------------------------------------------------------


async def test_backup_while_deliveries_run(tmp_path: Path):
    data = tmp_path / "data"
    async with SqliteStore(data, blob_inline_max=2000) as store:
        await store.add_domain(DOMAIN)
        for u in ("a", "b"):
            await store.add_user(f"{u}@{DOMAIN}", "h", None)
        await store.add_admin("root", "h")
        stop = asyncio.Event()
        enough = asyncio.Event()
        delivered = 0

        async def keep_delivering() -> None:
            nonlocal delivered
            i = 0
            while not stop.is_set():
                batch = [
                    store.deliver(
                        Delivery(
                            "Q",
                            "s@x",
                            message(i + j, 5000 if (i + j) % 3 == 0 else 200),
                            (LocalDelivery(f"a@{DOMAIN}"), LocalDelivery(f"b@{DOMAIN}", "Junk")),
                        )
                    )
                    for j in range(10)
                ]
                await asyncio.gather(*batch)
                i += 10
                delivered += 10
                if delivered >= 50:
                    enough.set()

        async def keep_removing() -> None:
            # remove and recreate a user with big bodies, so blob files get unlinked meanwhile
            for k in range(5):
                await store.add_user(f"tmp{k}@{DOMAIN}", "h", None)
                await store.deliver(
                    Delivery("Q", "s@x", message(-k, 9000), (LocalDelivery(f"tmp{k}@{DOMAIN}"),))
                )
                await asyncio.sleep(0.01)
                await store.remove_user(f"tmp{k}@{DOMAIN}")

        task = asyncio.create_task(keep_delivering())
        remover = asyncio.create_task(keep_removing())
        await enough.wait()
        await store.backup(tmp_path / "backup")
        await remover
        stop.set()
        await task
        with pytest.raises(StoreError, match="not empty"):
            await store.backup(tmp_path / "backup")
        empty = tmp_path / "empty"
        empty.mkdir()
        await store.backup(empty)  # an existing empty directory is fine
        total = delivered

    async with SqliteStore(tmp_path / "backup", blob_inline_max=2000) as copy:
        assert await copy.get_admin_password_hash("root") == "h"
        a = await copy.list_messages(f"a@{DOMAIN}")
        b = await copy.list_messages(f"b@{DOMAIN}", "Junk")
        assert 50 <= len(a) <= total
        assert [raw for _, raw in a] == [raw for _, raw in b]  # each delivery all or nothing
        status = (await copy.folder_status(f"a@{DOMAIN}"))[0]
        assert status.messages == len(a) and status.bytes == sum(len(r) for _, r in a)
        assert any(len(raw) == 5000 for _, raw in a)  # some came from files
        conn = connect(tmp_path / "backup" / "gomail.db")
        assert (
            conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'gc_hold:%'").fetchone()[0] == 0
        )
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    # the hold was dropped on the source too
    conn = connect(data / "gomail.db")
    assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'gc_hold:%'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM orphan_files").fetchone()[0] == 0
    conn.close()


async def test_backup_refuses_a_file(store: SqliteStore, tmp_path: Path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError):
        await store.backup(target)


async def test_plugin_data_round_trip_expiry_and_restart(tmp_path: Path):
    s = SqliteStore(tmp_path / "data")
    await s.open()
    assert await s.plugin_get("mta-sts", "example.org") is None
    await s.plugin_put("mta-sts", "example.org", "v1", expires=2000.0)
    await s.plugin_put("mta-sts", "example.org", "v2", expires=3000.0)  # replaces
    await s.plugin_put("other", "example.org", "theirs")
    assert await s.plugin_get("mta-sts", "example.org", now=2500.0) == "v2"
    assert await s.plugin_get("mta-sts", "example.org", now=3000.0) is None  # expired
    await s.close()
    s = SqliteStore(tmp_path / "data")
    await s.open()
    try:
        assert await s.plugin_get("other", "example.org") == "theirs"  # durable, no expiry
        await s.plugin_delete("other", "example.org")
        assert await s.plugin_get("other", "example.org") is None
        assert await s.plugin_get("mta-sts", "example.org", now=2500.0) == "v2"
    finally:
        await s.close()
