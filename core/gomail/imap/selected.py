"""The selected folder as one session sees it.

A session's view is the list of UIDs it has announced (index + 1 is the message sequence
number), their flags and MODSEQs, the UIDs that are \\Recent for it, and the highest MODSEQ it
has caught up with. Other sessions' changes arrive as :class:`gomail.store.Change` items on
the store's change feed (subscribed at SELECT); at the moments the protocol allows
(:meth:`SelectedFolder.sync`) the view reads ``changes_since`` once and tells the client:
EXISTS for new messages, FETCH FLAGS for changed ones, EXPUNGE (or VANISHED with QRESYNC)
for removed ones. Expunges that may not be announced yet (during FETCH, STORE, SEARCH —
RFC 3501 section 7.4.1) keep their place in the view until they may.
"""

from __future__ import annotations

import bisect
import weakref
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gomail.imap import wire
from gomail.imap.parser import SequenceSet
from gomail.store import MAX_KEYWORDS_PER_FOLDER, ChangeFeed, FolderSnapshot, NoSuchFolder, Store

if TYPE_CHECKING:
    from gomail.imap.session import ImapSession

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class _FolderState:
    """A folder's UIDs, flags and MODSEQs as one SELECT read them.

    Arrays of machine integers rather than lists of int objects (a 10,000-message folder is
    ~200 KiB, not ~560 KiB), and shared by every session that selects the folder in the same
    state, so that many idle clients of one mailbox cost one copy.
    """

    __slots__ = ("uids", "flags", "modseqs", "__weakref__")

    def __init__(self, snap: FolderSnapshot) -> None:
        self.uids = array("L", [row[0] for row in snap.messages])
        self.flags: list[tuple[str, ...]] = [row[1] for row in snap.messages]
        self.modseqs = array("Q", [row[2] for row in snap.messages])


_states: weakref.WeakValueDictionary[tuple, _FolderState] = weakref.WeakValueDictionary()


def _state_for(user: str | None, snap: FolderSnapshot) -> _FolderState:
    # Any change to a folder raises its HIGHESTMODSEQ (expunges and flag changes) or UIDNEXT.
    key = (user, snap.name, snap.uidvalidity, snap.uidnext, snap.highestmodseq, len(snap.messages))
    state = _states.get(key)
    if state is None:
        state = _states[key] = _FolderState(snap)
    return state


class SelectedFolder:
    __slots__ = (
        "session",
        "name",
        "readonly",
        "uidvalidity",
        "uidnext",
        "modseq",
        "uids",
        "flags",
        "modseqs",
        "recent",
        "gone",
        "feed",
        "keywords",
        "dirty",
        "shared",
    )

    def __init__(
        self, session: ImapSession, snap: FolderSnapshot, readonly: bool, feed: ChangeFeed
    ) -> None:
        self.session = session
        self.name = snap.name
        self.readonly = readonly
        self.uidvalidity = snap.uidvalidity
        self.uidnext = snap.uidnext
        self.modseq = snap.highestmodseq  # what the view has caught up with
        # Sessions that select the same unchanged folder share one copy of its state; a
        # session copies it before its first change (_own).
        self.shared: _FolderState | None = _state_for(session.user, snap)
        self.uids = self.shared.uids
        self.flags: list[tuple[str, ...]] = self.shared.flags
        self.modseqs = self.shared.modseqs
        self.recent: set[int] = set(snap.recent)
        self.gone: set[int] = set()  # expunged, not yet announced
        self.feed = feed
        self.keywords: set[str] = set()
        for flags in set(self.flags):
            self._note_keywords(flags)
        self.dirty = False

    # --- lookups -----------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def index_of(self, uid: int) -> int | None:
        seq = self.seq_of(uid)
        return None if seq is None else seq - 1

    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def resolve(self, seqset: SequenceSet, uid: bool, saved: Iterable[int] = ()) -> list[int]:
        """Indexes (0-based) into the view of a sequence set or UID set, ascending.

        ``$`` is the saved search result (UIDs). Numbers that are not in the view are
        skipped (the caller checks message numbers beforehand with :meth:`check_seqset`).
        """
        if seqset.saved:
            out = []
            for u in sorted(saved):
                i = self.index_of(u)
                if i is not None:
                    out.append(i)
            return out
        if not uid:
            return [n - 1 for n in seqset.iter(len(self.uids))]
        if not self.uids:
            return []
        out = []
        uids = self.uids
        top = uids[-1]
        for lo, hi in seqset.resolve(max(top, seqset.highest_explicit())):
            a = bisect.bisect_left(uids, lo)
            b = bisect.bisect_right(uids, hi)
            out.extend(range(a, b))
        return out

    def check_seqset(self, seqset: SequenceSet) -> str | None:
        """An error text when a message sequence set names a message that does not exist."""
        if seqset.saved:
            return None
        if seqset.highest_explicit() > len(self.uids):
            return "Invalid sequence set: no such message"
        if not self.uids and seqset.uses_star:
            return "Invalid sequence set: the mailbox is empty"
        return None

    def flags_of(self, i: int) -> tuple[str, ...]:
        flags = self.flags[i]
        if self.uids[i] in self.recent and not self.session.rev2:
            return (*flags, "\\Recent")
        return flags

    def flag_list(self) -> bytes:
        """``(\\Answered ... keywords)`` for the FLAGS response."""
        return wire.paren_list(f.encode() for f in (*SYSTEM_FLAGS, *sorted(self.keywords)))

    def permanent_flags(self) -> bytes:
        """The ``OK [PERMANENTFLAGS ...]`` line: ``\\*`` (new keywords may be created) only
        while the folder has room for more keywords (RFC 3501 section 7.1)."""
        if self.readonly:
            return b"OK [PERMANENTFLAGS ()] Read-only mailbox"
        flags = self.flag_list()
        if not self.keywords_full():
            flags = flags[:-1] + b" \\*)"
        return b"OK [PERMANENTFLAGS " + flags + b"] Flags permitted"

    def keywords_full(self) -> bool:
        """Whether the folder has as many keywords in use as it may (no new ones)."""
        return len({k.lower() for k in self.keywords}) >= MAX_KEYWORDS_PER_FOLDER

    def _announce_flags(self) -> None:
        """FLAGS after new keywords came in use, and PERMANENTFLAGS without ``\\*`` once the
        folder is full."""
        self.session.untagged(b"FLAGS " + self.flag_list())
        if self.keywords_full() and not self.readonly:
            self.session.untagged(self.permanent_flags())

    def _note_keywords(self, flags: tuple[str, ...]) -> bool:
        new = False
        for f in flags:
            if not f.startswith("\\") and f not in self.keywords:
                self.keywords.add(f)
                new = True
        return new

    def _own(self) -> None:
        """Make the folder state this session's own before changing it."""
        if self.shared is not None:
            self.uids = array("L", self.uids)
            self.flags = list(self.flags)
            self.modseqs = array("Q", self.modseqs)
            self.shared = None

    def set_flags(self, i: int, flags: tuple[str, ...], modseq: int | None = None) -> None:
        """Record flags this session learnt (its own STORE, a FETCH); * FLAGS if new keywords."""
        self._own()
        self.flags[i] = flags
        if modseq is not None:
            self.modseqs[i] = modseq
        if self._note_keywords(flags):
            self._announce_flags()

    # --- responses ------------------------------------------------------------------------------

    def fetch_flags_line(self, i: int, with_uid: bool) -> bytes:
        s = self.session
        items = []
        if with_uid or s.qresync:
            items.append(b"UID %d" % self.uids[i])
        items.append(b"FLAGS " + wire.paren_list(f.encode() for f in self.flags_of(i)))
        if s.condstore:
            items.append(b"MODSEQ (%d)" % self.modseqs[i])
        return b"%d FETCH (%s)" % (i + 1, b" ".join(items))

    def announce_expunged(self, uids: Iterable[int]) -> None:
        """Remove messages from the view and say so (EXPUNGE, or VANISHED with QRESYNC)."""
        uids = set(uids)
        self.gone.difference_update(uids)
        keep = {u for u in uids if self.seq_of(u) is not None}
        if not keep:
            return
        s = self.session
        if s.qresync:
            s.untagged(b"VANISHED " + str(SequenceSet.of(keep)).encode())
        else:
            # Highest first: each sequence number is still valid when the client reads it.
            for u in sorted(keep, reverse=True):
                s.untagged(b"%d EXPUNGE" % self.seq_of(u))
        idx = [i for i, u in enumerate(self.uids) if u not in keep]
        self.shared = None  # the lists below are new, this session's own
        self.uids = array("L", [self.uids[i] for i in idx])
        self.flags = [self.flags[i] for i in idx]
        self.modseqs = array("Q", [self.modseqs[i] for i in idx])
        self.recent.difference_update(keep)

    def has_pending(self) -> bool:
        """Whether the folder changed (by anyone) since the view last caught up with it."""
        if not self.dirty:
            for change in self.feed.pending():
                if change.folder == self.name:  # "folders": renamed or deleted, perhaps
                    self.dirty = True
        return self.dirty

    async def sync(self, *, expunge: bool = True, force: bool = False) -> None:
        """Tell the client what changed in the folder since it last heard.

        ``expunge`` False during FETCH, STORE, SEARCH (not their UID forms): removed
        messages are remembered and announced at the next allowed moment.
        """
        s = self.session
        if not force and not self.has_pending():
            if expunge and self.gone:
                self.announce_expunged(self.gone)
            return
        self.dirty = False
        store: Store = s.app.store
        try:
            changes = await store.changes_since(s.user, self.name, self.modseq)
        except NoSuchFolder:
            # Deleted or renamed by another session: nothing this session knows holds any more.
            s.untagged(b"BYE The selected mailbox was deleted or renamed by another session")
            s.logging_out = True
            return
        except Exception:
            return
        if changes.uidvalidity != self.uidvalidity:
            return
        # The view's messages among the expunged ranges (which, when the store's history is
        # older than self.modseq, hold every UID missing from the folder: still exact here).
        self.gone.update(changes.expunged.members_of(self.uids))
        top = self.max_uid()
        new_rows = []
        for uid, flags, modseq in changes.changed:
            if uid in self.gone:
                continue
            i = self.index_of(uid)
            if i is None:
                if uid > top:
                    new_rows.append((uid, flags, modseq))
                continue
            if flags != self.flags[i]:
                self.set_flags(i, flags, modseq)
                s.untagged(self.fetch_flags_line(i, False))
            elif modseq != self.modseqs[i]:
                self._own()
                self.modseqs[i] = modseq
                if s.condstore:
                    s.untagged(self.fetch_flags_line(i, False))
        if expunge and self.gone:
            self.announce_expunged(self.gone)
        if new_rows:
            # \Recent goes to exactly one session (RFC 3501): every read-write session that
            # has the folder selected sees the new rows, so they claim them in the store, one
            # call per sync; EXAMINE never claims.
            claimed: set[int] = set()
            if not self.readonly:
                try:
                    claimed = await store.claim_recent(
                        s.user, self.name, [uid for uid, _f, _m in new_rows]
                    )
                except Exception:
                    claimed = set()  # the folder went away: nothing is \Recent here
            self._own()
            for uid, flags, modseq in new_rows:
                self.uids.append(uid)
                self.flags.append(flags)
                self.modseqs.append(modseq)
                if self._note_keywords(flags):
                    self._announce_flags()
            self.recent.update(claimed)
            s.untagged(b"%d EXISTS" % len(self.uids))
            if not s.rev2:
                s.untagged(b"%d RECENT" % len(self.recent))
        self.uidnext = max(self.uidnext, changes.uidnext)
        self.modseq = max(self.modseq, changes.highestmodseq)

    def close(self) -> None:
        self.feed.close()
