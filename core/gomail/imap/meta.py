"""``message_meta(raw)``: everything IMAP keeps about a message, computed once.

The SMTP delivery path, APPEND and FETCH (for a message stored without it) call
:func:`message_meta`; the store keeps the result next to the body (see
:class:`gomail.store.MessageMeta`). It never raises: whatever part cannot be computed is left
at its default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from gomail.imap import sections, structure
from gomail.store import MessageMeta

__all__ = ["MAX_TEXT", "base_subject", "message_meta", "msg_ids"]

log = logging.getLogger("gomail.imap")

MAX_TEXT = 1_000_000  # characters of body text kept for SEARCH BODY/TEXT
MAX_HEADER_TEXT = 256 * 1024

_WSP = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ ]*"
_LEADER = re.compile(rf"[ ]+|(?:{_BLOB})*(?:re|fwd?)[ ]*(?:{_BLOB})?:", re.I)
_BLOB_LEAD = re.compile(_BLOB)
_FWD = re.compile(r"\A\[fwd:(.*)\]\Z", re.I | re.S)
_MSG_ID = re.compile(r"<[^<>\s]+>")


def _without_trailer(s: str) -> str:
    """Step 2: trailing spaces and "(fwd)"s removed, scanning back once (a regex anchored
    at the end tries every start: quadratic on a long run of them)."""
    end = len(s)
    while end:
        if s[end - 1] == " ":
            end -= 1
        elif s[max(0, end - 5) : end].lower() == "(fwd)":
            end -= 5
        else:
            break
    return s[:end]


def _without_leaders(s: str) -> str:
    """Steps 3 and 4: leaders ("Re:", "[blob] Fwd:") and leading blobs removed, walking an
    index forward rather than re-matching the rest of the subject after each removal."""
    pos, n = 0, len(s)
    while pos < n:
        m = _LEADER.match(s, pos)
        if m is not None and m.end() > pos:
            pos = m.end()
            continue
        # No leader here. If a run of blobs starts here, no leader starts after any of them
        # either (the leader pattern would have matched them as its own prefix): drop them
        # all, keeping the last when nothing else follows it.
        while (b := _BLOB_LEAD.match(s, pos)) is not None and b.end() < n:
            pos = b.end()
        break
    return s[pos:]


def base_subject(subject: str) -> str:
    """The RFC 5256 section 2.1 base subject of an (already RFC 2047 decoded) subject.

    Linear in the subject's length: a sender chooses it, and it is computed at delivery.
    """
    s = _WSP.sub(" ", subject)
    for _ in range(100):  # each round removes something; bounded anyway
        s = _without_leaders(_without_trailer(s))
        m = _FWD.match(s)  # step 5
        if not m:
            break
        s = m.group(1)
    return s.strip(" ")


def msg_ids(value: str) -> list[str]:
    """The ``<id>`` tokens of a Message-ID / In-Reply-To / References value."""
    return _MSG_ID.findall(value)


def _first_mailbox(value: str) -> str:
    """addr-mailbox of the first address (RFC 5256 SORT FROM/TO/CC), lower case."""
    for _name, _adl, mailbox, host in structure.parse_address_list(value):
        if host is not None and mailbox:
            return mailbox.lower()
    return ""


def _headers(raw: bytes) -> list[tuple[str, str]]:
    """(name as written, unfolded decoded value) of every header field."""
    out = []
    for _lname, fs, fe in structure.header_fields(raw, 0, structure.header_end(raw)):
        colon = raw.find(b":", fs, fe)
        if colon < 0:
            continue
        name = raw[fs:colon].strip().decode("latin-1")
        value = structure.unfold(raw[colon + 1 : fe].decode("utf-8", "replace"))
        out.append((name, sections.decode_words(value)))
    return out


def message_meta(raw: bytes) -> MessageMeta:
    """ENVELOPE/BODY/BODYSTRUCTURE, part map, search and sort fields of a message."""
    fields: dict = {}
    pmap = None
    try:
        st = structure.analyse(raw)
        pmap = st.part_map
        fields.update(
            envelope=st.envelope,
            body=st.body,
            bodystructure=st.bodystructure,
            part_map=json.dumps(pmap, separators=(",", ":")),
        )
    except Exception:  # pragma: no cover - structure promises not to raise
        log.exception("cannot analyse a message's structure")
    try:
        headers = _headers(raw)
        lines = [f"{n}: {v.replace(chr(0), '')}" for n, v in headers]
        fields["header_text"] = "\n".join(lines)[:MAX_HEADER_TEXT]
        first: dict[str, str] = {}
        every: dict[str, list[str]] = {}
        for name, value in headers:
            lname = name.lower()
            first.setdefault(lname, value)
            every.setdefault(lname, []).append(value)
        subject = first.get("subject", "")
        fields["subject"] = subject
        fields["sort_subject"] = base_subject(subject)
        for key, attr in (("from", "from_"), ("to", "to"), ("cc", "cc"), ("bcc", "bcc")):
            fields[attr] = ", ".join(every.get(key, ()))
        for key in ("from", "to", "cc"):
            if key in first:
                fields[f"sort_{key}"] = _first_mailbox(first[key])
        ids = msg_ids(first.get("message-id", ""))
        fields["message_id"] = ids[0] if ids else ""
        ids = msg_ids(first.get("in-reply-to", ""))
        fields["in_reply_to"] = ids[0] if ids else ""
        fields["references"] = " ".join(msg_ids(first.get("references", "")))
    except Exception:
        log.exception("cannot read a message's header fields")
    try:
        when = sections.sent_date(raw)
        if when is not None:
            fields["date"] = when.timestamp()
            day = when.date()  # as written: the header's own zone
            fields["sent_day"] = day.year * 10000 + day.month * 100 + day.day
    except Exception:
        pass
    try:
        fields["text"] = sections.text_for_index(raw, pmap)[:MAX_TEXT].replace("\0", "")
    except Exception:
        log.exception("cannot extract a message's text")
    return MessageMeta(**fields)


# Messages larger than this are parsed in a thread: on the event loop they would stall every
# other session for milliseconds.
PARSE_IN_THREAD = 256 * 1024


async def message_meta_async(raw: bytes) -> MessageMeta:
    """:func:`message_meta`, off the event loop for a large message."""
    if len(raw) > PARSE_IN_THREAD:
        return await asyncio.to_thread(message_meta, raw)
    return message_meta(raw)
