"""The IMAP command parser: IMAP4rev1 (RFC 3501), IMAP4rev2 (RFC 9051) and extensions.

Pure code, no I/O. Whatever bytes arrive, the only exception raised is ``ParseError``, whose
text fits in ``TAG BAD <text>`` (or ``* BAD <text>`` when ``error.tag`` is None, i.e. the tag
itself could not be read); ``error.response()`` builds that line.

How the connection code uses it
-------------------------------
A command is one or more lines with literals between them. The connection reads a line,
hands it to a ``CommandBuffer``, and learns whether a literal follows::

    buf = CommandBuffer(limits)
    while True:
        line = await read_line()            # up to and excluding CRLF (CRLF is also accepted)
        announced = buf.add_line(line)      # ParseError: over-long line, literal too big, ...
        if announced is None:
            break                           # the command is complete
        if not announced.non_synchronizing:
            await write(b"+ Ready\\r\\n")
        buf.add_literal(await read_exactly(announced.size))
    command = buf.parse(utf8=session_utf8)  # a Command, or ParseError

``utf8`` is True once the client ENABLEd UTF8=ACCEPT or IMAP4rev2: mailbox names are then
UTF-8 (not modified UTF-7) and quoted strings may carry UTF-8.

When ``add_line`` rejects an announced literal, ``error.literal`` holds the announcement: for a
synchronizing literal the client sends nothing more, for a non-synchronizing one (LITERAL+)
the connection must skip ``error.literal.size`` bytes or close the connection.

Outside commands: ``sasl_response(line)`` decodes an AUTHENTICATE continuation line (None
for ``*``, the client's cancel) and ``is_done(line)`` recognises the ``DONE`` that ends IDLE.
A line longer than ``limits.max_line`` must be cut off by the reader; the connection then
skips to the next CRLF and answers with the ``ParseError`` that ``add_line`` raises for it.

Lower level: ``literal_announcement(line)`` tells whether a line ends with ``{n}``, ``{n+}``
or ``~{n}``; ``parse_command(parts, utf8=..., limits=...)`` parses a list that alternates line
chunks (bytes, without CRLF) and ``Literal`` objects; ``parse_wire(data)`` parses a command as
it appears on the wire (CRLFs and literals inline; handy for tests and tools).

What comes out
--------------
``Command(tag, name, args, uid)``: ``name`` is the upper-case command name (``UID FETCH`` is
``name="FETCH", uid=True``), ``args`` the per-command dataclass below, or None for commands
without arguments (CAPABILITY, NOOP, LOGOUT, STARTTLS, NAMESPACE, IDLE, UNSELECT, CHECK,
CLOSE). Sequence sets are ``SequenceSet``; search criteria are a tree of ``Search*`` nodes;
FETCH items are ``FetchAttribute`` with an optional ``Section``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as _dt
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gomail.imap import wire

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "Command",
    "CommandBuffer",
    "Compress",
    "CopyMove",
    "Create",
    "Enable",
    "Expunge",
    "Fetch",
    "FetchAttribute",
    "GetQuota",
    "Id",
    "Limits",
    "List",
    "Literal",
    "LiteralAnnouncement",
    "Login",
    "MailboxArg",
    "ParseError",
    "QResync",
    "Rename",
    "Search",
    "SearchAll",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchSeq",
    "SearchSize",
    "SearchText",
    "SearchWithin",
    "Section",
    "Select",
    "SequenceSet",
    "SetQuota",
    "Sort",
    "SortCriterion",
    "Status",
    "Store",
    "Thread",
    "is_done",
    "literal_announcement",
    "parse_command",
    "parse_wire",
    "sasl_response",
]

MAX_NUMBER = 2**32 - 1  # number / nz-number
MAX_NUMBER64 = 2**63 - 1  # number64, mod-sequence-value


# ---------------------------------------------------------------------------------------------
# Errors, limits, literals


class ParseError(Exception):
    """A command that cannot be parsed. ``str(error)`` is the text for ``BAD``.

    ``tag``: the command's tag, or None when it could not be read (answer ``* BAD``).
    ``code``: a response code without brackets (``TOOBIG``, ``BADCHARSET (UTF-8 US-ASCII)``).
    ``status``: ``BAD`` except for the few errors the RFCs answer with ``NO``.
    ``literal``: the rejected literal announcement, when ``CommandBuffer.add_line`` refused one.
    """

    def __init__(
        self,
        message: str,
        *,
        tag: str | None = None,
        code: str | None = None,
        status: str = "BAD",
        literal: LiteralAnnouncement | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.code = code
        self.status = status
        self.literal = literal

    def response(self) -> bytes:
        """``TAG BAD [CODE] text\\r\\n`` (``*`` when there is no tag)."""
        code = f"[{self.code}] " if self.code else ""
        text = self.message
        if text.endswith("}"):  # a client's "{5}" echoed last would announce a literal
            text += "."
        line = f"{self.tag or '*'} {self.status} {code}{text}\r\n"
        return line.encode("ascii", "replace")


@dataclass(frozen=True)
class Limits:
    """Resource limits; every one is checked before the work it bounds is done."""

    max_line: int = 64 * 1024  # one line, without CRLF
    max_literal: int = 64 * 1024  # a literal in any command but APPEND
    max_append: int = 50 * 1024 * 1024  # a message literal in APPEND (APPENDLIMIT)
    max_command: int = 1024 * 1024  # lines plus non-APPEND literals of one command
    max_literals: int = 1000  # literals in one command (MULTIAPPEND messages included)
    max_depth: int = 100  # nesting of parentheses
    max_ranges: int = 10_000  # ranges in one sequence set
    max_search_depth: int = 100  # nesting of search keys (parentheses, NOT, OR)


DEFAULT_LIMITS = Limits()


class LiteralAnnouncement(NamedTuple):
    """What a line ending in ``{n}``, ``{n+}`` or ``~{n}`` announces."""

    size: int
    non_synchronizing: bool
    binary: bool


@dataclass(frozen=True)
class Literal:
    """The bytes of a literal, as read after its announcement."""

    data: bytes
    binary: bool = False


_ANNOUNCEMENT = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\Z")


def literal_announcement(line: bytes) -> LiteralAnnouncement | None:
    """The literal a line announces at its end, or None (a trailing CRLF is ignored)."""
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    m = _ANNOUNCEMENT.search(line)
    if not m:
        return None
    return LiteralAnnouncement(int(m.group(2)), bool(m.group(3)), bool(m.group(1)))


def sasl_response(line: bytes) -> bytes | None:
    """Decode a client line during AUTHENTICATE: the base64 data, or None for ``*`` (cancel).

    Raises ParseError (answer ``TAG BAD``) for anything that is not base64.
    """
    line = line.rstrip(b"\r\n")
    if line == b"*":
        return None
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("Bad base64 in the SASL response") from None


def is_done(line: bytes) -> bool:
    """True for the ``DONE`` line that ends IDLE (any case, CRLF optional)."""
    return line.rstrip(b"\r\n").upper() == b"DONE"


# ---------------------------------------------------------------------------------------------
# Sequence sets


@dataclass(frozen=True)
class SequenceSet:
    """A sequence set as written: ``ranges`` of (first, last), ``None`` standing for ``*``.

    ``saved`` is the SEARCHRES ``$`` (RFC 5182): the connection substitutes the saved result.
    Nothing here materialises a range unless asked to iterate it.
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The compact set of the given numbers (for COPYUID, saved results, ...)."""
        out: list[tuple[int | None, int | None]] = []
        for n in sorted(set(numbers)):
            if out and out[-1][1] == n - 1:
                out[-1] = (out[-1][0], n)
            else:
                out.append((n, n))
        return cls(tuple(out))

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def num(n: int | None) -> str:
            return "*" if n is None else str(n)

        return ",".join(num(a) if a == b else f"{num(a)}:{num(b)}" for a, b in self.ranges)

    @property
    def uses_star(self) -> bool:
        return any(a is None or b is None for a, b in self.ranges)

    def highest_explicit(self) -> int:
        """The largest number written (0 if only ``*``): for the "no such message" check."""
        return max((n for r in self.ranges for n in r if n is not None), default=0)

    def resolve(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, non-overlapping (first, last) ranges within 1..max_value.

        ``*`` is ``max_value``; ``5:*`` with max_value 3 is ``3:5`` and so yields 3 (RFC 3501).
        """
        if self.saved:
            raise ValueError("$ must be replaced by the saved search result first")
        if max_value <= 0:
            return []
        spans: list[tuple[int, int]] = []
        for a, b in self.ranges:
            lo = max_value if a is None else a
            hi = max_value if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            if lo > max_value:
                continue
            spans.append((lo, min(hi, max_value)))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def iter(self, max_value: int) -> Iterator[int]:
        """The numbers in ascending order, each once."""
        for lo, hi in self.resolve(max_value):
            yield from range(lo, hi + 1)

    def expand(self, max_value: int) -> list[int]:
        return list(self.iter(max_value))

    def contains(self, n: int, max_value: int) -> bool:
        """Membership without expanding (the ranges are resolved and bisected)."""
        return self.membership(max_value)(n)

    def membership(self, max_value: int) -> Callable[[int], bool]:
        """A membership test resolved once, for testing many numbers."""
        spans = self.resolve(max_value)
        starts = [lo for lo, _ in spans]

        def test(n: int) -> bool:
            i = bisect.bisect_right(starts, n) - 1
            return i >= 0 and n <= spans[i][1]

        return test


# ---------------------------------------------------------------------------------------------
# Command argument types


@dataclass(frozen=True)
class Command:
    """One parsed command. ``args`` is the per-command dataclass, or None."""

    tag: str
    name: str
    args: Any = None
    uid: bool = False


@dataclass(frozen=True)
class Login:
    username: str
    password: str


@dataclass(frozen=True)
class Authenticate:
    mechanism: str  # upper case
    initial_response: bytes | None = None  # SASL-IR, base64-decoded; "=" is b""


@dataclass(frozen=True)
class Enable:
    capabilities: tuple[str, ...]  # upper case


@dataclass(frozen=True)
class Id:
    parameters: tuple[tuple[str, str | None], ...] | None  # None for ID NIL


@dataclass(frozen=True)
class Compress:
    mechanism: str  # upper case, "DEFLATE"


@dataclass(frozen=True)
class QResync:
    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_set: SequenceSet | None = None  # seq-match-data: message numbers ...
    known_uid_set: SequenceSet | None = None  # ... and their UIDs


@dataclass(frozen=True)
class Select:
    """SELECT and EXAMINE (``readonly``)."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True)
class MailboxArg:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT."""

    mailbox: str


@dataclass(frozen=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # CREATE-SPECIAL-USE: (USE (\Drafts))


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class List:
    """LIST (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE) and LSUB (``lsub``)."""

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    return_options: frozenset[str] = frozenset()  # SUBSCRIBED CHILDREN SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (...))
    extended: bool = False  # selection options, several patterns or RETURN were used
    lsub: bool = False


STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
    }
)


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]  # upper case, in the order asked


@dataclass(frozen=True)
class AppendMessage:
    data: bytes
    flags: tuple[str, ...] = ()
    date: _dt.datetime | None = None
    binary: bool = False  # sent as literal8 (BINARY) -> may contain NUL / 8-bit
    utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855)


@dataclass(frozen=True)
class Append:
    mailbox: str
    messages: tuple[AppendMessage, ...]  # more than one with MULTIAPPEND


@dataclass(frozen=True)
class GetQuota:
    root: str


@dataclass(frozen=True)
class SetQuota:
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper case, limit)


@dataclass(frozen=True)
class Section:
    """A BODY[...] / BINARY[...] section: ``part`` numbers, then an optional ``text`` spec.

    ``text`` is one of HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or None;
    ``headers`` the field names for HEADER.FIELDS[.NOT] as the client spelled them (the
    response echoes them; compare them case-insensitively), duplicates dropped.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()

    def __str__(self) -> str:
        items = [str(p) for p in self.part]
        if self.text:
            items.append(self.text)
        spec = ".".join(items)
        if self.headers:
            spec += " " + wire.paren_list(wire.astring(h) for h in self.headers).decode()
        return spec


@dataclass(frozen=True)
class FetchAttribute:
    """One FETCH item. ``name``: ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE
    RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ BINARY BINARY.SIZE; ``section`` is set for
    ``BODY[...]``, ``BINARY[...]`` and ``BINARY.SIZE[...]`` (plain ``BODY`` has none);
    ``partial`` is ``(origin, length)``."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> str:
        """The item's name in the FETCH response: ``BODY[1.HEADER]<0>`` (no .PEEK, origin
        only)."""
        out = self.name
        if self.section is not None:
            out += f"[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_FETCH = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)


@dataclass(frozen=True)
class Fetch:
    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    changedsince: int | None = None  # CONDSTORE
    vanished: bool = False  # QRESYNC, UID FETCH only


@dataclass(frozen=True)
class Store:
    sequence_set: SequenceSet
    mode: str  # "replace" (FLAGS), "add" (+FLAGS), "remove" (-FLAGS)
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None  # CONDSTORE


@dataclass(frozen=True)
class CopyMove:
    """COPY and MOVE."""

    sequence_set: SequenceSet
    mailbox: str


@dataclass(frozen=True)
class Expunge:
    """EXPUNGE (``sequence_set`` None) and UID EXPUNGE."""

    sequence_set: SequenceSet | None = None


# Search keys ---------------------------------------------------------------------------------


class SearchKey:
    """Base of the search tree nodes."""


@dataclass(frozen=True)
class SearchAll(SearchKey):
    pass


@dataclass(frozen=True)
class SearchAnd(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True)
class SearchOr(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class SearchNot(SearchKey):
    key: SearchKey


@dataclass(frozen=True)
class SearchSeq(SearchKey):
    """A message set (``uid=False``) or UID set."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True)
class SearchFlag(SearchKey):
    """``flag`` set (``present``) or not set: ANSWERED/UNANSWERED ... KEYWORD/UNKEYWORD."""

    flag: str
    present: bool = True


@dataclass(frozen=True)
class SearchDate(SearchKey):
    field: str  # "internal" (BEFORE ON SINCE) or "sent" (SENTBEFORE SENTON SENTSINCE)
    op: str  # "before" "on" "since"
    date: _dt.date


@dataclass(frozen=True)
class SearchSize(SearchKey):
    op: str  # "larger" or "smaller"
    size: int


@dataclass(frozen=True)
class SearchHeader(SearchKey):
    """FROM TO CC BCC SUBJECT and HEADER: ``field`` lower case; empty ``value`` matches any
    message that has the field."""

    field: str
    value: str


@dataclass(frozen=True)
class SearchText(SearchKey):
    where: str  # "body" or "text"
    value: str


@dataclass(frozen=True)
class SearchModSeq(SearchKey):
    modseq: int
    entry: str | None = None  # "/flags/\\seen"
    entry_type: str | None = None  # "priv" "shared" "all"


@dataclass(frozen=True)
class SearchWithin(SearchKey):
    """OLDER / YOUNGER (RFC 5032)."""

    op: str  # "older" or "younger"
    seconds: int


@dataclass(frozen=True)
class Search:
    key: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None  # ESEARCH RETURN (...); None: plain SEARCH


@dataclass(frozen=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True)
class Sort:
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    return_options: tuple[str, ...] | None = None  # ESORT


@dataclass(frozen=True)
class Thread:
    algorithm: str  # ORDEREDSUBJECT or REFERENCES (upper case)
    charset: str
    key: SearchKey


SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO"}) | {
    "DISPLAYFROM",
    "DISPLAYTO",
}
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
CHARSETS = {"US-ASCII": "ascii", "UTF-8": "utf-8", "UTF8": "utf-8", "ISO-8859-1": "latin-1"}


# ---------------------------------------------------------------------------------------------
# The reader: a cursor over line chunks and literals


_ATOM = wire.ATOM_CHARS
_ASTRING = wire.ASTRING_CHARS
_LIST_CHARS = _ASTRING | {ord("%"), ord("*")}
_DIGITS = frozenset(b"0123456789")
_TAG_CHARS = frozenset(c for c in _ASTRING if c != ord("+"))
_SEQ_CHARS = frozenset(b"0123456789:,*$")


def _show(data: bytes, limit: int = 40) -> str:
    """Client data made safe for a response text."""
    text = "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in data[:limit])
    return text + ("..." if len(data) > limit else "")


class _Reader:
    def __init__(self, parts: Sequence[bytes | Literal], limits: Limits, utf8: bool) -> None:
        if not parts or not isinstance(parts[0], bytes):
            raise ParseError("Empty command")
        self.parts = parts
        self.index = 0
        self.buf: bytes = parts[0]
        self.pos = 0
        self.limits = limits
        self.utf8 = utf8

    # -- basics --------------------------------------------------------------------------

    def peek(self) -> int:
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self.index >= len(self.parts) - 1

    def expect_end(self) -> None:
        if not self.at_end():
            raise ParseError(f"Unexpected text after the command: {_show(self.rest())}")

    def rest(self) -> bytes:
        return self.buf[self.pos :]

    def maybe(self, char: bytes) -> bool:
        if self.buf.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def expect(self, char: bytes, what: str | None = None) -> None:
        if not self.maybe(char):
            got = _show(self.rest(), 20) or "end of line"
            raise ParseError(f"Expected {what or repr(char.decode())} at: {got}")

    def sp(self) -> None:
        self.expect(b" ", "a space")

    def maybe_sp(self) -> bool:
        return self.maybe(b" ")

    def run(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        buf = self.buf
        n = len(buf)
        while self.pos < n and buf[self.pos] in allowed:
            self.pos += 1
        return buf[start : self.pos]

    def atom(self, what: str = "an atom") -> bytes:
        data = self.run(_ATOM)
        if not data:
            raise ParseError(f"Expected {what} at: {_show(self.rest(), 20) or 'end of line'}")
        return data

    def keyword(self, what: str = "a keyword") -> str:
        return self.atom(what).decode("ascii").upper()

    def peek_keyword(self) -> str:
        start = self.pos
        data = self.run(_ATOM)
        self.pos = start
        return data.decode("ascii").upper()

    def number(self, *, nonzero: bool = False, limit: int = MAX_NUMBER, what="a number") -> int:
        digits = self.run(_DIGITS)
        if not digits or len(digits) > 20:
            raise ParseError(f"Expected {what} at: {_show(self.rest(), 20) or 'end of line'}")
        value = int(digits)
        if value > limit:
            raise ParseError(f"Number too large: {_show(digits)}")
        if nonzero and value == 0:
            raise ParseError(f"Expected a non-zero {what[2:] if what[:2] == 'a ' else what}")
        return value

    # -- strings ---------------------------------------------------------------------------

    def at_literal(self) -> bool:
        """True if a literal announcement ends this chunk here."""
        if self.pos >= len(self.buf) or self.buf[self.pos] not in b"{~":
            return False
        m = _ANNOUNCEMENT.match(self.buf, self.pos)
        return m is not None and m.end() == len(self.buf)

    def _literal(self) -> tuple[bytes, bool] | None:
        """If a literal announcement ends this chunk here, consume it and the literal."""
        if self.pos >= len(self.buf) or self.buf[self.pos] not in b"{~":
            return None
        m = _ANNOUNCEMENT.match(self.buf, self.pos)
        if not m or m.end() != len(self.buf):
            return None
        if self.index + 1 >= len(self.parts):
            raise ParseError("Literal announced but not sent")
        lit = self.parts[self.index + 1]
        if not isinstance(lit, Literal):
            raise ParseError("Literal announced but not sent")
        if len(lit.data) != int(m.group(2)):
            raise ParseError("Literal size differs from its announcement")
        binary = bool(m.group(1))
        self.index += 2
        nxt = self.parts[self.index] if self.index < len(self.parts) else b""
        if not isinstance(nxt, bytes):
            raise ParseError("Two literals without a line between them")
        self.buf = nxt
        self.pos = 0
        return lit.data, binary

    def quoted(self) -> bytes:
        self.expect(b'"', "a quoted string")
        out = bytearray()
        buf = self.buf
        n = len(buf)
        while True:
            if self.pos >= n:
                raise ParseError("Unterminated quoted string")
            c = buf[self.pos]
            self.pos += 1
            if c == 0x22:  # "
                return bytes(out)
            if c == 0x5C:  # backslash
                if self.pos >= n or buf[self.pos] not in b'"\\':
                    raise ParseError("Bad escape in quoted string")
                out.append(buf[self.pos])
                self.pos += 1
            elif c in (0, 0x0D, 0x0A):
                raise ParseError("NUL, CR or LF in quoted string")
            elif c > 0x7F and not self.utf8:
                raise ParseError("8-bit text in a quoted string: use a literal")
            else:
                out.append(c)

    def string(self, what: str = "a string", *, allow_nul: bool = False) -> bytes:
        """quoted / literal"""
        if self.peek() == 0x22:
            return self.quoted()
        lit = self._literal()
        if lit is None:
            raise ParseError(f"Expected {what} at: {_show(self.rest(), 20) or 'end of line'}")
        data, binary = lit
        if binary:
            raise ParseError("A binary literal is not allowed here")
        if not allow_nul and b"\0" in data:
            raise ParseError("NUL in a literal")
        return data

    def astring(self, what: str = "a string") -> bytes:
        if self.peek() == 0x22 or self.at_literal():
            return self.string(what)
        data = self.run(_ASTRING)
        if not data:
            raise ParseError(f"Expected {what} at: {_show(self.rest(), 20) or 'end of line'}")
        return data

    def nstring_is_nil(self) -> bool:
        """Consume ``NIL`` if it is next."""
        if self.rest()[:3].upper() == b"NIL" and (
            len(self.buf) == self.pos + 3 or self.buf[self.pos + 3] not in _ATOM
        ):
            self.pos += 3
            return True
        return False

    def nstring(self, what: str = "a string") -> bytes | None:
        return None if self.nstring_is_nil() else self.string(what)

    def text(self, data: bytes, what: str = "string") -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"The {what} is not UTF-8") from None

    def mailbox(self) -> str:
        return self._mailbox_name(self.astring("a mailbox name"))

    def _mailbox_name(self, data: bytes) -> str:
        if data.upper() == b"INBOX":
            return "INBOX"
        if self.utf8:
            return self.text(data, "mailbox name")
        try:
            return wire.mutf7_decode(data)
        except ValueError as e:
            raise ParseError(f"Bad mailbox name: {e}") from None

    def list_mailbox(self) -> str:
        if self.peek() == 0x22 or self.at_literal():
            data = self.string("a mailbox pattern")
        else:
            data = self.run(_LIST_CHARS)
            if not data:
                raise ParseError("Expected a mailbox pattern")
        return self._mailbox_name(data)

    def open_paren(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise ParseError("Too many nested parentheses")
        self.expect(b"(", "'('")

    # -- structured values -----------------------------------------------------------------

    def sequence_set(self) -> SequenceSet:
        raw = self.run(_SEQ_CHARS)
        if not raw:
            raise ParseError(f"Expected a sequence set at: {_show(self.rest(), 20)}")
        return _parse_sequence_set(raw, self.limits.max_ranges)

    def flag(self, *, allow_recent: bool = False) -> str:
        backslash = self.maybe(b"\\")
        data = self.atom("a flag")
        name = ("\\" if backslash else "") + data.decode("ascii")
        if backslash and not allow_recent and name.upper() == "\\RECENT":
            raise ParseError("\\Recent cannot be set by a client")
        return wire.canonical_flag(name)

    def flag_list(self, *, allow_recent: bool = False) -> tuple[str, ...]:
        self.expect(b"(", "a flag list")
        flags: list[str] = []
        if not self.maybe(b")"):
            while True:
                flags.append(self.flag(allow_recent=allow_recent))
                if self.maybe(b")"):
                    break
                self.sp()
        return tuple(dict.fromkeys(flags))

    def date(self) -> _dt.date:
        quoted = self.maybe(b'"')
        day = self.number(what="a date (d-Mon-yyyy)")
        self.expect(b"-", "'-' in a date")
        month = wire.month_number(self.run(_ATOM - {ord("-")}))
        if month is None:
            raise ParseError("Bad month in a date")
        self.expect(b"-", "'-' in a date")
        year = self.number(what="a year")
        if quoted:
            self.expect(b'"')
        try:
            return _dt.date(year, month, day)
        except (ValueError, OverflowError):  # a year past the C int: OverflowError
            raise ParseError("Bad date") from None

    def date_time(self) -> _dt.datetime:
        data = self.quoted()
        try:
            return wire.parse_datetime(data)
        except ValueError as e:
            raise ParseError(f"Bad date-time: {e}") from None


def _parse_sequence_set(raw: bytes, max_ranges: int) -> SequenceSet:
    if raw == b"$":
        return SequenceSet(saved=True)
    items = raw.split(b",")
    if len(items) > max_ranges:
        raise ParseError("Too many ranges in a sequence set")

    def num(token: bytes) -> int | None:
        if token == b"*":
            return None
        if not token or not token.isdigit() or token[0] == 0x30 or len(token) > 10:
            raise ParseError(f"Bad sequence set: {_show(raw)}")
        value = int(token)
        if value > MAX_NUMBER:
            raise ParseError(f"Bad sequence set: {_show(raw)}")
        return value

    ranges: list[tuple[int | None, int | None]] = []
    for item in items:
        first, colon, last = item.partition(b":")
        a = num(first)
        ranges.append((a, num(last) if colon else a))
    return SequenceSet(tuple(ranges))


# ---------------------------------------------------------------------------------------------
# Commands


def _no_args(r: _Reader, name: str) -> None:
    return None


def _login(r: _Reader, name: str) -> Login:
    r.sp()
    user = r.text(r.astring("a user name"), "user name")
    r.sp()
    password = r.text(r.astring("a password"), "password")
    return Login(user, password)


def _authenticate(r: _Reader, name: str) -> Authenticate:
    r.sp()
    mechanism = r.keyword("a SASL mechanism")
    initial = None
    if r.maybe_sp():
        raw = r.run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))
        if raw == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ParseError("Bad base64 in the initial response") from None
            if not raw:
                raise ParseError("Expected a base64 initial response")
    return Authenticate(mechanism, initial)


def _enable(r: _Reader, name: str) -> Enable:
    caps: list[str] = []
    while r.maybe_sp():
        caps.append(r.keyword("a capability"))
    if not caps:
        raise ParseError("ENABLE needs at least one capability")
    return Enable(tuple(caps))


def _id(r: _Reader, name: str) -> Id:
    r.sp()
    if r.nstring_is_nil():
        return Id(None)
    r.expect(b"(", "'(' or NIL")
    params: list[tuple[str, str | None]] = []
    if not r.maybe(b")"):
        while True:
            key = r.text(r.string("an ID field name"), "ID field")
            r.sp()
            value = r.nstring("an ID value")
            params.append((key, None if value is None else r.text(value, "ID value")))
            if len(params) > 100:
                raise ParseError("Too many ID fields")
            if r.maybe(b")"):
                break
            r.sp()
    return Id(tuple(params))


def _compress(r: _Reader, name: str) -> Compress:
    r.sp()
    return Compress(r.keyword("a compression mechanism"))


def _select(r: _Reader, name: str) -> Select:
    r.sp()
    mailbox = r.mailbox()
    condstore = False
    qresync = None
    if r.maybe_sp():
        r.expect(b"(", "'(' with SELECT parameters")
        while True:
            param = r.keyword("a SELECT parameter")
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                if qresync is not None:
                    raise ParseError("QRESYNC given twice")
                r.sp()
                qresync = _qresync(r)
            else:
                raise ParseError(f"Unknown SELECT parameter {param[:40]}")
            if r.maybe(b")"):
                break
            r.sp()
    return Select(mailbox, readonly=name == "EXAMINE", condstore=condstore, qresync=qresync)


def _qresync(r: _Reader) -> QResync:
    r.expect(b"(", "'(' after QRESYNC")
    uidvalidity = r.number(nonzero=True, what="a UIDVALIDITY")
    r.sp()
    modseq = r.number(limit=MAX_NUMBER64, what="a mod-sequence")
    known_uids = seqs = uids = None
    if r.maybe_sp():
        if r.peek() != ord("("):
            known_uids = r.sequence_set()
            if known_uids.saved:
                raise ParseError("$ is not allowed in QRESYNC")
            r.maybe_sp()
        if r.maybe(b"("):
            seqs = r.sequence_set()
            r.sp()
            uids = r.sequence_set()
            r.expect(b")")
            if seqs.saved or uids.saved:
                raise ParseError("$ is not allowed in QRESYNC")
    r.expect(b")")
    return QResync(uidvalidity, modseq, known_uids, seqs, uids)


def _mailbox_arg(r: _Reader, name: str) -> MailboxArg:
    r.sp()
    return MailboxArg(r.mailbox())


def _create(r: _Reader, name: str) -> Create:
    r.sp()
    mailbox = r.mailbox()
    uses: tuple[str, ...] = ()
    if r.maybe_sp():
        r.expect(b"(", "'(' with CREATE parameters")
        while True:
            param = r.keyword("a CREATE parameter")
            if param != "USE":
                raise ParseError(f"Unknown CREATE parameter {param[:40]}")
            r.sp()
            uses = r.flag_list(allow_recent=False)
            if any(not u.startswith("\\") for u in uses):
                raise ParseError("Special-use attributes start with a backslash")
            if r.maybe(b")"):
                break
            r.sp()
    return Create(mailbox, uses)


def _rename(r: _Reader, name: str) -> Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


def _list(r: _Reader, name: str) -> List:
    lsub = name == "LSUB"
    extended = False
    selection: set[str] = set()
    r.sp()
    if not lsub and r.peek() == ord("("):
        extended = True
        r.expect(b"(")
        if not r.maybe(b")"):
            while True:
                opt = r.keyword("a LIST selection option")
                if opt not in _LIST_SELECT:
                    raise ParseError(f"Unknown LIST selection option {opt[:40]}")
                selection.add(opt)
                if r.maybe(b")"):
                    break
                r.sp()
        if selection == {"RECURSIVEMATCH"} or selection == {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
        r.sp()
    reference = r._mailbox_name(r.astring("a reference name"))
    r.sp()
    patterns: list[str] = []
    if not lsub and r.peek() == ord("("):
        extended = True
        r.expect(b"(")
        while True:
            patterns.append(r.list_mailbox())
            if len(patterns) > 1000:
                raise ParseError("Too many LIST patterns")
            if r.maybe(b")"):
                break
            r.sp()
    else:
        patterns.append(r.list_mailbox())
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if not lsub and r.maybe_sp():
        if r.keyword("RETURN") != "RETURN":
            raise ParseError("Expected RETURN")
        extended = True
        r.sp()
        r.expect(b"(")
        if not r.maybe(b")"):
            while True:
                opt = r.keyword("a LIST return option")
                if opt not in _LIST_RETURN:
                    raise ParseError(f"Unknown LIST return option {opt[:40]}")
                returns.add(opt)
                if opt == "STATUS":
                    r.sp()
                    status_items = _status_items(r)
                if r.maybe(b")"):
                    break
                r.sp()
    return List(
        reference,
        tuple(patterns),
        frozenset(selection),
        frozenset(returns),
        status_items,
        extended,
        lsub,
    )


def _status_items(r: _Reader) -> tuple[str, ...]:
    r.expect(b"(", "'(' with status items")
    items: list[str] = []
    while True:
        item = r.keyword("a status item")
        if item not in STATUS_ITEMS:
            raise ParseError(f"Unknown status item {item[:40]}")
        items.append(item)
        if r.maybe(b")"):
            break
        r.sp()
    return tuple(dict.fromkeys(items))


def _status(r: _Reader, name: str) -> Status:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return Status(mailbox, _status_items(r))


def _append(r: _Reader, name: str) -> Append:
    r.sp()
    mailbox = r.mailbox()
    messages: list[AppendMessage] = []
    while r.maybe_sp():
        flags: tuple[str, ...] = ()
        date = None
        if r.peek() == ord("("):
            flags = r.flag_list()
            r.sp()
        if r.peek() == ord('"'):
            date = r.date_time()
            r.sp()
        utf8 = False
        if r.rest()[:4].upper() == b"UTF8":
            r.pos += 4
            r.sp()
            r.expect(b"(", "'(' after UTF8")
            utf8 = True
        lit = r._literal()
        if lit is None:
            raise ParseError("Expected the message as a literal")
        data, binary = lit
        if utf8:
            if not binary:
                raise ParseError("UTF8 APPEND data is a literal8 (~{n})")
            r.expect(b")")
        messages.append(AppendMessage(data, flags, date, binary, utf8))
    if not messages:
        raise ParseError("APPEND needs a message")
    return Append(mailbox, tuple(messages))


def _getquota(r: _Reader, name: str) -> GetQuota:
    r.sp()
    return GetQuota(r.text(r.astring("a quota root"), "quota root"))


def _setquota(r: _Reader, name: str) -> SetQuota:
    r.sp()
    root = r.text(r.astring("a quota root"), "quota root")
    r.sp()
    r.expect(b"(", "'(' with quota limits")
    limits: list[tuple[str, int]] = []
    if not r.maybe(b")"):
        while True:
            resource = r.keyword("a quota resource")
            r.sp()
            limits.append((resource, r.number(limit=MAX_NUMBER64, what="a quota limit")))
            if r.maybe(b")"):
                break
            r.sp()
    return SetQuota(root, tuple(limits))


def _copy_move(r: _Reader, name: str) -> CopyMove:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    return CopyMove(seqset, r.mailbox())


def _expunge(r: _Reader, name: str) -> Expunge:
    return Expunge()


def _uid_expunge(r: _Reader, name: str) -> Expunge:
    r.sp()
    return Expunge(r.sequence_set())


def _store(r: _Reader, name: str) -> Store:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    unchangedsince = None
    if r.maybe(b"("):
        if r.keyword("UNCHANGEDSINCE") != "UNCHANGEDSINCE":
            raise ParseError("Unknown STORE modifier")
        r.sp()
        unchangedsince = r.number(limit=MAX_NUMBER64, what="a mod-sequence")
        r.expect(b")")
        r.sp()
    mode = "add" if r.maybe(b"+") else "remove" if r.maybe(b"-") else "replace"
    item = r.keyword("FLAGS")
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError(f"Unknown STORE item {item[:40]}")
    r.sp()
    if r.peek() == ord("("):
        flags = r.flag_list()
    else:
        items = [r.flag()]
        while r.maybe_sp():
            items.append(r.flag())
        flags = tuple(dict.fromkeys(items))
    return Store(seqset, mode, flags, item == "FLAGS.SILENT", unchangedsince)


# FETCH ---------------------------------------------------------------------------------------

_FETCH_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_SECTION_CHARS = _FETCH_NAME_CHARS


def _section(r: _Reader, binary: bool) -> Section:
    r.expect(b"[")
    spec = r.run(_SECTION_CHARS).decode("ascii").upper()
    items = spec.split(".") if spec else []
    part: list[int] = []
    while items and items[0].isdigit():
        token = items.pop(0)
        if token[0] == "0" or len(token) > 10 or int(token) > MAX_NUMBER:
            raise ParseError(f"Bad section part {token[:12]}")
        part.append(int(token))
        if len(part) > r.limits.max_depth:
            raise ParseError("Section part too deep")
    text = ".".join(items) or None
    headers: tuple[str, ...] = ()
    if spec and not all(spec.split(".")):
        raise ParseError("Bad section")
    if text is not None:
        if binary:
            raise ParseError("BINARY sections take part numbers only")
        if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
            raise ParseError(f"Bad section {text[:40]}")
        if text == "MIME" and not part:
            raise ParseError("MIME needs a part number")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            r.expect(b"(", "'(' with header field names")
            names: list[str] = []
            while True:
                raw = r.astring("a header field name")
                try:
                    field_name = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise ParseError("Header field names are ASCII") from None
                if not field_name or any(c in field_name for c in ": \t\r\n\0"):
                    raise ParseError("Bad header field name")
                names.append(field_name)
                if r.maybe(b")"):
                    break
                r.sp()
            first: dict[str, str] = {}
            for n in names:
                first.setdefault(n.upper(), n)
            headers = tuple(first.values())
    r.expect(b"]", "']' ending the section")
    return Section(tuple(part), text, headers)


def _fetch_attribute(r: _Reader) -> FetchAttribute:
    raw = r.run(_FETCH_NAME_CHARS)
    name = raw.decode("ascii").upper()
    if not name:
        raise ParseError(f"Expected a FETCH item at: {_show(r.rest(), 20) or 'end of line'}")
    if r.peek() == ord("["):
        peek = False
        if name == "BODY.PEEK":
            name, peek = "BODY", True
        elif name == "BINARY.PEEK":
            name, peek = "BINARY", True
        elif name not in ("BODY", "BINARY", "BINARY.SIZE"):
            raise ParseError(f"Unknown FETCH item {name[:40]}")
        section = _section(r, binary=name != "BODY")
        partial = None
        if r.maybe(b"<"):
            if name == "BINARY.SIZE":
                raise ParseError("BINARY.SIZE takes no partial range")
            origin = r.number(limit=MAX_NUMBER64, what="a partial origin")
            r.expect(b".", "'.' in a partial range")
            length = r.number(nonzero=True, limit=MAX_NUMBER64, what="a partial length")
            r.expect(b">")
            partial = (origin, length)
        return FetchAttribute(name, section, partial, peek)
    if name in _SIMPLE_FETCH:
        return FetchAttribute(name)
    raise ParseError(f"Unknown FETCH item {name[:40]}")


def _fetch(r: _Reader, name: str, uid: bool = False) -> Fetch:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    attrs: list[FetchAttribute] = []
    if r.maybe(b"("):
        while True:
            attrs.append(_fetch_attribute(r))
            if len(attrs) > 1000:
                raise ParseError("Too many FETCH items")
            if r.maybe(b")"):
                break
            r.sp()
    else:
        macro = r.peek_keyword()
        if macro in FETCH_MACROS and r.buf[r.pos + len(macro) : r.pos + len(macro) + 1] != b".":
            r.pos += len(macro)
            attrs = [FetchAttribute(n) for n in FETCH_MACROS[macro]]
        else:
            attrs.append(_fetch_attribute(r))
    changedsince = None
    vanished = False
    if r.maybe_sp():
        r.expect(b"(", "'(' with FETCH modifiers")
        while True:
            mod = r.keyword("a FETCH modifier")
            if mod == "CHANGEDSINCE":
                r.sp()
                changedsince = r.number(limit=MAX_NUMBER64, what="a mod-sequence")
            elif mod == "VANISHED":
                if not uid:
                    raise ParseError("VANISHED needs UID FETCH")
                vanished = True
            else:
                raise ParseError(f"Unknown FETCH modifier {mod[:40]}")
            if r.maybe(b")"):
                break
            r.sp()
        if vanished and changedsince is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")
    return Fetch(seqset, tuple(dict.fromkeys(attrs)), changedsince, vanished)


# SEARCH, SORT, THREAD ------------------------------------------------------------------------

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_DATE_KEYS = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}
_HEADER_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT"})


class _SearchParser:
    def __init__(self, r: _Reader, charset: str | None) -> None:
        self.r = r
        self.codec = "utf-8" if charset is None else CHARSETS[charset]
        self.explicit_charset = charset is not None

    def value(self, what: str) -> str:
        # After an explicit CHARSET, clients (iOS Mail among them) put 8-bit text in quoted
        # strings as well as in literals; it is decoded with that charset.
        saved, self.r.utf8 = self.r.utf8, self.r.utf8 or self.explicit_charset
        try:
            data = self.r.astring(what)
        finally:
            self.r.utf8 = saved
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError:
            raise ParseError(f"The {what} is not in the given charset") from None

    def keys(self) -> SearchKey:
        """1*(search-key) separated by spaces, to the end of the command."""
        keys = [self.key(0)]
        while self.r.maybe_sp():
            keys.append(self.key(0))
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))

    def key(self, depth: int) -> SearchKey:
        r = self.r
        if depth > r.limits.max_search_depth:
            raise ParseError("Search keys nested too deeply")
        c = r.peek()
        if c == ord("("):
            r.open_paren(depth)
            keys = [self.key(depth + 1)]
            while not r.maybe(b")"):
                r.sp()
                keys.append(self.key(depth + 1))
            return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
        if c in _SEQ_CHARS:
            return SearchSeq(r.sequence_set())
        name = r.keyword("a search key")
        if name == "ALL":
            return SearchAll()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return SearchFlag(flag, present)
        if name == "NEW":
            return SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))
        if name in ("KEYWORD", "UNKEYWORD"):
            r.sp()
            return SearchFlag(r.flag(allow_recent=True), name == "KEYWORD")
        if name == "NOT":
            r.sp()
            return SearchNot(self.key(depth + 1))
        if name == "OR":
            r.sp()
            left = self.key(depth + 1)
            r.sp()
            return SearchOr(left, self.key(depth + 1))
        if name in _DATE_KEYS:
            r.sp()
            where, op = _DATE_KEYS[name]
            return SearchDate(where, op, r.date())
        if name in ("LARGER", "SMALLER"):
            r.sp()
            return SearchSize(name.lower(), r.number(limit=MAX_NUMBER64, what="a size"))
        if name in _HEADER_KEYS:
            r.sp()
            return SearchHeader(name.lower(), self.value("search string"))
        if name == "HEADER":
            r.sp()
            field_name = self.value("header field name")
            if not field_name.isascii() or any(ch in field_name for ch in ": \t\r\n\0"):
                raise ParseError("Bad header field name")
            r.sp()
            return SearchHeader(field_name.lower(), self.value("search string"))
        if name in ("BODY", "TEXT"):
            r.sp()
            return SearchText(name.lower(), self.value("search string"))
        if name == "UID":
            r.sp()
            return SearchSeq(r.sequence_set(), uid=True)
        if name in ("OLDER", "YOUNGER"):
            r.sp()
            return SearchWithin(name.lower(), r.number(nonzero=True, what="a number of seconds"))
        if name == "MODSEQ":
            r.sp()
            entry = entry_type = None
            if r.peek() == ord('"') or r.at_literal():
                raw = r.string("a metadata entry name")
                entry = r.text(raw, "entry name").lower()
                r.sp()
                entry_type = r.keyword("an entry type").lower()
                if entry_type not in ("priv", "shared", "all"):
                    raise ParseError("Entry type is priv, shared or all")
                r.sp()
            modseq = r.number(limit=MAX_NUMBER64, what="a mod-sequence")
            return SearchModSeq(modseq, entry, entry_type)
        raise ParseError(f"Unknown search key {name[:40]}")


def _return_options(r: _Reader, allowed: frozenset[str]) -> tuple[str, ...]:
    r.sp()
    r.expect(b"(", "'(' after RETURN")
    opts: list[str] = []
    if not r.maybe(b")"):
        while True:
            opt = r.keyword("a RETURN option")
            if opt not in allowed:
                raise ParseError(f"Unknown RETURN option {opt[:40]}")
            opts.append(opt)
            if r.maybe(b")"):
                break
            r.sp()
    return tuple(dict.fromkeys(opts))


def _charset(r: _Reader) -> str:
    raw = r.astring("a charset")
    name = raw.decode("ascii", "replace").upper()
    if name not in CHARSETS:
        raise ParseError("Unsupported charset", code="BADCHARSET (US-ASCII UTF-8)", status="NO")
    return name


def _search(r: _Reader, name: str) -> Search:
    r.sp()
    return_options = None
    if r.peek_keyword() == "RETURN":
        r.keyword()
        return_options = _return_options(r, SEARCH_RETURN)
        r.sp()
    charset = None
    if r.peek_keyword() == "CHARSET":
        r.keyword()
        r.sp()
        charset = _charset(r)
        r.sp()
    key = _SearchParser(r, charset).keys()
    return Search(key, charset, return_options)


def _sort(r: _Reader, name: str) -> Sort:
    r.sp()
    return_options = None
    if r.peek_keyword() == "RETURN":
        r.keyword()
        return_options = _return_options(r, SEARCH_RETURN)
        r.sp()
    r.expect(b"(", "'(' with sort criteria")
    criteria: list[SortCriterion] = []
    while True:
        reverse = False
        key = r.keyword("a sort key")
        if key == "REVERSE":
            r.sp()
            reverse = True
            key = r.keyword("a sort key")
        if key not in SORT_KEYS:
            raise ParseError(f"Unknown sort key {key[:40]}")
        criteria.append(SortCriterion(key, reverse))
        if len(criteria) > 100:
            raise ParseError("Too many sort keys")
        if r.maybe(b")"):
            break
        r.sp()
    r.sp()
    charset = _charset(r)
    r.sp()
    return Sort(tuple(criteria), charset, _SearchParser(r, charset).keys(), return_options)


def _thread(r: _Reader, name: str) -> Thread:
    r.sp()
    algorithm = r.keyword("a thread algorithm")
    if algorithm not in THREAD_ALGORITHMS:
        raise ParseError(f"Unknown thread algorithm {algorithm[:40]}")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Thread(algorithm, charset, _SearchParser(r, charset).keys())


_COMMANDS = {
    "CAPABILITY": _no_args,
    "NOOP": _no_args,
    "LOGOUT": _no_args,
    "STARTTLS": _no_args,
    "NAMESPACE": _no_args,
    "IDLE": _no_args,
    "UNSELECT": _no_args,
    "CHECK": _no_args,
    "CLOSE": _no_args,
    "EXPUNGE": _expunge,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "COMPRESS": _compress,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox_arg,
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_arg,
    "UNSUBSCRIBE": _mailbox_arg,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _mailbox_arg,
    "SETQUOTA": _setquota,
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move,
    "MOVE": _copy_move,
}
_UID_COMMANDS = {
    "COPY": _copy_move,
    "MOVE": _copy_move,
    "FETCH": lambda r, name: _fetch(r, name, uid=True),
    "STORE": _store,
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "EXPUNGE": _uid_expunge,
}
COMMAND_NAMES = frozenset(_COMMANDS)


def _read_tag(r: _Reader) -> str:
    tag = r.run(_TAG_CHARS)
    if not tag:
        raise ParseError("Missing or bad tag")
    if r.peek() not in (ord(" "), -1):
        raise ParseError("Bad character in the tag")
    return tag.decode("ascii")


def parse_command(
    parts: Sequence[bytes | Literal] | bytes,
    *,
    utf8: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Command:
    """Parse one command: line chunks (bytes, without CRLF) alternating with ``Literal``s.

    A single bytes object is a command without literals. Raises only ``ParseError``.
    """
    if isinstance(parts, bytes):
        parts = [parts]
    r = _Reader(parts, limits, utf8)
    if not r.buf:
        raise ParseError("Empty command")
    tag = _read_tag(r)
    try:
        r.expect(b" ", "a space after the tag")
        name = r.keyword("a command name")
        uid = False
        if name == "UID":
            uid = True
            r.sp()
            name = r.keyword("a command after UID")
            handler = _UID_COMMANDS.get(name)
            if handler is None:
                raise ParseError(f"Unknown UID command {name[:40]}")
        else:
            handler = _COMMANDS.get(name)
            if handler is None:
                raise ParseError(f"Unknown command {name[:40]}")
        args = handler(r, name)
        r.expect_end()
    except ParseError as e:
        e.tag = tag
        raise
    except RecursionError:
        raise ParseError("Command nested too deeply", tag=tag) from None
    return Command(tag, name, args, uid)


# ---------------------------------------------------------------------------------------------
# Assembling a command from lines and literals


@dataclass
class CommandBuffer:
    """Collects the lines and literals of one command (see the module docstring)."""

    limits: Limits = DEFAULT_LIMITS
    parts: list[bytes | Literal] = field(default_factory=list)
    size: int = 0
    tag: str | None = None
    name: str | None = None
    expecting: LiteralAnnouncement | None = None

    def _error(self, message: str, **kw: Any) -> ParseError:
        return ParseError(message, tag=self.tag, **kw)

    def add_line(self, line: bytes) -> LiteralAnnouncement | None:
        """Add a line (CRLF optional); returns the literal it announces, if any."""
        if self.expecting is not None:
            raise self._error("A literal was expected, not a line")
        if line.endswith(b"\r\n"):
            line = line[:-2]
        elif line.endswith(b"\n"):
            line = line[:-1]
        if not self.parts:
            self._read_name(line)
        if len(line) > self.limits.max_line:
            raise self._error("Line too long")
        self.size += len(line)
        if self.size > self.limits.max_command:
            raise self._error("Command too long")
        self.parts.append(line)
        announced = literal_announcement(line)
        if announced is None:
            return None
        literals = len(self.parts) // 2 + 1
        limit = self.limits.max_append if self.name == "APPEND" else self.limits.max_literal
        if announced.size > limit:
            if self.name == "APPEND":  # RFC 7889: NO [TOOBIG]
                raise self._error(
                    f"Message over the APPENDLIMIT of {limit} bytes",
                    code="TOOBIG",
                    status="NO",
                    literal=announced,
                )
            raise self._error("Literal too big", literal=announced)
        if literals > self.limits.max_literals:
            raise self._error("Too many literals", literal=announced)
        if self.name != "APPEND":
            self.size += announced.size
            if self.size > self.limits.max_command:
                raise self._error("Command too long", literal=announced)
        self.expecting = announced
        return announced

    def add_literal(self, data: bytes) -> None:
        """Add the bytes of the literal that the last line announced."""
        if self.expecting is None or len(data) != self.expecting.size:
            raise self._error("Literal size differs from its announcement")
        self.parts.append(Literal(data, self.expecting.binary))
        self.expecting = None

    def parse(self, *, utf8: bool = False) -> Command:
        if self.expecting is not None:
            raise self._error("The command is not complete")
        return parse_command(self.parts, utf8=utf8, limits=self.limits)

    def _read_name(self, line: bytes) -> None:
        tag, _, rest = line.partition(b" ")
        if tag and all(c in _TAG_CHARS for c in tag):
            self.tag = tag.decode("ascii")
            name, _, rest = rest.partition(b" ")
            self.name = name.decode("ascii", "replace").upper()
            if self.name == "UID":
                self.name = "UID " + rest.partition(b" ")[0].decode("ascii", "replace").upper()


def parse_wire(data: bytes, *, utf8: bool = False, limits: Limits = DEFAULT_LIMITS) -> Command:
    """Parse a command as sent on the wire: lines ending in CRLF with literals inline.

    The final CRLF is optional. Raises only ``ParseError`` (also for data after the command).
    """
    buf = CommandBuffer(limits)
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        pos = len(data) if end < 0 else end + 2
        announced = buf.add_line(line)
        if announced is None:
            break
        if len(data) - pos < announced.size:
            raise ParseError("Literal shorter than announced", tag=buf.tag)
        buf.add_literal(data[pos : pos + announced.size])
        pos += announced.size
    if pos < len(data):
        raise ParseError("Data after the end of the command", tag=buf.tag)
    return buf.parse(utf8=utf8)
