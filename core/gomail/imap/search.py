"""SEARCH and UID SEARCH (RFC 3501, ESEARCH RFC 4731, SEARCHRES RFC 5182, CONDSTORE MODSEQ).

The search tree is evaluated to a set of view indexes. Flags, MODSEQ, message numbers and
UIDs come from the session's view; sizes and dates from :meth:`Store.fetch_sort_keys` (no
bodies read); header keys from :meth:`Store.search_header` and BODY/TEXT from the full-text
index (:meth:`Store.search_text`). Messages stored without meta get it computed first, so
that they can be found.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import TYPE_CHECKING

from gomail.imap import parser as p
from gomail.imap.session import Bad, No
from gomail.store import SortRow

if TYPE_CHECKING:
    from gomail.imap.selected import SelectedFolder
    from gomail.imap.session import ImapSession

SUPPORTED_CHARSETS = frozenset({"US-ASCII", "UTF-8", "UTF8", "ISO-8859-1"})  # as the parser decodes
MAX_META_FILL = 5000  # messages without meta computed before a header/text search


def _needs(key: p.SearchKey, kinds: tuple[type, ...]) -> bool:
    if isinstance(key, kinds):
        return True
    if isinstance(key, p.SearchAnd):
        return any(_needs(k, kinds) for k in key.keys)
    if isinstance(key, p.SearchOr):
        return _needs(key.left, kinds) or _needs(key.right, kinds)
    if isinstance(key, p.SearchNot):
        return _needs(key.key, kinds)
    return False


def _has_sent_date(key: p.SearchKey) -> bool:
    if isinstance(key, p.SearchDate):
        return key.field == "sent"
    if isinstance(key, p.SearchAnd):
        return any(_has_sent_date(k) for k in key.keys)
    if isinstance(key, p.SearchOr):
        return _has_sent_date(key.left) or _has_sent_date(key.right)
    if isinstance(key, p.SearchNot):
        return _has_sent_date(key.key)
    return False


def _yyyymmdd(day: _dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _day(row: SortRow, field: str) -> int | None:
    """The day a date search compares, as yyyymmdd: INTERNALDATE's in UTC; for SENT* the Date
    header's day as written (``sent_day``), or the UTC day of ``date`` for meta stored before
    sent_day existed."""
    if field == "sent" and row.sent_day is not None:
        return row.sent_day
    ts = row.internal_date if field == "internal" else row.date
    if ts is None:
        return None
    return _yyyymmdd(_dt.datetime.fromtimestamp(ts, _dt.UTC).date())


class Searcher:
    def __init__(self, s: ImapSession) -> None:
        self.s = s
        self.sel: SelectedFolder = s.selected
        self.keys: dict[int, SortRow] | None = None
        self.all = set(range(len(self.sel.uids))) - {
            i for i, u in enumerate(self.sel.uids) if u in self.sel.gone
        }
        self.highest_modseq_key = False

    async def sort_keys(self) -> dict[int, SortRow]:
        if self.keys is None:
            rows = await self.s.app.store.fetch_sort_keys(self.s.user, self.sel.name, None)
            self.keys = {r.uid: r for r in rows}
        return self.keys

    async def fill_meta(self) -> None:
        """Compute the meta of messages stored without it, so header/text keys find them."""
        from gomail.imap.meta import message_meta_async

        store = self.s.app.store
        missing = await store.missing_meta(self.s.user, self.sel.name)
        for uid in missing[:MAX_META_FILL]:
            try:
                raw = await store.fetch_raw(self.s.user, self.sel.name, uid)
                await store.set_meta(self.s.user, self.sel.name, uid, await message_meta_async(raw))
            except Exception:
                continue
        if missing:
            self.keys = None

    def _uids_to_indexes(self, uids: set[int]) -> set[int]:
        out = set()
        for u in uids:
            i = self.sel.index_of(u)
            if i is not None:
                out.add(i)
        return out & self.all

    async def run(self, key: p.SearchKey) -> set[int]:
        if _needs(key, (p.SearchHeader, p.SearchText)):
            await self.fill_meta()
        return await self.eval(key, self.all)

    async def eval(self, key: p.SearchKey, candidates: set[int]) -> set[int]:
        """The indexes among candidates that match key."""
        sel = self.sel
        if not candidates:
            return set()
        if isinstance(key, p.SearchAll):
            return set(candidates)
        if isinstance(key, p.SearchAnd):
            out = set(candidates)
            # Cheap keys first: flags and sets narrow the candidates for the store queries.
            for k in sorted(key.keys, key=_cost):
                out = await self.eval(k, out)
                if not out:
                    break
            return out
        if isinstance(key, p.SearchOr):
            left = await self.eval(key.left, candidates)
            rest = candidates - left
            return left | await self.eval(key.right, rest)
        if isinstance(key, p.SearchNot):
            return candidates - await self.eval(key.key, candidates)
        if isinstance(key, p.SearchSeq):
            seqset = key.sequence_set
            if seqset.saved:
                return {i for i in candidates if sel.uids[i] in self.s.saved}
            if key.uid:
                test = seqset.membership(max(sel.max_uid(), 1))
                return {i for i in candidates if test(sel.uids[i])}
            test = seqset.membership(len(sel.uids))
            return {i for i in candidates if test(i + 1)}
        if isinstance(key, p.SearchFlag):
            if key.flag == "\\Recent":
                have = {i for i in candidates if sel.uids[i] in sel.recent}
            else:
                want = key.flag.lower()
                have = {i for i in candidates if any(f.lower() == want for f in sel.flags[i])}
            return have if key.present else candidates - have
        if isinstance(key, p.SearchModSeq):
            self.highest_modseq_key = True
            self.s.enabled.add("CONDSTORE")
            return {i for i in candidates if sel.modseqs[i] >= key.modseq}
        if isinstance(key, p.SearchSize):
            keys = await self.sort_keys()
            out = set()
            for i in candidates:
                row = keys.get(sel.uids[i])
                if row is None:
                    continue
                if (key.op == "larger" and row.size > key.size) or (
                    key.op == "smaller" and row.size < key.size
                ):
                    out.add(i)
            return out
        if isinstance(key, p.SearchDate):
            keys = await self.sort_keys()
            want = _yyyymmdd(key.date)
            out = set()
            for i in candidates:
                row = keys.get(sel.uids[i])
                if row is None:
                    continue
                day = _day(row, key.field)
                if day is None:
                    continue
                if (
                    (key.op == "before" and day < want)
                    or (key.op == "on" and day == want)
                    or (key.op == "since" and day >= want)
                ):
                    out.add(i)
            return out
        if isinstance(key, p.SearchWithin):
            keys = await self.sort_keys()
            now = time.time()
            out = set()
            for i in candidates:
                row = keys.get(sel.uids[i])
                if row is None:
                    continue
                age = now - row.internal_date
                if (key.op == "older" and age >= key.seconds) or (
                    key.op == "younger" and age <= key.seconds
                ):
                    out.add(i)
            return out
        if isinstance(key, p.SearchHeader):
            uids = await self.s.app.store.search_header(self.s.user, sel.name, key.field, key.value)
            return self._uids_to_indexes(uids) & candidates
        if isinstance(key, p.SearchText):
            uids = await self.s.app.store.search_text(self.s.user, sel.name, key.value, key.where)
            return self._uids_to_indexes(uids) & candidates
        raise Bad(f"Unsupported search key {type(key).__name__}")


def _cost(key: p.SearchKey) -> int:
    if isinstance(key, (p.SearchFlag, p.SearchSeq, p.SearchModSeq, p.SearchAll)):
        return 0
    if isinstance(key, (p.SearchSize, p.SearchDate, p.SearchWithin)):
        return 1
    if isinstance(key, p.SearchNot):
        return _cost(key.key)
    return 2


async def matching(
    s: ImapSession, key: p.SearchKey, charset: str | None
) -> tuple[list[int], Searcher]:
    """Sorted view indexes of the messages that match, and the searcher (for MODSEQ)."""
    if charset is not None and charset.upper() not in SUPPORTED_CHARSETS:
        raise No("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    searcher = Searcher(s)
    found = await searcher.run(key)
    return sorted(found), searcher


def esearch_line(
    s: ImapSession,
    tag: str,
    uid: bool,
    numbers: list[int],
    options: tuple[str, ...],
    modseq: int | None,
) -> bytes | None:
    """The ESEARCH response for RETURN options (None when only SAVE was asked)."""
    opts = [o for o in options if o != "SAVE"] if options else ["ALL"]
    if not opts and options:
        return None
    parts = [b'ESEARCH (TAG "' + tag.encode() + b'")']
    if uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in opts:
            parts.append(b"MIN %d" % min(numbers))
        if "MAX" in opts:
            parts.append(b"MAX %d" % max(numbers))
        if "ALL" in opts:
            parts.append(b"ALL " + str(p.SequenceSet.of(numbers)).encode())
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq is not None and numbers:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts)


async def search(s: ImapSession, cmd: p.Command) -> str:
    args: p.Search = cmd.args
    sel = s.selected
    indexes, searcher = await matching(s, args.key, args.charset)
    uids = [sel.uids[i] for i in indexes]
    numbers = uids if cmd.uid else [i + 1 for i in indexes]
    modseq = max((sel.modseqs[i] for i in indexes), default=None)
    if not searcher.highest_modseq_key:
        modseq = None
    options = args.return_options
    name = f"{'UID ' if cmd.uid else ''}SEARCH"
    if options is None and not s.rev2:
        line = b"SEARCH" + b"".join(b" %d" % n for n in numbers)
        if modseq is not None and numbers:
            line += b" (MODSEQ %d)" % modseq
        s.untagged(line)
        return f"OK {name} completed"
    options = options or ()
    if "SAVE" in options:
        save = uids
        only_ends = "ALL" not in options and "COUNT" not in options
        if only_ends and ("MIN" in options or "MAX" in options):
            # RFC 5182: SAVE with MIN and/or MAX alone saves just those.
            picks = set()
            if uids and "MIN" in options:
                picks.add(uids[0])
            if uids and "MAX" in options:
                picks.add(uids[-1])
            save = sorted(picks)
        s.saved = set(save)
    line = esearch_line(s, cmd.tag, cmd.uid, numbers, options, modseq)
    if line is not None:
        s.untagged(line)
    return f"OK {name} completed"
