"""SRS, the Sender Rewriting Scheme: the envelope sender of forwarded mail.

When an alias of ours forwards mail from ``alice@example.com`` to ``bob@elsewhere.net``, the
copy we send keeps SPF working downstream only if its envelope sender is in a domain of ours.
SRS rewrites it into one that carries the original, signed and dated, so that a bounce to it
comes back to us and we can send it on to ``alice@example.com``:

    SRS0=HHHH=TT=example.com=alice@our-domain

This is the de-facto format of Shevek's SRS paper as libsrs2, postsrsd and Mail::SRS write
it ("Guarded" scheme):

- ``HHHH``: HMAC-SHA1 with our secret over the lower-cased ``TT``, original domain and
  original local part, base64, the first 4 characters. Compared case-insensitively, because
  mailers on the way may change the case of a local part. A hash of another length is
  refused.
- ``TT``: the day it was made (days since the epoch modulo 1024) in two base32 characters
  (``A``-``Z2``-``7``). An address older than ``max_age_days`` (21 by default) is refused, and
  so is one dated in the future (as libsrs2 does).
- A sender that is already an SRS0 address of another forwarder (``SRS0=opaque@hop1``) is
  rewritten to ``SRS1=HHHH=hop1==opaque@our-domain``: a bounce to it goes back to hop1
  unchanged (``SRS0=opaque@hop1``), which checks its own hash and date. An SRS1 sender is
  rewritten to a new SRS1 with our hash and the same first hop.
- The separator after ``SRS0``/``SRS1`` may be ``=``, ``+`` or ``-`` when parsing; we write
  ``=``.

Several secrets may be given (key rotation, as postsrsd's secrets file): the first signs, any
of them verifies. The secret file holds one secret per line (a postsrsd secrets file works
as is); by default it is ``srs.secret`` in the data directory, made with a random secret on
first start (mode 0600). The file is read again when it changes, so a rotation needs no
restart: put the new secret on the first line and keep the old one below it for
``max_age_days``.

The rewritten address is in the SRS domain: ``srs.domain`` from the configuration, else the
domain of the alias that forwarded the message. postsrsd uses its ``srs-domain`` and else the
first of its local domains; what matters is that it is a domain we receive mail for (its MX
is us, so bounces come back) and whose SPF allows us. The alias's own domain always is, and
it does not show one customer's domain on another's forwarded mail. Addresses are verified
in any of our domains, whichever signed them.

Why not a library: ``pysrs`` 1.0.3 (2018) calls ``base64.encodestring``, gone since Python
3.9; ``srslib`` 0.1.5 checks a hash only as long as the one in the address, with no minimum,
so ``SRS0=x=...`` passes about one time in 36 and a forger can relay bounces through us.
This module is small, and its format is checked against libsrs2's in tests/core/test_srs.py.

Local parts longer than RFC 5321's 64 octets result when the original is long; like libsrs2
we send them anyway (mailers accept them in practice; gomail takes up to 128).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets as _random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gomail.address import (
    MAX_ADDRESS,
    format_local,
    normalize_domain,
    parse_local,
    split_address,
)
from gomail.address import normalize_local as _lower  # ASCII lowered, as libsrs2's tolower

if TYPE_CHECKING:
    from gomail.config import Config

log = logging.getLogger("gomail.srs")

HASH_LENGTH = 4
DEFAULT_MAX_AGE_DAYS = 21
TIME_PRECISION = 24 * 3600  # one day, in seconds
TIME_SLOTS = 1024  # two base32 characters
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
SEPARATORS = "=+-"
SECRET_FILE_NAME = "srs.secret"


class SRSError(ValueError):
    """An SRS address that may not be reversed; ``reason`` says why, for the SMTP reply."""

    reason = "not a valid SRS address"


class MalformedSRS(SRSError):
    reason = "malformed SRS address"


class BadHash(SRSError):
    reason = "SRS address has an invalid signature"


class Expired(SRSError):
    reason = "SRS address has expired"


def is_srs(local: str) -> bool:
    """Whether a local part (its value, unquoted) is an SRS0 or SRS1 address."""
    return len(local) > 4 and local[:4].upper() in ("SRS0", "SRS1") and local[4] in SEPARATORS


@dataclass(frozen=True, slots=True)
class _Parts:
    local: str  # the unquoted local part value
    domain: str


def _split(address: str) -> _Parts:
    local, domain = split_address(address)
    return _Parts(parse_local(local), domain)


class SRS:
    """Rewrites senders (``forward``) and unwraps SRS addresses (``reverse``)."""

    def __init__(
        self,
        secrets: Sequence[bytes | str],
        max_age_days: int = DEFAULT_MAX_AGE_DAYS,
        hash_length: int = HASH_LENGTH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = [s.encode() if isinstance(s, str) else bytes(s) for s in secrets]
        keys = [k for k in keys if k]
        if not keys:
            raise ValueError("SRS needs at least one secret")
        if not 0 < max_age_days < TIME_SLOTS:
            raise ValueError(f"SRS max_age_days must be between 1 and {TIME_SLOTS - 1}")
        self.keys = keys
        self.max_age_days = max_age_days
        self.hash_length = hash_length
        self.clock = clock

    # --- making ---------------------------------------------------------------------------

    def forward(self, sender: str, srs_domain: str) -> str:
        """The SRS address in ``srs_domain`` for the envelope sender ``sender``.

        ``sender`` is ``local@domain`` (the local part may be quoted); the result is written
        for an SMTP path (quoted when its local part needs it).
        """
        try:
            parts = _split(sender)
        except ValueError as exc:
            raise MalformedSRS(f"cannot rewrite sender {sender!r}: {exc}") from None
        local = self.forward_local(parts.local, parts.domain)
        address = f"{format_local(local)}@{srs_domain}"
        if len(address.encode("utf-8", "surrogatepass")) > MAX_ADDRESS:
            # it could not come back: no SMTP path holds it (RFC 5321 4.5.3.1.3)
            raise MalformedSRS(f"SRS address for {sender!r} would be over {MAX_ADDRESS} octets")
        return address

    def forward_local(self, local: str, domain: str) -> str:
        """The SRS local part for the sender ``local@domain`` (values, unquoted)."""
        tag = local[:4].upper() if is_srs(local) else ""
        if tag == "SRS1":
            # SRS1=hash=hop1=opaque@hopN: re-sign; bounces still go to hop1.
            hop1, opaque = self._parse_srs1(local)
            return self._srs1(hop1, opaque)
        if tag == "SRS0":
            # SRS0=opaque@hop1 (another forwarder's): keep it whole, with its separator.
            return self._srs1(domain, local[4:])
        stamp = self.timestamp()
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}"

    def _srs1(self, hop1: str, opaque: str) -> str:
        return f"SRS1={self._hash(hop1, opaque)}={hop1}={opaque}"

    # --- reversing ------------------------------------------------------------------------

    def reverse(self, address: str) -> str:
        """Where a bounce to the SRS address ``address`` goes: the original sender for SRS0,
        the first hop's SRS0 address for SRS1. Raises an :class:`SRSError` when it is
        malformed, its hash is wrong or it has expired."""
        try:
            parts = _split(address)
        except ValueError as exc:
            raise MalformedSRS(str(exc)) from None
        local, domain = self.reverse_local(parts.local)
        return f"{format_local(local)}@{domain}"

    def reverse_local(self, local: str) -> tuple[str, str]:
        """(local part value, domain) of where a bounce to the SRS local part goes."""
        if not is_srs(local):
            raise MalformedSRS(f"{local!r} is not an SRS address")
        if local[:4].upper() == "SRS1":
            hop1, opaque = self._parse_srs1(local)
            self._check_hash(_srs1_hash(local), hop1, opaque)
            return "SRS0" + opaque, _domain(hop1)
        fields = local[5:].split("=", 3)
        if len(fields) != 4 or not all(fields):
            raise MalformedSRS(f"{local!r}: SRS0 needs hash=stamp=domain=local")
        given, stamp, domain, orig = fields
        day = _stamp_day(stamp)
        self._check_hash(given, stamp, domain, orig)
        self._check_age(stamp, day)
        return orig, _domain(domain)

    def _parse_srs1(self, local: str) -> tuple[str, str]:
        """(first hop, opaque part with its leading separator) of an SRS1 local part."""
        fields = local[5:].split("=", 2)
        if len(fields) != 3 or not fields[0] or not fields[1] or not _opaque_ok(fields[2]):
            raise MalformedSRS(f"{local!r}: SRS1 needs hash=host=<separator>opaque")
        return fields[1], fields[2]

    # --- hash and timestamp ---------------------------------------------------------------

    def _hash(self, *data: str, key: bytes | None = None) -> str:
        mac = hmac.new(key or self.keys[0], digestmod=hashlib.sha1)
        for item in data:
            mac.update(_lower(item).encode("utf-8", "surrogatepass"))
        return base64.b64encode(mac.digest()).decode("ascii")[: self.hash_length]

    def _check_hash(self, given: str, *data: str) -> None:
        if len(given) != self.hash_length:
            raise BadHash(f"hash {given!r} is not {self.hash_length} characters long")
        wanted = _lower(given).encode("utf-8", "surrogatepass")
        ok = False
        for key in self.keys:  # all of them, so that the time does not tell which matched
            ok |= hmac.compare_digest(wanted, _lower(self._hash(*data, key=key)).encode())
        if not ok:
            raise BadHash(f"hash {given!r} does not match")

    def timestamp(self, now: float | None = None) -> str:
        day = int((self.clock() if now is None else now) // TIME_PRECISION) % TIME_SLOTS
        return BASE32[day >> 5] + BASE32[day & 31]

    def _check_age(self, stamp: str, then: int) -> None:
        today = int(self.clock() // TIME_PRECISION) % TIME_SLOTS
        age = (today - then) % TIME_SLOTS  # a date in the future counts as ~1024 days old
        if age > self.max_age_days:
            raise Expired(f"timestamp {stamp} is {age} days old (at most {self.max_age_days})")


def _stamp_day(stamp: str) -> int:
    """The day (modulo 1024) of a two-character base32 timestamp."""
    up = stamp.upper()
    if len(up) != 2 or any(c not in BASE32 for c in up):
        raise MalformedSRS(f"timestamp {stamp!r} is not two base32 characters")
    return BASE32.index(up[0]) << 5 | BASE32.index(up[1])


def _srs1_hash(local: str) -> str:
    return local[5:].split("=", 1)[0]


def _opaque_ok(opaque: str) -> bool:
    return len(opaque) > 1 and opaque[0] in SEPARATORS


def _domain(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except ValueError as exc:
        raise MalformedSRS(f"bad domain {domain!r} in SRS address: {exc}") from None


# --- the server's SRS: secret file and settings ---------------------------------------------


def secret_path(config: Config) -> Path:
    """The secret file the server uses: ``srs.secret_file``, else one in the data directory."""
    return config.srs_secret_file or config.data_dir / SECRET_FILE_NAME


def read_secrets(path: Path) -> list[bytes]:
    """The secrets of a secrets file, one a line (blank lines skipped), the signing one first."""
    keys = [line.strip() for line in path.read_bytes().splitlines()]
    keys = [k for k in keys if k]
    if not keys:
        raise ValueError(f"SRS secret file {path} holds no secret")
    return keys


def ensure_secret(path: Path) -> None:
    """Make ``path`` with a new random secret (mode 0600) if there is no such file."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first
    with os.fdopen(fd, "w") as f:
        f.write(_random.token_urlsafe(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("made a new SRS secret in %s", path)


_cache: dict[tuple, SRS] = {}


def for_config(config: Config) -> SRS:
    """The server's SRS, from its secret file (made on first use when it is the default one,
    read again when it changes). Raises OSError/ValueError when it cannot be read."""
    path = secret_path(config)
    if config.srs_secret_file is None:
        ensure_secret(path)
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino, config.srs_max_age_days)
    srs = _cache.get(key)
    if srs is None:
        srs = SRS(read_secrets(path), config.srs_max_age_days)
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = srs
    return srs


def srs_domain(config: Config, alias_domain: str) -> str:
    """The domain of the SRS addresses we make for mail forwarded by an alias there."""
    return config.srs_domain or alias_domain
