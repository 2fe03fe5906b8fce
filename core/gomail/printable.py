"""Client-supplied text made safe for a header, a reply or a log line.

A HELO name, an address, a login name or anything else a client sent must never carry a line
break into a header we write (header injection: ``EHLO a\\rX-Evil: 1``), a reply we send or
a log line (a forged log entry). :func:`printable` replaces each control character with
``?``, as Postfix does for HELO names and addresses in its headers and logs.
"""

from __future__ import annotations

import re

# C0 controls (CR, LF, NUL, TAB …), DEL, C1 controls (NEL …), the Unicode line and paragraph
# separators, and lone surrogates (undecodable bytes kept by "surrogateescape").
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# What an SMTP command line may not contain (RFC 5321 4.1.2: no controls at all; TAB is
# tolerated as white space, as Postfix and aiosmtpd do).
COMMAND_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` with every control character (see :data:`CONTROL`) replaced by ``?``."""
    return CONTROL.sub("?", text)
