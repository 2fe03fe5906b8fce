"""The embedded store: one SQLite database (WAL) plus a folder of large message bodies.

Layout under the data directory::

    gomail.db          the database (WAL mode: gomail.db-wal, gomail.db-shm next to it)
    blobs/ab/cdef...   message bodies above ``blob_inline_max`` bytes, named by SHA-256

Writes: one dedicated writer thread owns a plain :mod:`sqlite3` connection. Every write
(``deliver`` and the administrative ones alike) is a job on its queue; the thread takes all
pending jobs, runs each in its own SAVEPOINT inside one ``BEGIN IMMEDIATE`` transaction, commits
once (``synchronous=FULL``: the WAL is fsync'd), and only then resolves the callers' futures on
their event loops. Concurrent deliveries therefore share one fsync (group commit), and a job that
fails is rolled back to its savepoint without touching the others of its batch. ``commits``
counts the transactions the writer committed.

Reads run on a small thread pool, each thread with its own read-only connection; WAL lets them
proceed while the writer writes. Nothing here blocks the event loop.

Change notification (IMAP IDLE): a job notes the changes it makes (``self._changes``, dropped
with its savepoint if it fails); after the commit the writer hands them to the subscribed
feeds on their event loops (``call_soon_threadsafe``). Only this process's writes are seen:
a ``gomail`` CLI command writing next to the running server wakes nobody.

Other processes (``gomail`` CLI commands next to a running server) may open the same data
directory: SQLite's locking serialises their writes with ours (``busy_timeout``), and blob files
are only unlinked inside a write transaction after checking that no row references them again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gomail.store import (
    HIERARCHY_DELIMITER,
    MAX_FOLDER_LEVEL_BYTES,
    MAX_FOLDER_LEVELS,
    MAX_FOLDERS,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS_PER_FOLDER,
    SPECIAL_FOLDERS,
    Alias,
    AppendMessage,
    Change,
    ChangeFeed,
    Delivery,
    FlagMode,
    FlagRow,
    Folder,
    FolderChanges,
    FolderCountLimit,
    FolderExists,
    FolderLimit,
    FolderSnapshot,
    FolderStatus,
    KeywordLimit,
    MessageMeta,
    MessageRow,
    NoSuchFolder,
    NoSuchMessage,
    QueueEntry,
    QuotaExceeded,
    SortRow,
    Store,
    StoreError,
    Uids,
    UidSet,
    User,
    canonical_flags,
)
from gomail.store.blobs import BlobFiles, fsync_dir, make_dirs_durably, sha256_hex

log = logging.getLogger(__name__)

DB_NAME = "gomail.db"
# Expunges remembered per folder for QRESYNC/CONDSTORE (VANISHED): the write job that records
# expunges forgets the oldest beyond this many and raises mailboxes.expunge_floor.
EXPUNGE_HISTORY = 10_000
BLOB_DIR = "blobs"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

BUSY_TIMEOUT = 30.0  # seconds to wait for another process's write lock
MAX_BATCH = 2000  # jobs per transaction
READ_THREADS = 2
HASH_IN_THREAD = 256 * 1024  # hash bodies larger than this off the event loop
GC_HOLD_MAX = 24 * 3600.0  # a backup's hold on blob-file removal expires after this

_MIGRATION_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")

# The hot path's statements: constant strings, so sqlite3's statement cache prepares them once.
_SQL_BLOB = (
    "INSERT INTO blobs (sha256, size, data) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
)
_SQL_NEXT_UID = (
    "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
    " WHERE user_id = (SELECT id FROM users WHERE address = ?) AND name = ?"
    " RETURNING id, uidnext - 1, highestmodseq"
)
_SQL_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, blob, size, internaldate, flags, modseq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQL_MESSAGE_META = (
    "INSERT INTO message_meta (blob, envelope, bodystructure, body, part_map, header_text,"
    " text, subject, from_, to_, cc, bcc, sort_subject, sort_from, sort_to, sort_cc, date,"
    " message_id, in_reply_to, refs, sent_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (blob) DO "
)
_SQL_META_KEEP = _SQL_MESSAGE_META + "NOTHING"
_SQL_META_REPLACE = _SQL_MESSAGE_META + (
    "UPDATE SET envelope = excluded.envelope, bodystructure = excluded.bodystructure,"
    " body = excluded.body, part_map = excluded.part_map, header_text = excluded.header_text,"
    " text = excluded.text, subject = excluded.subject, from_ = excluded.from_,"
    " to_ = excluded.to_, cc = excluded.cc, bcc = excluded.bcc,"
    " sort_subject = excluded.sort_subject, sort_from = excluded.sort_from,"
    " sort_to = excluded.sort_to, sort_cc = excluded.sort_cc, date = excluded.date,"
    " message_id = excluded.message_id, in_reply_to = excluded.in_reply_to,"
    " refs = excluded.refs, sent_day = excluded.sent_day"
)
_SQL_MAILBOX = (
    "SELECT m.id, m.uidvalidity, m.uidnext, m.highestmodseq, m.recent_from, m.special_use"
    " FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE u.address = ? AND m.name = ?"
)
_DELETED = "(' ' || m.flags || ' ') LIKE '% \\Deleted %'"
_SQL_FOLDER = (
    "SELECT name, special_use, subscribed, uidvalidity, uidnext, highestmodseq,"
    " messages, unseen, (SELECT count(*) FROM messages x"
    "  WHERE x.mailbox_id = m.id AND x.uid >= m.recent_from), bytes"
    " FROM mailboxes m"
)
_SQL_QUEUE = (
    "INSERT INTO queue (queue_id, sender, recipient, blob, size, created, next_attempt)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQL_QUEUE_ENTRY = (
    "SELECT id, sender, recipient, size, created, next_attempt, attempts, state, last_error,"
    " queue_id, delay_notified != 0 FROM queue"
)


# --- connections and migrations ---------------------------------------------------------------


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with gomail's settings: autocommit mode (explicit BEGIN), foreign keys,
    ``synchronous=FULL`` (a commit is fsync'd before it returns), a busy timeout."""
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA temp_store = MEMORY")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, unless it exists: SQLite
    gives its -wal and -shm files the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The numbered ``NNNN_name.sql`` files, in order."""
    found: dict[int, Path] = {}
    for path in directory.iterdir():
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            continue
        number = int(m.group(1))
        if number in found:
            raise RuntimeError(f"two migrations numbered {number}: {found[number]}, {path}")
        found[number] = path
    return sorted(found.items())


def split_sql(text: str) -> Iterator[str]:
    """The statements of a SQL script (trigger bodies kept whole)."""
    buf = ""
    for line in text.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    rest = [ln for ln in buf.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if rest:
        raise RuntimeError(f"incomplete SQL statement at the end: {buf.strip()[:80]!r}")


def migrate(conn: sqlite3.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Switch to WAL and apply the migrations not yet recorded in schema_version, each in its
    own transaction. Safe when several processes open the database at once. Returns the
    numbers applied now."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the database to WAL mode (it is in {mode} mode)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
    )
    applied: list[int] = []
    for number, path in migrations(directory):
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (number,)
            ).fetchone()
            if not done:
                for statement in split_sql(path.read_text(encoding="utf-8")):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (number, time.time()),
                )
                applied.append(number)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _folder_name(folder: str) -> str:
    """INBOX is case-insensitive, also as the first level ("inbox/x" is "INBOX/x")."""
    if folder[:5].upper() == "INBOX" and folder[5:6] in ("", HIERARCHY_DELIMITER):
        return "INBOX" + folder[5:]
    return folder


def _new_folder_name(name: str) -> str:
    """A name to create or rename to: a trailing delimiter dropped, empty levels, LIST
    wildcards and control characters refused, and names over the limits (FolderLimit)."""
    name = _folder_name(name.removesuffix(HIERARCHY_DELIMITER))
    # The limits first, so that a huge name is refused before more work is done on it.
    if name.count(HIERARCHY_DELIMITER) >= MAX_FOLDER_LEVELS:
        raise FolderLimit(f"folder name has more than {MAX_FOLDER_LEVELS} levels")
    levels = name.split(HIERARCHY_DELIMITER)
    if any(len(level.encode("utf-8", "replace")) > MAX_FOLDER_LEVEL_BYTES for level in levels):
        raise FolderLimit(f"a level of the folder name is over {MAX_FOLDER_LEVEL_BYTES} bytes")
    if (
        not name
        or any(not level for level in levels)
        or "*" in name
        or "%" in name
        or not name.isprintable()
    ):
        raise StoreError(f"not a valid folder name: {name!r}")
    return name


def _parents(name: str) -> list[str]:
    """The names above name, top first: "a/b/c" -> ["a", "a/b"]."""
    levels = name.split(HIERARCHY_DELIMITER)
    return [HIERARCHY_DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


_VALID_SPECIAL_USE = {
    "\\all": "\\All",
    "\\archive": "\\Archive",
    "\\drafts": "\\Drafts",
    "\\flagged": "\\Flagged",
    "\\junk": "\\Junk",
    "\\sent": "\\Sent",
    "\\trash": "\\Trash",
}

# Flag strings as stored -> tuples, shared by every snapshot (one tuple per distinct set).
_FLAG_TUPLES: dict[str, tuple[str, ...]] = {"": ()}
_FLAG_TUPLES_MAX = 4096


def _flag_tuple(flags: str) -> tuple[str, ...]:
    try:
        return _FLAG_TUPLES[flags]
    except KeyError:
        pass
    value = tuple(flags.split())
    if len(_FLAG_TUPLES) >= _FLAG_TUPLES_MAX:
        _FLAG_TUPLES.clear()
        _FLAG_TUPLES[""] = ()
    _FLAG_TUPLES[flags] = value
    return value


def _uid_clause(uids: Uids | None) -> tuple[str, tuple]:
    """A condition on m.uid for uids (None: all) and its parameters."""
    if uids is None:
        return "", ()
    if isinstance(uids, range) and uids.step == 1:
        return " AND m.uid >= ? AND m.uid < ?", (uids.start, uids.stop)
    return " AND m.uid IN (SELECT value FROM json_each(?))", (
        json.dumps(sorted({int(u) for u in uids})),
    )


def _keywords(flags: Iterable[str]) -> set[str]:
    """The keywords among canonical flags, case-folded (keywords compare so); KeywordLimit for
    one longer than MAX_KEYWORD_LENGTH."""
    out = {f.lower() for f in flags if not f.startswith("\\")}
    for keyword in out:
        if len(keyword) > MAX_KEYWORD_LENGTH:
            raise KeywordLimit(f"keywords are at most {MAX_KEYWORD_LENGTH} characters long")
    return out


_FOLDER_KEYWORDS_MAX = 1024  # folders whose keywords are remembered


def _is_empty(uids: Uids | None) -> bool:
    return uids is not None and len(uids) == 0


def _meta_params(sha: str, meta: MessageMeta) -> tuple:
    return (
        sha,
        meta.envelope,
        meta.bodystructure,
        meta.body,
        meta.part_map,
        meta.header_text,
        meta.text,
        meta.subject,
        meta.from_,
        meta.to,
        meta.cc,
        meta.bcc,
        meta.sort_subject,
        meta.sort_from,
        meta.sort_to,
        meta.sort_cc,
        meta.date,
        meta.message_id,
        meta.in_reply_to,
        meta.references,
        meta.sent_day,
    )


def _query_words(query: str) -> list[str]:
    """The words of a search query, as the index's tokenizer (unicode61) cuts them: maximal runs
    of letters, digits and combining marks (``\\w`` runs, except that ``_`` separates words
    there and a combining mark, as in decomposed "cafe\\u0301", does not)."""
    words: list[str] = []
    run: list[str] = []
    for ch in query:
        if ch.isalnum() or unicodedata.category(ch)[0] == "M":
            run.append(ch)
        elif run:
            words.append("".join(run))
            run = []
    if run:
        words.append("".join(run))
    return list(dict.fromkeys(words))


def _fts_match(words: list[str], where: str) -> str:
    """The FTS5 query that finds the candidates of a search for words: each word as a prefix
    term, all of them, in the column(s) of where. The tokenizer folds case with simple case
    mappings, which keep "ß" while str.casefold makes it "ss" (the exact check's folding): a
    word is also looked up with "ß" as "ss" and with "ss" as "ß" ("Straße" and "STRASSE" both
    look up "straße"* OR "strasse"*)."""
    terms = []
    for word in words:
        folded = word.casefold()
        variants = (word.lower(), folded, folded.replace("ss", "ß"))
        forms = ['"' + form.replace('"', '""') + '"*' for form in dict.fromkeys(variants)]
        terms.append(forms[0] if len(forms) == 1 else "(" + " OR ".join(forms) + ")")
    columns = "{text}" if where == "body" else "{header_text text}"
    return f"{columns} : ({' AND '.join(terms)})"


# Header fields with a column of their own in message_meta.
_HEADER_COLUMNS = {"from": "from_", "to": "to_", "cc": "cc", "bcc": "bcc", "subject": "subject"}


class _Feed(ChangeFeed):
    """A subscription: changes queued on its event loop, one waiter at a time."""

    __slots__ = ("_store", "user", "_loop", "_items", "_waiter", "_closed")

    def __init__(self, store: SqliteStore, user: str, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self.user = user
        self._loop = loop
        self._items: collections.deque[Change] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _push(self, change: Change) -> None:
        if self._closed or change in self._items:
            return
        self._items.append(change)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> Change:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def pending(self) -> list[Change]:
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store._unsubscribe(self)
            self._wake()


def _push_changes(items: list[tuple[_Feed, Change]]) -> None:
    for feed, change in items:
        feed._push(change)


def _as_store_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"refused by the database: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"database error: {exc}")
    return exc


def _settle(results: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


# A job for the writer thread: fn(conn, *args), its future and loop, and whether it may leave
# blob files to remove.
_Job = tuple[Callable[..., Any], tuple, asyncio.Future, asyncio.AbstractEventLoop, bool]


class SqliteStore(Store):
    """The SQLite store. ``SqliteStore(data_dir)``, then ``await store.open()`` (or use it as an
    async context manager)."""

    def __init__(self, data_dir: Path, blob_inline_max: int = 1 << 20) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME
        self.blob_inline_max = blob_inline_max
        self.files = BlobFiles(self.data_dir / BLOB_DIR)
        self.commits = 0  # transactions committed by the writer thread
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._open = False
        self._readers: ThreadPoolExecutor | None = None
        self._read_local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._loop_conn: sqlite3.Connection | None = None
        self._changes: list[Change] = []  # noted by the jobs of the batch (writer thread)
        # The keywords in use in a folder as last known (writer thread): mailbox id ->
        # ((UIDVALIDITY, HIGHESTMODSEQ) then, case-folded keywords). Every change to a folder's
        # messages raises its HIGHESTMODSEQ, so an entry for the current values is exact; a
        # rolled-back transaction clears them all.
        self._folder_keywords: dict[int, tuple[tuple[int, int], frozenset[str]]] = {}
        self._feeds: dict[str, set[_Feed]] = {}
        self._feeds_lock = threading.Lock()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            raise StoreError("the store is already open")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._writer = threading.Thread(
            target=self._writer_main, args=(loop, ready), name="gomail-store-writer", daemon=True
        )
        self._writer.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._writer.join)
            self._writer = None
            raise
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="gomail-store-read")
        self._open = True

    async def close(self) -> None:
        if self._writer is None:
            return
        with self._lock:
            self._open = False
            self._jobs.put(None)
        await asyncio.to_thread(self._writer.join)
        self._writer = None
        readers, self._readers = self._readers, None
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, True)
        for conn in self._read_conns:
            conn.close()
        self._read_conns.clear()
        self._loop_conn = None

    # --- the writer thread --------------------------------------------------------------------

    def _writer_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future) -> None:
        try:
            make_dirs_durably(self.data_dir)
            create_private(self.db_path)
            conn = connect(self.db_path)
            try:
                applied = migrate(conn)
                if applied:
                    log.info("database %s: applied migrations %s", self.db_path, applied)
                self.files.remove_temporary_files()
                self._collect_garbage(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, [(ready, False, _as_store_error(exc))])
            return
        loop.call_soon_threadsafe(_settle, [(ready, True, None)])
        try:
            self._writer_loop(conn)
        finally:
            conn.close()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        jobs = self._jobs
        stopping = False
        while not stopping:
            job = jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            try:
                self._run_batch(conn, batch)
            except BaseException:  # never leave a caller waiting
                log.exception("store writer: batch failed")
                self._folder_keywords.clear()
                err = StoreError("internal error in the store writer")
                self._resolve([(j, False, err) for j in batch])
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
        # Jobs queued after the stop marker (a race with close()) are refused, not dropped.
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._resolve([(job, False, StoreError("the store is closed"))])

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            err = StoreError(f"the database is not available: {exc}")
            self._resolve([(job, False, err) for job in batch])
            return
        results: list[tuple[_Job, bool, Any]] = []
        collect = False
        changes = self._changes
        changes.clear()
        for job in batch:
            fn, args, fut, _loop, frees_blobs = job
            if fut.cancelled():  # the caller gave up: do not store what it will not confirm
                continue
            conn.execute("SAVEPOINT job")
            mark = len(changes)
            try:
                value = fn(conn, *args)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                del changes[mark:]
                results.append((job, False, _as_store_error(exc)))
            else:
                conn.execute("RELEASE job")
                results.append((job, True, value))
                collect = collect or frees_blobs
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            err = StoreError(f"the database could not commit: {exc}")
            self._folder_keywords.clear()
            results = [(job, False, err) for job, _ok, _value in results]
            collect = False
            changes.clear()
        else:
            self.commits += 1
        if collect:  # before answering: a removal is finished when its caller hears of it
            try:
                self._collect_garbage(conn)
            except Exception:
                log.exception("store writer: removing unused blob files failed")
        self._resolve(results)
        if changes:
            self._publish(changes)
            changes.clear()

    def _publish(self, changes: list[Change]) -> None:
        """Hand committed changes to the feeds of their users, on the feeds' loops."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Feed, Change]]] = {}
        with self._feeds_lock:
            if not self._feeds:
                return
            for change in dict.fromkeys(changes):
                for feed in self._feeds.get(change.user, ()):
                    by_loop.setdefault(feed._loop, []).append((feed, change))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(_push_changes, items)

    @staticmethod
    def _resolve(results: list[tuple[_Job, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_fn, _args, fut, loop, _frees), ok, value in results:
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, items)

    def _collect_garbage(self, conn: sqlite3.Connection) -> None:
        """Unlink the files of blobs no row references any more.

        Runs in its own write transaction: no other writer (in any process) can add a row for
        the same blob meanwhile, and a writer that needs the file later writes it again (see
        _deliver_job). A running backup holds removal off (meta key ``gc_hold:*``).
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            held = conn.execute(
                "SELECT 1 FROM meta WHERE key LIKE 'gc_hold:%' AND value > ?",
                (time.time() - GC_HOLD_MAX,),
            ).fetchone()
            orphans = [] if held else conn.execute("SELECT sha256 FROM orphan_files").fetchall()
            for (sha,) in orphans:
                if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone():
                    continue
                self.files.unlink(sha)
            if orphans:
                conn.execute("DELETE FROM orphan_files")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write(self, fn: Callable[..., Any], *args: Any, frees_blobs: bool = False) -> Any:
        """Queue fn(conn, *args) for the writer; returns the future of its result."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if not self._open:
                raise StoreError("the store is not open")
            self._jobs.put((fn, args, fut, loop, frees_blobs))
        return fut

    # --- reads --------------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(conn, *args) in one read transaction on a reader thread."""
        readers = self._readers
        if readers is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(readers, self._run_read, fn, args)

    async def _lookup(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a point look-up (one indexed row) on the event loop's own connection.

        A primary-key read takes a few microseconds, far less than handing it to a thread
        (and the GIL back and forth), and it is on every RCPT and AUTH. WAL readers do not
        wait for the writer; should one ever be told the database is busy, it falls back to
        the reader threads rather than block the loop.
        """
        conn = self._loop_conn
        if conn is None:
            if self._readers is None:
                raise StoreError("the store is not open")
            conn = self._loop_conn = connect(self.db_path, readonly=True)
            conn.execute("PRAGMA busy_timeout = 0")
            with self._lock:
                self._read_conns.append(conn)
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise _as_store_error(exc) from exc
        except sqlite3.Error as exc:
            raise _as_store_error(exc) from exc
        return await self._read(fn, *args)

    def _run_read(self, fn: Callable[..., Any], args: tuple) -> Any:
        conn = getattr(self._read_local, "conn", None)
        try:
            if conn is None:
                conn = connect(self.db_path, readonly=True)
                self._read_local.conn = conn
                with self._lock:
                    self._read_conns.append(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _as_store_error(exc) from exc

    # --- helpers used inside jobs ---------------------------------------------------------------

    @staticmethod
    def _user_id(conn: sqlite3.Connection, address: str) -> int:
        row = conn.execute("SELECT id FROM users WHERE address = ?", (address,)).fetchone()
        if row is None:
            raise StoreError(f"no such user: {address}")
        return row[0]

    @staticmethod
    def _domain_id(conn: sqlite3.Connection, domain: str) -> int:
        row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
        if row is None:
            raise StoreError(f"unknown domain {domain}: add the domain first")
        return row[0]

    @staticmethod
    def _next_uidvalidity(conn: sqlite3.Connection) -> int:
        """A UIDVALIDITY never handed out before in this store (time-based, increasing)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        value = max(int(time.time()), (row[0] + 1) if row else 0)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    # --- domains ------------------------------------------------------------------------------

    async def add_domain(self, domain: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO domains (name, created) VALUES (?, ?)", (domain, time.time())
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"domain {domain} already exists") from None

        if not domain or "@" in domain:
            raise StoreError(f"not a domain name: {domain!r}")
        await self._write(job)

    async def remove_domain(self, domain: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if row is None:
                raise StoreError(f"no such domain: {domain}")
            users = conn.execute("SELECT count(*) FROM users WHERE domain_id = ?", row).fetchone()
            aliases = conn.execute(
                "SELECT count(DISTINCT source) FROM aliases WHERE domain_id = ?", row
            ).fetchone()
            if users[0] or aliases[0]:
                raise StoreError(
                    f"domain {domain} still has {users[0]} user(s) and {aliases[0]} alias(es);"
                    " remove them first"
                )
            conn.execute("DELETE FROM domains WHERE id = ?", row)

        await self._write(job)

    async def list_domains(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT name FROM domains ORDER BY name")]

        return await self._read(read)

    async def has_domain(self, domain: str) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone()
            return row is not None

        return await self._lookup(read)

    # --- users --------------------------------------------------------------------------------

    async def add_user(self, address: str, password_hash: str, quota: int | None) -> None:
        def job(conn: sqlite3.Connection) -> None:
            domain_id = self._domain_id(conn, _domain_of(address))
            try:
                cur = conn.execute(
                    "INSERT INTO users (address, domain_id, password_hash, quota, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (address, domain_id, password_hash, quota, time.time()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"user {address} already exists") from None
            user_id = cur.lastrowid
            uidvalidity = self._next_uidvalidity(conn)
            conn.executemany(
                "INSERT INTO mailboxes (user_id, name, special_use, uidvalidity)"
                " VALUES (?, ?, ?, ?)",
                [(user_id, name, SPECIAL_USE.get(name), uidvalidity) for name in SPECIAL_FOLDERS],
            )

        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            raise StoreError(f"not a mail address: {address!r}")
        _check_quota(quota)
        await self._write(job)

    async def get_user(self, address: str) -> User | None:
        def read(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                "SELECT address, quota, created FROM users WHERE address = ?", (address,)
            ).fetchone()
            return User(*row) if row else None

        return await self._lookup(read)

    async def list_users(self, domain: str | None = None) -> list[User]:
        def read(conn: sqlite3.Connection) -> list[User]:
            if domain is None:
                rows = conn.execute("SELECT address, quota, created FROM users ORDER BY address")
            else:
                rows = conn.execute(
                    "SELECT address, quota, created FROM users WHERE domain_id ="
                    " (SELECT id FROM domains WHERE name = ?) ORDER BY address",
                    (domain,),
                )
            return [User(*row) for row in rows]

        return await self._read(read)

    async def get_password_hash(self, address: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT password_hash FROM users WHERE address = ?", (address,)
            ).fetchone()
            return row[0] if row else None

        return await self._lookup(read)

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE users SET password_hash = ? WHERE address = ?", (password_hash, address)
            )
            if cur.rowcount == 0:
                raise StoreError(f"no such user: {address}")

        await self._write(job)

    async def set_quota(self, address: str, quota: int | None) -> None:
        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute("UPDATE users SET quota = ? WHERE address = ?", (quota, address))
            if cur.rowcount == 0:
                raise StoreError(f"no such user: {address}")

        _check_quota(quota)
        await self._write(job)

    async def remove_user(self, address: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            user_id = self._user_id(conn, address)
            # The mailboxes' BEFORE DELETE trigger removes their messages, whose triggers
            # release the blobs.
            conn.execute("DELETE FROM mailboxes WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))

        await self._write(job, frees_blobs=True)

    async def quota_usage(self, address: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            user_id = self._user_id(conn, address)
            row = conn.execute(
                "SELECT coalesce(sum(bytes), 0) FROM mailboxes WHERE user_id = ?", (user_id,)
            ).fetchone()
            return row[0]

        return await self._lookup(read)

    # --- administrators -----------------------------------------------------------------------

    async def add_admin(self, username: str, password_hash: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO admins (username, password_hash, created) VALUES (?, ?, ?)",
                    (username, password_hash, time.time()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"administrator {username} already exists") from None

        if not username:
            raise StoreError("an administrator needs a user name")
        await self._write(job)

    async def get_admin_password_hash(self, username: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT password_hash FROM admins WHERE username = ?", (username,)
            ).fetchone()
            return row[0] if row else None

        return await self._read(read)

    # --- aliases ------------------------------------------------------------------------------

    async def add_alias(self, source: str, targets: list[str]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            domain_id = self._domain_id(conn, _domain_of(source))
            added = 0
            for target in targets:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO aliases (source, target, domain_id) VALUES (?, ?, ?)",
                    (source, target, domain_id),
                )
                added += cur.rowcount
            if not added:
                raise StoreError(f"alias {source} already has target(s) {', '.join(targets)}")

        local, at, domain = source.rpartition("@")
        if not at or not domain:
            raise StoreError(f"not an alias source (name@domain or @domain): {source!r}")
        targets = list(dict.fromkeys(t for t in targets if t))
        if not targets:
            raise StoreError(f"alias {source} needs at least one target")
        await self._write(job)

    async def remove_alias(self, source: str, target: str | None = None) -> None:
        def job(conn: sqlite3.Connection) -> None:
            if target is None:
                cur = conn.execute("DELETE FROM aliases WHERE source = ?", (source,))
                if cur.rowcount == 0:
                    raise StoreError(f"no such alias: {source}")
            else:
                cur = conn.execute(
                    "DELETE FROM aliases WHERE source = ? AND target = ?", (source, target)
                )
                if cur.rowcount == 0:
                    raise StoreError(f"alias {source} has no target {target}")

        await self._write(job)

    async def get_alias(self, source: str) -> Alias | None:
        def read(conn: sqlite3.Connection) -> Alias | None:
            targets = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT target FROM aliases WHERE source = ? ORDER BY id", (source,)
                )
            )
            return Alias(source, targets) if targets else None

        return await self._lookup(read)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def read(conn: sqlite3.Connection) -> list[Alias]:
            if domain is None:
                rows = conn.execute("SELECT source, target FROM aliases ORDER BY source, id")
            else:
                rows = conn.execute(
                    "SELECT source, target FROM aliases WHERE domain_id ="
                    " (SELECT id FROM domains WHERE name = ?) ORDER BY source, id",
                    (domain,),
                )
            grouped: dict[str, list[str]] = {}
            for source, target in rows:
                grouped.setdefault(source, []).append(target)
            return [Alias(source, tuple(targets)) for source, targets in grouped.items()]

        return await self._read(read)

    # --- mailboxes and messages ---------------------------------------------------------------

    async def folder_status(self, address: str) -> list[FolderStatus]:
        def read(conn: sqlite3.Connection) -> list[FolderStatus]:
            user_id = self._user_id(conn, address)
            rows = conn.execute(
                "SELECT name, messages, unseen, bytes, uidvalidity, uidnext, highestmodseq"
                " FROM mailboxes WHERE user_id = ? ORDER BY name != 'INBOX', id",
                (user_id,),
            )
            return [FolderStatus(*row) for row in rows]

        return await self._read(read)

    async def _prepare_blob(self, raw: bytes) -> tuple[str, int, bool]:
        """Hash a body and, when it is to be a file, write the file: (sha256, size, inline)."""
        size = len(raw)
        if size > HASH_IN_THREAD:
            sha = await asyncio.to_thread(sha256_hex, raw)
        else:
            sha = sha256_hex(raw)
        inline = size <= self.blob_inline_max
        if not inline:
            # The slow part (write, fsync, rename, fsync dir) happens here, in parallel with
            # other deliveries, not in the writer thread.
            await asyncio.to_thread(self.files.write, sha, raw)
        return sha, size, inline

    def _store_blob(
        self, conn: sqlite3.Connection, raw: bytes, sha: str, size: int, inline: bool
    ) -> None:
        """The blob row (inside a job), and the file again if it went since _prepare_blob."""
        conn.execute(_SQL_BLOB, (sha, size, raw if inline else None))
        if not inline and not self.files.exists(sha):
            # Removed since it was written (the same body's last copy was deleted in
            # between): write it again, under the write lock nobody can remove it now.
            self.files.write(sha, raw)

    async def deliver(self, delivery: Delivery) -> None:
        if not delivery.local and not delivery.outbound:
            return
        sha, size, inline = await self._prepare_blob(delivery.raw)
        await self._write(self._deliver_job, delivery, sha, size, inline, time.time())

    def _deliver_job(
        self,
        conn: sqlite3.Connection,
        delivery: Delivery,
        sha: str,
        size: int,
        inline: bool,
        now: float,
    ) -> None:
        execute = conn.execute
        self._store_blob(conn, delivery.raw, sha, size, inline)
        if delivery.meta is not None and delivery.local:
            execute(_SQL_META_KEEP, _meta_params(sha, delivery.meta))
        changes = self._changes
        for local in delivery.local:
            folder = _folder_name(local.folder)
            rows = execute(_SQL_NEXT_UID, (local.user, folder)).fetchall()
            if not rows:
                self._user_id(conn, local.user)
                raise NoSuchFolder(f"user {local.user} has no folder {folder}")
            mailbox_id, uid, modseq = rows[0]
            flags = " ".join(canonical_flags(local.flags)) if local.flags else ""
            execute(_SQL_MESSAGE, (mailbox_id, uid, sha, size, now, flags, modseq))
            changes.append(Change(local.user, folder, "exists"))
        for recipient in delivery.outbound:
            sender = delivery.sender_for(recipient)
            execute(_SQL_QUEUE, (delivery.queue_id, sender, recipient, sha, size, now, now))

    async def list_messages(self, address: str, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            user_id = self._user_id(conn, address)
            name = _folder_name(folder)
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, name)
            ).fetchone()
            if row is None:
                raise StoreError(f"user {address} has no folder {name}")
            rows = conn.execute(
                "SELECT m.uid, b.sha256, b.data FROM messages m"
                " JOIN blobs b ON b.sha256 = m.blob WHERE m.mailbox_id = ? ORDER BY m.uid",
                row,
            ).fetchall()
            return [
                (uid, data if data is not None else self.files.read(sha)) for uid, sha, data in rows
            ]

        return await self._read(read)

    # --- IMAP: helpers --------------------------------------------------------------------------

    @staticmethod
    def _mailbox(conn: sqlite3.Connection, user: str, folder: str) -> tuple:
        """(id, uidvalidity, uidnext, highestmodseq, recent_from, special_use) of a folder."""
        name = _folder_name(folder)
        row = conn.execute(_SQL_MAILBOX, (user, name)).fetchone()
        if row is None:
            SqliteStore._user_id(conn, user)
            raise NoSuchFolder(f"no such folder: {name}")
        return row

    @staticmethod
    def _check_room(conn: sqlite3.Connection, user: str, adding: int) -> None:
        row = conn.execute(
            "SELECT u.quota, (SELECT coalesce(sum(bytes), 0) FROM mailboxes WHERE user_id = u.id)"
            " FROM users u WHERE u.address = ?",
            (user,),
        ).fetchone()
        if row is None:
            raise StoreError(f"no such user: {user}")
        limit, used = row
        if limit is not None and used + adding > limit:
            raise QuotaExceeded(
                f"over quota: {used + adding} bytes would exceed the limit of {limit}"
            )

    def _create_missing(
        self, conn: sqlite3.Connection, user_id: int, names: list[str]
    ) -> list[str]:
        """Create the folders among names that do not exist; the names created. FolderLimit
        if that would take the account past MAX_FOLDERS."""
        missing = [
            name
            for name in names
            if not conn.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, name)
            ).fetchone()
        ]
        if missing:
            self._check_folder_count(conn, user_id, len(missing))
        created = []
        for name in missing:
            conn.execute(
                "INSERT INTO mailboxes (user_id, name, uidvalidity) VALUES (?, ?, ?)",
                (user_id, name, self._next_uidvalidity(conn)),
            )
            created.append(name)
        return created

    @staticmethod
    def _check_folder_count(conn: sqlite3.Connection, user_id: int, adding: int) -> None:
        (count,) = conn.execute(
            "SELECT count(*) FROM mailboxes WHERE user_id = ?", (user_id,)
        ).fetchone()
        if count + adding > MAX_FOLDERS:
            # The limit first: "the account has 9998 folders" read as the reason by itself.
            text = f"too many folders: an account may have at most {MAX_FOLDERS}"
            if adding > 1:
                text += f" ({adding} would be created, parent folders included)"
            raise FolderCountLimit(text)

    @staticmethod
    def _check_moved_depth(
        conn: sqlite3.Connection, user_id: int, old_name: str, new_name: str
    ) -> None:
        """FolderLimit if renaming old_name to new_name takes one of its children deeper than
        MAX_FOLDER_LEVELS (their levels below old_name keep their length)."""
        prefix = old_name + HIERARCHY_DELIMITER
        (deepest,) = conn.execute(
            "SELECT max(length(name) - length(replace(name, ?, ''))) FROM mailboxes"
            " WHERE user_id = ? AND substr(name, 1, ?) = ?",
            (HIERARCHY_DELIMITER, user_id, len(prefix), prefix),
        ).fetchone()
        if deepest is None:
            return
        below = deepest - old_name.count(HIERARCHY_DELIMITER)
        if new_name.count(HIERARCHY_DELIMITER) + below >= MAX_FOLDER_LEVELS:
            raise FolderLimit(
                f"renaming {old_name} to {new_name} would take a subfolder past"
                f" {MAX_FOLDER_LEVELS} levels"
            )

    # --- IMAP: folders --------------------------------------------------------------------------

    async def list_folders(self, user: str) -> list[Folder]:
        def read(conn: sqlite3.Connection) -> list[Folder]:
            user_id = self._user_id(conn, user)
            rows = conn.execute(
                _SQL_FOLDER + " WHERE user_id = ? ORDER BY name != 'INBOX', name", (user_id,)
            )
            return [Folder(name, special, bool(sub), *rest) for name, special, sub, *rest in rows]

        return await self._read(read)

    async def deleted_counts(self, user: str, folder: str | None = None) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            user_id = self._user_id(conn, user)
            which, params = "", ()
            if folder is not None:
                which, params = " AND mb.name = ?", (_folder_name(folder),)
            rows = conn.execute(
                "SELECT mb.name, count(*) FROM mailboxes mb JOIN messages m"
                f" ON m.mailbox_id = mb.id WHERE mb.user_id = ?{which} AND {_DELETED}"
                " GROUP BY mb.id",
                (user_id, *params),
            )
            return dict(rows)

        return await self._read(read)

    async def get_folder(self, user: str, name: str) -> Folder | None:
        name = _folder_name(name)

        def read(conn: sqlite3.Connection) -> Folder | None:
            user_id = self._user_id(conn, user)
            row = conn.execute(
                _SQL_FOLDER + " WHERE user_id = ? AND name = ?", (user_id, name)
            ).fetchone()
            if row is None:
                return None
            name_, special, sub, *rest = row
            return Folder(name_, special, bool(sub), *rest)

        return await self._read(read)

    async def create_folder(self, user: str, name: str, special_use: str | None = None) -> None:
        name = _new_folder_name(name)
        if special_use is not None:
            canon = _VALID_SPECIAL_USE.get(special_use.lower())
            if canon is None:
                raise StoreError(f"not a special-use attribute: {special_use!r}")
            special_use = canon

        def job(conn: sqlite3.Connection) -> None:
            user_id = self._user_id(conn, user)
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, name)
            ).fetchone():
                raise FolderExists(f"folder {name} exists already")
            for created in self._create_missing(conn, user_id, [*_parents(name), name]):
                self._changes.append(Change(user, created, "folders"))
            if special_use is not None:
                conn.execute(
                    "UPDATE mailboxes SET special_use = ? WHERE user_id = ? AND name = ?",
                    (special_use, user_id, name),
                )

        await self._write(job)

    async def rename_folder(self, user: str, old: str, new: str) -> None:
        old_name = _folder_name(old)
        new_name = _new_folder_name(new)

        def job(conn: sqlite3.Connection) -> None:
            user_id = self._user_id(conn, user)
            src = self._mailbox(conn, user, old_name)
            if (
                new_name == old_name
                or conn.execute(
                    "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, new_name)
                ).fetchone()
            ):
                raise FolderExists(f"folder {new_name} exists already")
            if old_name != "INBOX" and new_name.startswith(old_name + HIERARCHY_DELIMITER):
                raise StoreError(f"cannot move folder {old_name} into itself")
            changes = self._changes
            for created in self._create_missing(conn, user_id, _parents(new_name)):
                changes.append(Change(user, created, "folders"))
            src_id, _uidvalidity, uidnext, highestmodseq, recent_from, _special = src
            if old_name == "INBOX":
                # RFC 3501: the messages go to a new folder; INBOX stays, empty.
                self._check_folder_count(conn, user_id, 1)
                cur = conn.execute(
                    "INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, highestmodseq,"
                    " recent_from) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        user_id,
                        new_name,
                        self._next_uidvalidity(conn),
                        uidnext,
                        highestmodseq,
                        recent_from,
                    ),
                )
                modseq = highestmodseq + 1
                moved = conn.execute(
                    "INSERT INTO expunged (mailbox_id, uid, modseq)"
                    " SELECT mailbox_id, uid, ? FROM messages WHERE mailbox_id = ?"
                    " ON CONFLICT DO UPDATE SET modseq = excluded.modseq",
                    (modseq, src_id),
                ).rowcount
                conn.execute(
                    "UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ?",
                    (cur.lastrowid, src_id),
                )
                if moved:
                    conn.execute(
                        "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, src_id)
                    )
                    self._prune_expunged(conn, src_id)
                    changes.append(Change(user, "INBOX", "expunge"))
            else:
                prefix = old_name + HIERARCHY_DELIMITER
                self._check_moved_depth(conn, user_id, old_name, new_name)
                try:
                    conn.execute(
                        "UPDATE mailboxes SET name = ? || substr(name, ?)"
                        " WHERE user_id = ? AND (id = ? OR substr(name, 1, ?) = ?)",
                        (new_name, len(old_name) + 1, user_id, src_id, len(prefix), prefix),
                    )
                except sqlite3.IntegrityError:
                    raise FolderExists(
                        f"a subfolder of {new_name} exists already; cannot rename {old_name}"
                    ) from None
            changes.append(Change(user, old_name, "folders"))
            changes.append(Change(user, new_name, "folders"))

        await self._write(job)

    async def delete_folder(self, user: str, name: str) -> None:
        name = _folder_name(name)

        def job(conn: sqlite3.Connection) -> None:
            if name == "INBOX":
                raise StoreError("INBOX cannot be deleted")
            mailbox_id = self._mailbox(conn, user, name)[0]
            prefix = name + HIERARCHY_DELIMITER
            user_id = self._user_id(conn, user)
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND substr(name, 1, ?) = ? LIMIT 1",
                (user_id, len(prefix), prefix),
            ).fetchone():
                raise StoreError(f"folder {name} has subfolders; delete them first")
            # The BEFORE DELETE trigger removes its messages, whose triggers release bodies.
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            self._changes.append(Change(user, name, "folders"))

        await self._write(job, frees_blobs=True)

    async def subscribe(self, user: str, name: str, on: bool) -> None:
        def job(conn: sqlite3.Connection) -> None:
            mailbox_id = self._mailbox(conn, user, name)[0]
            conn.execute("UPDATE mailboxes SET subscribed = ? WHERE id = ?", (int(on), mailbox_id))
            self._changes.append(Change(user, _folder_name(name), "folders"))

        await self._write(job)

    # --- IMAP: reading a folder -------------------------------------------------------------

    async def select_folder(
        self, user: str, name: str, claim_recent: bool = False
    ) -> FolderSnapshot:
        def read(conn: sqlite3.Connection) -> tuple:
            mailbox = self._mailbox(conn, user, name)
            rows = conn.execute(
                "SELECT uid, flags, modseq FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox[0],),
            ).fetchall()
            flag_tuple = _flag_tuple
            return mailbox, [(uid, flag_tuple(flags), modseq) for uid, flags, modseq in rows]

        def claim(conn: sqlite3.Connection, mailbox_id: int, upto: int) -> int:
            row = conn.execute(
                "SELECT recent_from FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None or row[0] >= upto:
                return upto
            conn.execute("UPDATE mailboxes SET recent_from = ? WHERE id = ?", (upto, mailbox_id))
            return row[0]

        mailbox, messages = await self._read(read)
        mailbox_id, uidvalidity, uidnext, highestmodseq, recent_from, special_use = mailbox
        recent: frozenset[int] = frozenset()
        if claim_recent and messages and messages[-1][0] >= recent_from:
            first = await self._write(claim, mailbox_id, uidnext)
            recent = frozenset(uid for uid, _f, _m in messages if uid >= first)
        return FolderSnapshot(
            _folder_name(name),
            uidvalidity,
            uidnext,
            highestmodseq,
            messages,
            recent,
            special_use,
        )

    async def claim_recent(self, user: str, folder: str, uids: Sequence[int]) -> set[int]:
        wanted = sorted(set(uids))
        if not wanted:
            return set()

        def claim(conn: sqlite3.Connection) -> set[int]:
            mailbox_id, *_rest, recent_from, _special = self._mailbox(conn, user, folder)
            upto = wanted[-1] + 1
            if upto <= recent_from:
                return set()
            conn.execute("UPDATE mailboxes SET recent_from = ? WHERE id = ?", (upto, mailbox_id))
            return {uid for uid in wanted if uid >= recent_from}

        return await self._write(claim)

    @staticmethod
    def _changed(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[FlagRow]:
        rows = conn.execute(
            "SELECT uid, flags, modseq FROM messages WHERE mailbox_id = ? AND modseq > ?"
            " ORDER BY uid",
            (mailbox_id, modseq),
        )
        return [(uid, _flag_tuple(flags), ms) for uid, flags, ms in rows]

    @staticmethod
    def _expunged(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> UidSet:
        floor, uidnext = conn.execute(
            "SELECT expunge_floor, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        if modseq >= floor:  # every expunge above modseq is still recorded
            rows = conn.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq),
            )
            return UidSet.of(uid for (uid,) in rows)
        # Some expunges above modseq were forgotten: every UID below uidnext that is not in
        # the folder (RFC 7162 3.2.5.2, 3.2.10), as the gaps between the UIDs present.
        gaps: list[tuple[int, int]] = []
        start = 1
        for (uid,) in conn.execute(
            "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,)
        ):
            if uid > start:
                gaps.append((start, uid - 1))
            start = uid + 1
        if start < uidnext:
            gaps.append((start, uidnext - 1))
        return UidSet(tuple(gaps))

    @staticmethod
    def _prune_expunged(conn: sqlite3.Connection, mailbox_id: int) -> None:
        """Forget a folder's expunges beyond the EXPUNGE_HISTORY most recent, inside the write
        job that recorded new ones, and raise its expunge_floor to the highest MODSEQ forgotten.
        Rows sharing that MODSEQ go too (the floor must leave everything above it complete)."""
        keep = EXPUNGE_HISTORY
        # Cheap bound first: the recorded UIDs are distinct, below uidnext and not in the
        # folder, so a folder with few UIDs gone has nothing to prune (no index scan).
        (gone,) = conn.execute(
            "SELECT uidnext - 1 - messages FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        if gone <= keep:
            return
        # expunged_modseq (mailbox_id, modseq) covers this: it reads at most keep + 1 entries.
        row = conn.execute(
            "SELECT modseq FROM expunged WHERE mailbox_id = ? ORDER BY modseq DESC"
            " LIMIT 1 OFFSET ?",
            (mailbox_id, keep),
        ).fetchone()
        if row is None:
            return
        conn.execute(
            "DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?", (mailbox_id, row[0])
        )
        conn.execute(
            "UPDATE mailboxes SET expunge_floor = max(expunge_floor, ?) WHERE id = ?",
            (row[0], mailbox_id),
        )

    async def changes_since(self, user: str, folder: str, modseq: int) -> FolderChanges:
        def read(conn: sqlite3.Connection) -> FolderChanges:
            mailbox_id, uidvalidity, uidnext, highestmodseq, *_ = self._mailbox(conn, user, folder)
            return FolderChanges(
                uidvalidity,
                uidnext,
                highestmodseq,
                self._changed(conn, mailbox_id, modseq),
                self._expunged(conn, mailbox_id, modseq),
            )

        return await self._read(read)

    async def changed_since(self, user: str, folder: str, modseq: int) -> list[FlagRow]:
        def read(conn: sqlite3.Connection) -> list[FlagRow]:
            return self._changed(conn, self._mailbox(conn, user, folder)[0], modseq)

        return await self._read(read)

    async def expunged_since(self, user: str, folder: str, modseq: int) -> UidSet:
        def read(conn: sqlite3.Connection) -> UidSet:
            return self._expunged(conn, self._mailbox(conn, user, folder)[0], modseq)

        return await self._read(read)

    async def fetch_meta(self, user: str, folder: str, uids: Uids) -> list[MessageRow]:
        clause, params = _uid_clause(uids)

        def read(conn: sqlite3.Connection) -> list[MessageRow]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            rows = conn.execute(
                "SELECT m.uid, m.flags, m.internaldate, m.size, m.modseq, mm.envelope,"
                " mm.bodystructure, mm.body, mm.part_map FROM messages m"
                " LEFT JOIN message_meta mm ON mm.blob = m.blob"
                f" WHERE m.mailbox_id = ?{clause} ORDER BY m.uid",
                (mailbox_id, *params),
            )
            return [MessageRow(uid, _flag_tuple(flags), *rest) for uid, flags, *rest in rows]

        if _is_empty(uids):
            return []
        return await self._read(read)

    async def fetch_raw(self, user: str, folder: str, uid: int) -> bytes:
        found = await self.fetch_raw_many(user, folder, [uid])
        if not found:
            raise NoSuchMessage(f"no message with UID {uid} in {_folder_name(folder)}")
        return found[0][1]

    async def fetch_raw_many(self, user: str, folder: str, uids: Uids) -> list[tuple[int, bytes]]:
        clause, params = _uid_clause(uids)

        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            rows = conn.execute(
                "SELECT m.uid, m.blob, b.data FROM messages m JOIN blobs b ON b.sha256 = m.blob"
                f" WHERE m.mailbox_id = ?{clause} ORDER BY m.uid",
                (mailbox_id, *params),
            ).fetchall()
            found = []
            for uid, sha, data in rows:
                if data is None:
                    try:
                        data = self.files.read(sha)
                    except FileNotFoundError:  # expunged and collected since the read began
                        continue
                found.append((uid, data))
            return found

        if _is_empty(uids):
            return []
        return await self._read(read)

    async def fetch_sort_keys(
        self, user: str, folder: str, uids: Uids | None = None
    ) -> list[SortRow]:
        clause, params = _uid_clause(uids)

        def read(conn: sqlite3.Connection) -> list[SortRow]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            rows = conn.execute(
                "SELECT m.uid, m.internaldate, m.size, mm.date, coalesce(mm.sort_subject, ''),"
                " coalesce(mm.sort_from, ''), coalesce(mm.sort_to, ''),"
                " coalesce(mm.sort_cc, ''), coalesce(mm.message_id, ''),"
                " coalesce(mm.in_reply_to, ''), coalesce(mm.refs, ''), mm.sent_day FROM messages m"
                " LEFT JOIN message_meta mm ON mm.blob = m.blob"
                f" WHERE m.mailbox_id = ?{clause} ORDER BY m.uid",
                (mailbox_id, *params),
            )
            return [SortRow(*row) for row in rows]

        if _is_empty(uids):
            return []
        return await self._read(read)

    async def search_text(self, user: str, folder: str, query: str, where: str) -> set[int]:
        """UIDs of the folder's messages whose body (where="body": message_meta.text) or header
        or body (where="text": header_text or text) contain query as a case-insensitive
        substring (``str.casefold``), as IMAP SEARCH BODY/TEXT ask. Messages stored without
        meta are never found; an empty query finds every message.

        How: the query's words (runs of letters and digits, see :func:`_query_words`) are
        looked up in the word index message_fts, each as a prefix term ("word"*), all of them,
        in the column(s) of where; that gives candidates (case and diacritics are folded
        there), and each candidate is then checked exactly against the stored text, so the
        answer has no false positives. A query without word characters ("@", "--") has
        nothing to look up: the folder's message_meta rows are scanned with the same check.

        Word-based, not substring: a match is found only where the query's first word starts
        a word of the message. A substring that starts inside a word ("voice" in "invoice",
        "uick" in "quick") is therefore NOT found when the query has word characters (only
        the fallback scan, for queries without any, finds substrings anywhere). This is what
        Dovecot's FTS plugins and Gmail do, and what users search for; the last word of the
        query may be a prefix ("inv" finds "invoice"). Also word-based: word boundaries are
        the tokenizer's, whose Unicode tables are older than Python's (a symbol such as a
        recent emoji glued to a word is part of that word there), and the index folds case
        with simple mappings: "ß" and "ss" are matched both ways for whole words (see
        :func:`_fts_match`), other full case foldings (ligatures such as "ﬁ") only from the
        query side."""
        if where not in ("body", "text"):
            raise StoreError(f"search_text: where is 'body' or 'text', not {where!r}")
        needle = query.casefold()
        words = _query_words(query)
        columns = "mm.text" if where == "body" else "mm.text, mm.header_text"
        select = (
            f"SELECT m.uid, {columns} FROM messages m JOIN message_meta mm ON mm.blob = m.blob"
            " WHERE m.mailbox_id = ?"
        )

        def matching(rows: Iterable[tuple]) -> set[int]:
            return {uid for uid, *texts in rows if any(needle in t.casefold() for t in texts)}

        def read(conn: sqlite3.Connection) -> set[int]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            if not query:
                rows = conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))
                return {uid for (uid,) in rows}
            if words:
                # "+mm.id": without it SQLite probes message_meta's (blob, id) index once per
                # message and per FTS hit (10,000 x 10,000: 18 s); with it, a set lookup (90 ms).
                sql = select + (
                    " AND +mm.id IN (SELECT rowid FROM message_fts WHERE message_fts MATCH ?)"
                )
                try:
                    return matching(conn.execute(sql, (mailbox_id, _fts_match(words, where))))
                except sqlite3.OperationalError as exc:
                    # A "word" the tokenizer cuts in two (its Unicode tables differ from
                    # Python's) is a phrase, which detail=column cannot answer: scan instead.
                    log.debug("search_text %r: %s; scanning the folder", query, exc)
            return matching(conn.execute(select, (mailbox_id,)))

        return await self._read(read)

    async def search_header(self, user: str, folder: str, field: str, value: str) -> set[int]:
        field = field.strip().lower()
        needle = value.casefold()
        column = _HEADER_COLUMNS.get(field)

        def read(conn: sqlite3.Connection) -> set[int]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            rows = conn.execute(
                f"SELECT m.uid, mm.{column or 'header_text'} FROM messages m"
                " JOIN message_meta mm ON mm.blob = m.blob WHERE m.mailbox_id = ?",
                (mailbox_id,),
            )
            found = set()
            if column is not None:
                for uid, text in rows:
                    if text and needle in text.casefold():
                        found.add(uid)
                return found
            prefix = field + ":"
            for uid, text in rows:
                for line in text.splitlines():
                    if line[: len(prefix)].lower() == prefix and (
                        needle in line[len(prefix) :].casefold()
                    ):
                        found.add(uid)
                        break
            return found

        if not field or any(c in field for c in ": \t") or not field.isprintable():
            raise StoreError(f"not a header field name: {field!r}")
        return await self._read(read)

    async def missing_meta(self, user: str, folder: str) -> list[int]:
        def read(conn: sqlite3.Connection) -> list[int]:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            rows = conn.execute(
                "SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM message_meta mm WHERE mm.blob = m.blob) ORDER BY m.uid",
                (mailbox_id,),
            )
            return [uid for (uid,) in rows]

        return await self._read(read)

    async def set_meta(self, user: str, folder: str, uid: int, meta: MessageMeta) -> None:
        def job(conn: sqlite3.Connection) -> None:
            mailbox_id = self._mailbox(conn, user, folder)[0]
            row = conn.execute(
                "SELECT blob FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
            ).fetchone()
            if row is None:
                raise NoSuchMessage(f"no message with UID {uid} in {_folder_name(folder)}")
            conn.execute(_SQL_META_REPLACE, _meta_params(row[0], meta))

        await self._write(job)

    # --- IMAP: changing messages ------------------------------------------------------------

    def _add_keywords(
        self,
        conn: sqlite3.Connection,
        mailbox: tuple,
        folder: str,
        adding: set[str],
    ) -> frozenset[str] | None:
        """The folder's keywords once ``adding`` (case-folded) are in use too, inside a job;
        KeywordLimit if that makes more than MAX_KEYWORDS_PER_FOLDER (a folder already past it
        may still use the ones it has). None when nothing is added."""
        if not adding:
            return None
        mailbox_id, version = mailbox[0], (mailbox[1], mailbox[3])
        entry = self._folder_keywords.get(mailbox_id)
        if entry is not None and entry[0] == version:
            known = entry[1]
        else:
            found: set[str] = set()
            rows = conn.execute(
                "SELECT DISTINCT flags FROM messages WHERE mailbox_id = ?", (mailbox_id,)
            )
            for (flags,) in rows:
                found.update(f.lower() for f in flags.split() if not f.startswith("\\"))
            known = frozenset(found)
        after = known | adding
        if len(after) > len(known) and len(after) > MAX_KEYWORDS_PER_FOLDER:
            raise KeywordLimit(
                f"at most {MAX_KEYWORDS_PER_FOLDER} keywords may be in use in a folder;"
                f" {_folder_name(folder)} has {len(known)}"
            )
        return after

    def _note_keywords(self, mailbox: tuple, modseq: int, keywords: frozenset[str]) -> None:
        """Remember the keywords in use in a folder (a ``_mailbox`` row) whose HIGHESTMODSEQ
        is now ``modseq``."""
        if len(self._folder_keywords) >= _FOLDER_KEYWORDS_MAX:
            self._folder_keywords.clear()
        self._folder_keywords[mailbox[0]] = ((mailbox[1], modseq), keywords)

    async def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        meta: MessageMeta | None = None,
    ) -> tuple[int, int]:
        uidvalidity, uids = await self.append_many(
            user, folder, [AppendMessage(raw, tuple(flags), internal_date, meta)]
        )
        return uidvalidity, uids[0]

    async def append_many(
        self, user: str, folder: str, messages: Sequence[AppendMessage]
    ) -> tuple[int, list[int]]:
        if not messages:
            raise StoreError("nothing to append")
        now = time.time()
        prepared = []
        for message in messages:
            if not message.raw:
                raise StoreError("an empty message cannot be appended")
            flags = canonical_flags(message.flags)
            _keywords(flags)
            flags = " ".join(flags)
            sha, size, inline = await self._prepare_blob(message.raw)
            date = now if message.internal_date is None else float(message.internal_date)
            prepared.append((message.raw, sha, size, inline, flags, date, message.meta))
        return await self._write(self._append_job, user, folder, prepared)

    def _append_job(
        self, conn: sqlite3.Connection, user: str, folder: str, prepared: list[tuple]
    ) -> tuple[int, list[int]]:
        mailbox = self._mailbox(conn, user, folder)
        mailbox_id, uidvalidity, uidnext, highestmodseq, *_ = mailbox
        self._check_room(conn, user, sum(p[2] for p in prepared))
        adding = {f.lower() for p in prepared for f in p[4].split() if not f.startswith("\\")}
        keywords = self._add_keywords(conn, mailbox, folder, adding)
        modseq = highestmodseq + 1
        uids = []
        for uid, (raw, sha, size, inline, flags, date, meta) in enumerate(prepared, uidnext):
            self._store_blob(conn, raw, sha, size, inline)
            if meta is not None:
                conn.execute(_SQL_META_KEEP, _meta_params(sha, meta))
            conn.execute(_SQL_MESSAGE, (mailbox_id, uid, sha, size, date, flags, modseq))
            uids.append(uid)
        conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (uids[-1] + 1, modseq, mailbox_id),
        )
        if keywords is not None:
            self._note_keywords(mailbox, modseq, keywords)
        self._changes.append(Change(user, _folder_name(folder), "exists"))
        return uidvalidity, uids

    async def store_flags(
        self,
        user: str,
        folder: str,
        uids: Uids,
        flags: Iterable[str],
        mode: FlagMode,
        unchanged_since: int | None = None,
    ) -> tuple[list[FlagRow], list[int]]:
        if mode not in ("set", "add", "remove"):
            raise StoreError(f"store_flags: mode is 'set', 'add' or 'remove', not {mode!r}")
        given = canonical_flags(flags)
        folded = {f.lower() for f in given}
        adding = _keywords(given) if mode != "remove" else set()
        clause, params = _uid_clause(uids)

        def job(conn: sqlite3.Connection) -> tuple[list[FlagRow], list[int]]:
            mailbox = self._mailbox(conn, user, folder)
            mailbox_id, _v, _n, highestmodseq, *_ = mailbox
            keywords = self._add_keywords(conn, mailbox, folder, adding)
            rows = conn.execute(
                f"SELECT m.id, m.uid, m.flags, m.modseq FROM messages m"
                f" WHERE m.mailbox_id = ?{clause} ORDER BY m.uid",
                (mailbox_id, *params),
            ).fetchall()
            modseq = highestmodseq + 1
            changed: list[FlagRow] = []
            failed: list[int] = []
            updates = []
            for row_id, uid, old, old_modseq in rows:
                if unchanged_since is not None and old_modseq > unchanged_since:
                    failed.append(uid)
                    continue
                current = _flag_tuple(old)
                if mode == "set":
                    new = given
                elif mode == "add":
                    new = canonical_flags(current + given)
                else:
                    new = tuple(f for f in current if f.lower() not in folded)
                text = " ".join(new)
                if text != old:
                    updates.append((text, modseq, row_id))
                    changed.append((uid, _flag_tuple(text), modseq))
            if updates:
                conn.executemany("UPDATE messages SET flags = ?, modseq = ? WHERE id = ?", updates)
                conn.execute(
                    "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id)
                )
                if keywords is not None and mode == "add":  # "set" may drop some: not exact
                    self._note_keywords(mailbox, modseq, keywords)
                self._changes.append(Change(user, _folder_name(folder), "flags"))
            return changed, failed

        if _is_empty(uids):
            return [], []
        return await self._write(job)

    def _transfer(
        self,
        conn: sqlite3.Connection,
        user: str,
        src: str,
        uids: Uids,
        dst: str,
        move: bool,
    ) -> list[tuple[int, int]]:
        """COPY or MOVE, inside a job."""
        src_box = self._mailbox(conn, user, src)
        dst_box = self._mailbox(conn, user, dst)
        clause, params = _uid_clause(uids)
        rows = conn.execute(
            "SELECT m.id, m.uid, m.blob, m.size, m.internaldate, m.flags FROM messages m"
            f" WHERE m.mailbox_id = ?{clause} ORDER BY m.uid",
            (src_box[0], *params),
        ).fetchall()
        if not rows:
            return []
        dst_id, _v, dst_uidnext, dst_modseq, *_ = dst_box
        adding = {f.lower() for row in rows for f in row[5].split() if not f.startswith("\\")}
        keywords = self._add_keywords(conn, dst_box, dst, adding)
        modseq = dst_modseq + 1
        pairs = [(row[1], uid) for uid, row in enumerate(rows, dst_uidnext)]
        if move:
            conn.executemany(
                "UPDATE messages SET mailbox_id = ?, uid = ?, modseq = ? WHERE id = ?",
                [(dst_id, new, modseq, row[0]) for new, row in enumerate(rows, dst_uidnext)],
            )
            same = src_box[0] == dst_id
            src_modseq = modseq if same else src_box[3] + 1
            conn.executemany(
                "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET modseq = excluded.modseq",
                [(src_box[0], old, src_modseq) for old, _new in pairs],
            )
            if not same:
                conn.execute(
                    "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?",
                    (src_modseq, src_box[0]),
                )
            self._changes.append(Change(user, _folder_name(src), "expunge"))
        else:
            self._check_room(conn, user, sum(row[3] for row in rows))
            conn.executemany(
                _SQL_MESSAGE,
                [
                    (dst_id, new, blob, size, date, flags, modseq)
                    for new, (_id, _old, blob, size, date, flags) in enumerate(rows, dst_uidnext)
                ],
            )
        conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (pairs[-1][1] + 1, modseq, dst_id),
        )
        if move:  # after uidnext moved on, which _prune_expunged's bound reads
            self._prune_expunged(conn, src_box[0])
        if keywords is not None and src_box[0] != dst_id:
            self._note_keywords(dst_box, modseq, keywords)
        self._changes.append(Change(user, _folder_name(dst), "exists"))
        return pairs

    async def copy_messages(
        self, user: str, src: str, uids: Uids, dst: str
    ) -> list[tuple[int, int]]:
        if _is_empty(uids):
            return []
        return await self._write(self._transfer, user, src, uids, dst, False)

    async def move_messages(
        self, user: str, src: str, uids: Uids, dst: str
    ) -> list[tuple[int, int]]:
        if _is_empty(uids):
            return []
        return await self._write(self._transfer, user, src, uids, dst, True)

    async def expunge(self, user: str, folder: str, uids: Uids | None = None) -> list[int]:
        clause, params = _uid_clause(uids)

        def job(conn: sqlite3.Connection) -> list[int]:
            mailbox_id, _v, _n, highestmodseq, *_ = self._mailbox(conn, user, folder)
            rows = conn.execute(
                f"SELECT m.id, m.uid FROM messages m WHERE m.mailbox_id = ?{clause}"
                f" AND {_DELETED} ORDER BY m.uid",
                (mailbox_id, *params),
            ).fetchall()
            if not rows:
                return []
            modseq = highestmodseq + 1
            conn.executemany("DELETE FROM messages WHERE id = ?", [(r[0],) for r in rows])
            conn.executemany(
                "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET modseq = excluded.modseq",
                [(mailbox_id, uid, modseq) for _id, uid in rows],
            )
            self._prune_expunged(conn, mailbox_id)
            conn.execute(
                "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id)
            )
            self._changes.append(Change(user, _folder_name(folder), "expunge"))
            return [uid for _id, uid in rows]

        if _is_empty(uids):
            return []
        return await self._write(job, frees_blobs=True)

    async def quota(self, user: str) -> tuple[int, int | None]:
        def read(conn: sqlite3.Connection) -> tuple[int, int | None]:
            row = conn.execute(
                "SELECT (SELECT coalesce(sum(bytes), 0) FROM mailboxes WHERE user_id = u.id),"
                " u.quota FROM users u WHERE u.address = ?",
                (user,),
            ).fetchone()
            if row is None:
                raise StoreError(f"no such user: {user}")
            return row

        return await self._lookup(read)

    # --- IMAP: change notification ----------------------------------------------------------

    def subscribe_changes(self, user: str) -> ChangeFeed:
        feed = _Feed(self, user, asyncio.get_running_loop())
        with self._feeds_lock:
            self._feeds.setdefault(user, set()).add(feed)
        return feed

    def _unsubscribe(self, feed: _Feed) -> None:
        with self._feeds_lock:
            feeds = self._feeds.get(feed.user)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[feed.user]

    # --- outbound queue -----------------------------------------------------------------------

    async def list_queue(self) -> list[QueueEntry]:
        def read(conn: sqlite3.Connection) -> list[QueueEntry]:
            rows = conn.execute(_SQL_QUEUE_ENTRY + " ORDER BY id")
            return [QueueEntry(str(row[0]), *row[1:]) for row in rows]

        return await self._read(read)

    async def queue_entry(self, entry_id: str | int) -> QueueEntry | None:
        def read(conn: sqlite3.Connection) -> QueueEntry | None:
            row = conn.execute(_SQL_QUEUE_ENTRY + " WHERE id = ?", (int(entry_id),)).fetchone()
            return QueueEntry(str(row[0]), *row[1:]) if row else None

        return await self._read(read)

    async def due_queue(
        self, now: float, limit: int = 1000, exclude: Collection[str | int] = ()
    ) -> list[QueueEntry]:
        skip = json.dumps([int(i) for i in exclude]) if exclude else None

        def read(conn: sqlite3.Connection) -> list[QueueEntry]:
            if skip is None:
                rows = conn.execute(
                    _SQL_QUEUE_ENTRY
                    + " WHERE state IN ('queued', 'deferred') AND next_attempt <= ?"
                    " ORDER BY next_attempt, id LIMIT ?",
                    (now, limit),
                )
            else:
                rows = conn.execute(
                    _SQL_QUEUE_ENTRY
                    + " WHERE state IN ('queued', 'deferred') AND next_attempt <= ?"
                    " AND id NOT IN (SELECT value FROM json_each(?))"
                    " ORDER BY next_attempt, id LIMIT ?",
                    (now, skip, limit),
                )
            return [QueueEntry(str(row[0]), *row[1:]) for row in rows]

        return await self._read(read)

    async def queue_message(self, entry_id: str | int) -> bytes:
        def read(conn: sqlite3.Connection) -> tuple[str, bytes | None] | None:
            return conn.execute(
                "SELECT b.sha256, b.data FROM queue q JOIN blobs b ON b.sha256 = q.blob"
                " WHERE q.id = ?",
                (int(entry_id),),
            ).fetchone()

        row = await self._read(read)
        if row is None:
            raise NoSuchMessage(f"no queue entry {entry_id}")
        sha, data = row
        if data is not None:
            return data
        try:
            return await asyncio.to_thread(self.files.read, sha)
        except FileNotFoundError:  # the entry went (and its body) since the read
            raise NoSuchMessage(f"no queue entry {entry_id}") from None

    async def queue_sent(self, ids: Iterable[str | int]) -> None:
        keys = [(int(i),) for i in ids]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM queue WHERE id = ?", keys)

        if keys:
            await self._write(job, frees_blobs=True)

    async def queue_defer(
        self,
        ids: Iterable[str | int],
        next_attempt: float,
        error: str,
        *,
        notify: bool = False,
        notice: Delivery | None = None,
    ) -> None:
        keys = [(next_attempt, error, int(i)) for i in ids]
        prepared = await self._prepare_blob(notice.raw) if notice is not None else None
        now = time.time()

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE queue SET state = 'deferred', attempts = attempts + 1,"
                " next_attempt = ?, last_error = ? WHERE id = ?",
                keys,
            )
            if not notify:
                return
            # one notice per transaction and envelope sender (forwarded copies of one
            # message may have their own SRS sender, each to be told)
            told_about = {
                (row[0], row[1])
                for (_n, _e, i) in keys
                for row in conn.execute("SELECT queue_id, sender FROM queue WHERE id = ?", (i,))
            }
            pending = notice
            for qid, sender in sorted(told_about):
                told = conn.execute(
                    "SELECT 1 FROM queue WHERE queue_id = ? AND sender = ?"
                    " AND delay_notified != 0 LIMIT 1",
                    (qid, sender),
                ).fetchone()
                if told is None and pending is not None and prepared is not None:
                    self._deliver_job(conn, pending, *prepared, now)
                    log.info("queue %s: delay notice stored", qid)
                    pending = None
                conn.execute(
                    "UPDATE queue SET delay_notified = 1 WHERE queue_id = ? AND sender = ?",
                    (qid, sender),
                )

        if keys:
            await self._write(job)

    # --- plugin data ----------------------------------------------------------------------

    async def plugin_get(self, namespace: str, key: str, now: float | None = None) -> str | None:
        when = time.time() if now is None else now

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM plugin_data WHERE namespace = ? AND key = ?"
                " AND (expires IS NULL OR expires > ?)",
                (namespace, key, when),
            ).fetchone()
            return row[0] if row else None

        return await self._lookup(read)

    async def plugin_put(
        self, namespace: str, key: str, value: str, expires: float | None = None
    ) -> None:
        row = (namespace, key, value, time.time(), expires)
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO plugin_data (namespace, key, value, updated, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )

    async def plugin_delete(self, namespace: str, key: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "DELETE FROM plugin_data WHERE namespace = ? AND key = ?", (namespace, key)
            )
        )

    async def queue_postpone(self, ids: Iterable[str | int], next_attempt: float) -> None:
        keys = [(next_attempt, int(i)) for i in ids]
        if keys:
            await self._write(
                lambda conn: conn.executemany(
                    "UPDATE queue SET next_attempt = ? WHERE id = ?", keys
                )
            )

    async def queue_bounce(
        self, ids: Iterable[str | int], error: str, dsn: Delivery | None = None
    ) -> None:
        keys = [(int(i),) for i in ids]
        prepared = await self._prepare_blob(dsn.raw) if dsn is not None else None
        now = time.time()

        def job(conn: sqlite3.Connection) -> None:
            if dsn is not None and prepared is not None:
                self._deliver_job(conn, dsn, *prepared, now)
            log.info("queue: bounced entries %s: %s", [k[0] for k in keys], error)
            conn.executemany("DELETE FROM queue WHERE id = ?", keys)

        if keys or dsn is not None:
            await self._write(job, frees_blobs=True)

    async def queue_retry(self, ids: Iterable[str | int] | None, now: float) -> int:
        keys = None if ids is None else [(now, int(i)) for i in ids]

        def job(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE queue SET next_attempt = ? WHERE state IN ('queued', 'deferred')"
                " AND next_attempt > ?"
            )
            if keys is None:
                return conn.execute(sql, (now, now)).rowcount
            return sum(conn.execute(sql + " AND id = ?", (t, t, i)).rowcount for t, i in keys)

        return await self._write(job)

    async def queue_delete(self, ids: Iterable[str | int]) -> int:
        keys = [(int(i),) for i in ids]

        def job(conn: sqlite3.Connection) -> int:
            return sum(conn.execute("DELETE FROM queue WHERE id = ?", k).rowcount for k in keys)

        return await self._write(job, frees_blobs=True) if keys else 0

    # --- maintenance --------------------------------------------------------------------------

    async def backup(self, dest: Path) -> None:
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise StoreError(f"backup destination {dest} exists and is not empty")
        hold = f"gc_hold:{secrets.token_hex(8)}"

        def set_hold(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (hold, time.time()))

        def drop_hold(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM meta WHERE key = ?", (hold,))

        # While the hold is set no blob file is unlinked, so every file the snapshot names
        # is still there when we copy it.
        await self._write(set_hold)
        try:
            await asyncio.to_thread(self._backup_sync, dest, hold)
        finally:
            await self._write(drop_hold, frees_blobs=True)

    def _backup_sync(self, dest: Path, hold: str) -> None:
        make_dirs_durably(dest)
        target_path = dest / DB_NAME
        source = connect(self.db_path, readonly=True)
        try:
            create_private(target_path)
            target = sqlite3.connect(target_path, isolation_level=None)
            try:
                source.backup(target)  # one step: a consistent snapshot
                target.execute("DELETE FROM meta WHERE key LIKE 'gc_hold:%'")
                files = [
                    r[0] for r in target.execute("SELECT sha256 FROM blobs WHERE data IS NULL")
                ]
            finally:
                target.close()
        finally:
            source.close()
        fd = os.open(target_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(dest)
        dest_files = BlobFiles(dest / BLOB_DIR)
        for sha in files:
            try:
                self.files.copy_to(sha, dest_files)
            except FileNotFoundError:
                raise StoreError(f"backup: the body file of blob {sha} is missing") from None
        log.info("backup written to %s (%d body files)", dest, len(files))


def _check_quota(quota: int | None) -> None:
    if quota is not None and (not isinstance(quota, int) or quota < 0):
        raise StoreError(f"a quota is a number of bytes or None, not {quota!r}")


def open_store(data_dir: Path, blob_inline_max: int = 1 << 20) -> Store:
    """The store for a data directory (SQLite). Not yet open: ``await store.open()``, or
    ``async with open_store(...) as store:``."""
    return SqliteStore(Path(data_dir), blob_inline_max)
