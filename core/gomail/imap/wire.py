"""IMAP response encoding: strings, literals, lists, mailbox names, dates and flags.

Everything here returns ``bytes`` ready to be written into a response line, except the
modified UTF-7 pair (``str`` in, ``str`` out) and the date helpers. Nothing does I/O.

- ``quote(value, utf8=False)``: a quoted string, or a literal when the value cannot be quoted
  (CR, LF, NUL, 8-bit data unless the session has UTF-8 enabled, or very long values);
- ``astring`` (an atom when possible), ``nstring`` (``NIL`` for ``None``), ``literal``;
- ``paren_list`` for ``(a b c)``;
- ``mutf7_encode`` / ``mutf7_decode`` (RFC 3501 section 5.1.3; bad input raises ValueError) and
  ``mailbox`` to put a mailbox name in a response;
- ``format_datetime`` / ``parse_datetime`` / ``internaldate`` for ``"17-Jul-1996 02:44:25 -0700"``;
- ``is_valid_flag`` / ``canonical_flag`` for flag names.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
from collections.abc import Iterable

__all__ = [
    "SYSTEM_FLAGS",
    "astring",
    "canonical_flag",
    "format_datetime",
    "internaldate",
    "is_atom",
    "is_valid_flag",
    "literal",
    "mailbox",
    "mutf7_decode",
    "mutf7_encode",
    "nstring",
    "paren_list",
    "parse_datetime",
    "quote",
]

# ATOM-CHAR: any CHAR (0x01-0x7f) except atom-specials: "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]"
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
ATOM_CHARS = frozenset(c for c in range(0x01, 0x80) if c not in _ATOM_SPECIALS)
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
# The same as bytes, for bytes.translate to delete: a value is all atom chars when nothing is left.
_ATOM_BYTES = bytes(sorted(ATOM_CHARS))
_ASTRING_BYTES = bytes(sorted(ASTRING_CHARS))

# Longest value sent as a quoted string; longer ones go out as literals.
_MAX_QUOTED = 1024


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def is_atom(value: str | bytes, *, astring: bool = False) -> bool:
    """True if ``value`` is a non-empty IMAP atom (or ASTRING-CHAR run with ``astring=True``)."""
    data = _to_bytes(value)
    # In C, not a loop per byte: names of KiBs go through here for every folder LIST shows.
    return bool(data) and not data.translate(None, _ASTRING_BYTES if astring else _ATOM_BYTES)


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """``{n}\\r\\n`` followed by the data (``~{n}`` for a BINARY literal8)."""
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def quote(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A quoted string, or a literal when the value cannot be quoted.

    ``utf8``: the session enabled UTF8=ACCEPT / IMAP4rev2, so 8-bit UTF-8 may be quoted.
    """
    data = _to_bytes(value)
    if len(data) > _MAX_QUOTED or b"\r" in data or b"\n" in data or b"\0" in data:
        return literal(data)
    if not utf8 and not data.isascii():
        return literal(data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when the value is one (ASTRING-CHARs only), else ``quote``."""
    data = _to_bytes(value)
    if is_atom(data, astring=True) and data.upper() != b"NIL":
        return data
    return quote(data, utf8=utf8)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """``NIL`` for ``None``, else ``quote``."""
    return b"NIL" if value is None else quote(value, utf8=utf8)


def paren_list(items: Iterable[bytes]) -> bytes:
    """``(a b c)`` from already-encoded items."""
    return b"(" + b" ".join(items) + b")"


# ---------------------------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 section 5.1.3)


def _b64_encode(chunk: str) -> str:
    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


# A run of characters other than printable ASCII: what modified UTF-7 encodes in base64.
_MUTF7_ENCODED_RUN = re.compile(r"[^\x20-\x7e]+")


def mutf7_encode(name: str) -> str:
    """Encode a mailbox name in modified UTF-7: printable ASCII as itself, ``&`` as ``&-``,
    each run of other characters as ``&`` base64 of its UTF-16 ``-``.

    By runs (str methods and a regex, in C), not character by character: LIST encodes every
    folder name it shows, and a name may be KiBs long.
    """
    if name.isascii() and name.isprintable():  # ASCII printable: 0x20-0x7e, the usual case
        return name.replace("&", "&-")
    out: list[str] = []
    start = 0
    for run in _MUTF7_ENCODED_RUN.finditer(name):
        out.append(name[start : run.start()].replace("&", "&-"))
        out.append("&" + _b64_encode(run.group()) + "-")
        start = run.end()
    out.append(name[start:].replace("&", "&-"))
    return "".join(out)


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def mutf7_decode(name: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name; ValueError if it is not valid, canonical mUTF-7.

    Rejected: raw 8-bit or control characters, an unterminated ``&`` sequence, bad base64,
    non-zero padding bits, broken surrogates, printable ASCII that was encoded, and two
    encoded runs next to each other (they must be one run).
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("mailbox name is not 7-bit modified UTF-7") from None
    out: list[str] = []
    i = 0
    n = len(name)
    last_was_encoded = False
    while i < n:
        ch = name[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise ValueError("mailbox name has a character that must be encoded")
        if ch != "&":
            out.append(ch)
            i += 1
            last_was_encoded = False
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 sequence")
        run = name[i + 1 : end]
        i = end + 1
        if not run:
            out.append("&")
            last_was_encoded = False
            continue
        if last_was_encoded:
            raise ValueError("adjacent modified UTF-7 sequences")
        if any(c not in _B64_CHARS for c in run):
            raise ValueError("bad character in modified UTF-7 sequence")
        if len(run) % 4 == 1:
            raise ValueError("bad modified UTF-7 sequence length")
        padded = run.replace(",", "/") + "=" * (-len(run) % 4)
        raw = base64.b64decode(padded)
        if len(raw) % 2 or not raw:
            raise ValueError("modified UTF-7 sequence is not whole UTF-16")
        if base64.b64encode(raw).decode("ascii").rstrip("=") != run.replace(",", "/"):
            raise ValueError("modified UTF-7 sequence has non-zero padding bits")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError:
            raise ValueError("modified UTF-7 sequence has a broken surrogate") from None
        if any(0x20 <= ord(c) <= 0x7E for c in text):
            raise ValueError("modified UTF-7 sequence encodes printable ASCII")
        out.append(text)
        last_was_encoded = True
    return "".join(out)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name for a response: modified UTF-7 unless the session uses UTF-8."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else mutf7_encode(name), utf8=utf8)


# ---------------------------------------------------------------------------------------------
# Dates

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

_DATETIME = re.compile(
    rb"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", re.ASCII
)


def format_datetime(when: _dt.datetime) -> str:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    offset = when.utcoffset() or _dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{when.day:02d}-{MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{hours:02d}{mins:02d}"
    )


def internaldate(when: _dt.datetime) -> bytes:
    """The quoted INTERNALDATE value for a FETCH response."""
    return b'"' + format_datetime(when).encode("ascii") + b'"'


def month_number(name: str | bytes) -> int | None:
    """1-12 for a three-letter month name in any case, else None."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return _MONTH_NUMBER.get(name.upper())


def parse_datetime(value: str | bytes) -> _dt.datetime:
    """Parse an IMAP date-time (without the quotes); ValueError when invalid."""
    data = _to_bytes(value)
    m = _DATETIME.fullmatch(data)
    if not m:
        raise ValueError("date-time is not dd-Mon-yyyy hh:mm:ss +zzzz")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    month = month_number(mon)
    if month is None:
        raise ValueError("unknown month in date-time")
    if int(om) > 59:
        raise ValueError("bad zone in date-time")
    offset = _dt.timedelta(hours=int(oh), minutes=int(om))
    if sign == b"-":
        offset = -offset
    try:
        return _dt.datetime(
            int(year),
            month,
            int(day.strip()),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=_dt.timezone(offset),
        )
    except ValueError:
        raise ValueError("date-time out of range") from None


# ---------------------------------------------------------------------------------------------
# Flags

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")
_SYSTEM_BY_UPPER = {f.upper(): f for f in SYSTEM_FLAGS}


def is_valid_flag(name: str, *, allow_recent: bool = True) -> bool:
    """True for a system flag, a ``\\extension`` flag or a keyword (an atom).

    ``allow_recent=False`` for STORE and APPEND, where clients may not set ``\\Recent``.
    """
    if not name or not name.isascii():
        return False
    if name.startswith("\\"):
        if not allow_recent and name.upper() == "\\RECENT":
            return False
        return is_atom(name[1:])
    return is_atom(name)


def canonical_flag(name: str) -> str:
    """System flags in their usual spelling (``\\SEEN`` -> ``\\Seen``); others as given."""
    return _SYSTEM_BY_UPPER.get(name.upper(), name)
