"""LIST and LSUB (RFC 3501, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), in time linear in the
account's folders: patterns are matched by :mod:`gomail.imap.patterns`, and whether a folder
has children (or subscribed children) is one binary search in the sorted names, never a scan
of the others per folder.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import TYPE_CHECKING

from gomail.imap import parser as p
from gomail.imap import wire
from gomail.imap.patterns import PatternTooLong, compile_list
from gomail.store import HIERARCHY_DELIMITER

if TYPE_CHECKING:
    from gomail.imap.session import ImapSession

# A long listing gives other connections the event loop after this many seconds.
YIELD_AFTER = 0.02


def has_descendant(sorted_names: list[str], name: str) -> bool:
    """Whether a name below ``name`` is among ``sorted_names`` (sorted, as str sorts)."""
    prefix = name + HIERARCHY_DELIMITER
    i = bisect.bisect_left(sorted_names, prefix)
    return i < len(sorted_names) and sorted_names[i].startswith(prefix)


class _Pause:
    """Awaited once per folder: lets the loop run other connections every YIELD_AFTER s."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.until = self.loop.time() + YIELD_AFTER

    async def __call__(self) -> None:
        if self.loop.time() >= self.until:
            await asyncio.sleep(0)
            self.until = self.loop.time() + YIELD_AFTER


async def list_mailboxes(s: ImapSession, args: p.List) -> str:
    """Answer LIST or LSUB for session ``s``; the tagged response's text."""
    kind = "LSUB" if args.lsub else "LIST"
    if not args.extended and len(args.patterns) == 1 and args.patterns[0] == "":
        s.untagged(f'{kind} (\\Noselect) "{HIERARCHY_DELIMITER}" ""')
        return f"OK {kind} completed"
    try:
        pattern = compile_list(args.reference, args.patterns)
    except PatternTooLong as e:
        return f"NO [LIMIT] {e}"
    folders = await s.folders()
    names = sorted(f.name for f in folders)
    subscribed = sorted(f.name for f in folders if f.subscribed)

    sel = args.selection
    ret = args.return_options
    only_subscribed = args.lsub or "SUBSCRIBED" in sel
    want_sub = args.lsub or "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
    delim = wire.quote(HIERARCHY_DELIMITER)
    shown: set[str] = set()
    deleted = None  # STATUS DELETED: counted for every folder in one read, not one per folder
    if "STATUS" in ret and "DELETED" in args.status_items:
        deleted = await s.app.store.deleted_counts(s.user)
    pause = _Pause()
    for f in folders:
        await pause()
        if not pattern.matches(f.name):
            continue
        if only_subscribed and not f.subscribed:
            if "RECURSIVEMATCH" in sel and has_descendant(subscribed, f.name):
                s.untagged(
                    b"LIST () "
                    + delim
                    + b" "
                    + s.mailbox(f.name)
                    + b' ("CHILDINFO" ("SUBSCRIBED"))'
                )
            continue
        if "SPECIAL-USE" in sel and not f.special_use:
            continue
        attrs = []
        if not args.lsub or "CHILDREN" in ret:
            attrs.append("\\HasChildren" if has_descendant(names, f.name) else "\\HasNoChildren")
        if f.special_use and not args.lsub:
            attrs.append(f.special_use)
        if want_sub and f.subscribed and not args.lsub:
            attrs.append("\\Subscribed")
        s.untagged(f"{kind} ({' '.join(attrs)}) ".encode() + delim + b" " + s.mailbox(f.name))
        shown.add(f.name)
        if "STATUS" in ret:
            await s._status(f, args.status_items, deleted)
        await s.maybe_drain()
    if args.lsub:
        # A subscribed folder below the pattern's level shows its parent as \Noselect. Each
        # parent is looked at once: when one was seen already, so were all above it.
        seen: set[str] = set()
        for name in subscribed:
            await pause()
            end = name.rfind(HIERARCHY_DELIMITER)
            while end > 0:
                parent = name[:end]
                if parent in seen:
                    break
                seen.add(parent)
                if parent not in shown and pattern.matches(parent):
                    shown.add(parent)
                    s.untagged(b"LSUB (\\Noselect) " + delim + b" " + s.mailbox(parent))
                end = name.rfind(HIERARCHY_DELIMITER, 0, end)
    return f"OK {kind} completed"
