"""Importing mail from another server: mbox files, Maildir and Maildir++ trees, directories
of mbox files. The ``gomail import`` command (:mod:`gomail.cli.importer`) drives this; there
is no click here.

What PATH may be, and the folders it gives (``--folder NAME`` replaces INBOX as the root):

- an mbox file (mboxrd or mboxo): one folder, INBOX;
- a Maildir (``cur``/``new``/``tmp``), with Maildir++ subfolders ``.Sub.Folder`` (Courier,
  Dovecot) that become ``Sub/Folder`` (modified UTF-7 level names are decoded);
- a directory of mbox files (mutt, Thunderbird "Local Folders"): each file a folder named
  after it, subdirectories (Thunderbird's ``Name.sbd``) give children ``Name/Child``; a
  subdirectory that is a Maildir is imported as one.

A first level named like a special folder (Sent, "Sent Items", "Deleted Messages", Spam, ...)
goes to the account's folder with that special use, case-insensitively.

Everything streams: an mbox is scanned line by line in bounded chunks and only the message
being read is held, Maildir files are read one at a time, and messages are stored in batches
(:data:`BATCH_MESSAGES` or :data:`BATCH_BYTES`, whichever comes first) with
``Store.append_many``. Memory use is a batch plus one message, whatever the size of PATH.

Resuming: a journal in ``DATA/import/<sha256 of PATH and ADDRESS>.journal`` (SQLite, so that
it is updated in place in constant time and memory) records, after each committed batch, the
byte offset reached in each mbox, the Maildir files done, and the SHA-256 of every message
imported. A re-run skips what was done, and skips any message whose bytes were already
imported under this journal. The batch being stored is noted in the journal first, so that a
crash between the store's commit and the journal's update is repaired on the next run by
hashing the messages the store committed.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime
import hashlib
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

from gomail.store import (
    HIERARCHY_DELIMITER,
    AppendMessage,
    FolderExists,
    MessageMeta,
    QuotaExceeded,
    Store,
    StoreError,
)

BATCH_MESSAGES = 200
BATCH_BYTES = 8 * 1024 * 1024
MAX_MESSAGE = 50 * 1024 * 1024  # larger messages are skipped (the IMAP APPENDLIMIT)
_CHUNK = 64 * 1024  # the most of one mbox line read at a time

# The first level of a source folder name, case-folded -> the special folder it is.
SPECIAL_NAMES = {
    "inbox": "INBOX",
    "sent": "Sent",
    "sent items": "Sent",
    "sent messages": "Sent",
    "sent mail": "Sent",
    "sent-mail": "Sent",
    "drafts": "Drafts",
    "draft": "Drafts",
    "trash": "Trash",
    "deleted": "Trash",
    "deleted items": "Trash",
    "deleted messages": "Trash",
    "bin": "Trash",
    "junk": "Junk",
    "junk e-mail": "Junk",
    "junk email": "Junk",
    "junk mail": "Junk",
    "spam": "Junk",
    "bulk mail": "Junk",
    "archive": "Archive",
    "archives": "Archive",
}
_SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

# Maildir info letters (the part after ":2,") -> flags; lower-case letters are keywords
# listed in the folder's dovecot-keywords file.
MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_MAILDIR_NAME = re.compile(r"(.*?)[:!;]2,([A-Za-z]*)")

# Files of mail programs in a directory of mbox files that are not folders.
_NOT_MBOX_SUFFIXES = (".msf", ".dat", ".json", ".sqlite", ".db", ".lock", ".idx", ".journal")

_MONTHS = {
    m: i
    for i, m in enumerate(
        (b"jan", b"feb", b"mar", b"apr", b"may", b"jun")
        + (b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"),
        1,
    )
}
# The date of a From_ line, as ctime writes it: "Sat Jan  3 01:05:34 1996" (Thunderbird writes
# "Sat Jan 03 01:05:34 1996"; some add a zone before the year).
_CTIME = re.compile(
    rb"(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"\s+(?:([+-]\d{4}|[A-Za-z]{1,5})\s+)?(\d{4})"
)
# A line that starts a message: "From " and something with a time and a year after it.
_FROM_LINE = re.compile(rb"From \S*\s.*\d{1,2}:\d{2}.*\d{4}")
_QUOTED_FROM = re.compile(rb">+From ")
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_DATE_FIELD = re.compile(rb"(?im)^Date[ \t]*:[ \t]*(.*(?:\r\n[ \t].*)*)")


class ImportFailure(Exception):
    """An import cannot go on (unknown user, unreadable PATH, over quota); text for the user."""


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One folder to import: an mbox file or a Maildir folder."""

    kind: Literal["mbox", "maildir"]
    path: Path
    folder: str  # the folder name it gives, before special-folder mapping
    key: str  # its name in the journal: kind and path relative to PATH


def find_sources(path: Path, folder: str | None = None) -> list[Source]:
    """The folders under PATH, in import order. ImportFailure when PATH is missing,
    unreadable or neither an mbox file, a Maildir nor a directory."""
    root = folder or "INBOX"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImportFailure(f"no such file or directory: {path}") from None
    except OSError as exc:
        raise ImportFailure(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise ImportFailure(f"cannot read {path}: permission denied")
        if not _looks_like_mbox(path):
            raise ImportFailure(
                f"{path} is not an mbox file (it does not start with a 'From ' line)"
            )
        return [Source("mbox", path, root, "mbox:.")]
    if not stat.S_ISDIR(st.st_mode):
        raise ImportFailure(f"{path} is neither a file nor a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ImportFailure(f"cannot read {path}: permission denied")
    if _is_maildir(path):
        return _maildir_tree(path, root)
    sources = list(_mbox_dir(path, path, folder))
    if not sources:
        raise ImportFailure(f"no mbox files or Maildir folders found in {path}")
    return sources


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    """True for a file that starts with "From " (or is empty: an empty folder)."""
    with open(path, "rb") as f:
        head = f.read(5)
    return head in (b"", b"From ")


def _maildir_tree(path: Path, root: str) -> list[Source]:
    """The Maildir at path (root) and its Maildir++ subfolders ".A.B" (root/A/B, or A/B when
    root is INBOX)."""
    sources = [Source("maildir", path, root, "maildir:.")]
    subs = []
    for entry in os.scandir(path):
        name = entry.name
        if not name.startswith(".") or name in (".", "..") or not entry.is_dir():
            continue
        if not _is_maildir(Path(entry.path)):
            continue
        levels = [_decode_level(level) for level in name[1:].split(".")]
        if not all(levels):
            continue
        sub = HIERARCHY_DELIMITER.join(levels)
        if root.upper() != "INBOX":
            sub = root + HIERARCHY_DELIMITER + sub
        subs.append(Source("maildir", Path(entry.path), sub, f"maildir:{name}"))
    return sources + sorted(subs, key=lambda s: s.folder)


def _decode_level(level: str) -> str:
    """A Maildir++ level name: modified UTF-7 decoded when it is that, else as it is."""
    if "&" not in level:
        return level
    try:
        from gomail.imap.wire import mutf7_decode

        return mutf7_decode(level)
    except (ImportError, ValueError):
        return level


def _mbox_dir(top: Path, path: Path, prefix: str | None) -> Iterator[Source]:
    """The mbox files (and Maildir folders) of a directory, recursively."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        raise ImportFailure(f"cannot read {path}: {exc.strerror or exc}") from None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.lower().endswith(_NOT_MBOX_SUFFIXES):
            continue
        level = name.removesuffix(".sbd") if entry.is_dir() else name
        folder = level if prefix is None else prefix + HIERARCHY_DELIMITER + level
        rel = os.path.relpath(entry.path, top)
        sub = Path(entry.path)
        if entry.is_dir():
            if _is_maildir(sub):
                yield Source("maildir", sub, folder, f"maildir:{rel}")
            else:
                yield from _mbox_dir(top, sub, folder)
        elif entry.is_file():
            try:
                ok = _looks_like_mbox(sub)
            except OSError:
                ok = True  # reported as unreadable when imported
            if ok:
                yield Source("mbox", sub, folder, f"mbox:{rel}")


# --- reading ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One message read from a source. raw is None when it was too large to hold."""

    raw: bytes | None
    size: int  # bytes in the source
    flags: tuple[str, ...] = ()
    internal_date: float | None = None
    end: int = 0  # mbox: the offset after it
    name: str = ""  # Maildir: the file's unique name (without the :2, info)
    where: str = ""  # for warnings: "file, byte N" or the file name


def read_mbox(path: Path, start: int = 0, max_size: int = MAX_MESSAGE) -> Iterator[Item]:
    """The messages of an mbox from byte offset start (where a "From " line starts): From_
    lines removed, ">From " unquoted (mboxrd), line ends made CRLF, the blank line that ends
    each message dropped. A message over max_size comes with raw None."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        at_line_start = True
        msg_start: int | None = None
        parts: list[bytes] = []
        size = 0
        too_big = False
        from_date: float | None = None
        count = 0

        def finish(end: int) -> Item:
            raw = None
            if not too_big:
                raw = b"".join(parts)
                if raw.endswith(b"\r\n\r\n"):
                    raw = raw[:-2]
                elif raw == b"\r\n":
                    raw = b""
            return Item(
                raw,
                end - msg_start,
                internal_date=from_date,
                end=end,
                where=f"{path}, message {count} at byte {msg_start}",
            )

        while True:
            line = f.readline(_CHUNK)
            if not line:
                break
            if line.endswith(b"\r"):  # keep a CRLF split by the chunk limit together
                more = f.read(1)
                line += more
            line_start = at_line_start
            at_line_start = line.endswith(b"\n")
            if (
                line_start
                and line.startswith(b"From ")
                and (msg_start is None or _FROM_LINE.match(line))
            ):
                if msg_start is not None:
                    yield finish(pos)
                count += 1
                msg_start = pos
                parts = []
                size = 0
                too_big = False
                from_date = _from_line_date(line)
                pos += len(line)
                while not at_line_start:  # the rest of an overlong From_ line
                    line = f.readline(_CHUNK)
                    if not line:
                        break
                    pos += len(line)
                    at_line_start = line.endswith(b"\n")
                continue
            pos += len(line)
            if msg_start is None:
                raise ImportFailure(f"{path} is not an mbox file (no 'From ' line at byte {start})")
            if too_big:
                continue
            if line_start and line.startswith(b">") and _QUOTED_FROM.match(line):
                line = line[1:]
            if at_line_start:
                line = line[:-2] + b"\r\n" if line.endswith(b"\r\n") else line[:-1] + b"\r\n"
            size += len(line)
            if size > max_size:
                too_big = True
                parts = []
            else:
                parts.append(line)
        if msg_start is not None:
            yield finish(pos)


def mbox_resumable(path: Path, offset: int) -> bool:
    """Whether offset in the mbox is where a message starts (or its end), as the journal
    says: false when the file was changed since."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset == size:
                return True
            if offset > size:
                return False
            f.seek(offset)
            return f.read(5) == b"From "
    except OSError:
        return False


def _from_line_date(line: bytes) -> float | None:
    """The Unix time of a From_ line's date (taken as UTC unless it names a zone)."""
    m = _CTIME.search(line, 5)
    if m is None:
        return None
    mon, day, hh, mm, ss, zone, year = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    try:
        t = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss or 0)))
    except (ValueError, OverflowError):
        return None
    if zone and zone[:1] in b"+-":
        offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
        t -= offset if zone[:1] == b"+" else -offset
    return float(t)


def date_header(raw: bytes) -> float | None:
    """The Date header field of a message as Unix time, or None."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 2]
    m = _DATE_FIELD.search(head)
    if m is None:
        return None
    value = m.group(1).replace(b"\r\n", b"").decode("latin-1").strip()
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def maildir_files(path: Path) -> list[tuple[str, str, float, int]]:
    """(subdirectory, file name, mtime, size) of the messages of a Maildir folder, in cur/
    and new/, oldest first."""
    files = []
    for sub in ("cur", "new"):
        try:
            entries = os.scandir(path / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files.append((sub, entry.name, st.st_mtime, st.st_size))
    files.sort(key=lambda f: (f[2], f[1]))
    return files


def maildir_keywords(path: Path) -> dict[str, str]:
    """Dovecot's keyword letters of a Maildir folder (dovecot-keywords: "0 $Label1" lines;
    0 is "a")."""
    keywords: dict[str, str] = {}
    try:
        text = (path / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return keywords
    for line in text.splitlines():
        number, _, name = line.strip().partition(" ")
        if number.isdigit() and int(number) < 26 and name.strip():
            keywords[chr(ord("a") + int(number))] = name.strip()
    return keywords


def maildir_flags(
    name: str, in_new: bool, keywords: dict[str, str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """(unique name, flags) of a Maildir file name "unique:2,FRS"; a message in new/ is
    unseen."""
    m = _MAILDIR_NAME.fullmatch(name)
    if m is None:
        return name, ()
    flags = []
    for letter in m.group(2):
        flag = MAILDIR_FLAGS.get(letter) or (keywords or {}).get(letter)
        if flag and not (in_new and flag == "\\Seen"):
            flags.append(flag)
    return m.group(1), tuple(flags)


def to_crlf(raw: bytes) -> bytes:
    """Line ends made CRLF (bare CRs left alone)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def problem(raw: bytes) -> str | None:
    """Why a message cannot be imported (empty, or no header at its start), or None."""
    if not raw.strip():
        return "empty message"
    if not _HEADER_FIELD.match(raw):
        return "not a message (it does not start with a header field)"
    return None


# --- the journal ------------------------------------------------------------------------------


_JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS mbox (source TEXT PRIMARY KEY, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS maildir (source TEXT, name TEXT, PRIMARY KEY (source, name))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hashes (sha BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY CHECK (id = 1), folder TEXT, uidvalidity INTEGER, uidnext INTEGER
);
"""


def journal_path(data_dir: Path, path: Path, address: str) -> Path:
    """DATA/import/<sha256 of the absolute PATH and ADDRESS>.journal"""
    key = f"{Path(path).resolve()}\0{address}".encode("utf-8", "surrogateescape")
    return Path(data_dir) / "import" / f"{hashlib.sha256(key).hexdigest()}.journal"


class Journal:
    """What an import of one PATH into one account has done, kept across runs.

    With dry_run the journal file is read (when there is one) into memory and never
    written."""

    def __init__(self, path: Path, dry_run: bool = False) -> None:
        self.path = path
        if dry_run:
            self.db = sqlite3.connect(":memory:")
            if path.exists():
                src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    src.backup(self.db)
                finally:
                    src.close()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_JOURNAL_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def set_info(self, **values: str) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", list(values.items())
        )

    def mbox_offset(self, source: str) -> int:
        row = self.db.execute("SELECT offset FROM mbox WHERE source = ?", (source,)).fetchone()
        return row[0] if row else 0

    def maildir_done(self, source: str, name: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM maildir WHERE source = ? AND name = ?", (source, name)
            ).fetchone()
            is not None
        )

    def has_hash(self, sha: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM hashes WHERE sha = ?", (sha,)).fetchone() is not None

    def pending(self) -> tuple[str, int, int] | None:
        row = self.db.execute("SELECT folder, uidvalidity, uidnext FROM pending").fetchone()
        return tuple(row) if row else None

    def begin_batch(self, folder: str, uidvalidity: int, uidnext: int) -> None:
        """Note the batch about to be stored (its folder's UIDVALIDITY and UIDNEXT)."""
        self.db.execute(
            "INSERT OR REPLACE INTO pending (id, folder, uidvalidity, uidnext) VALUES (1, ?, ?, ?)",
            (folder, uidvalidity, uidnext),
        )

    def commit_batch(
        self,
        source: Source,
        hashes: list[bytes],
        *,
        offset: int | None = None,
        names: Sequence[str] = (),
    ) -> None:
        """Record a batch the store committed (or messages skipped), in one transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO hashes (sha) VALUES (?)", [(h,) for h in hashes])
            if offset is not None:
                db.execute(
                    "INSERT OR REPLACE INTO mbox (source, offset) VALUES (?, ?)",
                    (source.key, offset),
                )
            db.executemany(
                "INSERT OR IGNORE INTO maildir (source, name) VALUES (?, ?)",
                [(source.key, n) for n in names],
            )
            db.execute("DELETE FROM pending")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def add_hashes(self, hashes: list[bytes]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO hashes (sha) VALUES (?)", [(h,) for h in hashes])

    def clear_pending(self) -> None:
        self.db.execute("DELETE FROM pending")


# --- the import -------------------------------------------------------------------------------


@dataclass
class Stats:
    folders: set[str] = field(default_factory=set)  # target folders messages went to
    created: list[str] = field(default_factory=list)  # folders created
    imported: int = 0
    bytes: int = 0
    malformed: int = 0
    too_large: int = 0
    unreadable: int = 0
    duplicates: int = 0  # already imported under this journal (same bytes)
    done_before: int = 0  # skipped because an earlier run did them


# progress(label, total) -> a context manager giving update(n)
ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def no_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def load_meta_function() -> Callable[[bytes], MessageMeta | None]:
    """gomail.imap.meta.message_meta when it exists; else no meta (the store then lists the
    messages in missing_meta, so their meta can be added later)."""
    try:
        from gomail.imap.meta import message_meta  # type: ignore[import-not-found]
    except ImportError:
        return lambda raw: None
    return message_meta


class Importer:
    """Import sources into one account. ``await Importer(...).run()``; Stats in .stats."""

    def __init__(
        self,
        store: Store,
        address: str,
        sources: list[Source],
        journal: Journal,
        *,
        dry_run: bool = False,
        warn: Callable[[str], None] = lambda text: None,
        progress: ProgressFactory = no_progress,
        batch_messages: int = BATCH_MESSAGES,
        batch_bytes: int = BATCH_BYTES,
        max_size: int = MAX_MESSAGE,
        stats: Stats | None = None,
    ) -> None:
        self.store = store
        self.address = address
        self.sources = sources
        self.journal = journal
        self.dry_run = dry_run
        self.warn = warn
        self.progress = progress
        self.batch_messages = batch_messages
        self.batch_bytes = batch_bytes
        self.max_size = max_size
        self.stats = stats if stats is not None else Stats()
        self.meta = load_meta_function()
        self._folders: dict[str, str | None] = {}  # existing name -> special use
        self._seen: set[bytes] = set()  # hashes read in a dry run

    async def run(self) -> Stats:
        if await self.store.get_user(self.address) is None:
            raise ImportFailure(f"no such user: {self.address}")
        self._folders = {f.name: f.special_use for f in await self.store.list_folders(self.address)}
        if not self.dry_run:
            await self._recover()
        for source in self.sources:
            target = await self._target(source.folder)
            try:
                if source.kind == "mbox":
                    await self._import_mbox(source, target)
                else:
                    await self._import_maildir(source, target)
            except PermissionError as exc:
                self.stats.unreadable += 1
                self.warn(f"cannot read {exc.filename or source.path}: skipped")
        return self.stats

    async def _recover(self) -> None:
        """After a crash between a batch's commit and the journal's update: hash the messages
        the store added to that folder since, so that they are not imported twice."""
        pending = self.journal.pending()
        if pending is None:
            return
        folder, uidvalidity, uidnext = pending
        folders = await self.store.list_folders(self.address)
        now = next((f for f in folders if f.name == folder), None)
        if now is None:
            self.journal.clear_pending()
            return
        if now.uidvalidity == uidvalidity and now.uidnext > uidnext:
            for first in range(uidnext, now.uidnext, 100):
                uids = range(first, min(first + 100, now.uidnext))
                rows = await self.store.fetch_raw_many(self.address, folder, uids)
                self.journal.add_hashes([hashlib.sha256(raw).digest() for _uid, raw in rows])
        self.journal.clear_pending()

    # folders

    async def _target(self, name: str) -> str:
        """The account's folder for a source folder name (special names mapped), created
        when missing (not in a dry run)."""
        levels = [_clean_level(level) for level in name.split(HIERARCHY_DELIMITER)]
        levels = [level for level in levels if level] or ["INBOX"]
        special = SPECIAL_NAMES.get(levels[0].casefold())
        if special == "INBOX":
            levels[0] = "INBOX"
        elif special is not None:
            use = _SPECIAL_USE[special]
            base = next((n for n, u in self._folders.items() if u == use), None)
            if base is None:
                base = next((n for n in self._folders if n.casefold() == special.casefold()), None)
            if base is None:
                base = special
                await self._create(base, use)
            levels[0] = base
        target = HIERARCHY_DELIMITER.join(levels)
        await self._create(target, None)
        return target

    async def _create(self, name: str, special_use: str | None) -> None:
        if name in self._folders or name == "INBOX":
            return
        if not self.dry_run:
            try:
                await self.store.create_folder(self.address, name, special_use)
            except FolderExists:
                pass
        self._folders[name] = special_use
        self.stats.created.append(name)

    # sources

    async def _import_mbox(self, source: Source, target: str) -> None:
        start = self.journal.mbox_offset(source.key)
        if start and not mbox_resumable(source.path, start):
            self.warn(
                f"{source.path} changed since the last import: reading it again from the start"
                " (messages already imported are skipped)"
            )
            start = 0
        total = source.path.stat().st_size
        batch = _Batch()
        position = start
        with self.progress(target, max(total - start, 0)) as update:
            for item in read_mbox(source.path, start, self.max_size):
                update(item.end - position)
                position = item.end
                self._take(item, batch)
                batch.offset = item.end
                if batch.full(self.batch_messages, self.batch_bytes):
                    await self._flush(source, target, batch)
                    batch = _Batch()
            batch.offset = position
            await self._flush(source, target, batch)

    async def _import_maildir(self, source: Source, target: str) -> None:
        files = maildir_files(source.path)
        keywords = maildir_keywords(source.path)
        batch = _Batch()
        with self.progress(target, len(files)) as update:
            for sub, name, mtime, size in files:
                update(1)
                unique, flags = maildir_flags(name, sub == "new", keywords)
                if self.journal.maildir_done(source.key, unique):
                    self.stats.done_before += 1
                    continue
                where = str(source.path / sub / name)
                if size > self.max_size:
                    item = Item(None, size, name=unique, where=where)
                else:
                    try:
                        raw = to_crlf((source.path / sub / name).read_bytes())
                    except FileNotFoundError:  # moved or expunged meanwhile
                        continue
                    except OSError as exc:
                        self.stats.unreadable += 1
                        self.warn(f"{where}: cannot read ({exc.strerror or exc}), skipped")
                        continue
                    item = Item(raw, size, flags, mtime, name=unique, where=where)
                self._take(item, batch)
                batch.names.append(unique)
                if batch.full(self.batch_messages, self.batch_bytes):
                    await self._flush(source, target, batch)
                    batch = _Batch()
            await self._flush(source, target, batch)

    def _take(self, item: Item, batch: _Batch) -> None:
        """Add a message to the batch, or count why it is skipped."""
        if item.raw is None:
            self.stats.too_large += 1
            self.warn(f"{item.where}: larger than {self.max_size} bytes, skipped")
            return
        why = problem(item.raw)
        if why is not None:
            self.stats.malformed += 1
            self.warn(f"{item.where}: {why}, skipped")
            return
        sha = hashlib.sha256(item.raw).digest()
        if sha in batch.hashes or sha in self._seen or self.journal.has_hash(sha):
            self.stats.duplicates += 1
            return
        date = item.internal_date
        if date is None:
            date = date_header(item.raw)
        meta = None
        if not self.dry_run:
            try:
                meta = self.meta(item.raw)
            except Exception as exc:  # meta is a help for IMAP, not a reason to lose mail
                self.warn(f"{item.where}: cannot analyse ({exc}); imported without meta")
        batch.messages.append(AppendMessage(item.raw, item.flags, date, meta))
        batch.hashes.append(sha)
        batch.bytes += len(item.raw)

    async def _flush(self, source: Source, target: str, batch: _Batch) -> None:
        """Store the batch and record it (and the position reached) in the journal."""
        if self.dry_run:
            self._seen.update(batch.hashes)
        elif batch.messages:
            folders = await self.store.list_folders(self.address)
            folder = next((f for f in folders if f.name == target), None)
            if folder is not None:
                self.journal.begin_batch(target, folder.uidvalidity, folder.uidnext)
            try:
                await self.store.append_many(self.address, target, batch.messages)
            except QuotaExceeded as exc:
                self.journal.clear_pending()
                raise ImportFailure(
                    f"{exc}: stopped after importing {self.stats.imported} message(s);"
                    f" raise the quota (gomail user quota {self.address} SIZE) and run the"
                    " same command again to continue"
                ) from None
            except StoreError:
                self.journal.clear_pending()
                raise
        if not self.dry_run:
            self.journal.commit_batch(
                source,
                batch.hashes,
                offset=batch.offset if source.kind == "mbox" else None,
                names=batch.names,
            )
        if batch.messages:
            self.stats.imported += len(batch.messages)
            self.stats.bytes += batch.bytes
            self.stats.folders.add(target)


@dataclass(slots=True)
class _Batch:
    messages: list[AppendMessage] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # Maildir unique names read (all, skipped too)
    bytes: int = 0
    offset: int = 0  # mbox: the offset after the last message read

    def full(self, messages: int, size: int) -> bool:
        return len(self.messages) >= messages or self.bytes >= size


def _clean_level(level: str) -> str:
    """A folder level the store accepts: no LIST wildcards or control characters."""
    return "".join("_" if c in "*%" or not c.isprintable() else c for c in level).strip()
