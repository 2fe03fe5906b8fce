"""SMTP reply texts: enhanced status codes (RFC 3463) for replies that aiosmtpd sends bare."""

from __future__ import annotations

import re

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")

# Replies with no enhanced code get one by reply code; a few by what they say.
_BY_CODE = {
    "221": "2.0.0",
    "250": "2.0.0",
    "252": "2.5.0",
    "421": "4.3.2",
    "451": "4.3.0",
    "452": "4.5.3",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
_BY_TEXT = (
    ("not recognized", "5.5.1"),
    ("lack of security", "5.7.0"),
    ("STARTTLS", "5.7.0"),
    ("Too many unrecognized", "5.5.1"),
    ("strict ASCII", "5.6.7"),
)
# Replies that never carry an enhanced code: greeting, DATA go-ahead, SASL challenges.
_BARE = ("220", "354", "334")


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def printable(line: str) -> str:
    """The reply line with control characters (a client's bare CR, LF or NUL echoed back
    in it) and undecodable octets replaced by ``?``: one reply line stays one line."""
    return _UNPRINTABLE.sub("?", line)


def with_enhanced(line: str) -> str:
    """The reply line with an enhanced status code inserted when it lacks one."""
    code = line[:3]
    if code in _BARE or len(line) < 4 or _HAS_ENHANCED.match(line):
        return line
    enhanced = _BY_CODE.get(code)
    if enhanced is None:
        return line
    if code.startswith("5"):
        for needle, enh in _BY_TEXT:
            if needle in line:
                enhanced = enh
                break
    return f"{code}{line[3]}{enhanced} {line[4:]}"
