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

Other processes (``gomail`` CLI commands next to a running server) may open the same data
directory: SQLite's locking serialises their writes with ours (``busy_timeout``), and blob files
are only unlinked inside a write transaction after checking that no row references them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gomail.store import (
    SPECIAL_FOLDERS,
    Alias,
    Delivery,
    FolderStatus,
    QueueEntry,
    Store,
    StoreError,
    User,
)
from gomail.store.blobs import BlobFiles, fsync_dir, make_dirs_durably, sha256_hex

log = logging.getLogger(__name__)

DB_NAME = "gomail.db"
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
_SQL_QUEUE = (
    "INSERT INTO queue (queue_id, sender, recipient, blob, size, created, next_attempt)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
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
    return "INBOX" if folder.upper() == "INBOX" else folder


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
        for job in batch:
            fn, args, fut, _loop, frees_blobs = job
            if fut.cancelled():  # the caller gave up: do not store what it will not confirm
                continue
            conn.execute("SAVEPOINT job")
            try:
                value = fn(conn, *args)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
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
            results = [(job, False, err) for job, _ok, _value in results]
            collect = False
        else:
            self.commits += 1
        if collect:  # before answering: a removal is finished when its caller hears of it
            try:
                self._collect_garbage(conn)
            except Exception:
                log.exception("store writer: removing unused blob files failed")
        self._resolve(results)

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

    async def deliver(self, delivery: Delivery) -> None:
        if not delivery.local and not delivery.outbound:
            return
        raw = delivery.raw
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
        raw = delivery.raw
        execute = conn.execute
        execute(_SQL_BLOB, (sha, size, raw if inline else None))
        if not inline and not self.files.exists(sha):
            # Removed since deliver() wrote it (the same body's last copy was deleted in
            # between): write it again, under the write lock nobody can remove it now.
            self.files.write(sha, raw)
        for local in delivery.local:
            folder = _folder_name(local.folder)
            rows = execute(_SQL_NEXT_UID, (local.user, folder)).fetchall()
            if not rows:
                self._user_id(conn, local.user)
                raise StoreError(f"user {local.user} has no folder {folder}")
            mailbox_id, uid, modseq = rows[0]
            execute(_SQL_MESSAGE, (mailbox_id, uid, sha, size, now, " ".join(local.flags), modseq))
        for recipient in delivery.outbound:
            execute(
                _SQL_QUEUE, (delivery.queue_id, delivery.sender, recipient, sha, size, now, now)
            )

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

    # --- outbound queue -----------------------------------------------------------------------

    async def list_queue(self) -> list[QueueEntry]:
        def read(conn: sqlite3.Connection) -> list[QueueEntry]:
            rows = conn.execute(
                "SELECT id, sender, recipient, size, created, next_attempt, attempts, state,"
                " last_error, queue_id FROM queue ORDER BY id"
            )
            return [QueueEntry(str(row[0]), *row[1:]) for row in rows]

        return await self._read(read)

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
