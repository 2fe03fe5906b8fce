"""Hypothesis strategies for IMAP commands as a client could write them, and a checker for
the response lines the server sends back."""

from __future__ import annotations

import re

from gomail.imap import wire
from hypothesis import strategies as st

ATOM_ALPHABET = "".join(chr(c) for c in sorted(wire.ATOM_CHARS))

atoms = st.text(ATOM_ALPHABET, min_size=1, max_size=10).map(str.encode)
tags = st.one_of(
    st.sampled_from([b"a1", b"A001", b"t.2", b"x"]), atoms.filter(lambda t: b"+" not in t)
)
_EDGE_NUMBERS = (0, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 10**25)
numbers = st.tuples(st.integers(0, 15), st.integers(1, 20), st.sampled_from(_EDGE_NUMBERS)).map(
    lambda t: str(t[2] if t[0] == 0 else t[1]).encode()  # an edge case one time in 16
)


_QUOTABLE = st.characters(codec="utf-8")


@st.composite
def quoted(draw) -> bytes:
    text = draw(st.text(_QUOTABLE, max_size=12)).encode("utf-8")
    if draw(st.booleans()):
        text = text.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + text + b'"'


@st.composite
def literal(draw) -> bytes:
    data = draw(st.binary(max_size=24))
    prefix = draw(st.sampled_from([b"", b"", b"~"]))
    plus = draw(st.sampled_from([b"", b"+"]))
    size = len(data)
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.integers(0, 40))  # a lie the parser must catch
    return prefix + b"{%d%s}\r\n" % (size, plus) + data


def strings() -> st.SearchStrategy[bytes]:
    return st.one_of(atoms, quoted(), literal(), st.just(b"NIL"), st.just(b'""'))


@st.composite
def sequence_sets(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return b"$"
    item = st.one_of(numbers, st.just(b"*"))
    ranges = draw(
        st.lists(
            st.one_of(item, st.tuples(item, item).map(lambda ab: ab[0] + b":" + ab[1])),
            min_size=1,
            max_size=5,
        )
    )
    return b",".join(ranges)


def paren(items: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(items, max_size=4).map(lambda xs: b"(" + b" ".join(xs) + b")")


nested = st.recursive(
    st.one_of(atoms, quoted(), literal(), numbers, sequence_sets()), paren, max_leaves=12
)

_HEADER_NAMES = st.sampled_from([b"Subject", b"FROM", b"x-a", b'"To"', b"{4}\r\nDate"])
sections = st.one_of(
    st.sampled_from(
        [b"", b"HEADER", b"TEXT", b"1", b"1.2", b"1.2.MIME", b"2.HEADER", b"0", b"1..2"]
    ),
    st.lists(numbers, min_size=1, max_size=4).map(b".".join),
    st.tuples(
        st.sampled_from([b"HEADER.FIELDS", b"1.HEADER.FIELDS.NOT", b"HEADER.FIELDS"]),
        st.lists(_HEADER_NAMES, min_size=0, max_size=3),
    ).map(lambda t: t[0] + b" (" + b" ".join(t[1]) + b")"),
)
partials = st.one_of(
    st.just(b""),
    st.tuples(numbers, numbers).map(lambda t: b"<" + t[0] + b"." + t[1] + b">"),
    st.just(b"<1>"),
)
fetch_items = st.one_of(
    st.sampled_from(
        [
            b"FLAGS",
            b"UID",
            b"ENVELOPE",
            b"BODYSTRUCTURE",
            b"BODY",
            b"RFC822.SIZE",
            b"RFC822",
            b"RFC822.HEADER",
            b"INTERNALDATE",
            b"MODSEQ",
            b"ALL",
            b"FAST",
            b"FULL",
            b"BINARY.SIZE[1]",
            b"X-GM-MSGID",
        ]
    ),  # fmt: skip
    st.tuples(
        st.sampled_from([b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"]),
        sections,
        partials,
    ).map(lambda t: t[0] + b"[" + t[1] + b"]" + t[2]),
)
fetch_args = st.one_of(
    fetch_items,
    st.lists(fetch_items, min_size=0, max_size=5).map(lambda xs: b"(" + b" ".join(xs) + b")"),
)
dates = st.one_of(
    st.sampled_from([b"1-Jan-2020", b'"31-Feb-2020"', b"99-Foo-1", b"1-Jan-0", b"01-jAN-9999"]),
    st.tuples(numbers, st.sampled_from([b"Jan", b"Dec", b"X"]), numbers).map(b"-".join),
)


def _search_key(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        inner.map(lambda k: b"NOT " + k),
        st.tuples(inner, inner).map(lambda t: b"OR " + t[0] + b" " + t[1]),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: b"(" + b" ".join(xs) + b")"),
    )


search_keys = st.recursive(
    st.one_of(
        st.sampled_from(
            [b"ALL", b"SEEN", b"UNSEEN", b"NEW", b"OLD", b"DELETED", b"RECENT", b"DRAFT"]
        ),
        sequence_sets(),
        sequence_sets().map(lambda s: b"UID " + s),
        st.tuples(
            st.sampled_from([b"FROM", b"TO", b"SUBJECT", b"BODY", b"TEXT", b"CC", b"BCC"]),
            strings(),
        ).map(b" ".join),
        st.tuples(strings(), strings()).map(lambda t: b"HEADER " + t[0] + b" " + t[1]),
        st.tuples(st.sampled_from([b"BEFORE", b"SINCE", b"ON", b"SENTON"]), dates).map(b" ".join),
        st.tuples(st.sampled_from([b"LARGER", b"SMALLER", b"OLDER", b"YOUNGER"]), numbers).map(
            b" ".join
        ),
        st.tuples(st.sampled_from([b"KEYWORD", b"UNKEYWORD"]), atoms).map(b" ".join),
        numbers.map(lambda n: b"MODSEQ " + n),
        atoms,
    ),
    _search_key,
    max_leaves=10,
)
search_args = st.tuples(
    st.sampled_from([b"", b"RETURN (MIN MAX) ", b"RETURN () ", b"RETURN (SAVE COUNT ALL) "]),
    st.sampled_from([b"", b"CHARSET UTF-8 ", b"CHARSET US-ASCII ", b"CHARSET KOI8-R "]),
    search_keys,
).map(b"".join)
flags = st.one_of(
    st.sampled_from([b"\\Seen", b"\\Deleted", b"\\Recent", b"\\Flagged", b"$Junk", b"\\*"]), atoms
)
flag_lists = st.lists(flags, max_size=4).map(lambda xs: b"(" + b" ".join(xs) + b")")
mailboxes = st.one_of(
    st.sampled_from([b"INBOX", b"inbox", b'"Sent"', b"Gr&APw-n", b"&-", b"&Jjo", b"a/b/c"]),
    strings(),
)


def _cmd(name: bytes, *parts: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(*parts).map(lambda xs: b" ".join((name, *xs)) if xs else name)


commands = st.one_of(
    st.sampled_from(
        [b"NOOP", b"CAPABILITY", b"CHECK", b"EXPUNGE", b"UNSELECT", b"NAMESPACE", b"CLOSE"]
    ),
    _cmd(b"FETCH", sequence_sets(), fetch_args),
    _cmd(
        b"UID FETCH",
        sequence_sets(),
        fetch_args,
        st.sampled_from([b"", b"(CHANGEDSINCE 1 VANISHED)"]),
    ),
    _cmd(b"FETCH", sequence_sets(), fetch_args, st.just(b"(CHANGEDSINCE 5)")),
    _cmd(b"SEARCH", search_args),
    _cmd(b"UID SEARCH", search_args),
    _cmd(
        b"SORT",
        st.sampled_from([b"(DATE)", b"(REVERSE SUBJECT FROM)", b"()"]),
        st.sampled_from([b"UTF-8", b"X"]),
        search_keys,
    ),
    _cmd(
        b"THREAD",
        st.sampled_from([b"REFERENCES", b"ORDEREDSUBJECT", b"X"]),
        st.just(b"UTF-8"),
        search_keys,
    ),
    _cmd(
        b"STORE",
        sequence_sets(),
        st.sampled_from([b"+FLAGS", b"-FLAGS.SILENT", b"FLAGS", b"(UNCHANGEDSINCE 3) FLAGS"]),
        st.one_of(flag_lists, flags),
    ),
    _cmd(b"UID STORE", sequence_sets(), st.just(b"+FLAGS"), flag_lists),
    _cmd(b"COPY", sequence_sets(), mailboxes),
    _cmd(b"UID MOVE", sequence_sets(), mailboxes),
    _cmd(b"UID EXPUNGE", sequence_sets()),
    _cmd(b"SELECT", mailboxes),
    _cmd(
        b"EXAMINE",
        mailboxes,
        st.sampled_from(
            [b"(CONDSTORE)", b"(QRESYNC (1 2 1:5))", b"(QRESYNC (1 2 1:5 (1,3 4,9)))", b"(X)"]
        ),
    ),
    _cmd(b"STATUS", mailboxes, st.sampled_from([b"(MESSAGES UNSEEN)", b"(SIZE)", b"()", b"(X)"])),
    _cmd(b"CREATE", mailboxes),
    _cmd(b"CREATE", mailboxes, st.sampled_from([b"(USE (\\Drafts))", b"(USE (x))"])),
    _cmd(b"RENAME", mailboxes, mailboxes),
    _cmd(b"DELETE", mailboxes),
    _cmd(b"SUBSCRIBE", mailboxes),
    _cmd(
        b"APPEND",
        mailboxes,
        st.one_of(st.just(b""), flag_lists),
        st.sampled_from([b"", b'"01-Jan-2020 10:00:00 +0100"', b'"bad"']),
        literal(),
    ),
    _cmd(b"ENABLE", st.lists(atoms, min_size=0, max_size=3).map(b" ".join)),
    _cmd(b"ID", st.one_of(st.just(b"NIL"), paren(strings()))),
    _cmd(b"LOGIN", strings(), strings()),
    _cmd(
        b"AUTHENTICATE",
        st.sampled_from([b"PLAIN", b"PLAIN =", b"PLAIN AGFsaWNlAHB3", b"PLAIN !!", b"X"]),
    ),
    _cmd(b"GETQUOTAROOT", mailboxes),
    _cmd(b"SETQUOTA", strings(), st.sampled_from([b"(STORAGE 10)", b"()", b"(STORAGE x)"])),
    _cmd(b"COMPRESS", atoms),
    _cmd(b"XUNKNOWN", nested),
    st.tuples(
        st.sampled_from([b"FETCH", b"SEARCH", b"STORE", b"UID", b"LIST"]),
        st.lists(nested, max_size=4),
    ).map(lambda t: b" ".join((t[0], *t[1]))),
)


@st.composite
def mutated(draw, base: st.SearchStrategy[bytes]) -> bytes:
    """A command, sometimes with a byte dropped, doubled or replaced by a random one."""
    data = bytearray(draw(base))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["drop", "dup", "byte"]))
        if op == "drop":
            del data[i]
        elif op == "dup":
            data.insert(i, data[i])
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def wire_commands(draw) -> tuple[bytes, bytes]:
    """(tag, a tagged command as sent on the wire, without the final CRLF)."""
    tag = draw(tags)
    return tag, tag + b" " + draw(mutated(commands))


# --- responses --------------------------------------------------------------------------------

_TAG_RE = rb"[!#$&'+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+"
RESPONSE_TEXT = re.compile(rb"[\x20-\x7e]*")
TAGGED = re.compile(rb"(" + _TAG_RE + rb") (OK|NO|BAD)(?: \[([^\]\r\n\0]*)\])?(?: (.*))?\Z", re.S)
# What a client takes for a literal announcement at the end of a response line.
LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}\r\n\Z")


def assert_error_response(line: bytes, tag: str | None) -> None:
    """A ParseError's response: ``TAG BAD|NO [CODE] text CRLF``, printable, one line."""
    assert line.endswith(b"\r\n"), line
    body = line[:-2]
    assert b"\r" not in body and b"\n" not in body and b"\0" not in body, line
    assert RESPONSE_TEXT.fullmatch(body), line
    assert not LITERAL_AT_END.search(line), f"the text announces a literal: {line!r}"
    head, _, rest = body.partition(b" ")
    assert head == (tag.encode() if tag else b"*"), (line, tag)
    status, _, text = rest.partition(b" ")
    assert status in (b"BAD", b"NO"), line
    assert text and not text.startswith(b" "), line
    if text.startswith(b"["):
        assert b"] " in text, line
