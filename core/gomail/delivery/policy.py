"""What the outbound pipeline's plugins see and change: one delivery attempt and its TLS policy.

The queue runner makes an :class:`Attempt` for every try of one message to one destination
domain, runs the outbound stages on it (see :mod:`gomail.hookspecs`) and then follows what
they decided:

1. ``throttle``: may this destination get mail now? A tempfail postpones the attempt to
   ``attempt.retry_in`` seconds from now without counting it as a failed try.
2. ``route``: where does the mail go? Plugins may set ``attempt.mx`` (the hosts, instead of the
   MX look-up) or ``attempt.smarthost``; a reject fails the recipients, a tempfail defers them.
3. ``tls_policy``, once per MX host before connecting to it: plugins tighten
   ``policy`` (:class:`TLSPolicy`); a tempfail or reject skips that host.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gomail.dns import MXHost

if TYPE_CHECKING:
    from gomail.config import Smarthost


@dataclass(slots=True)
class Attempt:
    """One try of one queued message to one destination domain.

    ``recipients`` are the envelope recipients of this domain; ``attempts`` how many tries
    failed before this one (0 on the first); ``created`` when the message was queued.
    """

    queue_id: str
    sender: str
    domain: str
    recipients: list[str]
    size: int
    attempts: int
    created: float
    # route: None means "look up the domain's MX records" (RFC 5321 5.1)
    mx: list[MXHost] | None = None
    smarthost: Smarthost | None = None
    # throttle: how long a tempfail of the throttle stage postpones the attempt
    retry_in: float = 60.0


@dataclass(frozen=True, slots=True)
class PeerTLS:
    """The TLS session with an MX host, as the policy checks see it.

    ``chain`` is the certificate chain the server sent, leaf first, each DER-encoded, as
    received (unverified: a check decides what to trust).
    """

    host: str
    ip: str
    version: str | None
    cipher: str | None
    chain: tuple[bytes, ...]


# A check returns None when the peer is acceptable, else the reason it is not.
TLSCheck = Callable[[PeerTLS], "str | None"]


@dataclass(slots=True)
class TLSPolicy:
    """What TLS the connection to one MX host must have, as the tls_policy stage decided.

    It starts opportunistic: STARTTLS when offered, any certificate, plaintext when STARTTLS
    is missing or its handshake fails. A plugin that knows better (DANE, MTA-STS) sets
    ``required`` (no plaintext: the host is skipped and the mail deferred instead) and adds
    ``checks`` that judge the certificate chain after the handshake; a failed check ends the
    session before MAIL FROM and the next host is tried. ``required_by`` names the plugins
    that required TLS, for the logs and the deferral text.

    ``authenticated_by`` names the plugin that authenticates the host from DNSSEC (DANE,
    RFC 7672): later plugins of the stage leave the certificate to it (RFC 8461 2: MTA-STS
    must not override DANE, and a DANE-EE certificate need not chain to a public CA).
    """

    domain: str
    host: str
    required: bool = False
    checks: list[tuple[str, TLSCheck]] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)
    authenticated_by: str | None = None
    plaintext_watchers: list[tuple[str, Callable[[str], None]]] = field(default_factory=list)

    def require(self, by: str) -> None:
        """TLS is mandatory for this host; ``by`` (a plugin name) says who wants it."""
        self.required = True
        if by not in self.required_by:
            self.required_by.append(by)

    def add_check(self, by: str, check: TLSCheck) -> None:
        """Judge the peer's certificates with ``check`` after the handshake."""
        self.checks.append((by, check))

    def authenticate(self, by: str, check: TLSCheck) -> None:
        """TLS is mandatory and ``check`` is what authenticates the host (DANE's TLSA)."""
        self.require(by)
        self.add_check(by, check)
        self.authenticated_by = by

    def on_plaintext(self, by: str, watcher: Callable[[str], None]) -> None:
        """Call ``watcher(reason)`` if the session goes on without TLS (no STARTTLS offered,
        or its handshake failed): a policy in report-only mode (MTA-STS ``testing``) logs it."""
        self.plaintext_watchers.append((by, watcher))

    def plaintext(self, reason: str) -> None:
        """The session goes on without TLS, for ``reason``: tell the watchers."""
        for _by, watcher in self.plaintext_watchers:
            watcher(reason)

    def judge(self, peer: PeerTLS) -> str | None:
        """The first failed check's reason (prefixed with its plugin), or None."""
        for by, check in self.checks:
            problem = check(peer)
            if problem:
                return f"{by}: {problem}"
        return None


def peer_tls(ssl_object: ssl.SSLObject | None, host: str, ip: str) -> PeerTLS:
    """The :class:`PeerTLS` of an established TLS session (the asyncio transport's
    ``ssl_object``), with the whole chain the server sent."""
    if ssl_object is None:
        return PeerTLS(host, ip, None, None, ())
    chain: tuple[bytes, ...] = ()
    # ssl.SSLObject.get_unverified_chain is public from Python 3.13; 3.11 and 3.12 have it on
    # the C object underneath.
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is not None:
        with contextlib.suppress(Exception):
            chain = tuple(_der(c) for c in getter() or ())
    if not chain:
        leaf = ssl_object.getpeercert(binary_form=True)
        chain = (leaf,) if leaf else ()
    cipher = ssl_object.cipher()
    return PeerTLS(host, ip, ssl_object.version(), cipher[0] if cipher else None, chain)


def _der(cert) -> bytes:
    if isinstance(cert, bytes):
        return cert
    return cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
