"""The store: accounts, mailboxes, messages and the outbound queue, behind one interface.

Protocol code (SMTP, IMAP, the CLI, plugins) talks only to :class:`Store`. The embedded
backend is SQLite (:mod:`gomail.store.sqlite`); the interface is kept narrow so that a
PostgreSQL backend can be added without touching protocol code.

Addresses and domains given to the store are already normalised by the caller
(:mod:`gomail.address`): lower-case domains in IDNA A-label form, no trailing dot.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gomail.context import LocalDelivery

SPECIAL_FOLDERS = ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive")
HIERARCHY_DELIMITER = "/"  # between the levels of folder names ("Archive/2024")
# Folder names a client may create or rename to (Dovecot's defaults): at most this many
# levels, each at most this many bytes of UTF-8. LIST, RENAME and DELETE then work on names of
# a few KiB at most, whatever a client tries.
MAX_FOLDER_LEVELS = 16
MAX_FOLDER_LEVEL_BYTES = 255
# Folders of one account: bounds what one LIST holds in memory (names of up to 4 KiB each).
MAX_FOLDERS = 10_000
# Keywords (flags not starting with a backslash) a client may create: each at most this many
# characters (Dovecot's mail_max_keyword_length), and at most this many distinct keywords in
# use in one folder (Cyrus allows 128 user flags a mailbox), which also bounds those of one
# message: a FETCH FLAGS answer stays a few KiB.
MAX_KEYWORD_LENGTH = 50
MAX_KEYWORDS_PER_FOLDER = 128
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


class StoreError(Exception):
    """A request the store refuses (duplicate, unknown name, …); its text is for the user."""


class NoSuchFolder(StoreError):
    """The folder does not exist (IMAP: ``NO [NONEXISTENT]``, or ``[TRYCREATE]`` for a target)."""


class FolderExists(StoreError):
    """A folder of that name exists already (IMAP: ``NO [ALREADYEXISTS]``)."""


class FolderLimit(StoreError):
    """A folder name too deep or too long (MAX_FOLDER_LEVELS, MAX_FOLDER_LEVEL_BYTES), a
    RENAME that would make one of the folders moved so, or one folder more than MAX_FOLDERS
    (IMAP: ``NO [LIMIT]``)."""


class KeywordLimit(StoreError):
    """A keyword longer than MAX_KEYWORD_LENGTH, or new keywords that would take a folder past
    MAX_KEYWORDS_PER_FOLDER (IMAP: ``NO [LIMIT]``); nothing was changed."""


class FolderCountLimit(FolderLimit):
    """One folder more than MAX_FOLDERS: refused whatever its name."""


class NoSuchMessage(StoreError):
    """No message with that UID in the folder (expunged meanwhile, or never there)."""


class QuotaExceeded(StoreError):
    """Storing this would take the account over its quota (IMAP: ``NO [OVERQUOTA]``)."""


def canonical_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Flags in the store's canonical form: system flags in their usual spelling and fixed
    order first, then keywords sorted case-insensitively; duplicates (keywords compare
    case-insensitively) and ``\\Recent`` (not storable) dropped. StoreError for an empty flag
    or one with spaces, parentheses or control characters."""
    system: set[str] = set()
    keywords: dict[str, str] = {}
    for flag in flags:
        if not flag or any(c in flag for c in ' ()"{') or not flag.isprintable():
            raise StoreError(f"not a valid flag: {flag!r}")
        folded = flag.lower()
        if folded == "\\recent":
            continue
        canon = _SYSTEM_BY_FOLDED.get(folded)
        if canon is not None:
            system.add(canon)
        else:
            keywords.setdefault(folded, flag)
    ordered = tuple(f for f in SYSTEM_FLAGS if f in system)
    return ordered + tuple(keywords[k] for k in sorted(keywords))


_SYSTEM_BY_FOLDED = {f.lower(): f for f in SYSTEM_FLAGS}


@dataclass(frozen=True, slots=True)
class User:
    address: str
    quota: int | None  # bytes; None means unlimited
    created: float


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "name@domain", or "@domain" for a catch-all
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    messages: int
    unseen: int
    bytes: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    sender: str
    recipient: str
    size: int
    created: float
    next_attempt: float
    attempts: int
    state: str  # "queued", later "deferred", "bounced"
    last_error: str | None
    queue_id: str = ""  # the SMTP transaction's id (Delivery.queue_id); id is the entry's own
    delay_notified: bool = False  # the sender was sent the "delayed" DSN for this transaction


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What IMAP needs of a message without reading its body, computed once by the caller
    (``gomail.imap.structure``; the store does not parse mail) and stored with the body.

    It belongs to the content: every copy of the same body (many recipients, COPY, MOVE)
    shares one record. A message stored without it has no FTS entry and no header fields:
    SEARCH on text or headers does not find it and SORT sees empty keys, until the caller
    supplies them with :meth:`Store.set_meta` (see :meth:`Store.missing_meta`).
    """

    envelope: str | None = None  # the FETCH ENVELOPE value, in IMAP syntax
    bodystructure: str | None = None  # FETCH BODYSTRUCTURE (extended)
    body: str | None = None  # FETCH BODY (not extended)
    part_map: str | None = None  # JSON of structure.part_map: sections to byte ranges
    header_text: str = ""  # all header fields, decoded, unfolded, one "Name: value" a line
    text: str = ""  # the decoded text of the body's text parts (SEARCH BODY)
    subject: str = ""  # Subject, decoded (SEARCH SUBJECT)
    from_: str = ""  # From, decoded (SEARCH FROM); likewise to, cc, bcc
    to: str = ""
    cc: str = ""
    bcc: str = ""
    sort_subject: str = ""  # RFC 5256 base subject (SORT SUBJECT, THREAD)
    sort_from: str = ""  # addr-mailbox of the first From address (SORT FROM); to, cc alike
    sort_to: str = ""
    sort_cc: str = ""
    date: float | None = None  # the Date header as Unix time (SORT DATE, SENT*), None if bad
    message_id: str = ""  # "<id@host>" (THREAD REFERENCES)
    in_reply_to: str = ""
    references: str = ""  # the References msg-ids, space separated
    # the Date header's calendar day as written (its own zone), yyyymmdd, None if bad:
    # what SENTBEFORE / SENTON / SENTSINCE compare (RFC 3501: time and zone disregarded)
    sent_day: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted message to make durable: its final bytes and where it goes.

    ``meta``, when given, is stored for every local copy (FTS, envelope, header fields).
    ``outbound_senders`` gives the envelope sender of an outbound recipient's queued copy
    where it is not ``sender`` (SRS for forwarded mail)."""

    queue_id: str
    sender: str
    raw: bytes
    local: tuple[LocalDelivery, ...] = ()
    outbound: tuple[str, ...] = ()
    meta: MessageMeta | None = None
    outbound_senders: Mapping[str, str] = field(default_factory=dict)

    def sender_for(self, recipient: str) -> str:
        """The envelope sender the queued copy for ``recipient`` goes out with."""
        return self.outbound_senders.get(recipient, self.sender)


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder of an account, as LIST / STATUS show it."""

    name: str
    special_use: str | None  # "\\Sent", ... (RFC 6154) or None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    recent: int  # messages no session has claimed as \Recent yet
    bytes: int


# (uid, flags, modseq) of one message
FlagRow = tuple[int, tuple[str, ...], int]


@dataclass(frozen=True, slots=True)
class FolderSnapshot:
    """A folder as SELECT sees it: its counters and every message's (uid, flags, modseq),
    by UID (the index is the message sequence number minus one). Equal flag tuples are
    one object, so a snapshot of a large folder stays small."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: list[FlagRow]
    recent: frozenset[int]  # the UIDs this session got as \Recent (empty when not claimed)
    special_use: str | None = None


@dataclass(frozen=True, slots=True)
class UidSet:
    """A set of UIDs as ``ranges``: (first, last) pairs, ascending, disjoint and not adjacent.

    The expunges since a MODSEQ older than a folder's remembered history are every UID below
    UIDNEXT that is not in the folder, which may be millions of numbers in a few ranges: this
    type keeps them as ranges, and nothing here expands a range unless iterated.
    """

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, uids: Iterable[int]) -> UidSet:
        """The set of the given UIDs (any order, repeats allowed)."""
        out: list[tuple[int, int]] = []
        for n in sorted(set(uids)):
            if out and out[-1][1] == n - 1:
                out[-1] = (out[-1][0], n)
            else:
                out.append((n, n))
        return cls(tuple(out))

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> UidSet:
        """The union of (first, last) ranges in any order (empty ones, first > last, skipped)."""
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
            if out and lo <= out[-1][1] + 1:
                if hi > out[-1][1]:
                    out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        return cls(tuple(out))

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        i = bisect.bisect_right(self.ranges, (uid, float("inf"))) - 1
        return i >= 0 and uid <= self.ranges[i][1]

    def __iter__(self) -> Iterator[int]:
        """Every UID, ascending: only for sets known to be small."""
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def intersect(self, spans: Iterable[tuple[int, int]]) -> UidSet:
        """The UIDs also within spans (ascending, disjoint (first, last) pairs, as
        ``SequenceSet.resolve`` gives them)."""
        other = list(spans)
        out: list[tuple[int, int]] = []
        i = j = 0
        mine = self.ranges
        while i < len(mine) and j < len(other):
            lo = max(mine[i][0], other[j][0])
            hi = min(mine[i][1], other[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if mine[i][1] < other[j][1]:
                i += 1
            else:
                j += 1
        return UidSet(tuple(out))

    def without(self, uids: Sequence[int]) -> UidSet:
        """The set less the given UIDs (an ascending sequence, e.g. a folder view's UIDs);
        the cost grows with the ranges and the UIDs that fall inside them, not their width."""
        out: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            start = lo
            for k in range(bisect.bisect_left(uids, lo), bisect.bisect_right(uids, hi)):
                u = uids[k]
                if u > start:
                    out.append((start, u - 1))
                start = max(start, u + 1)
            if start <= hi:
                out.append((start, hi))
        return UidSet(tuple(out))

    def members_of(self, uids: Sequence[int]) -> list[int]:
        """The UIDs of an ascending sequence that are in the set, ascending."""
        out: list[int] = []
        for lo, hi in self.ranges:
            out.extend(uids[bisect.bisect_left(uids, lo) : bisect.bisect_right(uids, hi)])
        return out


@dataclass(frozen=True, slots=True)
class FolderChanges:
    """What changed in a folder since a MODSEQ, read in one transaction (QRESYNC, IDLE)."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    changed: list[FlagRow]  # new or with new flags, by UID
    # UIDs expunged (or moved away). When the MODSEQ is older than the folder's remembered
    # expunge history, every UID below uidnext not in the folder (RFC 7162 3.2.5.2).
    expunged: UidSet


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A message's stored facts for FETCH, read without its body. The meta fields are None
    for a message stored without :class:`MessageMeta`."""

    uid: int
    flags: tuple[str, ...]
    internal_date: float
    size: int
    modseq: int
    envelope: str | None
    bodystructure: str | None
    body: str | None
    part_map: str | None


@dataclass(frozen=True, slots=True)
class SortRow:
    """A message's keys for SORT, THREAD and date searches (empty when stored without meta)."""

    uid: int
    internal_date: float
    size: int
    date: float | None
    sort_subject: str
    sort_from: str
    sort_to: str
    sort_cc: str
    message_id: str
    in_reply_to: str
    references: str
    # the Date header's day as written, yyyymmdd (SENT* searches); None when unknown (no
    # meta, a bad Date, or meta stored before the column existed: use ``date``'s UTC day)
    sent_day: int | None = None


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message for :meth:`Store.append_many` (MULTIAPPEND)."""

    raw: bytes
    flags: tuple[str, ...] = ()
    internal_date: float | None = None  # None: now
    meta: MessageMeta | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change, for IDLE. kind: "exists" (new messages: delivery, APPEND, COPY,
    MOVE's target), "flags", "expunge" (EXPUNGE, MOVE's source), "folders" (create, rename,
    delete, subscribe; folder is the name concerned)."""

    user: str
    folder: str
    kind: str


class ChangeFeed(ABC):
    """The committed changes of one account, as an async iterator of :class:`Change`.

    Changes wait in the feed until read; a change equal to one still waiting is not queued
    again, so an idle reader costs no more than a few objects. ``close()`` (or ``async with``)
    ends the subscription; the iteration then stops.
    """

    __slots__ = ()

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Change]: ...

    @abstractmethod
    async def __anext__(self) -> Change: ...

    @abstractmethod
    def pending(self) -> list[Change]:
        """Take the changes waiting now, without waiting."""

    @abstractmethod
    def close(self) -> None: ...

    async def __aenter__(self) -> ChangeFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# UIDs as a sequence, or a range (1:* is range(1, uidnext)); either may hold UIDs that do not
# exist (any more), which every method skips.
Uids = Sequence[int] | range
FlagMode = Literal["set", "add", "remove"]


class Store(ABC):
    """Everything gomail keeps. All methods are coroutines and safe to call concurrently."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the database and start background writers."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending commits and close."""

    # domains
    @abstractmethod
    async def add_domain(self, domain: str) -> None: ...
    @abstractmethod
    async def remove_domain(self, domain: str) -> None:
        """Remove a domain with no users or aliases left; StoreError otherwise."""

    @abstractmethod
    async def list_domains(self) -> list[str]: ...
    @abstractmethod
    async def has_domain(self, domain: str) -> bool: ...

    # users
    @abstractmethod
    async def add_user(self, address: str, password_hash: str, quota: int | None) -> None:
        """Create the account and its folders (SPECIAL_FOLDERS). Its domain must exist."""

    @abstractmethod
    async def get_user(self, address: str) -> User | None: ...
    @abstractmethod
    async def list_users(self, domain: str | None = None) -> list[User]: ...
    @abstractmethod
    async def get_password_hash(self, address: str) -> str | None: ...
    @abstractmethod
    async def set_password_hash(self, address: str, password_hash: str) -> None: ...
    @abstractmethod
    async def set_quota(self, address: str, quota: int | None) -> None: ...
    @abstractmethod
    async def remove_user(self, address: str) -> None:
        """Remove the account, its folders and its messages (blobs no longer used go too)."""

    @abstractmethod
    async def quota_usage(self, address: str) -> int:
        """Bytes stored in all the account's folders."""

    # administrators (of the server, not mail accounts)
    @abstractmethod
    async def add_admin(self, username: str, password_hash: str) -> None: ...
    @abstractmethod
    async def get_admin_password_hash(self, username: str) -> str | None: ...

    # aliases
    @abstractmethod
    async def add_alias(self, source: str, targets: list[str]) -> None:
        """Add targets to alias source (created if new). Its domain must exist."""

    @abstractmethod
    async def remove_alias(self, source: str, target: str | None = None) -> None:
        """Remove one target, or the whole alias when target is None."""

    @abstractmethod
    async def get_alias(self, source: str) -> Alias | None: ...
    @abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    # mailboxes and messages
    @abstractmethod
    async def folder_status(self, address: str) -> list[FolderStatus]:
        """Each folder of the account, INBOX first."""

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Store the message once and add it to every local folder and the outbound queue,
        atomically. Returns only when it is durable (committed and fsync'd); concurrent
        calls share commits."""

    @abstractmethod
    async def list_messages(self, address: str, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        """(UID, raw bytes) of every message in the folder, by UID. For tests and tools."""

    # IMAP: folders
    #
    # Folder names are as the IMAP layer gives them (it decodes modified UTF-7), with levels
    # separated by HIERARCHY_DELIMITER; "INBOX" is case-insensitive, also as a prefix
    # ("inbox/x" is "INBOX/x"). Unknown folders raise NoSuchFolder, unknown users StoreError.

    @abstractmethod
    async def list_folders(self, user: str) -> list[Folder]:
        """Every folder of the account, INBOX first, then by name."""

    @abstractmethod
    async def get_folder(self, user: str, name: str) -> Folder | None:
        """One folder of the account as list_folders shows it, or None if it does not exist."""

    @abstractmethod
    async def create_folder(self, user: str, name: str, special_use: str | None = None) -> None:
        """Create a folder with a new UIDVALIDITY, and its missing parents (RFC 3501).
        A trailing delimiter is ignored. FolderExists if it exists; FolderLimit if the name
        has more than MAX_FOLDER_LEVELS levels or a level over MAX_FOLDER_LEVEL_BYTES, or
        the account would have more than MAX_FOLDERS folders."""

    @abstractmethod
    async def rename_folder(self, user: str, old: str, new: str) -> None:
        """Rename a folder and its children (old/x becomes new/x), keeping UIDVALIDITY and
        UIDs; missing parents of new are created. Renaming INBOX moves its messages to a new
        folder new and leaves INBOX empty (its children stay), per RFC 3501. FolderLimit if
        new, or a child's new name, would be over the limits create_folder enforces."""

    @abstractmethod
    async def delete_folder(self, user: str, name: str) -> None:
        """Delete a folder and its messages (bodies no longer used are released). INBOX and
        a folder that has children are refused (delete the children first)."""

    @abstractmethod
    async def subscribe(self, user: str, name: str, on: bool) -> None:
        """Set the folder's subscription (LSUB / LIST SUBSCRIBED). The folder must exist."""

    # IMAP: reading a folder

    @abstractmethod
    async def deleted_counts(self, user: str, folder: str | None = None) -> dict[str, int]:
        """Messages flagged \\Deleted, by folder name (STATUS DELETED), in one read: of one
        folder, or of all (None); a folder without any is left out."""

    @abstractmethod
    async def select_folder(
        self, user: str, name: str, claim_recent: bool = False
    ) -> FolderSnapshot:
        """The folder's state in one read. claim_recent (SELECT, not EXAMINE) makes the
        messages that arrived since the last claim \\Recent for this caller only."""

    @abstractmethod
    async def claim_recent(self, user: str, folder: str, uids: Sequence[int]) -> set[int]:
        """Claim \\Recent for messages that arrived while the caller had the folder selected
        read-write (RFC 3501: a message is \\Recent in exactly one session).

        In one write transaction: the subset of uids at or above the folder's recent_from (not
        claimed yet, by this call or a SELECT with claim_recent), after which recent_from is
        max(uids) + 1 (never lowered). Concurrent claims therefore get disjoint sets. An empty
        uids claims nothing and writes nothing. NoSuchFolder if the folder is gone."""

    @abstractmethod
    async def changes_since(self, user: str, folder: str, modseq: int) -> FolderChanges:
        """Messages new or changed, and UIDs expunged, after modseq, in one transaction."""

    @abstractmethod
    async def changed_since(self, user: str, folder: str, modseq: int) -> list[FlagRow]:
        """(uid, flags, modseq) of the messages whose MODSEQ is above modseq, by UID."""

    @abstractmethod
    async def expunged_since(self, user: str, folder: str, modseq: int) -> UidSet:
        """UIDs expunged from (or moved out of) the folder with a MODSEQ above modseq.

        The store remembers only the recent expunges of a folder; for a modseq older than
        that history the answer is every UID below UIDNEXT that is not in the folder (a
        superset, as RFC 7162 3.2.10 allows for VANISHED (EARLIER)), as a few ranges."""

    @abstractmethod
    async def fetch_meta(self, user: str, folder: str, uids: Uids) -> list[MessageRow]:
        """The stored facts of the messages among uids, by UID, reading no bodies."""

    @abstractmethod
    async def fetch_raw(self, user: str, folder: str, uid: int) -> bytes:
        """The message's bytes (read off the event loop). NoSuchMessage if it is gone."""

    @abstractmethod
    async def fetch_raw_many(self, user: str, folder: str, uids: Uids) -> list[tuple[int, bytes]]:
        """(uid, bytes) of the messages among uids that exist, by UID, in one read."""

    @abstractmethod
    async def fetch_sort_keys(
        self, user: str, folder: str, uids: Uids | None = None
    ) -> list[SortRow]:
        """SORT / THREAD keys of the messages among uids (None: all), by UID."""

    @abstractmethod
    async def search_text(
        self, user: str, folder: str, query: str, where: Literal["body", "text"]
    ) -> set[int]:
        """UIDs whose body ("body") or header or body ("text") contain query as a case-
        insensitive substring (``str.casefold``), through the full-text index (messages stored
        without meta: never; an empty query: every message). No false positives: what the
        index suggests is checked exactly.

        Word-based, like Dovecot's FTS plugins and Gmail: when the query has word characters
        (letters, digits), a message is found only where the query's first word starts a word
        of the message (the last word may be a prefix: "inv" finds "invoice"). A substring that
        starts inside a word ("voice" in "invoice") is NOT found then. Only a query without any
        word characters ("@", "--") is looked for anywhere, by scanning the folder's stored
        text."""

    @abstractmethod
    async def search_header(self, user: str, folder: str, field: str, value: str) -> set[int]:
        """UIDs whose header field (From, Subject, X-Anything, ...) contains value, case-
        insensitively (SEARCH FROM/TO/CC/BCC/SUBJECT/HEADER); an empty value matches every
        message that has the field. Reads the stored header fields, not the bodies."""

    @abstractmethod
    async def missing_meta(self, user: str, folder: str) -> list[int]:
        """UIDs of the folder's messages stored without MessageMeta."""

    @abstractmethod
    async def set_meta(self, user: str, folder: str, uid: int, meta: MessageMeta) -> None:
        """Store (or replace) the meta of a message's body, e.g. for one delivered without."""

    # IMAP: changing messages

    @abstractmethod
    async def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        meta: MessageMeta | None = None,
    ) -> tuple[int, int]:
        """Add a message; (uidvalidity, uid) once durable. QuotaExceeded over the quota."""

    @abstractmethod
    async def append_many(
        self, user: str, folder: str, messages: Sequence[AppendMessage]
    ) -> tuple[int, list[int]]:
        """Add several messages atomically (MULTIAPPEND): all or none; (uidvalidity, uids)."""

    @abstractmethod
    async def store_flags(
        self,
        user: str,
        folder: str,
        uids: Uids,
        flags: Iterable[str],
        mode: FlagMode,
        unchanged_since: int | None = None,
    ) -> tuple[list[FlagRow], list[int]]:
        """Set, add or remove flags (STORE). Returns (changed, failed): every message whose
        flags changed, with its new flags and the one new MODSEQ this call took (RFC 7162),
        and the UIDs refused because their MODSEQ is above unchanged_since. Messages whose
        flags stay the same are in neither list and keep their MODSEQ."""

    @abstractmethod
    async def copy_messages(
        self, user: str, src: str, uids: Uids, dst: str
    ) -> list[tuple[int, int]]:
        """Copy messages (flags and internal date kept, bodies shared) to dst; the
        (source UID, new UID) pairs for COPYUID. NoSuchFolder if dst is missing (TRYCREATE),
        QuotaExceeded over the quota."""

    @abstractmethod
    async def move_messages(
        self, user: str, src: str, uids: Uids, dst: str
    ) -> list[tuple[int, int]]:
        """Move messages atomically: new UIDs in dst, expunged from src (recorded for
        VANISHED) in the same transaction. (source UID, new UID) pairs."""

    @abstractmethod
    async def expunge(self, user: str, folder: str, uids: Uids | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only those among uids, for UID EXPUNGE);
        their UIDs, ascending, recorded with one new MODSEQ for QRESYNC."""

    @abstractmethod
    async def quota(self, user: str) -> tuple[int, int | None]:
        """(bytes used, limit or None for unlimited)."""

    # IMAP: change notification

    @abstractmethod
    def subscribe_changes(self, user: str) -> ChangeFeed:
        """A feed of the account's changes committed by this process (deliveries, appends,
        flags, expunges, folders), delivered on the calling event loop soon after each
        commit. Writes by another process (the admin CLI) are not seen."""

    # outbound queue
    #
    # One entry per (transaction, remote recipient); entry ids are strings of integers. A
    # delivered entry is removed; a failed one is removed together with the storing of its
    # DSN (queue_bounce), so that "bounced" never lingers. Each change is one durable commit.
    @abstractmethod
    async def list_queue(self) -> list[QueueEntry]: ...

    @abstractmethod
    async def queue_entry(self, entry_id: str | int) -> QueueEntry | None: ...

    @abstractmethod
    async def due_queue(
        self, now: float, limit: int = 1000, exclude: Collection[str | int] = ()
    ) -> list[QueueEntry]:
        """Entries to try now: state queued or deferred and next_attempt <= now, the longest
        due first, at most limit, none of the ids in exclude (those being sent already). The
        caller groups them by (queue_id, recipient domain): one SMTP transaction each."""

    @abstractmethod
    async def queue_message(self, entry_id: str | int) -> bytes:
        """The stored bytes of an entry's message (as stored: they may begin with a
        Return-Path header, which a relay strips). NoSuchMessage if the entry is gone."""

    @abstractmethod
    async def queue_sent(self, ids: Iterable[str | int]) -> None:
        """The far side took these recipients (250): remove the entries, durably, at once."""

    @abstractmethod
    async def queue_defer(
        self,
        ids: Iterable[str | int],
        next_attempt: float,
        error: str,
        *,
        notify: bool = False,
        notice: Delivery | None = None,
    ) -> None:
        """A temporary failure: state deferred, one more attempt counted, next try at
        next_attempt, error (the remote answer) kept as last_error.

        notify: the sender is being told of the delay: every entry of these entries'
        transactions with the same envelope sender gets delay_notified, and notice (the
        "delayed" DSN, if any) is stored in the same transaction, unless such an entry was
        already notified (then notice is dropped: one notice per transaction and sender)."""

    # --- plugin data ------------------------------------------------------------------------

    @abstractmethod
    async def plugin_get(self, namespace: str, key: str, now: float | None = None) -> str | None:
        """The value a plugin stored under (namespace, key), None when absent or expired."""

    @abstractmethod
    async def plugin_put(
        self, namespace: str, key: str, value: str, expires: float | None = None
    ) -> None:
        """Store (or replace) a plugin's value, durably; expires is a Unix time or None."""

    @abstractmethod
    async def plugin_delete(self, namespace: str, key: str) -> None:
        """Forget a plugin's value (nothing happens when there is none)."""

    @abstractmethod
    async def queue_postpone(self, ids: Iterable[str | int], next_attempt: float) -> None:
        """Not now (a throttle): next try at next_attempt; no attempt counted, no error kept."""

    @abstractmethod
    async def queue_bounce(
        self, ids: Iterable[str | int], error: str, dsn: Delivery | None = None
    ) -> None:
        """A permanent failure: remove the entries and store dsn (the bounce to the sender,
        local and/or queued) in the same transaction, so a crash leaves either both or
        neither. dsn None: no bounce (a null-sender message)."""

    @abstractmethod
    async def queue_retry(self, ids: Iterable[str | int] | None, now: float) -> int:
        """Make waiting entries (all when ids is None) due at now; how many changed."""

    @abstractmethod
    async def queue_delete(self, ids: Iterable[str | int]) -> int:
        """Remove entries without delivering or bouncing them; how many went."""

    # maintenance
    @abstractmethod
    async def backup(self, dest: Path) -> None:
        """Write a consistent copy of database and blobs to the new directory dest while the
        server may keep running."""
