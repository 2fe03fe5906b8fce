"""8-bit to 7-bit downgrade of a message, for a server that does not offer 8BITMIME.

RFC 6152 (section 3) leaves a client that holds an 8-bit message and faces a server without
8BITMIME two choices: convert the message to 7-bit MIME (RFC 2045), or return it as
undeliverable. :func:`to_seven_bit` is the conversion; when it answers ``None`` the caller
bounces with 5.6.3 as before.

What is converted. The MIME structure is walked on the raw bytes, and only the leaf parts
that need it are changed: a part whose body has 8-bit octets or a line over 998 octets and
whose Content-Transfer-Encoding is ``7bit``, ``8bit`` or absent is re-encoded

- as quoted-printable when it is ``text/*`` (its CRLF line breaks stay hard line breaks and
  its Content-Type, charset included, is kept), and
- as base64 for every other type, and for a ``Content-Transfer-Encoding: binary`` part of any
  type (there a CRLF is data, not a line break);

and its Content-Transfer-Encoding field is replaced in place (or added at the end of the
part's header). ``message/rfc822`` parts are recursed into, since RFC 2046 5.2.1 forbids
encoding them with base64 or quoted-printable; ``message/global`` and the other RFC 6532/6533
``message/global-*`` types may be encoded, so they get base64. A ``multipart/*`` or
``message/rfc822`` part whose content was converted and which is labelled ``8bit`` or
``binary`` is relabelled ``7bit``. A message (the top level, or one inside message/rfc822)
whose content was converted gets ``MIME-Version: 1.0`` when it has none, since the
Content-Transfer-Encoding it now carries means nothing without it.

Every other byte -- the header fields not named above, the parts that did not need a
change, preambles, epilogues and boundary lines -- is copied unchanged: the message is never
re-serialised with the :mod:`email` generator, which would rewrite headers and break the
DKIM signatures of parts that did not change. The email package is used only to read a
part's Content-Type (type, boundary), from that part's own header bytes.

A message with no Content-Type (a pre-MIME "just-send-8" message, or a MIME message relying
on the default) and an 8-bit body is labelled as RFC 1428 section 3 says a gateway that
knows nothing of its character set should: ``Content-Type: text/plain; charset=unknown-8bit``
plus ``MIME-Version: 1.0`` when it is missing, and the body is quoted-printable. This is what
Sendmail does (``EightBitMode=m``, ``DefaultCharSet`` ``unknown-8bit``). Postfix does not do
it: its downgrade (``mime_state`` with ``MIME_OPT_DOWNGRADE``) converts only what declares
``8bit``/``binary`` and sends an unlabelled 8-bit body on unchanged, which would break the
"output is 7-bit" promise here. A part inside a multipart with no Content-Type and 8-bit
content gets the same ``text/plain; charset=unknown-8bit`` label. A ``text/*`` part that has a
Content-Type without a charset keeps it unchanged (the decoded octets are the same either
way).

What is refused (``None``, the caller bounces):

- any raw 8-bit octet in a header section (RFC 6532 UTF-8 headers, in the message or in any
  part): that needs SMTPUTF8, and there is no safe 7-bit form for it here;
- a header line, preamble, epilogue or boundary line with 8-bit octets or over 998 octets;
- 8-bit octets or long lines inside a part already declared ``quoted-printable``, ``base64``
  or an unknown encoding (the part is broken; re-encoding it would hide that);
- 8-bit content in ``message/partial``, ``message/external-body`` (7bit only, RFC 2046) and
  other ``message/*`` types that may not be encoded; in a multipart without a boundary; in an
  entity whose header section cannot be parsed, or that has two Content-Type or two
  Content-Transfer-Encoding fields (which would be read differently by different readers);
  nesting deeper than :data:`MAX_DEPTH`;
- a part to convert with a line that begins with ``--`` and an enclosing boundary, or whose
  quoted-printable form would have one. RFC 2046 5.1.1 lets a reader match the boundary as a
  prefix of a line, and lenient readers also break lines at a bare LF, so such a line is a
  delimiter to some readers and not to others (this module splits only at exact delimiter
  lines after a CRLF); and a soft line break can start one in the encoded text. Rather than
  pick a reading, refuse.

DKIM. A downgrade changes the body of the converted parts and so necessarily breaks any
DKIM signature whose body hash covers them (RFC 6376 signs the body as sent), as it does for
every MTA that downgrades. That is why the caller converts only when the far side lacks
8BITMIME: the alternative is not delivering at all.

Input and output are whole messages with CRLF line ends, as sent in SMTP DATA (before
dot-stuffing). A message that is already 7-bit ASCII with no line over 998 octets is returned
as it is (the same bytes object). The work is linear in the size of the message (times the
nesting depth), so a 30 MB message is fine.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

__all__ = ["MAX_DEPTH", "MAX_LINE", "to_seven_bit"]

MAX_LINE = 998
"""Longest line, in octets without the CRLF, that SMTP allows (RFC 5321 4.5.3.1.6)."""

MAX_DEPTH = 50
"""Deepest nesting of multiparts and message/rfc822 that is converted."""

_CRLF = b"\r\n"
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_IDENTITY = {"", "7bit", "8bit"}  # the encodings that leave the octets as they are
_ENCODABLE_MESSAGES = {
    "message/global",
    "message/global-headers",
    "message/global-delivery-status",
    "message/global-disposition-notification",
}


class _Refused(Exception):
    """The message cannot be downgraded safely."""


def to_seven_bit(raw: bytes) -> bytes | None:
    """The message ``raw`` (CRLF line ends, header and body) as pure 7-bit ASCII with no line
    over 998 octets and the same decoded content, or ``None`` when that cannot be done safely
    (8-bit header, broken or ambiguous MIME structure, ...; see the module docstring).

    ``raw`` itself is returned when it is already 7-bit with short lines."""
    if not _needs_work(raw, 0, len(raw)):
        return raw
    try:
        out = b"".join(_entity(raw, 0, len(raw), message=True, boundaries=(), depth=0))
    except _Refused:
        return None
    if raw.endswith(_CRLF) and not out.endswith(_CRLF):
        out += _CRLF  # a base64 body at the end: the line break is only formatting there
    if _needs_work(out, 0, len(out)):  # cannot happen; the promise is checked, not assumed
        return None
    return out


# -- scanning ----------------------------------------------------------------------------------


def _needs_work(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] has an 8-bit octet or a line over MAX_LINE octets."""
    if _EIGHT_BIT.search(data, start, end):
        return True
    pos = start
    while True:
        eol = data.find(_CRLF, pos, end)
        if eol < 0:
            return end - pos > MAX_LINE
        if eol - pos > MAX_LINE:
            return True
        pos = eol + 2


def _has_boundary_line(data: bytes, boundaries: tuple[bytes, ...]) -> bool:
    """Whether a line of ``data`` begins with ``--`` and one of ``boundaries`` (a line broken
    by CRLF, or by a bare CR or LF, as lenient readers break them)."""
    for boundary in boundaries:
        delimiter = b"--" + boundary
        if data.startswith(delimiter) or b"\n" + delimiter in data or b"\r" + delimiter in data:
            return True
    return False


# -- one entity (a message, or a body part) ----------------------------------------------------


class _Header:
    """The header section of one entity: its raw field spans and its parsed Content-Type."""

    def __init__(self, data: bytes, start: int, end: int, default_type: str) -> None:
        self.data, self.start, self.end = data, start, end
        self.fields: list[tuple[str, int, int]] = []  # (lowercased name, start, end incl. CRLF)
        pos = start
        while pos < end:
            eol = data.find(_CRLF, pos, end)  # the section ends with a CRLF, so one is found
            if eol - pos > MAX_LINE:
                raise _Refused("header line too long")
            line = data[pos:eol]
            if line[:1] in (b" ", b"\t"):
                if not self.fields:
                    raise _Refused("continuation line before any header field")
                name, first, _ = self.fields[-1]
                self.fields[-1] = (name, first, eol + 2)
            else:
                m = _FIELD_NAME.match(line)
                if m is None:
                    raise _Refused("not a header field")
                self.fields.append((m.group(1).decode("ascii").lower(), pos, eol + 2))
            pos = eol + 2
        for name in ("content-type", "content-transfer-encoding"):
            if len(self.named(name)) > 1:
                raise _Refused(f"more than one {name} field")
        parsed: Message = BytesHeaderParser(policy=compat32).parsebytes(data[start:end])
        parsed.set_default_type(default_type)
        self.content_type = parsed.get_content_type()
        self.has_content_type = bool(self.named("content-type"))
        self.has_mime_version = bool(self.named("mime-version"))
        boundary = parsed.get_boundary()
        if boundary and not boundary.isascii():  # RFC 2231 can spell one that is not
            raise _Refused("boundary not in ASCII")
        self.boundary = boundary.encode("ascii") if boundary else None
        cte = parsed.get("content-transfer-encoding", "")
        self.cte = str(cte).split("(", 1)[0].strip().lower()

    def named(self, name: str) -> list[tuple[str, int, int]]:
        return [field for field in self.fields if field[0] == name]

    def rewritten(self, cte: str | None, add: list[bytes]) -> bytes:
        """The header section with its Content-Transfer-Encoding field replaced in place by
        ``cte`` (added at the end when it has none; left alone when ``cte`` is None) and the
        ``add`` fields appended; every other field byte for byte."""
        out: list[bytes] = []
        pos = self.start
        new_cte = None if cte is None else f"Content-Transfer-Encoding: {cte}\r\n".encode()
        for name, first, last in self.fields:
            if name == "content-transfer-encoding" and new_cte is not None:
                out += [self.data[pos:first], new_cte]
                pos, new_cte = last, None
        out.append(self.data[pos : self.end])
        out += add
        if new_cte is not None:
            out.append(new_cte)
        return b"".join(out)


def _entity(
    data: bytes,
    start: int,
    end: int,
    *,
    message: bool,
    boundaries: tuple[bytes, ...],
    depth: int,
    default_type: str = "text/plain",
) -> list[bytes]:
    """The converted form of the entity data[start:end], which needs work, as chunks.

    ``message`` is true for a message (the top level, or the content of a message/rfc822
    part), whose header may need MIME-Version; ``boundaries`` are those of the enclosing
    multiparts, which no converted line may begin."""
    if depth > MAX_DEPTH:
        raise _Refused("nested too deeply")
    if data.startswith(_CRLF, start):  # no header fields at all
        header_end, body_start = start, start + 2
    else:
        blank = data.find(b"\r\n\r\n", start, end)
        if blank < 0:  # a header section only, so the work needed is in it: refuse
            raise _Refused("8-bit or long line in a header section")
        header_end, body_start = blank + 2, blank + 4
    if _EIGHT_BIT.search(data, start, header_end):
        raise _Refused("8-bit header (needs SMTPUTF8)")
    header = _Header(data, start, header_end, default_type)
    kind = header.content_type
    add: list[bytes] = []
    if message and not header.has_mime_version:
        add.append(b"MIME-Version: 1.0\r\n")

    if kind.startswith("multipart/"):
        if header.cte not in _IDENTITY | {"binary"}:
            raise _Refused("multipart with an encoding")
        if header.boundary is None:
            raise _Refused("multipart without a boundary")
        body = _multipart(data, body_start, end, header.boundary, kind, boundaries, depth)
        cte = "7bit" if header.cte in ("8bit", "binary") else None
    elif kind == "message/rfc822":
        if header.cte not in _IDENTITY | {"binary"}:
            raise _Refused("message/rfc822 with an encoding")
        body = _entity(data, body_start, end, message=True, boundaries=boundaries, depth=depth + 1)
        cte = "7bit" if header.cte in ("8bit", "binary") else None
    elif kind.startswith("message/") and kind not in _ENCODABLE_MESSAGES:
        raise _Refused(f"{kind} may not be encoded")
    else:
        if header.cte not in _IDENTITY | {"binary"}:
            raise _Refused("8-bit or long lines in an already encoded part")
        content = data[body_start:end]
        if _has_boundary_line(content, boundaries):
            # "--boundaryX", or "--boundary" after a bare LF: a delimiter to some readers
            raise _Refused("a line of the part could be read as a boundary line")
        if kind.startswith("text/") and header.cte != "binary":
            cte, encoded = "quoted-printable", _quoted_printable(content)
            if _has_boundary_line(encoded, boundaries):
                raise _Refused("the quoted-printable form would contain a boundary line")
            if not header.has_content_type and _EIGHT_BIT.search(content):
                add.append(b"Content-Type: text/plain; charset=unknown-8bit\r\n")  # RFC 1428
        else:
            cte, encoded = "base64", _base64(content)
        body = [encoded]
    return [header.rewritten(cte, add), _CRLF, *body]


def _multipart(
    data: bytes,
    start: int,
    end: int,
    boundary: bytes,
    kind: str,
    boundaries: tuple[bytes, ...],
    depth: int,
) -> list[bytes]:
    """The converted body data[start:end] of a multipart: the parts that need work converted,
    every other byte (preamble, boundary lines, other parts, epilogue) as it was."""
    parts = _part_spans(data, start, end, boundary)
    if not parts:
        raise _Refused("multipart without parts")
    inner = (*boundaries, boundary)
    default_type = "message/rfc822" if kind == "multipart/digest" else "text/plain"
    out: list[bytes] = []
    pos = start
    for first, last in parts:
        if not _needs_work(data, first, last):
            continue
        if _needs_work(data, pos, first):
            raise _Refused("8-bit or long line outside the parts")
        out.append(data[pos:first])
        out += _entity(
            data,
            first,
            last,
            message=False,
            boundaries=inner,
            depth=depth + 1,
            default_type=default_type,
        )
        pos = last
    if _needs_work(data, pos, end):
        raise _Refused("8-bit or long line outside the parts")
    out.append(data[pos:end])
    return out


def _part_spans(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each body part of the multipart body data[start:end]: what lies
    between one delimiter line and the CRLF that begins the next (RFC 2046 5.1.1). A delimiter
    line is ``--boundary``, or ``--boundary--`` for the last, then optional spaces and tabs;
    without a closing delimiter the last part runs to the end."""
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while True:
        at = data.find(delimiter, pos, end)
        if at < 0:
            break
        if at != start and data[at - 2 : at] != _CRLF:  # not at the start of a line
            pos = at + 1
            continue
        eol = data.find(_CRLF, at, end)
        line_end = end if eol < 0 else eol
        rest = data[at + len(delimiter) : line_end]  # at most once per line: linear
        closing = rest.startswith(b"--")
        if (rest[2:] if closing else rest).strip(b" \t"):  # "--boundaryX": not a delimiter
            pos = at + 1
            continue
        if part_start is not None:
            # the CRLF before the delimiter belongs to it; an empty part has none of its own
            spans.append((part_start, max(part_start, at - 2)))
        if closing:
            return spans
        part_start = min(line_end + 2, end)
        pos = part_start
    if part_start is not None:
        spans.append((part_start, end))
    return spans


# -- encodings ---------------------------------------------------------------------------------


def _quoted_printable(content: bytes) -> bytes:
    """RFC 2045 6.7 quoted-printable of text: each CRLF stays a hard line break; within a line
    every octet outside printable ASCII, ``=``, trailing spaces and tabs, and a lone CR or LF
    are encoded, and lines are soft-broken to at most 76 characters."""
    return _CRLF.join(
        # istext=False: a bare CR or LF inside a line is data and is encoded too; with no line
        # break in its input, b2a_qp writes its soft breaks as "=\n"
        binascii.b2a_qp(line, quotetabs=False, istext=False, header=False).replace(b"=\n", b"=\r\n")
        for line in content.split(_CRLF)
    )


def _base64(content: bytes) -> bytes:
    """RFC 2045 6.8 base64 in lines of 76 characters joined by CRLF."""
    encoded = base64.b64encode(content)
    return _CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
