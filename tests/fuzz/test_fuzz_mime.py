"""Fuzzing the MIME side of IMAP and the message edits with arbitrary and MIME-shaped
messages (nested multiparts, broken and look-alike boundaries, bad encodings, LF line ends,
message/rfc822 inside, many header fields): building ENVELOPE/BODY/BODYSTRUCTURE and the
part map, fetching every section, decoding, and header edits never raise, and the IMAP
texts parse back as balanced IMAP values. Plus time bounds for the sender-controlled input
that was super-linear."""

from __future__ import annotations

import logging
import re
import time

import pytest
from gomail.imap import meta, sections, structure
from gomail.message import Message
from hypothesis import example, given
from hypothesis import strategies as st

from .budget import fuzz_settings

# --- an IMAP value reader (the response grammar) ------------------------------------------------


class Malformed(AssertionError):
    pass


def read_values(data: bytes) -> list:
    """The IMAP values of data (NIL, numbers, quoted strings, literals, lists), all of it."""
    pos = 0
    out: list = []
    stack: list[list] = [out]
    n = len(data)
    while pos < n:
        c = data[pos : pos + 1]
        if c == b" " and pos > 0 and data[pos + 1 : pos + 2] not in (b" ", b")", b""):
            pos += 1
        elif c == b"(":
            stack[-1].append([])
            stack.append(stack[-1][-1])
            pos += 1
        elif c == b")":
            if len(stack) == 1:
                raise Malformed(f"unbalanced ')' at {pos}: {data!r}")
            stack.pop()
            pos += 1
        elif c == b'"':
            m = re.compile(rb'"((?:[^"\\\r\n\0]|\\["\\])*)"').match(data, pos)
            if not m:
                raise Malformed(f"bad quoted string at {pos}: {data[pos : pos + 40]!r}")
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
            pos = m.end()
        elif c == b"{":
            m = re.compile(rb"\{(\d+)\}\r\n").match(data, pos)
            if not m or m.end() + int(m.group(1)) > n:
                raise Malformed(f"bad literal at {pos}: {data[pos : pos + 40]!r}")
            stack[-1].append(data[m.end() : m.end() + int(m.group(1))])
            pos = m.end() + int(m.group(1))
        else:
            m = re.compile(rb"NIL|\d+").match(data, pos)
            if not m:
                raise Malformed(f"unexpected {data[pos : pos + 20]!r} at {pos}: {data!r}")
            stack[-1].append(None if m.group() == b"NIL" else int(m.group()))
            pos = m.end()
        after = (b" ", b")", b"(") if c == b")" else (b" ", b")")  # addresses abut: ")("
        if c not in (b" ", b"(") and pos < n and data[pos : pos + 1] not in after:
            raise Malformed(f"no space after a value at {pos}: {data[pos - 10 : pos + 10]!r}")
    if len(stack) != 1:
        raise Malformed(f"unbalanced '(': {data!r}")
    return out


def one_list(text: str) -> list:
    values = read_values(text.encode("utf-8"))
    assert len(values) == 1 and isinstance(values[0], list), text
    return values[0]


# --- messages ---------------------------------------------------------------------------------

BOUNDARIES = st.sampled_from(["b", "b1", "bb", "=_x", "a b", "b'(", "", "--", "x" * 70])
CTES = st.sampled_from(["7bit", "base64", "quoted-printable", "8BIT", "x-uue", "binary", "b64 ("])
CHARSETS = st.sampled_from(["utf-8", "us-ascii", "iso-8859-1", "x-unknown", "base64", "idna", ""])
HEADER_VALUES = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30),
    st.sampled_from(
        [
            "=?utf-8?q?caf=C3=A9?= =?utf-8?b?w6k=?=",
            "=?x-unknown?b?!!!?=",
            "=?utf-8*en?q?a?=",
            '"A \\"B\\"" <a@b.example>, (c (nested)) d@e, g: h@i, <j@k>;',
            "Re: [list] Fwd: (fwd) [fwd: x]",
            "<a@b> <c@d>",
            "Mon, 24 Nov 2025 10:00:00 +0000",
            "Tue, 99 Foo 99999 99:99:99 +9999",
            "<<<<<<<",
            "(((((((",
            "@a,@b:c@d",
        ]
    ),
)
HEADER_NAMES = st.sampled_from(
    [
        "Subject",
        "From",
        "To",
        "Cc",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Sender",
        "Reply-To",
        "Bcc",
        "X-Any",
        "Content-ID",
        "Content-Description",
        "Content-Disposition",
        "Content-Language",
        "Content-Location",
        "Content-MD5",
    ]
)


@st.composite
def headers(draw, content_type: str | None) -> list[str]:
    fields = [
        f"{n}: {v}" for n, v in draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    ]
    if content_type is not None:
        fields.append(f"Content-Type: {content_type}")
    if draw(st.booleans()):
        fields.append(f"Content-Transfer-Encoding: {draw(CTES)}")
    if draw(st.integers(0, 5)) == 0:
        fields.append(" folded continuation first")
    if draw(st.integers(0, 5)) == 0:
        fields.append("no colon here")
    return draw(st.permutations(fields))


def leaf() -> st.SearchStrategy[str]:
    @st.composite
    def make(draw) -> str:
        ctype = draw(
            st.sampled_from(
                [
                    "text/plain",
                    "text/html",
                    "application/octet-stream",
                    "image/png",
                    "text/plain; charset=",
                    "text",
                    "/",
                    None,
                    "message/rfc822",
                ]
            )
        )
        if ctype and ctype.startswith("text/plain"):
            ctype += draw(CHARSETS)
        head = draw(headers(ctype))
        body = draw(
            st.one_of(
                st.text(max_size=40),
                st.sampled_from(
                    ["aGVsbG8=\r\n", "=C3=A9=\r\nx", "<p>hi<script>x</script>", "--b\r\n"]
                ),
            )
        )
        return "\r\n".join(head) + "\r\n\r\n" + body

    return make()


def multipart(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    @st.composite
    def make(draw) -> str:
        boundary = draw(BOUNDARIES)
        quoted = draw(st.booleans())
        subtype = draw(st.sampled_from(["mixed", "alternative", "digest", "related", "MIXED"]))
        param = f'"{boundary}"' if quoted else boundary
        ctype = draw(
            st.sampled_from(
                [
                    f"multipart/{subtype}; boundary={param}",
                    f"multipart/{subtype}",
                    f"multipart/{subtype}; boundary*0={param}; boundary*1=x",
                    f"multipart/{subtype}; (c) boundary = {param} ; charset=x",
                ]
            )
        )
        if "boundary*1=x" in ctype:
            boundary += "x"
        parts = draw(st.lists(children, max_size=4))
        inner = "".join(f"\r\n--{boundary}\r\n{p}" for p in parts)
        ending = draw(
            st.sampled_from([f"\r\n--{boundary}--\r\n", "", f"\r\n--{boundary}-", "\r\n--"])
        )
        preamble = draw(st.sampled_from(["", "preamble", f"--{boundary}x"]))
        return "\r\n".join(draw(headers(ctype))) + "\r\n\r\n" + preamble + inner + ending

    return make()


def attached(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(inner, headers("message/rfc822")).map(
        lambda t: "\r\n".join(t[1]) + "\r\n\r\n" + t[0]
    )


mime_messages = st.recursive(
    leaf(), lambda kids: st.one_of(multipart(kids), attached(kids)), max_leaves=8
)


@st.composite
def messages(draw) -> bytes:
    raw = draw(mime_messages).encode("utf-8", "surrogatepass")
    kind = draw(st.integers(0, 9))
    if kind == 0:
        raw = raw.replace(b"\r\n", b"\n")  # LF line ends
    elif kind == 1 and raw:  # a cut, a byte flipped
        i = draw(st.integers(0, len(raw) - 1))
        raw = (
            raw[:i]
            + bytes([draw(st.integers(0, 255))])
            + raw[i + 1 : draw(st.integers(i, len(raw)))]
        )
    elif kind == 2:
        raw = draw(st.binary(max_size=300))
    return raw


# --- the properties ----------------------------------------------------------------------------


def _paths(node: dict, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    subs = node.get("p") or ([node["m"]] if "m" in node else [])
    out = [prefix]
    for i, child in enumerate(subs, 1):
        out += _paths(child, (*prefix, i))
    return out


def _check_node(node: dict, size: int, depth: int = 0) -> None:
    assert depth < 200
    hs, he = node["h"]
    bs, be = node["b"]
    assert 0 <= hs <= he == bs <= be <= size, node
    for child in node.get("p", []):
        assert bs <= child["h"][0], (node, child)
        # A part cut short by a boundary line may sit on that line, just past be, with an
        # empty body (harmless: its sections are empty); a body with octets is inside.
        if child["b"][0] != child["b"][1]:
            assert child["b"][1] <= be, (node, child)
        _check_node(child, size, depth + 1)
    if "m" in node:
        _check_node(node["m"], size, depth + 1)


@fuzz_settings(500)
@given(messages())
def test_structure_and_sections(raw: bytes):
    st_ = structure.analyse(raw)
    env = one_list(st_.envelope)
    assert len(env) == 10
    one_list(st_.body)
    one_list(st_.bodystructure)
    _check_node(st_.part_map, len(raw))
    assert structure.envelope(raw) is not None
    for path in _paths(st_.part_map)[:30]:
        for spec in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            if spec == "MIME" and not path:
                continue
            data = sections.section_bytes(raw, st_.part_map, path, spec, ["Subject", "from"])
            assert isinstance(data, bytes)
            assert sections.partial(data, 3, 5) == data[3:8]
        try:
            sections.binary_bytes(raw, st_.part_map, path)
            sections.binary_size(raw, st_.part_map, path)
        except sections.UnknownEncoding:
            pass
    missing = (*_paths(st_.part_map)[-1], 9)
    assert sections.section_bytes(raw, st_.part_map, missing, None) == b""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@fuzz_settings(300)
@given(messages())
def test_message_meta(raw: bytes):
    collect = _Collect()
    logger = logging.getLogger("gomail.imap")
    logger.addHandler(collect)
    try:
        m = meta.message_meta(raw)  # it logs what it cannot compute: nothing may be logged
    finally:
        logger.removeHandler(collect)
    assert not collect.records, [r.getMessage() for r in collect.records]
    assert m.envelope and m.bodystructure
    sections.text_for_index(raw)
    sections.sent_date(raw)
    sections.header_values(raw, "subject")


@fuzz_settings(300)
@given(
    messages(),
    st.lists(
        st.tuples(
            st.sampled_from(["add", "change", "delete"]),
            st.sampled_from(["Subject", "X-Spam", "received", "X-\u00e9"]),
            st.text(max_size=20),
            st.integers(-1, 4),
        ),
        max_size=4,
    ),
)
def test_message_header_edits(raw: bytes, edits):
    msg = Message(raw)
    msg.header_fields()
    msg.get_header("subject")
    for kind, name, value, index in edits:
        try:
            getattr(msg, f"{kind}_header")(name, *(() if kind == "delete" else (value,)), index)
        except ValueError:
            assert not name.isascii()  # only a bad field name is refused
    out = msg.edited()
    assert isinstance(out, bytes)
    Message(out).header_fields()
    msg.parsed  # noqa: B018 - the email package's parse of whatever arrived


# --- RFC 5256 base subject: the same answers as the straightforward (quadratic) version -----------

_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:[ ]|\(fwd\))+\Z", re.I)
_BLOB = r"\[[^\[\]]*\][ ]*"
_LEADER = re.compile(rf"\A(?:[ ]+|(?:{_BLOB})*(?:re|fwd?)[ ]*(?:{_BLOB})?:)", re.I)
_BLOB_LEAD = re.compile(rf"\A{_BLOB}")
_FWD = re.compile(r"\A\[fwd:(.*)\]\Z", re.I | re.S)


def reference_base_subject(subject: str) -> str:
    s = _WSP.sub(" ", subject)
    for _ in range(100):
        s = _TRAILER.sub("", s)
        while True:
            before = s
            s = _LEADER.sub("", s, count=1)
            m = _BLOB_LEAD.match(s)
            if m and s[m.end() :]:
                s = s[m.end() :]
            if s == before:
                break
        m = _FWD.match(s)
        if not m:
            break
        s = m.group(1)
    return s.strip(" ")


SUBJECT_TOKENS = st.sampled_from(
    [
        "re",
        "Re:",
        "RE :",
        "fwd:",
        "fw:",
        "FWD",
        "[a]",
        "[",
        "]",
        " ",
        "  ",
        "(fwd)",
        "(FWD)",
        ":",
        "x",
        "[fwd:",
        "[Fwd: ",
        "[list] ",
        "re[x]:",
        "\t",
        "(fwd",
    ]
)


@fuzz_settings(1000)
@given(st.lists(SUBJECT_TOKENS, max_size=12).map("".join))
@example("[a] [b] re: x")
@example("[a] [b]")
def test_base_subject_matches_reference(subject: str):
    assert meta.base_subject(subject) == reference_base_subject(subject)


# --- cost on sender-controlled input -----------------------------------------------------------

ADVERSARIAL_SUBJECTS = {
    "trailing (fwd) run": "(fwd)" * 40_000 + "x",  # was quadratic: 22 s
    "blob run": "[a] " * 40_000 + "x",  # was quadratic: 65 s
    "leaders": "re: " * 50_000 + "x",
    "nested fwd": "[fwd:" * 20_000 + "x" + "]" * 20_000,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL_SUBJECTS))
def test_base_subject_is_linear(name: str):
    subject = ADVERSARIAL_SUBJECTS[name]
    t0 = time.perf_counter()
    meta.base_subject(subject)
    assert time.perf_counter() - t0 < 1.0, name


def _timed_meta(raw: bytes) -> float:
    t0 = time.perf_counter()
    meta.message_meta(raw)
    return time.perf_counter() - t0


def test_message_meta_bounded_on_hostile_shapes():
    """Whole messages of up to a few hundred KiB shaped to make the MIME scanner, the header
    reader or the address parser work hard: each in a fraction of a second (quadratic work
    on any of them would take minutes)."""
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(200)
    )
    boundary_heavy = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"".join(
        b"--b\r\n\r\npart\r\n--bx\r\n--c\r\n" for _ in range(20_000)
    )
    look_alike = b"Content-Type: multipart/mixed; boundary=bbbb\r\n\r\n" + b"--bbb\r\n" * 50_000
    rfc822_chain = b"".join(b"Content-Type: message/rfc822\r\n\r\n" for _ in range(2_000)) + b"x"
    addresses = b"To: " + b"a <b@c>, " * 10_000 + b"\r\n\r\nx"
    comments = b"From: " + b"(" * 100_000 + b"\r\n\r\nx"
    many_parts = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\n" * 100_000
    strays = deep[: len(deep) // 3] + b"--zz\r\n" * 50_000  # 60 levels, then non-boundaries
    for name, raw in {
        "10,000 header fields": fields + b"\r\nbody",
        "200 nested multiparts": deep,
        "boundary-heavy": boundary_heavy,
        "look-alike boundaries": look_alike,
        "message/rfc822 chain": rfc822_chain,
        "10,000 addresses": addresses,
        "deep comment": comments,
        "100,000 parts": many_parts,
        "stray boundary-like lines": strays,
    }.items():
        assert _timed_meta(raw) < 3.0, name  # each takes about 0.2 s here
