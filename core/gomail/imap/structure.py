"""ENVELOPE, BODY and BODYSTRUCTURE of a message, and the byte offsets of its MIME parts.

Computed once, when a message is delivered, and stored next to it: FETCH ENVELOPE or
BODYSTRUCTURE over a large folder then reads no message bodies, and ``BODY[1.2]``,
``BODY[1.2.MIME]`` or ``BODY[2.HEADER]`` are served by slicing the stored blob at the offsets
of the part map (see :mod:`gomail.imap.sections`).

Everything here is a pure function of the raw message bytes (CRLF line endings; bare LF is
tolerated) and never raises on malformed input. The MIME scanner is our own, not
``email.parser``, because the part map needs exact byte positions and the parse must be fast
(a 1 MB message in a few milliseconds). It follows the rules Dovecot's message parser follows:

- a boundary line is ``--boundary`` at the start of a line, matched as a prefix; when the
  boundaries of several enclosing multiparts match, the longest wins, and a line that matches
  an enclosing multipart's boundary ends every part inside it (an unterminated inner multipart
  does not swallow the rest of the message);
- the line break before a boundary line belongs to the boundary, not to the part;
- a multipart whose closing boundary is missing runs to the end of the message (or to the
  enclosing boundary); one with no boundary line at all has no parts, and its BODYSTRUCTURE
  shows the single empty ``text/plain`` part Dovecot shows;
- a multipart without a usable ``boundary`` parameter is an ordinary (non-text) leaf part;
- a missing or unparsable Content-Type is ``text/plain; charset=us-ascii``, or
  ``message/rfc822`` inside ``multipart/digest``; the first Content-* field of a kind wins;
- nesting deeper than :data:`MAX_DEPTH` or beyond :data:`MAX_PARTS` parts is not parsed further.

Unlike Dovecot we do not ignore Content-* fields when MIME-Version is missing: mail without it
that declares a multipart is shown as one, as most clients show it.

The three texts are complete IMAP values, parentheses included: a FETCH response puts them
after ``ENVELOPE ``, ``BODY `` and ``BODYSTRUCTURE `` as they are.

Sizes are octets of the body as stored (the line break before a boundary excluded), lines are
the number of LF octets in it. Strings are IMAP quoted strings, or literals when they hold
CR, LF or 8-bit octets (a UTF-8 header is sent as a literal, RFC 2047 encoded-words are sent as
they are in the header, as servers do). Header octets that are not UTF-8 are replaced by
U+FFFD, so the texts are always valid ``str`` that can be stored as TEXT and are sent
encoded as UTF-8 (literal lengths count those UTF-8 octets).

Part map (JSON-serialisable, see :func:`part_map`): one node per part,
``{"h": [header_start, header_end], "b": [body_start, body_end], "t": "type/subtype", ...}``
where ``header_end == body_start`` (the header includes its empty line) and the optional keys
are ``"e"`` (content-transfer-encoding, lower case; absent means 7bit), ``"c"`` (charset,
lower case), ``"p"`` (list of child nodes of a multipart) and ``"m"`` (the node of the
message inside a message/rfc822 part). The root node is the whole message.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

from gomail.imap.wire import quote as _wire_quote

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "Structure",
    "analyse",
    "bodystructure",
    "envelope",
    "first_values",
    "header_end",
    "header_fields",
    "parse_address_list",
    "parse_params",
    "part_map",
    "unfold",
]

MAX_DEPTH = 50
MAX_PARTS = 5000

_BLANK_LINE = re.compile(rb"\n\r?\n")
_BOUNDARY_CANDIDATE = re.compile(rb"\n--")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


# ---------------------------------------------------------------------------------------------
# IMAP strings


_PLAIN = re.compile(r'[^"\\]*').fullmatch  # nothing to escape in a quoted string


def _q(value: str | None) -> str:
    """An nstring: NIL, a quoted string or a literal (the rules of ``wire.quote``)."""
    if value is None:
        return "NIL"
    if len(value) <= 1024 and value.isascii() and value.isprintable() and _PLAIN(value):
        return f'"{value}"'
    return _wire_quote(value.replace("\0", "")).decode("utf-8")


_WSP_RUN = re.compile(r"[ \t\r\n]+")


def _qh(value: str | None) -> str:
    """An nstring for humans (subjects, display names), as Dovecot writes them.

    Runs of white space become one space and the ends are trimmed; a value with a quote,
    a backslash or 8-bit text is sent as a literal rather than escaped, since some clients
    mishandle escapes.
    """
    if value is None:
        return "NIL"
    value = _WSP_RUN.sub(" ", value.replace("\0", "")).strip(" ")
    if value.isascii() and _PLAIN(value) and len(value) <= 1024:
        return f'"{value}"'
    return f"{{{len(value.encode('utf-8'))}}}\r\n{value}"


def unfold(value: str) -> str:
    """An unfolded header value: line breaks removed, outer white space trimmed."""
    return _FOLD.sub("", value).replace("\r\n", "").replace("\n", "").strip(" \t\r")


# ---------------------------------------------------------------------------------------------
# Header fields


def header_fields(raw: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """The fields of the header block raw[start:end]: (lower-case name, field start, field end).

    A field spans its folded continuation lines and its line break; the empty line that ends
    the header is not part of any field. A line without a colon is a field with that name.
    """
    out: list[tuple[str, int, int]] = []
    pos = start
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        if raw[pos : pos + 1] in (b" ", b"\t") and out:
            name, fs, _ = out[-1]
            out[-1] = (name, fs, line_end)
        elif line_end - pos <= 2 and raw[pos:line_end].strip(b"\r\n") == b"":
            break  # the empty line
        else:
            colon = raw.find(b":", pos, line_end)
            name_end = colon if colon >= 0 else line_end
            name = raw[pos:name_end].strip().decode("latin-1").lower()
            out.append((name, pos, line_end))
        pos = line_end
    return out


def header_end(raw: bytes) -> int:
    """Where the message's header fields end (before the empty line; len(raw) if none)."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    m = _BLANK_LINE.search(raw)
    return len(raw) if m is None else m.start() + 1


def _field_value(raw: bytes, fs: int, fe: int) -> str:
    colon = raw.find(b":", fs, fe)
    data = raw[colon + 1 : fe] if colon >= 0 else b""
    return unfold(data.decode("utf-8", "replace"))


def first_values(raw: bytes, start: int, end: int, names: frozenset[str]) -> dict[str, str]:
    """Unfolded value of the first field of each of ``names`` present in the header block."""
    out: dict[str, str] = {}
    for name, fs, fe in header_fields(raw, start, end):
        if name in names and name not in out:
            out[name] = _field_value(raw, fs, fe)
    return out


# ---------------------------------------------------------------------------------------------
# MIME header values: Content-Type and Content-Disposition parameters (RFC 2045, RFC 2231)


def _comment_end(s: str, i: int) -> int:
    """Index after the (nested) comment that starts at s[i] == '('; len(s) if unterminated."""
    n = len(s)
    depth = 0
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_cfws(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            i = _comment_end(s, i)
        else:
            break
    return i


_TOKEN = re.compile(r'[^()<>@,;:\\"/\[\]?= \t\x00-\x1f]*').match


def _token(s: str, i: int) -> tuple[str, int]:
    j = _TOKEN(s, i).end()
    return s[i:j], j


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The quoted string starting at s[i] == '"', unescaped; runs to the end if unterminated."""
    out = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def parse_params(s: str, i: int = 0) -> list[tuple[str, str]]:
    """``; name=value`` parameters from s[i:], with RFC 2231 continuations joined.

    As Dovecot does, an extended (``name*=``) parameter keeps its charset and language and
    its percent-encoding, under the name ``name*``; ``name*0``, ``name*1`` … are joined.
    A broken parameter is skipped, not fatal.
    """
    raw: list[tuple[str, str]] = []
    n = len(s)
    while i < n:
        i = _skip_cfws(s, i)
        if i >= n:
            break
        if s[i] != ";":
            # garbage: skip to the next parameter
            nxt = s.find(";", i)
            if nxt < 0:
                break
            i = nxt
        i = _skip_cfws(s, i + 1)
        name, i = _token(s, i)
        i = _skip_cfws(s, i)
        if not name or i >= n or s[i] != "=":
            continue
        i = _skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = _quoted(s, i)
        else:
            value, i = _token(s, i)
            # tolerate unquoted values with tspecials (a common sender bug): take to ';'
            if i < n and s[i] not in "; \t\r\n(":
                end = s.find(";", i)
                end = n if end < 0 else end
                value = (value + s[i:end]).strip()
                i = end
        raw.append((name, value))
    return _join_rfc2231(raw)


_SECTION = re.compile(r"^(.*?)\*(\d+)(\*?)$")


def _join_rfc2231(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not any("*" in name for name, _ in params):
        return params
    out: list[tuple[str, str] | str] = []  # a str is a placeholder for joined sections
    sections: dict[str, tuple[str, list[tuple[int, str, bool]]]] = {}
    for name, value in params:
        m = _SECTION.match(name)
        if m is None:
            out.append((name, value))
            continue
        key = m.group(1).lower()
        if key not in sections:
            sections[key] = (m.group(1), [])
            out.append(key)
        sections[key][1].append((int(m.group(2)), value, bool(m.group(3))))
    joined = []
    for item in out:
        if isinstance(item, str):
            base, parts = sections[item]
            parts.sort(key=lambda p: p[0])
            name = base + "*" if parts[0][2] else base
            joined.append((name, "".join(p[1] for p in parts)))
        else:
            joined.append(item)
    return joined


def _param(params: Sequence[tuple[str, str]], name: str) -> str | None:
    """A parameter's value by case-insensitive name, RFC 2231 encoding decoded."""
    for k, v in params:
        lk = k.lower()
        if lk == name:
            return v
        if lk == name + "*":
            _, _, rest = v.partition("'")
            _, _, encoded = rest.partition("'")
            return unquote(encoded if "'" in v else v, errors="replace")
    return None


@functools.lru_cache(maxsize=1024)
def _content_type(value: str | None) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """(type, subtype, params) from a Content-Type value, or None when it is unusable.

    This and the other header value parsers below are cached: the same values recur.
    """
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    mtype, i = _token(value, i)
    i = _skip_cfws(value, i)
    if not mtype or i >= len(value) or value[i] != "/":
        return None
    i = _skip_cfws(value, i + 1)
    subtype, i = _token(value, i)
    if not subtype:
        return None
    return mtype, subtype, tuple(parse_params(value, i))


@functools.lru_cache(maxsize=1024)
def _disposition(value: str | None) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    token, i = _token(value, i)
    if not token:
        return None
    return token, tuple(parse_params(value, i))


@functools.lru_cache(maxsize=1024)
def _cte(value: str | None) -> str | None:
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    token, i = _token(value, i)
    if not token or _skip_cfws(value, i) != len(value):
        return None
    return token


@functools.lru_cache(maxsize=1024)
def _languages(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    langs = []
    for item in value.split(","):
        item = item[_skip_cfws(item, 0) :]
        token, _ = _token(item, 0)
        if token:
            langs.append(token)
    return tuple(langs) or None


# ---------------------------------------------------------------------------------------------
# Addresses (RFC 5322 section 3.4, with the obsolete forms), for the ENVELOPE

_ADDR_SPECIALS = frozenset('()<>[]:;@\\,."')


class _Tok(NamedTuple):
    kind: str  # "a" atom, "q" quoted string, "c" comment, "d" domain literal, or a special
    text: str  # atom/literal text; unescaped content of a quoted string or comment
    raw: str  # as written
    start: int
    end: int


def _tokenize(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            text, j = _quoted(s, i)
            toks.append(_Tok("q", text, s[i:j], i, j))
            i = j
        elif c == "(":
            j = _comment_end(s, i)
            inner = s[i + 1 : j - 1] if s[j - 1 : j] == ")" else s[i + 1 : j]
            toks.append(_Tok("c", re.sub(r"\\(.)", r"\1", inner).strip(), s[i:j], i, j))
            i = max(j, i + 1)
        elif c == "[":
            j = s.find("]", i)
            j = n if j < 0 else j + 1
            toks.append(_Tok("d", s[i:j], s[i:j], i, j))
            i = j
        elif c in _ADDR_SPECIALS:
            toks.append(_Tok(c, c, c, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and s[j] not in _ADDR_SPECIALS and s[j] not in " \t\r\n":
                j += 1
            toks.append(_Tok("a", s[i:j], s[i:j], i, j))
            i = j
    return toks


def _phrase(toks: list[_Tok]) -> str | None:
    words = [t for t in toks if t.kind in ("a", "q", ".")]
    if not words:
        return None
    out = []
    prev: _Tok | None = None
    for t in words:
        if prev is not None and t.start > prev.end:
            out.append(" ")
        out.append(t.text)
        prev = t
    return "".join(out).strip() or None


def _addr_spec(toks: list[_Tok]) -> tuple[str | None, str | None]:
    words = [t for t in toks if t.kind != "c"]
    at = max((k for k, t in enumerate(words) if t.kind == "@"), default=-1)
    local_toks = words if at < 0 else words[:at]
    local = "".join(t.raw for t in local_toks) or None
    if at < 0:
        return local, None
    domain = "".join(t.raw for t in words[at + 1 :]) or None
    return local, domain


_Addr = tuple[str | None, str | None, str | None, str | None]


def _mailbox(toks: list[_Tok]) -> _Addr | None:
    """(name, adl, mailbox, host) of one mailbox, or None for an empty list element."""
    lt = next((k for k, t in enumerate(toks) if t.kind == "<"), -1)
    adl = None
    if lt >= 0:
        name = _phrase(toks[:lt])
        gt = next((k for k in range(lt + 1, len(toks)) if toks[k].kind == ">"), len(toks))
        inner = toks[lt + 1 : gt]
        colon = next((k for k, t in enumerate(inner) if t.kind == ":"), -1)
        if inner and inner[0].kind == "@" and colon > 0:
            adl = "".join(t.raw for t in inner[:colon] if t.kind != "c")
            inner = inner[colon + 1 :]
        local, host = _addr_spec(inner)
        if local is None and host is None and name is None:
            return None
    else:
        local, host = _addr_spec(toks)
        comments = [t.text for t in toks if t.kind == "c" and t.text]
        name = comments[-1] if comments else None
        if local is None and host is None:
            return None
    return (
        name,
        adl,
        local if local is not None else "MISSING_MAILBOX",
        host if host is not None else "MISSING_DOMAIN",
    )


def parse_address_list(value: str) -> list[_Addr]:
    """The IMAP address structures of an address-list header value.

    A group is its start marker ``(None, None, name, None)``, its members, and the end marker
    ``(None, None, None, None)``, as RFC 3501 section 7.4.2 writes them. Missing local parts or
    domains are filled in with ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``, as Dovecot does, so a
    broken address can never be read as a group marker.
    """
    toks = _tokenize(value)
    out: list[_Addr] = []
    i = 0
    n = len(toks)

    def one(i: int, in_group: bool) -> int:
        j = i
        depth = 0
        while j < n:
            k = toks[j].kind
            if k == "<":
                depth += 1
            elif k == ">":
                depth = max(0, depth - 1)
            elif depth == 0 and (k == "," or (in_group and k == ";")):
                break
            j += 1
        addr = _mailbox(toks[i:j])
        if addr is not None:
            out.append(addr)
        return j

    while i < n:
        if toks[i].kind in (",", ";", ">"):
            i += 1
            continue
        j = i
        while j < n and toks[j].kind in ("a", "q", ".", "c"):
            j += 1
        if j < n and toks[j].kind == ":":
            out.append((None, None, _phrase(toks[i:j]) or "", None))
            i = j + 1
            while i < n and toks[i].kind != ";":
                if toks[i].kind == ",":
                    i += 1
                    continue
                i = one(i, True)
            out.append((None, None, None, None))
            i += 1
        else:
            i = one(i, False)
    return out


def _address_list(value: str | None) -> str:
    if value is None:
        return "NIL"
    addrs = parse_address_list(value)
    if not addrs:
        return "NIL"
    return "(" + "".join(f"({_qh(a[0])} {_q(a[1])} {_q(a[2])} {_q(a[3])})" for a in addrs) + ")"


_ENVELOPE_FIELDS = frozenset(
    ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
     "message-id")
)  # fmt: skip


def _envelope(raw: bytes, start: int, end: int) -> str:
    f = first_values(raw, start, end, _ENVELOPE_FIELDS)
    frm = _address_list(f.get("from"))
    sender = _address_list(f.get("sender"))
    reply_to = _address_list(f.get("reply-to"))
    return (
        "("
        + " ".join(
            (
                _q(f.get("date")),
                _qh(f.get("subject")),
                frm,
                frm if sender == "NIL" else sender,
                frm if reply_to == "NIL" else reply_to,
                _address_list(f.get("to")),
                _address_list(f.get("cc")),
                _address_list(f.get("bcc")),
                _q(f.get("in-reply-to")),
                _q(f.get("message-id")),
            )
        )
        + ")"
    )


# ---------------------------------------------------------------------------------------------
# The MIME scanner

_CONTENT_FIELDS = frozenset(
    (
        "content-type",
        "content-transfer-encoding",
        "content-id",
        "content-description",
        "content-md5",
        "content-disposition",
        "content-language",
        "content-location",
    )
)


@dataclass(slots=True)
class _Part:
    hs: int
    he: int  # == bs: the header includes its empty line
    bs: int
    be: int
    mtype: str = "text"
    subtype: str = "plain"
    params: tuple[tuple[str, str], ...] = ()
    typed: bool = False  # a usable Content-Type was present
    kind: str = "leaf"  # "leaf", "multipart" or "message"
    fields: dict[str, str] = field(default_factory=dict)
    children: list[_Part] = field(default_factory=list)
    message: _Part | None = None
    envelope: str | None = None  # for the root and for messages inside message/rfc822


class _Stop(NamedTuple):
    index: int  # which boundary of the stack matched
    line: int  # start of the boundary line
    cut: int  # where the part before it ends (the line break before the line excluded)
    line_end: int  # after the boundary line's line break
    close: bool  # "--boundary--"


@functools.lru_cache(maxsize=256)
def _stack_matcher(stack: tuple[bytes, ...]):
    """A matcher of the longest of the boundary lines (alternatives tried longest first)."""
    alternatives = sorted(set(stack), key=len, reverse=True)
    return re.compile(b"|".join(re.escape(b) for b in alternatives)).match


class _Scanner:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.n = len(raw)
        cands = [m.start() + 1 for m in _BOUNDARY_CANDIDATE.finditer(raw)]
        if raw.startswith(b"--"):
            cands.insert(0, 0)
        self.cands = cands
        self.count = 0

    def find(self, start: int, stack: list[bytes]) -> _Stop | None:
        """The first line at or after start that is a boundary line of the stack."""
        if not stack:
            return None
        raw = self.raw
        cands = self.cands
        match = _stack_matcher(tuple(stack))
        k = bisect.bisect_left(cands, start)
        while k < len(cands):
            p = cands[k]
            k += 1
            m = match(raw, p)
            if m is None:
                continue
            # the longest boundary that matches; of equal ones the innermost, as in Dovecot
            best = len(stack) - 1 - stack[::-1].index(m.group())
            close = raw.startswith(b"--", m.end())
            nl = raw.find(b"\n", p)
            line_end = self.n if nl < 0 else nl + 1
            if p >= 2 and raw[p - 2 : p] == b"\r\n":
                cut = p - 2
            elif p >= 1 and raw[p - 1 : p] == b"\n":
                cut = p - 1
            else:
                cut = p
            return _Stop(best, p, cut, line_end, close)
        return None

    def entity(
        self, pos: int, stack: list[bytes], depth: int, digest: bool, is_message: bool
    ) -> tuple[_Part, _Stop | None]:
        """Parse the entity (header and body) at pos; returns it and the boundary that ended it."""
        raw = self.raw
        n = self.n
        self.count += 1
        # -- header: up to the empty line, or to a boundary line that ends the part early
        stop = self.find(pos, stack)
        limit = n if stop is None else stop.line
        if raw.startswith(b"\r\n", pos):
            he, fields_end = pos + 2, pos
        elif raw.startswith(b"\n", pos):
            he, fields_end = pos + 1, pos
        elif (m := _BLANK_LINE.search(raw, pos, limit)) is not None:
            he, fields_end = m.end(), m.start() + 1
        elif stop is None:
            he = fields_end = n
        else:
            # a boundary inside the header ends the part: no body
            he = fields_end = max(pos, stop.cut)
            part = _Part(pos, he, he, he)
            self._describe(part, pos, fields_end, digest, is_message)
            if part.kind == "message":
                part.message = _headerless(he, he)
            return part, stop
        part = _Part(pos, he, he, n)
        self._describe(part, pos, fields_end, digest, is_message)
        deep = depth >= MAX_DEPTH or self.count >= MAX_PARTS
        if part.kind == "multipart" and not deep:
            boundary = _param(part.params, "boundary") or ""
            own = stack + [b"--" + boundary.encode("utf-8", "replace")]
            me = len(own) - 1
            s = self.find(he, own)
            sub_digest = part.subtype.lower() == "digest"
            while True:
                if s is None:
                    part.be = n
                    return part, None
                if s.index != me:
                    part.be = max(he, s.cut)
                    return part, s
                if s.close:
                    s2 = self.find(s.line_end, stack)
                    part.be = n if s2 is None else max(he, s2.cut)
                    return part, s2
                if self.count >= MAX_PARTS:
                    s = self.find(s.line_end, own)
                    continue
                child, s = self.entity(s.line_end, own, depth + 1, sub_digest, False)
                part.children.append(child)
        if part.kind == "message" and not deep:
            child, s = self.entity(he, stack, depth + 1, False, True)
            part.message = child
            part.be = n if s is None else max(he, s.cut)
            return part, s
        if part.kind == "multipart":
            part.kind = "leaf"  # too deep: its body is not looked into
        s = stop  # the first boundary line after pos, which is not in the header
        part.be = n if s is None else max(he, s.cut)
        if part.kind == "message":
            part.message = _headerless(he, part.be)  # too deep, but must have an envelope
        return part, s

    def _describe(self, part: _Part, start: int, end: int, digest: bool, is_message: bool) -> None:
        raw = self.raw
        part.fields = first_values(raw, start, end, _CONTENT_FIELDS)
        if is_message:
            part.envelope = _envelope(raw, start, end)
        ct = _content_type(part.fields.get("content-type"))
        if ct is not None:
            part.mtype, part.subtype, part.params = ct
            part.typed = True
        elif digest:
            part.mtype, part.subtype = "message", "rfc822"
        lt = part.mtype.lower()
        ls = part.subtype.lower()
        if lt == "multipart":
            if _param(part.params, "boundary"):
                part.kind = "multipart"
        elif lt == "message" and ls in ("rfc822", "global"):
            part.kind = "message"


_NIL_ENVELOPE = "(" + " ".join(["NIL"] * 10) + ")"


def _headerless(start: int, end: int) -> _Part:
    """A message/rfc822 part's message that is not parsed: no header, the body as text."""
    return _Part(start, start, start, end, envelope=_NIL_ENVELOPE)


def _parse(raw: bytes) -> _Part:
    root, _ = _Scanner(raw).entity(0, [], 0, False, True)
    return root


# ---------------------------------------------------------------------------------------------
# BODY / BODYSTRUCTURE

_EMPTY_BODY = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'


def _params_text(params: Sequence[tuple[str, str]], default_charset: bool) -> str:
    items = [f"{_q(k)} {_q(v)}" for k, v in params]
    if default_charset and not any(k.lower() == "charset" for k, _ in params):
        items.append('"charset" "us-ascii"')
    return "(" + " ".join(items) + ")" if items else "NIL"


def _common_ext(part: _Part) -> str:
    f = part.fields
    disp = _disposition(f.get("content-disposition"))
    disp_text = "NIL" if disp is None else f"({_q(disp[0])} {_params_text(disp[1], False)})"
    langs = _languages(f.get("content-language"))
    lang_text = "NIL" if langs is None else "(" + " ".join(_q(x) for x in langs) + ")"
    return f"{disp_text} {lang_text} {_q(f.get('content-location'))}"


def _body_text(raw: bytes, part: _Part, extended: bool) -> str:
    if part.kind == "multipart":
        if part.children:
            inner = "".join(_body_text(raw, c, extended) for c in part.children)
        else:
            inner = _EMPTY_BODY + (" NIL NIL NIL NIL)" if extended else ")")
        out = f"({inner} {_q(part.subtype)}"
        if extended:
            out += f" {_params_text(part.params, False)} {_common_ext(part)}"
        return out + ")"
    f = part.fields
    is_text = part.mtype.lower() == "text"
    if part.typed:
        head = f"{_q(part.mtype)} {_q(part.subtype)}"
    elif part.kind == "message":
        head = '"message" "rfc822"'
    else:
        head = '"text" "plain"'
    cte = _cte(f.get("content-transfer-encoding"))
    items = [
        head,
        _params_text(part.params, is_text),
        _q(f.get("content-id")),
        _q(f.get("content-description")),
        _q(cte) if cte is not None else '"7bit"',
        str(part.be - part.bs),
    ]
    if part.kind == "message" and part.message is not None:
        items.append(part.message.envelope or _NIL_ENVELOPE)
        items.append(_body_text(raw, part.message, extended))
        items.append(str(raw.count(b"\n", part.bs, part.be)))
    elif is_text:
        items.append(str(raw.count(b"\n", part.bs, part.be)))
    if extended:
        items.append(_q(f.get("content-md5")))
        items.append(_common_ext(part))
    return "(" + " ".join(items) + ")"


# ---------------------------------------------------------------------------------------------
# Part map


def _node(part: _Part) -> dict:
    node: dict = {
        "h": [part.hs, part.he],
        "b": [part.bs, part.be],
        "t": f"{part.mtype}/{part.subtype}".lower(),
    }
    cte = _cte(part.fields.get("content-transfer-encoding"))
    if cte is not None and cte.lower() != "7bit":
        node["e"] = cte.lower()
    charset = _param(part.params, "charset")
    if charset:
        node["c"] = charset.strip().lower()
    if part.kind == "multipart":
        node["p"] = [_node(c) for c in part.children]
    elif part.kind == "message" and part.message is not None:
        node["m"] = _node(part.message)
    return node


# ---------------------------------------------------------------------------------------------
# Public API


class Structure(NamedTuple):
    """Everything stored at delivery: the three texts and the part map."""

    envelope: str
    body: str
    bodystructure: str
    part_map: dict


def analyse(raw: bytes) -> Structure:
    """Parse once, return ENVELOPE, BODY, BODYSTRUCTURE texts and the part map."""
    root = _parse(raw)
    return Structure(
        root.envelope or _NIL_ENVELOPE,
        _body_text(raw, root, False),
        _body_text(raw, root, True),
        _node(root),
    )


def envelope(raw: bytes) -> str:
    """The ENVELOPE value, parentheses included: ``("date" "subject" (("name" NIL …)) …)``."""
    return _envelope(raw, 0, header_end(raw))


def bodystructure(raw: bytes, extended: bool = True) -> str:
    """The BODYSTRUCTURE (``extended``) or BODY text, parentheses included."""
    return _body_text(raw, _parse(raw), extended)


def part_map(raw: bytes) -> dict:
    """The JSON-serialisable part map (format in the module docstring)."""
    return _node(_parse(raw))
