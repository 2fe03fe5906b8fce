"""FETCH, STORE, COPY, MOVE and APPEND.

FETCH reads the stored facts of the messages (:meth:`Store.fetch_meta`: flags, sizes, dates,
ENVELOPE, BODYSTRUCTURE, part map) in batches and reads bodies (``fetch_raw_many``) only for
items that need them; each message's response is written as soon as it is built, and the
writer is drained as its buffer fills, so a FETCH over 10,000 messages never holds more than
one batch. A message stored without its meta gets it computed and saved on the way.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING

from gomail.imap import parser as p
from gomail.imap import sections, wire
from gomail.imap.meta import message_meta_async
from gomail.imap.session import Bad, No
from gomail.store import (
    AppendMessage,
    KeywordLimit,
    MessageMeta,
    MessageRow,
    NoSuchFolder,
    QuotaExceeded,
)

if TYPE_CHECKING:
    from gomail.imap.session import ImapSession

BATCH = 500  # messages per fetch_meta read
RAW_BATCH = 64  # messages per fetch_raw_many read
# ... and their bytes: the bodies of a batch are held together, and 64 messages can be GBs
RAW_BATCH_BYTES = 4 * 1024 * 1024
WRITE_CHUNK = 64 * 1024  # messages larger than this are parsed off the event loop

_META_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE"})
_VIEW_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
_RAW_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE"})


def _needs_meta(a: p.FetchAttribute) -> bool:
    return a.name in _META_ITEMS or (a.name == "BODY" and a.section is None)


def _needs_raw(a: p.FetchAttribute) -> bool:
    return a.name in _RAW_ITEMS or (a.name == "BODY" and a.section is not None)


def _sets_seen(a: p.FetchAttribute) -> bool:
    if a.name in ("RFC822", "RFC822.TEXT"):
        return True
    return a.name in ("BODY", "BINARY") and a.section is not None and not a.peek


def check_set(s: ImapSession, cmd: p.Command, seqset: p.SequenceSet) -> list[int]:
    """Indexes into the view for a command's sequence set (BAD for a bad message number)."""
    sel = s.selected
    if not cmd.uid:
        err = sel.check_seqset(seqset)
        if err is not None:
            raise Bad(err)
    return sel.resolve(seqset, cmd.uid, s.saved)


def _flags_item(flags: tuple[str, ...]) -> bytes:
    return b"FLAGS " + wire.paren_list(f.encode() for f in flags)


class _Message:
    """What one message's response is built from."""

    __slots__ = ("row", "raw", "meta", "pmap")

    def __init__(self, row: MessageRow) -> None:
        self.row = row
        self.raw: bytes | None = None
        self.meta: MessageMeta | None = None
        self.pmap: dict | None = None

    def part_map(self) -> dict | None:
        if self.pmap is None:
            text = self.meta.part_map if self.meta is not None else self.row.part_map
            if text:
                try:
                    self.pmap = json.loads(text)
                except ValueError:
                    self.pmap = None
        return self.pmap


def _item(s: ImapSession, a: p.FetchAttribute, m: _Message, flags: tuple[str, ...]) -> bytes:
    row = m.row
    name = a.name
    if name == "UID":
        return b"UID %d" % row.uid
    if name == "FLAGS":
        return _flags_item(flags)
    if name == "INTERNALDATE":
        when = _dt.datetime.fromtimestamp(row.internal_date, _dt.UTC)
        return b"INTERNALDATE " + wire.internaldate(when)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % row.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % row.modseq
    if name == "ENVELOPE":
        text = m.meta.envelope if m.meta else row.envelope
        return b"ENVELOPE " + (text or "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)").encode()
    if name == "BODYSTRUCTURE":
        text = m.meta.bodystructure if m.meta else row.bodystructure
        return b"BODYSTRUCTURE " + (text or "NIL").encode()
    raw = m.raw or b""
    if name == "BODY" and a.section is None:
        text = m.meta.body if m.meta else row.body
        return b"BODY " + (text or "NIL").encode()
    if name == "RFC822":
        return b"RFC822 " + wire.literal(raw)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + wire.literal(
            sections.section_bytes(raw, m.part_map(), (), "HEADER")
        )
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + wire.literal(sections.section_bytes(raw, m.part_map(), (), "TEXT"))
    sec = a.section
    if name == "BODY":
        data = sections.section_bytes(
            raw, m.part_map(), sec.part, sec.text, list(sec.headers) or None
        )
        if a.partial is not None:
            data = sections.partial(data, a.partial[0], a.partial[1])
        return a.response_name().encode() + b" " + wire.literal(data)
    if name == "BINARY.SIZE":
        try:
            size = sections.binary_size(raw, m.part_map(), sec.part)
        except sections.UnknownEncoding:
            raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
        return a.response_name().encode() + b" %d" % size
    if name == "BINARY":
        try:
            data = sections.binary_bytes(raw, m.part_map(), sec.part)
        except sections.UnknownEncoding:
            raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
        if a.partial is not None:
            data = sections.partial(data, a.partial[0], a.partial[1])
        return a.response_name().encode() + b" " + wire.literal(data, binary=b"\0" in data)
    raise Bad(f"Unsupported FETCH item {name}")


async def fetch(s: ImapSession, cmd: p.Command) -> str:
    args: p.Fetch = cmd.args
    sel = s.selected
    store = s.app.store
    indexes = check_set(s, cmd, args.sequence_set)
    attrs = list(args.attributes)
    names = {a.name for a in attrs}
    if cmd.uid and "UID" not in names:
        attrs.insert(0, p.FetchAttribute("UID"))
    if args.changedsince is not None or "MODSEQ" in names:
        s.enabled.add("CONDSTORE")
    if args.changedsince is not None and "MODSEQ" not in names:
        attrs.append(p.FetchAttribute("MODSEQ"))
    if args.vanished:
        if not s.qresync:
            raise Bad("VANISHED needs QRESYNC enabled")
        gone = await store.expunged_since(s.user, sel.name, args.changedsince)
        # As ranges (the answer may be every UID missing from the folder): those asked for,
        # less the ones still in the view (their expunge is announced later, as VANISHED).
        spans = args.sequence_set.resolve(max(sel.max_uid(), sel.uidnext))
        vanished = gone.intersect(spans).without(sel.uids)
        if vanished:
            s.untagged(b"VANISHED (EARLIER) " + str(p.SequenceSet(vanished.ranges)).encode())
    if names | {"UID"} <= _VIEW_ITEMS and args.changedsince is None and not sel.has_pending():
        return await _fetch_from_view(s, cmd, attrs, indexes)
    need_meta = any(_needs_meta(a) for a in attrs)
    need_raw = any(_needs_raw(a) for a in attrs)
    sets_seen = not sel.readonly and any(_sets_seen(a) for a in attrs)
    has_flags = any(a.name == "FLAGS" for a in attrs)
    indexes = [i for i in indexes if sel.uids[i] not in sel.gone]
    user, folder = s.user, sel.name
    missing = 0
    # One socket write per line costs a system call each: lines are joined up to WRITE_CHUNK.
    out: list[bytes] = []
    pending = 0
    for start in range(0, len(indexes), BATCH):
        chunk = indexes[start : start + BATCH]
        uids = [sel.uids[i] for i in chunk]
        rows = await store.fetch_meta(user, folder, range(uids[0], uids[-1] + 1))
        by_uid = {r.uid: r for r in rows}
        todo = []
        for i in chunk:
            row = by_uid.get(sel.uids[i])
            if row is None:
                missing += 1  # expunged meanwhile
                continue
            if args.changedsince is not None and row.modseq <= args.changedsince:
                continue
            todo.append((i, _Message(row)))
        if not todo:
            continue
        seen_now: set[int] = set()
        if sets_seen:
            unseen = [m.row.uid for _i, m in todo if "\\Seen" not in m.row.flags]
            if unseen:
                changed, _ = await store.store_flags(user, folder, unseen, ["\\Seen"], "add")
                newflags = {uid: (flags, modseq) for uid, flags, modseq in changed}
                for k, (i, m) in enumerate(todo):
                    if m.row.uid in newflags:
                        flags, modseq = newflags[m.row.uid]
                        row = m.row
                        todo[k] = (i, _Message(_replace(row, flags, modseq)))
                        seen_now.add(row.uid)
        for part in _raw_batches(todo) if need_raw else [todo]:
            no_meta = need_meta and any(m.row.envelope is None for _i, m in part)
            if need_raw or no_meta:
                wanted = [m.row.uid for _i, m in part if need_raw or m.row.envelope is None]
                raws = dict(await store.fetch_raw_many(user, folder, wanted))
                for _i, m in part:
                    m.raw = raws.get(m.row.uid)
            for i, m in part:
                if need_raw and m.raw is None:
                    missing += 1  # expunged meanwhile
                    continue
                if (need_meta or need_raw) and m.row.envelope is None and m.raw is not None:
                    m.meta = await message_meta_async(m.raw)
                    try:
                        await store.set_meta(user, folder, m.row.uid, m.meta)
                    except Exception:
                        pass
                row = m.row
                flags = row.flags
                if row.uid in sel.recent and not s.rev2:
                    flags = (*flags, "\\Recent")
                items = [_item(s, a, m, flags) for a in attrs]
                if row.uid in seen_now and not has_flags:
                    items.append(_flags_item(flags))
                if has_flags or row.uid in seen_now:
                    sel.set_flags(i, row.flags, row.modseq)
                out.append(b"* %d FETCH (" % (i + 1) + b" ".join(items) + b")\r\n")
                pending += len(out[-1])
                if pending >= WRITE_CHUNK:
                    s.write(b"".join(out))
                    out.clear()
                    pending = 0
                    await s.maybe_drain()
            # a batch's responses go out before the next batch is read (or the command ends)
            s.write(b"".join(out))
            out.clear()
            pending = 0
    if missing:
        raise No("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return f"OK {'UID ' if cmd.uid else ''}FETCH completed"


def _raw_batches(todo: list) -> list[list]:
    """``todo`` cut into batches of at most RAW_BATCH messages and RAW_BATCH_BYTES (a larger
    message alone)."""
    batches: list[list] = []
    size = 0
    for item in todo:
        msg_size = item[1].row.size
        if not batches or len(batches[-1]) >= RAW_BATCH or size + msg_size > RAW_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += msg_size
    return batches


async def _fetch_from_view(
    s: ImapSession, cmd: p.Command, attrs: list[p.FetchAttribute], indexes: list[int]
) -> str:
    """FETCH of only UID, FLAGS and MODSEQ (what clients ask most, for a whole folder, on
    every resync), answered from the session's view of the folder without a store read."""
    sel = s.selected
    uids, modseqs, flags, gone = sel.uids, sel.modseqs, sel.flags, sel.gone
    recent = sel.recent if not s.rev2 else ()
    kinds = [a.name for a in attrs]
    line = b"* %d FETCH (" + b" ".join(_VIEW_FORMAT[k] for k in kinds) + b")\r\n"
    flag_bytes: dict[tuple[str, ...], bytes] = {}
    out: list[bytes] = []
    for i in indexes:
        uid = uids[i]
        if uid in gone:
            continue
        fl = flags[i]
        if uid in recent:
            fl = (*fl, "\\Recent")
        fb = flag_bytes.get(fl)
        if fb is None:
            fb = flag_bytes[fl] = wire.paren_list(f.encode() for f in fl)
        values = [i + 1]
        for k in kinds:
            values.append(uid if k == "UID" else fb if k == "FLAGS" else modseqs[i])
        out.append(line % tuple(values))
        if len(out) >= 1024:
            s.write(b"".join(out))
            out.clear()
            await s.maybe_drain()
    s.write(b"".join(out))
    return f"OK {'UID ' if cmd.uid else ''}FETCH completed"


_VIEW_FORMAT = {"UID": b"UID %d", "FLAGS": b"FLAGS %s", "MODSEQ": b"MODSEQ (%d)"}


def _replace(row: MessageRow, flags: tuple[str, ...], modseq: int) -> MessageRow:
    return MessageRow(
        row.uid,
        flags,
        row.internal_date,
        row.size,
        modseq,
        row.envelope,
        row.bodystructure,
        row.body,
        row.part_map,
    )


_MODES = {"replace": "set", "add": "add", "remove": "remove"}


async def store(s: ImapSession, cmd: p.Command) -> str:
    args: p.Store = cmd.args
    sel = s.selected
    if sel.readonly:
        raise No("Mailbox is read-only", "READ-ONLY")
    indexes = check_set(s, cmd, args.sequence_set)
    indexes = [i for i in indexes if sel.uids[i] not in sel.gone]
    if args.unchangedsince is not None:
        s.enabled.add("CONDSTORE")
    uids = [sel.uids[i] for i in indexes]
    name = f"{'UID ' if cmd.uid else ''}STORE"
    if not uids:
        return f"OK {name} completed"
    try:
        changed, failed = await s.app.store.store_flags(
            s.user, sel.name, uids, args.flags, _MODES[args.mode], args.unchangedsince
        )
    except KeywordLimit as e:
        raise No(str(e), "LIMIT") from None
    new = {uid: (flags, modseq) for uid, flags, modseq in changed}
    failed_set = set(failed)
    for i in indexes:
        uid = sel.uids[i]
        if uid in failed_set:
            continue
        if uid in new:
            flags, modseq = new[uid]
            sel.set_flags(i, flags, modseq)
        if not args.silent:
            s.untagged(sel.fetch_flags_line(i, cmd.uid))
        elif uid in new and s.condstore:
            uid_item = b"UID %d " % uid if cmd.uid else b""
            s.untagged(b"%d FETCH (%sMODSEQ (%d))" % (i + 1, uid_item, sel.modseqs[i]))
        await s.maybe_drain()
    if failed:
        numbers = failed if cmd.uid else [sel.seq_of(u) for u in failed]
        return f"OK [MODIFIED {p.SequenceSet.of(numbers)}] Conditional {name} failed"
    return f"OK {name} completed"


async def copy_move(s: ImapSession, cmd: p.Command, move: bool) -> str:
    args: p.CopyMove = cmd.args
    sel = s.selected
    verb = "MOVE" if move else "COPY"
    name = f"{'UID ' if cmd.uid else ''}{verb}"
    if move and sel.readonly:
        raise No("Mailbox is read-only", "READ-ONLY")
    indexes = check_set(s, cmd, args.sequence_set)
    uids = [sel.uids[i] for i in indexes if sel.uids[i] not in sel.gone]
    dst = await s.find_folder(args.mailbox)
    if dst is None:
        raise No("No such mailbox", "TRYCREATE")
    if not uids:
        return f"OK {name} completed (no messages)"
    store = s.app.store
    try:
        if move:
            pairs = await store.move_messages(s.user, sel.name, uids, dst.name)
        else:
            pairs = await store.copy_messages(s.user, sel.name, uids, dst.name)
    except NoSuchFolder:
        raise No("No such mailbox", "TRYCREATE") from None
    except QuotaExceeded as e:
        raise No(str(e), "OVERQUOTA") from None
    except KeywordLimit as e:
        raise No(str(e), "LIMIT") from None
    if dst.name == sel.name:
        sel.dirty = True
    if not pairs:
        return f"OK {name} completed (no messages)"
    code = (
        f"COPYUID {dst.uidvalidity} {p.SequenceSet.of(a for a, _ in pairs)} "
        f"{p.SequenceSet.of(b for _, b in pairs)}"
    )
    if not move:
        return f"OK [{code}] {name} completed"
    s.untagged(f"OK [{code}] Moved")
    sel.announce_expunged(a for a, _ in pairs)
    return f"OK {name} completed"


async def append(s: ImapSession, cmd: p.Command) -> str:
    args: p.Append = cmd.args
    folder = await s.find_folder(args.mailbox)
    if folder is None:
        raise No("No such mailbox", "TRYCREATE")
    messages = []
    for msg in args.messages:
        if not msg.data:
            raise No("An empty message cannot be appended")
        if b"\0" in msg.data and not msg.binary:
            raise No("NUL in message data", "UNKNOWN-CTE")
        meta = await message_meta_async(msg.data)
        date = msg.date.timestamp() if msg.date is not None else None
        messages.append(AppendMessage(msg.data, msg.flags, date, meta))
    store = s.app.store
    try:
        uidvalidity, uids = await store.append_many(s.user, folder.name, messages)
    except NoSuchFolder:
        raise No("No such mailbox", "TRYCREATE") from None
    except QuotaExceeded as e:
        raise No(str(e), "OVERQUOTA") from None
    except KeywordLimit as e:
        raise No(str(e), "LIMIT") from None
    if s.selected is not None and s.selected.name == folder.name:
        s.selected.dirty = True
    return f"OK [APPENDUID {uidvalidity} {p.SequenceSet.of(uids)}] APPEND completed"
