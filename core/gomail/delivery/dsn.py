"""Delivery status notifications (RFC 3464): the bounce a sender gets for failed recipients,
and the delay notice (``Action: delayed``) for recipients still being retried.

A ``multipart/report; report-type=delivery-status`` message: a readable explanation, the
``message/delivery-status`` part naming each failed recipient with the remote server's answer,
and the original message's header (``text/rfc822-headers``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Failure:
    recipient: str
    reply: str  # "550 5.1.1 No such user" (the remote answer, or ours)
    remote_mta: str | None = None  # the MX host that answered, None when none did


def status_of(reply: str) -> str:
    m = _ENHANCED.match(reply)
    if m:
        return m.group(1)
    return "4.0.0" if reply[:1] == "4" else "5.0.0"


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def original_header(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def build_dsn(
    *,
    hostname: str,
    sender: str,
    failures: list[Failure],
    original: bytes,
    queue_id: str,
    arrival: float,
    now: float,
    will_retry_until: float | None = None,
) -> bytes:
    """The DSN, as CRLF bytes, from MAILER-DAEMON@hostname to sender. will_retry_until given:
    a delay notice (``Action: delayed``, RFC 3464 2.3.3), the failures being temporary."""
    delayed = will_retry_until is not None
    if delayed:
        subject = "Delayed Mail (still being retried)"
    else:
        subject = "Undelivered Mail Returned to Sender"
    boundary = f"gomail-dsn-{secrets.token_hex(8)}"
    date = formatdate(now, localtime=False)
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{secrets.token_hex(12)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a delivery status notification in MIME format.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at {hostname}.",
        "",
    ]
    if delayed:
        until = format_datetime(datetime.fromtimestamp(will_retry_until, UTC))
        lines += [
            "Your message could not be delivered yet to one or more recipients.",
            f"It will be retried until {until}; you need not send it again.",
            "The answers the receiving mail systems gave are below.",
            "",
        ]
    else:
        lines += [
            "Your message could not be delivered to one or more recipients.",
            "The answers the receiving mail systems gave are below.",
            "",
        ]
    for f in failures:
        via = f" (from {f.remote_mta})" if f.remote_mta else ""
        lines.append(f"<{_ascii(f.recipient)}>{via}:")
        lines.append(f"    {_ascii(f.reply)}")
        lines.append("")
    arrived = format_datetime(datetime.fromtimestamp(arrival, UTC))
    lines += [
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {hostname}",
        f"X-Gomail-Queue-ID: {queue_id}",
        f"Arrival-Date: {arrived}",
        "",
    ]
    for f in failures:
        lines.append(f"Final-Recipient: rfc822; {_ascii(f.recipient)}")
        lines.append("Action: delayed" if delayed else "Action: failed")
        status = status_of(f.reply)
        if delayed and status[:1] != "4":
            status = "4.0.0"  # an odd answer (1xx, 3xx) taken as temporary
        lines.append(f"Status: {status}")
        if f.remote_mta:
            lines.append(f"Remote-MTA: dns; {f.remote_mta}")
        lines.append(f"Diagnostic-Code: smtp; {_ascii(f.reply)}")
        lines.append(f"Last-Attempt-Date: {date}")
        if delayed:
            lines.append(f"Will-Retry-Until: {until}")
        lines.append("")
    head = original_header(original)
    cte = "7bit" if head.isascii() else "8bit"
    text = (
        "\r\n".join(lines).encode()
        + (
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        ).encode()
    )
    return text + head + f"\r\n--{boundary}--\r\n".encode()
