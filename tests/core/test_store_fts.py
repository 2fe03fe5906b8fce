"""Full-text search (SqliteStore.search_text) over the word index of migration 0003: words as
prefix terms for candidates, an exact case-insensitive substring check of each candidate, a
scan for queries without word characters, and the migration of a version-2 (trigram) database.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from gomail.store import MessageMeta
from gomail.store.sqlite import MIGRATIONS_DIR, SqliteStore, connect, migrate
from storebed import opened_store

DOMAIN = "example.org"
USER = f"alice@{DOMAIN}"
OTHER = f"bob@{DOMAIN}"


@pytest.fixture
async def store(tmp_path: Path):
    async with opened_store(tmp_path / "data", users=[USER, OTHER]) as s:
        yield s


def raw(n: int) -> bytes:
    return f"From: a@example.net\r\nSubject: test {n}\r\n\r\nbody {n}\r\n".encode()


def meta(n: int, text: str, header_text: str = "") -> MessageMeta:
    return MessageMeta(
        header_text=header_text or f"From: Ann <a@example.net>\nSubject: test {n}",
        text=text,
        subject=f"test {n}",
    )


async def add(store: SqliteStore, *texts: str, user: str = USER, folder: str = "INBOX") -> None:
    for n, text in enumerate(texts, 1):
        await store.append(user, folder, raw(n), meta=meta(n, text))


def db(store: SqliteStore) -> sqlite3.Connection:
    return connect(store.db_path)


def integrity_check(store: SqliteStore) -> None:
    conn = db(store)
    try:
        conn.execute("INSERT INTO message_fts (message_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


async def test_the_index_is_a_word_index(store: SqliteStore):
    conn = db(store)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'message_fts'").fetchone()[0]
    conn.close()
    assert "unicode61 remove_diacritics 2" in sql
    assert "detail = column" in sql
    assert "trigram" not in sql


async def test_word_queries(store: SqliteStore):
    await add(store, "Please pay the invoice by Friday.", "The voice mail is full", "nothing")
    search = store.search_text
    assert await search(USER, "INBOX", "invoice", "body") == {1}
    assert await search(USER, "INBOX", "voice", "body") == {2}  # not inside "invoice"
    assert await search(USER, "INBOX", "Friday.", "body") == {1}
    assert await search(USER, "INBOX", "friday!", "body") == set()  # exact check: no "!"
    assert await search(USER, "INBOX", "absent", "body") == set()
    # FTS5 query syntax in a query is just words
    assert await search(USER, "INBOX", "NOT", "body") == {3}  # "nothing"
    assert await search(USER, "INBOX", 'pay" OR "voice', "body") == set()
    assert await search(USER, "INBOX", "the AND voice", "body") == set()


async def test_prefix(store: SqliteStore):
    await add(store, "Your invoice is attached", "invoicing starts Monday", "in voice")
    search = store.search_text
    assert await search(USER, "INBOX", "inv", "body") == {1, 2}
    assert await search(USER, "INBOX", "INVOICE", "body") == {1}
    assert await search(USER, "INBOX", "invoic", "body") == {1, 2}
    assert await search(USER, "INBOX", "i", "body") == {1, 2, 3}  # "is", "invoicing", "in"
    # a substring that starts inside a word is found only by the scan (queries without words)
    assert await search(USER, "INBOX", "voic", "body") == {3}
    assert await search(USER, "INBOX", "nvoice", "body") == set()
    # only the query's last word can be a prefix: the exact check wants the whole query
    assert await search(USER, "INBOX", "your inv", "body") == {1}
    assert await search(USER, "INBOX", "you invoice", "body") == set()


async def test_multiple_words(store: SqliteStore):
    await add(
        store,
        "the quick brown fox jumps",
        "brown, quick! and a fox",
        "quick\r\nbrown fox",
    )
    search = store.search_text
    assert await search(USER, "INBOX", "quick brown", "body") == {1}
    assert await search(USER, "INBOX", "QUICK BROWN FO", "body") == {1}
    assert await search(USER, "INBOX", "brown, quick", "body") == {2}
    # every word present, but not as the substring asked for: no false positive
    assert await search(USER, "INBOX", "brown quick", "body") == set()
    assert await search(USER, "INBOX", "quick fox", "body") == set()
    assert await search(USER, "INBOX", "quick\r\nbrown", "body") == {3}
    assert await search(USER, "INBOX", "fox fox", "body") == set()


async def test_case_and_diacritics(store: SqliteStore):
    await add(
        store,
        "Meet at the Café tonight",
        "meet at the cafe tonight",
        "Liebe Grüße aus der Straße",
        "STRASSE 5",
        "decomposed: cafe\u0301 noir",
        "ΣΊΣΥΦΟΣ",
    )
    search = store.search_text
    assert await search(USER, "INBOX", "café", "body") == {1}
    assert await search(USER, "INBOX", "CAFÉ", "body") == {1}
    assert await search(USER, "INBOX", "Caf", "body") == {1, 2, 5}
    # the index folds diacritics for candidates; the exact check keeps them apart
    assert await search(USER, "INBOX", "cafe", "body") == {2, 5}
    assert await search(USER, "INBOX", "cafe tonight", "body") == {2}
    assert await search(USER, "INBOX", "café tonight", "body") == {1}
    assert await search(USER, "INBOX", "cafe\u0301", "body") == {5}
    assert await search(USER, "INBOX", "GRÜßE", "body") == {3}
    # full case folding (ß is ss): "Straße" is also looked up as "strasse", and "STRASSE"
    # as "straße"
    assert await search(USER, "INBOX", "Straße", "body") == {3, 4}
    assert await search(USER, "INBOX", "grüsse", "body") == {3}
    assert await search(USER, "INBOX", "STRASSE", "body") == {3, 4}
    assert await search(USER, "INBOX", "σίσυφος", "body") == {6}


async def test_queries_without_words_scan_the_folder(store: SqliteStore):
    await add(store, "mail ann@example.net now", "-- \nsignature", "50%_off", "e-mail")
    await store.append(USER, "INBOX", raw(5))  # no meta: never found
    await store.append(OTHER, "INBOX", raw(1), meta=meta(1, "ann@example.net --"))
    search = store.search_text
    assert await search(USER, "INBOX", "@", "body") == {1}
    assert await search(USER, "INBOX", "--", "body") == {2}
    assert await search(USER, "INBOX", "-", "body") == {2, 4}  # inside "e-mail" too
    assert await search(USER, "INBOX", "%_", "body") == {3}
    assert await search(USER, "INBOX", "_", "body") == {3}
    assert await search(USER, "INBOX", " ", "body") == {1, 2}
    assert await search(USER, "INBOX", ":", "body") == set()
    assert await search(USER, "INBOX", ":", "text") == {1, 2, 3, 4}  # "From: ..."
    assert await search(USER, "INBOX", "", "body") == {1, 2, 3, 4, 5}
    # words and punctuation together: the index, then the exact check
    assert await search(USER, "INBOX", "@example.net", "body") == {1}
    assert await search(USER, "INBOX", "ann@example", "body") == {1}
    assert await search(USER, "INBOX", "e-mail", "body") == {4}
    assert await search(USER, "INBOX", "50%", "body") == {3}


async def test_text_and_body(store: SqliteStore):
    await store.append(
        USER,
        "INBOX",
        raw(1),
        meta=meta(1, "body words only", "Subject: Quarterly report\nX-Mailer: Zebra 2.0"),
    )
    await store.append(USER, "INBOX", raw(2), meta=meta(2, "the quarterly report is late"))
    search = store.search_text
    assert await search(USER, "INBOX", "quarterly report", "body") == {2}
    assert await search(USER, "INBOX", "quarterly report", "text") == {1, 2}
    assert await search(USER, "INBOX", "zebra", "body") == set()
    assert await search(USER, "INBOX", "zebra 2.0", "text") == {1}
    assert await search(USER, "INBOX", "x-mailer:", "text") == {1}
    assert await search(USER, "INBOX", "body words", "text") == {1}
    # the query must be within one of header and body, not across them
    assert await search(USER, "INBOX", "zebra body", "text") == set()


async def test_scope_underscore_and_odd_words(store: SqliteStore):
    await add(store, "see foo_bar()", "see foo bar", "\u19a0\u19b1\u19a1 tai lue")
    await add(store, "see foo_bar()", user=OTHER)
    await add(store, "see foo_bar()", folder="Archive")
    search = store.search_text
    assert await search(USER, "INBOX", "foo_bar", "body") == {1}
    assert await search(USER, "INBOX", "foo bar", "body") == {2}
    assert await search(USER, "INBOX", "foo_bar()", "text") == {1}
    assert await search(USER, "Archive", "foo", "body") == {1}
    assert await search(OTHER, "INBOX", "foo", "body") == {1}
    # a word the tokenizer cuts in two (its Unicode tables are older): the folder is scanned
    assert await search(USER, "INBOX", "\u19a0\u19b1\u19a1", "body") == {3}


async def test_the_index_follows_meta_changes(store: SqliteStore):
    await add(store, "first version", "kept")
    search = store.search_text
    await store.set_meta(USER, "INBOX", 1, meta(1, "second edition"))
    assert await search(USER, "INBOX", "first", "body") == set()
    assert await search(USER, "INBOX", "second", "body") == {1}
    await store.store_flags(USER, "INBOX", [1, 2], ["\\Deleted"], "add")
    await store.expunge(USER, "INBOX")
    assert await search(USER, "INBOX", "kept", "body") == set()
    conn = db(store)
    assert conn.execute("SELECT count(*) FROM message_meta").fetchone()[0] == 0
    conn.close()
    integrity_check(store)


async def test_database_from_version_2_is_reindexed(tmp_path: Path):
    only_v2 = tmp_path / "v2"
    only_v2.mkdir()
    for name in ("0001_initial.sql", "0002_imap.sql"):
        shutil.copy(MIGRATIONS_DIR / name, only_v2)
    data = tmp_path / "data"
    data.mkdir()
    conn = connect(data / "gomail.db")
    assert migrate(conn, only_v2) == [1, 2]
    # a version-2 database with two messages and their meta (the trigram index has them)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO domains (id, name, created) VALUES (1, ?, 0)", (DOMAIN,))
    conn.execute(
        "INSERT INTO users (id, address, domain_id, password_hash, created)"
        " VALUES (1, ?, 1, 'x', 0)",
        (USER,),
    )
    conn.execute(
        "INSERT INTO mailboxes (id, user_id, name, uidvalidity, uidnext)"
        " VALUES (1, 1, 'INBOX', 7, 3)"
    )
    for uid, text in [(1, "Your invoice for March"), (2, "Grüße aus dem Café")]:
        body = raw(uid)
        sha = f"{uid:064x}"
        conn.execute(
            "INSERT INTO blobs (sha256, size, data) VALUES (?, ?, ?)", (sha, len(body), body)
        )
        conn.execute(
            "INSERT INTO messages (mailbox_id, uid, blob, size, internaldate, modseq)"
            " VALUES (1, ?, ?, ?, 0, 1)",
            (uid, sha, len(body)),
        )
        conn.execute(
            "INSERT INTO message_meta (blob, header_text, text) VALUES (?, ?, ?)",
            (sha, f"Subject: old message {uid}", text),
        )
    conn.execute("COMMIT")
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'message_fts'").fetchone()[0]
    assert "trigram" in sql
    conn.close()

    async with SqliteStore(data) as s:
        conn = db(s)
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        conn.close()
        assert 3 in versions
        integrity_check(s)
        assert await s.search_text(USER, "INBOX", "invoice", "body") == {1}
        assert await s.search_text(USER, "INBOX", "INV", "body") == {1}
        assert await s.search_text(USER, "INBOX", "café", "body") == {2}
        assert await s.search_text(USER, "INBOX", "old message", "text") == {1, 2}
        assert await s.search_text(USER, "INBOX", "old message", "body") == set()
        # and what is stored now is indexed too, and kept when the old rows go
        await s.append(USER, "INBOX", raw(3), meta=meta(3, "another invoice"))
        assert await s.search_text(USER, "INBOX", "invoice", "body") == {1, 3}
        await s.store_flags(USER, "INBOX", [1], ["\\Deleted"], "add")
        await s.expunge(USER, "INBOX")
        assert await s.search_text(USER, "INBOX", "invoice", "body") == {3}
        integrity_check(s)
