"""FETCH BODY[section] / BINARY[section] contents, and decoded text for SEARCH.

Pure functions on the raw message bytes and its stored part map
(:func:`gomail.imap.structure.part_map`); passing ``None`` for the map parses the message.

Sections (RFC 3501 section 6.4.5, RFC 9051 section 6.4.5):

- ``section`` is the tuple of part numbers, ``()`` for the message itself;
- ``specifier`` is ``None`` (or ``""``), ``"HEADER"``, ``"HEADER.FIELDS"``,
  ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"`` (any case); ``fields`` are the field names
  of HEADER.FIELDS, and ``not_`` turns HEADER.FIELDS into HEADER.FIELDS.NOT;
- part numbers address the parts of a multipart; a message that is not multipart has the one
  part ``1``, its body; numbers after a message/rfc822 part address the parts of the message
  inside it, and HEADER / TEXT after one are that message's header and body;
- a part that does not exist is the empty string, as Dovecot answers (not an error).

HEADER and MIME include the empty line that ends the header; HEADER.FIELDS returns the
matching fields as they are (folding kept), in message order, then an empty line.
"""

from __future__ import annotations

import binascii
import codecs
import datetime as _dt
import email.utils
import html
import re

from gomail.imap import structure
from gomail.imap.structure import first_values, header_end, header_fields, unfold

__all__ = [
    "UnknownEncoding",
    "binary_bytes",
    "binary_size",
    "decode_transfer",
    "decode_words",
    "header_values",
    "partial",
    "resolve",
    "section_bytes",
    "sent_date",
    "text_for_index",
]


class UnknownEncoding(ValueError):
    """BINARY on a part whose Content-Transfer-Encoding we cannot decode (``NO [UNKNOWN-CTE]``)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown content-transfer-encoding {encoding!r}")
        self.encoding = encoding


# ---------------------------------------------------------------------------------------------
# Section addressing


def _subparts(node: dict, as_message: bool) -> list[dict]:
    if "p" in node:
        return node["p"]
    if as_message:
        return [node]  # a message that is not multipart: part 1 is its body
    if "m" in node:
        return _subparts(node["m"], True)
    return []


def resolve(pmap: dict, section: tuple[int, ...]) -> dict | None:
    """The part map node of a part path, the root for ``()``, None if there is no such part."""
    node = pmap
    as_message = True
    for number in section:
        subs = _subparts(node, as_message)
        if not 1 <= number <= len(subs):
            return None
        node = subs[number - 1]
        as_message = False
    return node


def _header_fields_bytes(
    raw: bytes, span: list[int], names: list[str] | None, exclude: bool
) -> bytes:
    wanted = {n.lower() for n in names or ()}
    out = []
    for name, fs, fe in header_fields(raw, span[0], span[1]):
        if (name in wanted) != exclude:
            piece = raw[fs:fe]
            out.append(piece if piece.endswith(b"\n") else piece + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def section_bytes(
    raw: bytes,
    part_map: dict | None,
    section: tuple[int, ...],
    specifier: str | None,
    fields: list[str] | None = None,
    not_: bool = False,
) -> bytes:
    """The octets of ``BODY[section.specifier]`` (before any ``<partial>``)."""
    pmap = part_map if part_map is not None else structure.part_map(raw)
    spec = (specifier or "").upper()
    if spec == "HEADER.FIELDS.NOT":
        spec, not_ = "HEADER.FIELDS", True
    node = resolve(pmap, tuple(section))
    if node is None:
        return b""
    if not section:
        if spec == "":
            return raw
        message = node
    else:
        if spec == "":
            return raw[node["b"][0] : node["b"][1]]
        if spec == "MIME":
            return raw[node["h"][0] : node["h"][1]]
        message = node.get("m")
        if message is None:
            return b""  # HEADER / TEXT of a part that is not message/rfc822
    if spec == "HEADER":
        return raw[message["h"][0] : message["h"][1]]
    if spec == "TEXT":
        return raw[message["b"][0] : message["b"][1]]
    if spec == "HEADER.FIELDS":
        return _header_fields_bytes(raw, message["h"], fields, not_)
    return b""


def partial(data: bytes, start: int, length: int | None = None) -> bytes:
    """``<start.length>``: the octets from start, at most length of them (empty past the end)."""
    if start < 0:
        start = 0
    if start >= len(data):
        return b""
    return data[start:] if length is None else data[start : start + max(0, length)]


# ---------------------------------------------------------------------------------------------
# BINARY (RFC 3516)

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_IDENTITY = frozenset(("7bit", "8bit", "binary"))


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding, leniently; UnknownEncoding for one we do not know."""
    cte = (encoding or "7bit").strip().lower()
    if cte in _IDENTITY:
        return data
    if cte == "base64":
        clean = _NOT_BASE64.sub(b"", data)
        rest = len(clean) % 4
        if rest == 1:
            clean = clean[:-1]
        elif rest:
            clean += b"=" * (4 - rest)
        try:
            return binascii.a2b_base64(clean)
        except (binascii.Error, ValueError):
            return b""
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    raise UnknownEncoding(cte)


def binary_bytes(raw: bytes, part_map: dict | None, section: tuple[int, ...]) -> bytes:
    """``BINARY[section]``: the part's content with its transfer encoding undone.

    ``()`` is the whole message, as it is. A multipart or message/rfc822 part is returned as
    it is too. Raises :class:`UnknownEncoding` for an encoding we cannot undo.
    """
    if not section:
        return raw
    pmap = part_map if part_map is not None else structure.part_map(raw)
    node = resolve(pmap, tuple(section))
    if node is None:
        return b""
    body = raw[node["b"][0] : node["b"][1]]
    if "p" in node or "m" in node:
        return body
    return decode_transfer(body, node.get("e"))


def binary_size(raw: bytes, part_map: dict | None, section: tuple[int, ...]) -> int:
    """``BINARY.SIZE[section]``."""
    pmap = part_map if part_map is not None else structure.part_map(raw)
    node = resolve(pmap, tuple(section)) if section else pmap
    if node is None:
        return 0
    if not section or "p" in node or "m" in node or node.get("e", "7bit") in _IDENTITY:
        return len(raw) if not section else node["b"][1] - node["b"][0]
    return len(binary_bytes(raw, pmap, section))


# ---------------------------------------------------------------------------------------------
# Decoded header values, text and date for SEARCH

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BLANK_ONLY = re.compile(r"[ \t\r\n]*")


def _codec(charset: str) -> str:
    """The Python codec of a MIME charset name; UTF-8 for unknown ones and non-text codecs."""
    charset = charset.partition("*")[0].strip().lower()  # RFC 2231 language suffix
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return "utf-8"
    if not getattr(info, "_is_text_encoding", True):
        return "utf-8"  # base64, zlib, rot13 ... are not charsets
    return info.name


def _decode(data: bytes, charset: str) -> str:
    """Bytes in a MIME charset to str; never raises (bad octets replaced)."""
    try:
        return data.decode(_codec(charset), "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode("utf-8", "replace")  # idna, punycode, undefined ...


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if encoding in "bB":
        clean = _NOT_BASE64.sub(b"", data)
        rest = len(clean) % 4
        if rest == 1:
            clean = clean[:-1]
        elif rest:
            clean += b"=" * (4 - rest)
        try:
            return binascii.a2b_base64(clean)
        except (binascii.Error, ValueError):
            return b""
    return binascii.a2b_qp(data, header=True)


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded (unknown charsets as UTF-8, bad octets replaced).

    White space between adjacent encoded-words is dropped, and adjacent words in one charset
    are joined before decoding, so a character split across two words survives.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_codec = ""
    pos = 0

    def flush() -> None:
        if pending:
            out.append(_decode(b"".join(pending), pending_codec))
            pending.clear()

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if not (pending and _BLANK_ONLY.fullmatch(between)):
            flush()
            out.append(between)
        codec = _codec(m.group(1))
        if pending and codec != pending_codec:
            flush()
        pending_codec = codec
        pending.append(_word_bytes(m.group(2), m.group(3)))
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def header_values(raw: bytes, name: str) -> list[str]:
    """Every value of the message header field ``name``, unfolded and decoded (RFC 2047)."""
    lname = name.lower()
    out = []
    for fname, fs, fe in header_fields(raw, 0, header_end(raw)):
        if fname == lname:
            colon = raw.find(b":", fs, fe)
            value = raw[colon + 1 : fe] if colon >= 0 else b""
            out.append(decode_words(unfold(value.decode("utf-8", "replace"))))
    return out


def sent_date(raw: bytes) -> _dt.datetime | None:
    """The Date header as an aware datetime (UTC when it has no zone), None if unusable.

    The datetime keeps the header's own zone, so ``.date()`` is the date as written, which
    is what SENTBEFORE / SENTON / SENTSINCE compare (RFC 3501: time and zone disregarded).
    """
    value = first_values(raw, 0, header_end(raw), frozenset(("date",))).get("date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when


_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_NEWLINES = re.compile(r"\n\s*\n+")


def html_to_text(markup: str) -> str:
    """Rough text of HTML: scripts, styles, comments and tags dropped, entities decoded."""
    text = _SCRIPT_STYLE.sub(" ", markup)
    text = _COMMENT.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def _decode_text(data: bytes, charset: str | None) -> str:
    if charset:
        return _decode(data, charset)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _text_nodes(node: dict, out: list[dict]) -> None:
    if "p" in node:
        children = node["p"]
        if node["t"] == "multipart/alternative" and children:
            # one alternative: the plain text one, else the last (richest) one
            plain = [c for c in children if c["t"] == "text/plain"]
            children = plain[:1] or children[-1:]
        for c in children:
            _text_nodes(c, out)
    elif "m" in node:
        _text_nodes(node["m"], out)
    elif node["t"].startswith("text/"):
        out.append(node)


def text_for_index(raw: bytes, part_map: dict | None = None) -> str:
    """Decoded text of the message's text parts (HTML roughly stripped), for a full-text index.

    Of a multipart/alternative only one alternative is taken: the text/plain one, else the
    last one. Parts that are not text/* are left out; attached messages are walked into.
    """
    pmap = part_map if part_map is not None else structure.part_map(raw)
    nodes: list[dict] = []
    _text_nodes(pmap, nodes)
    texts = []
    for node in nodes:
        body = raw[node["b"][0] : node["b"][1]]
        try:
            body = decode_transfer(body, node.get("e"))
        except UnknownEncoding:
            pass
        text = _decode_text(body, node.get("c"))
        if node["t"] == "text/html":
            text = html_to_text(text)
        texts.append(text)
    return "\n".join(t for t in texts if t)
