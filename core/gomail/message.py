"""The message as plugins see it: raw bytes, a parsed view, and edits applied once.

Edits are recorded in the order plugins make them and applied together when the ``data``
stage ends, in the spirit of milter: every plugin of the stage sees the message as it was
received. Header edits work on the raw bytes, so headers and body that nobody edits keep
their exact bytes (a DKIM signature made upstream stays valid).
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Literal

EditKind = Literal[
    "add_header",
    "change_header",
    "delete_header",
    "replace_body",
    "replace_message",
    "add_recipient",
    "remove_recipient",
    "change_sender",
]


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to the message or its envelope, as a plugin asked for it."""

    kind: EditKind
    name: str = ""
    value: str = ""
    index: int = 1
    data: bytes = b""
    plugin: str | None = None


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """Split raw bytes into header fields (each with its folded lines and line ending) and body.

    The separator line between them belongs to neither; a message without one is all header.
    """
    fields: list[bytes] = []
    pos = 0
    end = len(raw)
    while pos < end:
        nl = raw.find(b"\n", pos)
        line_end = end if nl < 0 else nl + 1
        line = raw[pos:line_end]
        if line in (b"\r\n", b"\n"):
            return fields, raw[line_end:]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = line_end
    return fields, b""


def field_name(fieldbytes: bytes) -> str:
    colon = fieldbytes.find(b":")
    return fieldbytes[: colon if colon >= 0 else len(fieldbytes)].strip().decode("latin-1").lower()


def _format_field(name: str, value: str) -> bytes:
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return f"{name}: {value}\r\n".encode()


def _nth(fields: list[bytes], name: str, index: int) -> int | None:
    """Position of the index-th (1-based) field called name, or None."""
    seen = 0
    lname = name.lower()
    for pos, f in enumerate(fields):
        if field_name(f) == lname:
            seen += 1
            if seen == index:
                return pos
    return None


def apply_header_edits(raw: bytes, edits: list[Edit]) -> bytes:
    """Apply the message edits (headers, body, whole message) in order to raw bytes."""
    fields, body = split_message(raw)
    for e in edits:
        if e.kind == "replace_message":
            fields, body = split_message(e.data)
        elif e.kind == "replace_body":
            body = e.data
        elif e.kind == "add_header":
            f = _format_field(e.name, e.value)
            if e.index <= 0:
                fields.append(f)
            else:
                fields.insert(min(e.index - 1, len(fields)), f)
        elif e.kind == "change_header":
            pos = _nth(fields, e.name, e.index)
            if pos is None:
                fields.append(_format_field(e.name, e.value))
            else:
                fields[pos] = _format_field(e.name, e.value)
        elif e.kind == "delete_header":
            pos = _nth(fields, e.name, e.index)
            if pos is not None:
                del fields[pos]
    return b"".join(fields) + b"\r\n" + body


@dataclass(slots=True)
class Message:
    """A message in the ``data`` stage: what was received, and what plugins want changed.

    ``raw`` is the message as received (CRLF line endings, dot-stuffing removed), ``parsed``
    a lazily built :class:`email.message.EmailMessage` of it. Plugins never assign to
    either: they call the edit methods, and the core applies the edits once, after the stage.
    """

    raw: bytes
    edits: list[Edit] = field(default_factory=list)
    _parsed: EmailMessage | None = None
    _current_plugin: str | None = None

    @property
    def parsed(self) -> EmailMessage:
        if self._parsed is None:
            self._parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        return self._parsed

    @property
    def size(self) -> int:
        return len(self.raw)

    def header_fields(self) -> list[tuple[str, str]]:
        """(name, unfolded value) pairs of the header, in order, decoded as UTF-8 leniently."""
        out = []
        for f in split_message(self.raw)[0]:
            name, _, value = f.decode("utf-8", "replace").partition(":")
            out.append((name.strip(), " ".join(value.split())))
        return out

    def get_header(self, name: str) -> str | None:
        lname = name.lower()
        for n, v in self.header_fields():
            if n.lower() == lname:
                return v
        return None

    def _edit(self, kind: EditKind, **kw) -> None:
        self.edits.append(Edit(kind, plugin=self._current_plugin, **kw))

    def add_header(self, name: str, value: str, index: int = 1) -> None:
        """Insert a header field; index 1 (the default) puts it on top, 0 at the end."""
        _check_header_name(name)
        self._edit("add_header", name=name, value=value, index=index)

    def change_header(self, name: str, value: str, index: int = 1) -> None:
        """Replace the index-th field called name (1-based); add it if there is none."""
        _check_header_name(name)
        self._edit("change_header", name=name, value=value, index=index)

    def delete_header(self, name: str, index: int = 1) -> None:
        """Remove the index-th field called name (1-based), if present."""
        self._edit("delete_header", name=name, index=index)

    def replace_body(self, body: bytes) -> None:
        self._edit("replace_body", data=body)

    def replace(self, raw: bytes) -> None:
        """Replace the whole message, header and body."""
        self._edit("replace_message", data=raw)

    def add_recipient(self, address: str) -> None:
        self._edit("add_recipient", value=address)

    def remove_recipient(self, address: str) -> None:
        self._edit("remove_recipient", value=address)

    def change_sender(self, address: str) -> None:
        self._edit("change_sender", value=address)

    @property
    def envelope_edits(self) -> list[Edit]:
        return [
            e
            for e in self.edits
            if e.kind in ("add_recipient", "remove_recipient", "change_sender")
        ]

    def edited(self) -> bytes:
        """The message with every content edit applied (raw itself when there are none)."""
        content = [e for e in self.edits if e not in self.envelope_edits]
        return apply_header_edits(self.raw, content) if content else self.raw


def _check_header_name(name: str) -> None:
    if not name or any(c in name for c in ": \t\r\n") or not name.isascii():
        raise ValueError(f"invalid header field name {name!r}")
