"""SORT and THREAD (RFC 5256) from the stored sort keys: no message body is read.

The keys (:class:`gomail.store.SortRow`) are computed at delivery by
:func:`gomail.imap.meta.message_meta`: base subject, first From/To/Cc mailbox, Date,
Message-ID, In-Reply-To and References.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomail.imap import parser as p
from gomail.imap.search import matching
from gomail.store import SortRow

if TYPE_CHECKING:
    from gomail.imap.session import ImapSession


def _date(row: SortRow) -> float:
    return row.date if row.date is not None else row.internal_date


_KEYS = {
    "ARRIVAL": lambda r: r.internal_date,
    "CC": lambda r: r.sort_cc.upper(),
    "DATE": _date,
    "FROM": lambda r: r.sort_from.upper(),
    "DISPLAYFROM": lambda r: r.sort_from.upper(),
    "SIZE": lambda r: r.size,
    "SUBJECT": lambda r: r.sort_subject.upper(),
    "TO": lambda r: r.sort_to.upper(),
    "DISPLAYTO": lambda r: r.sort_to.upper(),
}


async def _rows(s: ImapSession, indexes: list[int]) -> list[tuple[int, SortRow]]:
    sel = s.selected
    if not indexes:
        return []
    uids = [sel.uids[i] for i in indexes]
    rows = await s.app.store.fetch_sort_keys(s.user, sel.name, range(uids[0], uids[-1] + 1))
    by_uid = {r.uid: r for r in rows}
    return [(i, by_uid[sel.uids[i]]) for i in indexes if sel.uids[i] in by_uid]


def _number(s: ImapSession, uid: bool, i: int) -> int:
    return s.selected.uids[i] if uid else i + 1


async def sort(s: ImapSession, cmd: p.Command) -> str:
    args: p.Sort = cmd.args
    indexes, _ = await matching(s, args.key, args.charset)
    items = await _rows(s, indexes)  # by sequence number: the final tie-breaker
    for crit in reversed(args.criteria):
        key = _KEYS[crit.key]
        items.sort(key=lambda item, key=key: key(item[1]), reverse=crit.reverse)
    numbers = [_number(s, cmd.uid, i) for i, _row in items]
    s.untagged(b"SORT" + b"".join(b" %d" % n for n in numbers))
    return f"OK {'UID ' if cmd.uid else ''}SORT completed"


# --- THREAD -----------------------------------------------------------------------------------


class _Node:
    __slots__ = ("msg", "parent", "children", "row", "index")

    def __init__(self) -> None:
        self.msg = False
        self.parent: _Node | None = None
        self.children: list[_Node] = []
        self.row: SortRow | None = None
        self.index = -1

    def ancestor_of(self, other: _Node) -> bool:
        node = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def link(self, parent: _Node) -> None:
        self.unlink()
        self.parent = parent
        parent.children.append(self)

    def first_row(self) -> tuple[SortRow, int] | None:
        if self.row is not None:
            return self.row, self.index
        for c in self.children:
            found = c.first_row()
            if found is not None:
                return found
        return None


def _sort_key(node: _Node):
    found = node.first_row()
    if found is None:
        return (0.0, 0)
    row, index = found
    return (_date(row), index)


def _sort_tree(nodes: list[_Node]) -> None:
    for n in nodes:
        _sort_tree(n.children)
    nodes.sort(key=_sort_key)


def _fmt(node: _Node, number) -> str:
    kids = node.children
    if node.row is None:
        return "".join("(" + _fmt(c, number) + ")" for c in kids)
    out = str(number(node.index))
    if len(kids) == 1:
        return out + " " + _fmt(kids[0], number)
    if kids:
        return out + " " + "".join("(" + _fmt(c, number) + ")" for c in kids)
    return out


def _references(items: list[tuple[int, SortRow]]) -> list[_Node]:
    table: dict[str, _Node] = {}

    def container(mid: str) -> _Node:
        node = table.get(mid)
        if node is None:
            node = table[mid] = _Node()
        return node

    for index, row in items:
        mid = row.message_id
        if not mid or (mid in table and table[mid].row is not None):
            mid = f"<gomail-{index}>"  # missing or duplicate Message-ID: unique
        node = container(mid)
        node.row, node.index = row, index
        refs = row.references.split() or row.in_reply_to.split()[:1]
        prev = None
        for ref in refs:
            ref_node = container(ref)
            if (
                prev is not None
                and ref_node.parent is None
                and not ref_node.ancestor_of(prev)
                and ref_node is not prev
            ):
                ref_node.link(prev)
            prev = ref_node
        if prev is not None and prev is not node and not node.ancestor_of(prev):
            node.link(prev)
        else:
            node.unlink()
    roots = [n for n in table.values() if n.parent is None]
    roots = _prune(roots, top=True)
    _sort_tree(roots)
    # Group by base subject (step 5).
    subjects: dict[str, _Node] = {}

    def subject_of(n: _Node) -> tuple[str, bool]:
        found = n.first_row() if n.row is None else (n.row, n.index)
        if found is None:
            return "", False
        row = found[0]
        return row.sort_subject.upper(), bool(row.in_reply_to or row.references)

    for n in roots:
        subj, reply = subject_of(n)
        if not subj:
            continue
        old = subjects.get(subj)
        if (
            old is None
            or (old.row is not None and n.row is None)
            or (old.row is not None and n.row is not None and subject_of(old)[1] and not reply)
        ):
            subjects[subj] = n
    out: list[_Node] = []
    for n in roots:
        subj, reply = subject_of(n)
        target = subjects.get(subj) if subj else None
        if target is None or target is n:
            out.append(n)
            continue
        if target.row is None and n.row is None:
            for c in list(n.children):
                c.link(target)
        elif target.row is None or reply and not subject_of(target)[1]:
            n.link(target)
        else:
            dummy = _Node()
            pos = out.index(target) if target in out else -1
            target.link(dummy)
            n.link(dummy)
            subjects[subj] = dummy
            if pos >= 0:
                out[pos] = dummy
            else:
                out.append(dummy)
    _sort_tree(out)
    return out


def _prune(nodes: list[_Node], top: bool) -> list[_Node]:
    out: list[_Node] = []
    for n in nodes:
        n.children = _prune(n.children, top=False)
        for c in n.children:
            c.parent = n
        if n.row is None:
            if not n.children:
                continue
            if not top or len(n.children) == 1:
                for c in n.children:
                    c.parent = n.parent
                out.extend(n.children)
                continue
        out.append(n)
    return out


def _ordered_subject(items: list[tuple[int, SortRow]]) -> list[_Node]:
    groups: dict[str, list[tuple[int, SortRow]]] = {}
    for index, row in items:
        groups.setdefault(row.sort_subject.upper(), []).append((index, row))
    roots = []
    for members in groups.values():
        members.sort(key=lambda m: (_date(m[1]), m[0]))
        nodes = []
        for index, row in members:
            n = _Node()
            n.row, n.index = row, index
            nodes.append(n)
        root = nodes[0]
        for n in nodes[1:]:
            n.parent = root
            root.children.append(n)
        roots.append(root)
    roots.sort(key=_sort_key)
    return roots


async def thread(s: ImapSession, cmd: p.Command) -> str:
    args: p.Thread = cmd.args
    indexes, _ = await matching(s, args.key, args.charset)
    items = await _rows(s, indexes)
    algorithm = _references if args.algorithm == "REFERENCES" else _ordered_subject
    roots = algorithm(items)

    def number(i: int) -> int:
        return _number(s, cmd.uid, i)

    body = "".join("(" + _fmt(r, number) + ")" for r in roots)
    s.untagged(("THREAD " + body) if body else "THREAD")
    return f"OK {'UID ' if cmd.uid else ''}THREAD completed"
