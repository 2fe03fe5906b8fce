"""Mail addresses: the one place they are parsed, checked and put in canonical form.

SMTP, the CLI and every caller of the store go through here, so that ``User@Bücher.Example.``,
``user@xn--bcher-kva.example`` and ``"user"@BÜCHER.example`` are the same key everywhere.

Canonical form (what :func:`normalize_address` returns and the store keeps):

- the domain in lower-case IDNA A-label form (IDNA 2008 with UTS #46 mapping), no trailing dot;
  an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``) is kept as written;
- the local part with quotes and backslash escapes removed, Unicode in NFC, ASCII letters in
  lower case (we treat local parts case-insensitively; non-ASCII letters keep their case), and
  quoted again only when it cannot be written as a plain dot-string (``"a b"@example.org``).

Relay tricks. Old mailers routed mail through a host named in the local part: the percent hack
``user%other.example@relay.example``, UUCP bang paths ``other.example!user@relay.example``, a
quoted ``"user@other.example"@relay.example`` and RFC 821 source routes
``@relay.example:user@other.example``. Postfix calls this sender-specified routing and by
default refuses it from untrusted clients (``allow_untrusted_routing = no``) because a backup
MX or a downstream MTA that still honours it becomes an open relay. :func:`parse_path` names
the trick it sees in :attr:`ParsedAddress.trick`; the recipient resolver refuses such
addresses. Nothing here rewrites them: we never act on the routing.
"""

from __future__ import annotations

import functools
import ipaddress
import unicodedata
from dataclasses import dataclass

import idna

__all__ = [
    "NeedsSmtpUtf8",
    "ParsedAddress",
    "TRICK_BANG_PATH",
    "TRICK_PERCENT_HACK",
    "TRICK_QUOTED_AT",
    "TRICK_SOURCE_ROUTE",
    "format_local",
    "normalize_address",
    "normalize_domain",
    "normalize_local",
    "parse_local",
    "parse_path",
    "plus_base",
    "split_address",
]

# Names of the relay tricks parse_path recognises (values of ParsedAddress.trick).
TRICK_SOURCE_ROUTE = "source-route"  # @a,@b:user@dom, or a ':' left in the local part
TRICK_QUOTED_AT = "quoted-at"  # "user@other"@dom
TRICK_PERCENT_HACK = "percent-hack"  # user%other@dom
TRICK_BANG_PATH = "bang-path"  # other!user@dom

MAX_DOMAIN = 253  # octets of a domain name in text form, without the trailing dot
MAX_LABEL = 63
# RFC 5321 says 64 octets; bounce addresses (SRS, VERP, BATV) in the wild are longer, so we
# take up to 128 as mox does, and bound the whole address by the 254-octet path limit. An SRS
# local part (gomail.srs) holds a whole address, so only that path limit bounds it.
MAX_LOCAL = 128
MAX_ADDRESS = 254

# RFC 5322 atext: what a local part may hold without quotes (besides '.' and, with
# SMTPUTF8, non-ASCII characters).
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_DOT_ATEXT = _ATEXT | {"."}
_ROUTE_ATEXT = _DOT_ATEXT | {":", ","}
# Other full stops that UTS #46 maps to '.' (RFC 3490 section 3.1).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_UNPRINTABLE = frozenset(("Cc", "Cs", "Zs", "Zl", "Zp"))


class NeedsSmtpUtf8(ValueError):
    """The address has non-ASCII characters and the client did not ask for SMTPUTF8.

    SMTP answers it with 553 5.6.7 (RFC 6531).
    """


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """A MAIL FROM or RCPT TO path as the client gave it, checked and classified.

    ``local`` is the local part with quotes and escapes removed, case as given (NFC);
    ``domain`` is normalised; ``address`` is the canonical form (:func:`normalize_address`).
    ``trick`` names the relay trick found (``TRICK_*``) or is None. ``non_ascii`` says the
    path needed SMTPUTF8.
    """

    raw: str
    local: str
    domain: str
    address: str
    trick: str | None
    non_ascii: bool


# --- domains --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def normalize_domain(domain: str) -> str:
    """The domain in canonical form: lower-case IDNA A-labels, no trailing dot.

    ``"BÜCHER.example"``, ``"xn--bcher-kva.example"`` and ``"bücher.example."`` all give
    ``"xn--bcher-kva.example"``. An address literal (``"[192.0.2.1]"``,
    ``"[IPv6:2001:db8::1]"``) is checked and returned as written. Raises ValueError with the
    reason for anything else that is not a valid host name.
    """
    if not isinstance(domain, str):
        raise ValueError(f"domain must be a string, not {type(domain).__name__}")
    d = domain.strip()
    if d.startswith("["):
        return _check_literal(d)
    d = d.translate(_DOTS)
    if d.endswith("."):
        d = d[:-1]
    if not d:
        raise ValueError(f"invalid domain {domain!r}: empty")
    labels = d.split(".")
    if any(not label for label in labels):
        raise ValueError(f"invalid domain {domain!r}: empty label")
    try:
        ipaddress.IPv4Address(d)
    except ValueError:
        pass
    else:
        raise ValueError(f"invalid domain {domain!r}: an IP address must be written [{d}]")
    if d.isascii():
        # Most domains: check the LDH rule ourselves, and leave IDNA for real A-labels.
        d = d.lower()
        for label in labels:
            _check_ldh_label(domain, label.lower())
        if "xn--" in d:
            d = _idna(domain, d)
    else:
        d = _idna(domain, d)
    if len(d) > MAX_DOMAIN:
        raise ValueError(f"invalid domain {domain!r}: longer than {MAX_DOMAIN} characters")
    return d


def _check_ldh_label(domain: str, label: str) -> None:
    if len(label) > MAX_LABEL:
        raise ValueError(f"invalid domain {domain!r}: label longer than {MAX_LABEL} characters")
    for c in label:
        if not (c.isalnum() or c == "-"):
            raise ValueError(f"invalid domain {domain!r}: character {c!r} not allowed")
    if label[0] == "-" or label[-1] == "-":
        raise ValueError(f"invalid domain {domain!r}: label {label!r} starts or ends with '-'")
    if label[2:4] == "--" and not label.startswith("xn--"):
        raise ValueError(f"invalid domain {domain!r}: label {label!r} has '--' at 3rd place")


def _idna(domain: str, d: str) -> str:
    if len(d) > 4 * MAX_DOMAIN:  # spare the IDNA code absurd input
        raise ValueError(f"invalid domain {domain!r}: longer than {MAX_DOMAIN} characters")
    try:
        # IDNAError and the punycode codec's errors on broken A-labels are UnicodeErrors.
        out = idna.encode(d, uts46=True).decode("ascii")
    except UnicodeError as e:
        raise ValueError(f"invalid domain {domain!r}: {e}") from None
    if out.endswith("."):  # a last label that UTS #46 maps to nothing (a soft hyphen)
        raise ValueError(f"invalid domain {domain!r}: empty label")
    return out


def _check_literal(d: str) -> str:
    if not d.endswith("]"):
        raise ValueError(f"invalid address literal {d!r}: missing ']'")
    inner = d[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        raise ValueError(
            f"invalid address literal {d!r}: expected [IPv4 address] or [IPv6:address]"
        ) from None
    return d


# --- local parts ----------------------------------------------------------------------------


def parse_local(local: str) -> str:
    """The local part as written in a path (dot-string or quoted-string) → its value.

    Quotes and backslash escapes are removed and Unicode is put in NFC; case is kept.
    Raises ValueError when it is empty, too long or has characters it may not have.
    """
    return _parse_local(local, _DOT_ATEXT)


def _parse_local(local: str, allowed: frozenset[str]) -> str:
    if not local:
        raise ValueError("empty local part")
    if local.startswith('"'):
        value = _unquote(local)
    else:
        for c in local:
            if c not in allowed and (c.isascii() or _unprintable(c)):
                raise ValueError(f"invalid local part {local!r}: character {c!r} not allowed")
        value = local
    if not value:
        raise ValueError("empty local part")
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    limit = MAX_ADDRESS if _srs_like(value) else MAX_LOCAL
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise ValueError(f"local part longer than {limit} octets")
    return value


def _srs_like(value: str) -> bool:
    return value[:4].upper() in ("SRS0", "SRS1") and value[4:5] in ("=", "+", "-")


def _unquote(local: str) -> str:
    out: list[str] = []
    i, n = 1, len(local)
    while i < n:
        c = local[i]
        if c == "\\":
            if i + 1 >= n or not (" " <= local[i + 1] <= "~"):
                raise ValueError(f"invalid local part {local!r}: bad backslash escape")
            out.append(local[i + 1])
            i += 2
            continue
        if c == '"':
            if i != n - 1:
                raise ValueError(f"invalid local part {local!r}: text after the closing quote")
            return "".join(out)
        if c.isascii() and not (" " <= c <= "~") or not c.isascii() and _unprintable(c):
            raise ValueError(f"invalid local part {local!r}: character {c!r} not allowed")
        out.append(c)
        i += 1
    raise ValueError(f"invalid local part {local!r}: missing closing quote")


def _unprintable(c: str) -> bool:
    return unicodedata.category(c) in _UNPRINTABLE


def format_local(value: str) -> str:
    """A local part value written for a path: as is when every character may appear
    unquoted (dots anywhere are tolerated, as real MTAs do), else as a quoted-string."""
    if value and all(c in _DOT_ATEXT or not c.isascii() for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize_local(value: str) -> str:
    """A local part value (see :func:`parse_local`) compared case-insensitively: ASCII
    letters lowered, the rest kept."""
    if value.isascii():
        return value.lower()
    return "".join(c.lower() if c.isascii() else c for c in value)


def plus_base(local: str, separator: str = "+") -> str | None:
    """The base of a sub-address: ``"user"`` for ``"user+tag"``, None when there is no tag.

    The local part is cut at the first separator character; like Postfix's
    ``recipient_delimiter``, a separator of several characters means any of them
    (``"+-"``), and an empty one turns sub-addressing off. A local part that starts with the
    separator has no base (None).
    """
    if not separator:
        return None
    if len(separator) == 1:
        cut = local.find(separator)
    else:
        cut = min((i for i in (local.find(s) for s in separator) if i >= 0), default=-1)
    if cut <= 0:
        return None
    return local[:cut]


# --- addresses ------------------------------------------------------------------------------


def split_address(addr: str) -> tuple[str, str]:
    """(local part, domain) of ``addr``, split at the last '@', both as written.

    Surrounding white space is ignored. Raises ValueError when there is no '@' or either
    side is empty.
    """
    if not isinstance(addr, str):
        raise ValueError(f"address must be a string, not {type(addr).__name__}")
    a = addr.strip()
    local, at, domain = a.rpartition("@")
    if not at:
        raise ValueError(f"invalid address {addr!r}: no '@'")
    if not local:
        raise ValueError(f"invalid address {addr!r}: empty local part")
    if not domain:
        raise ValueError(f"invalid address {addr!r}: empty domain")
    return local, domain


def normalize_address(addr: str) -> str:
    """``addr`` in canonical form (see the module docstring); ValueError if malformed.

    ``"User+Tag@BÜCHER.Example."`` gives ``"user+tag@xn--bcher-kva.example"`` and
    ``'"john"@example.org'`` gives ``"john@example.org"``. An alias's catch-all source
    ``"@domain"`` is not an address: use :func:`normalize_domain` on its domain.
    """
    local, domain = split_address(addr)
    value = parse_local(local)
    out = format_local(normalize_local(value)) + "@" + normalize_domain(domain)
    _check_length(addr, out)
    return out


def _check_length(addr: str, canonical: str) -> None:
    if len(canonical.encode("utf-8", "surrogatepass")) > MAX_ADDRESS:
        raise ValueError(f"invalid address {addr!r}: longer than {MAX_ADDRESS} octets")


def parse_path(addr: str, smtputf8: bool) -> ParsedAddress:
    """Check and classify a MAIL FROM or RCPT TO path as the SMTP server hands it over.

    ``addr`` is the addr-spec without its angle brackets (a surrounding pair is tolerated),
    quoted local parts with their quotes. A source route (``@a,@b:user@dom``, which aiosmtpd
    already drops) is recognised and the address after it used. ``smtputf8`` says whether
    the client gave the SMTPUTF8 parameter: when it did not, an address with non-ASCII
    characters raises :class:`NeedsSmtpUtf8`. Anything malformed raises ValueError, which
    includes the null path ``""``: the caller handles ``MAIL FROM:<>`` before calling this.
    """
    if not isinstance(addr, str):
        raise ValueError(f"address must be a string, not {type(addr).__name__}")
    raw = addr
    a = addr.strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1].strip()
    if not a:
        raise ValueError("empty address")
    non_ascii = not a.isascii()
    if non_ascii and not smtputf8:
        raise NeedsSmtpUtf8(f"address {raw!r} has non-ASCII characters and needs SMTPUTF8")

    trick: str | None = None
    if a.startswith("@"):
        # RFC 821 source route: "@hop1,@hop2:user@domain".
        route, colon, rest = a.partition(":")
        if not colon or not rest:
            raise ValueError(f"invalid address {raw!r}: source route without a mailbox")
        a = rest
        trick = TRICK_SOURCE_ROUTE

    local_raw, domain_raw = split_address(a)
    if local_raw.startswith('"'):
        value = parse_local(local_raw)
        if ":" in value:
            trick = trick or TRICK_SOURCE_ROUTE
    else:
        if ":" in local_raw:
            # Left-overs of routing ("hop:user@dom"): not a valid addr-spec, but named as
            # the trick it is rather than refused as a syntax error.
            trick = trick or TRICK_SOURCE_ROUTE
            value = _parse_local(local_raw, _ROUTE_ATEXT)
        else:
            value = parse_local(local_raw)
    if trick is None:
        if "@" in value:
            trick = TRICK_QUOTED_AT
        elif "%" in value:
            trick = TRICK_PERCENT_HACK
        elif "!" in value:
            trick = TRICK_BANG_PATH

    domain = normalize_domain(domain_raw)
    address = format_local(normalize_local(value)) + "@" + domain
    _check_length(raw, address)
    return ParsedAddress(raw, value, domain, address, trick, non_ascii)
