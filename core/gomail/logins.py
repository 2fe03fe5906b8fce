"""Logins, the same for every protocol: the password check, the delay that slows guessing,
the lock-out of an address that keeps failing, and the security events.

Each protocol keeps its own per-connection failure count (it decides when to hang up) and
its own replies; everything else about a login attempt happens here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gomail import events
from gomail.address import normalize_address
from gomail.clients import client_key
from gomail.limits import KeyedCounter, SlidingCount

if TYPE_CHECKING:
    from gomail.app import App

log = logging.getLogger("gomail.logins")

DELAY_STEP = 1.0  # seconds added to the reply per failure in a connection
DELAY_MAX = 5.0
FAILURES_BEFORE_DISCONNECT = 5  # per connection; the protocol hangs up


@dataclass(frozen=True, slots=True)
class LoginResult:
    """``user`` (the canonical address) on success; else None, and ``locked`` when the client
    address is locked out (its password was not even checked)."""

    user: str | None
    locked: bool = False


class LoginGuard:
    """Failed logins per client address (IPv6 per /64) in a sliding window.

    Past ``max_failures`` within ``window`` seconds the address is locked out until its
    failures age out. Per address, not per account: locking accounts would let anyone lock
    out their owner.

    The limit holds under concurrency: an attempt takes a reservation (``reserve``) before
    its password is checked, and the reservation counts as a failure until it is settled as
    one (``failed``) or given back on success (``release``). So however many attempts from
    one address arrive at once, at most ``max_failures`` of them are ever checked against a
    password within the window; the rest are answered as locked out.
    """

    def __init__(self, max_failures: int = 10, window: float = 900.0) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures = SlidingCount(window)
        self._in_flight = KeyedCounter(max_failures)

    def locked(self, ip: str) -> bool:
        """Whether ``ip`` has used up its failures (settled ones only)."""
        return self._failures.count(client_key(ip)) >= self.max_failures

    def reserve(self, ip: str) -> bool:
        """Take a reservation for one attempt from ``ip``: False when the address is locked
        out, counting the attempts in flight. Settle it with ``failed`` or ``release``."""
        key = client_key(ip)
        if self._failures.count(key) + self._in_flight.count(key) >= self.max_failures:
            return False
        return self._in_flight.acquire(key)

    def release(self, ip: str) -> None:
        """Give back a reservation whose attempt succeeded."""
        self._in_flight.release(client_key(ip))

    def failed(self, ip: str) -> None:
        """Record a failure; with a reservation, ``release`` it first (``login`` does)."""
        self._failures.add(client_key(ip))


async def login(
    app: App,
    *,
    protocol: str,
    listener: str,
    peer: str,
    login: str,
    secret: str,
    mechanism: str,
    failures: int,
    session: str | None = None,
) -> LoginResult:
    """Check one login attempt. ``failures`` counts this connection's failures before it; a
    failure is answered only after a delay that grows with it."""
    guard = app.login_guard
    if not guard.reserve(peer):
        app.emit(
            events.LOGIN_FAILED, protocol=protocol, listener=listener, peer=peer,
            username=login[:200], failures=failures + 1, locked=True,
        )  # fmt: skip
        log.warning(
            "login refused: address locked out",
            extra={"fields": {"protocol": protocol, "peer": peer, "user": login[:200]}},
        )
        await asyncio.sleep(DELAY_MAX)
        return LoginResult(None, locked=True)
    try:
        user = normalize_address(login)
    except ValueError:
        user = None
    try:
        ok = user is not None and bool(secret) and await app.check_password(user, secret)
    except asyncio.CancelledError:
        # The client hung up during the check: counted as a guess, or hanging up would be a
        # way to try passwords (and spend hashes) past the limit.
        guard.release(peer)
        guard.failed(peer)
        raise
    except BaseException:
        guard.release(peer)
        raise
    # The reservation becomes a failure (below) in the same step, so the limit has no gap.
    guard.release(peer)
    if ok:
        app.emit(
            events.LOGIN_SUCCEEDED, protocol=protocol, listener=listener, peer=peer, username=user
        )
        return LoginResult(user)
    guard.failed(peer)
    failures += 1
    app.emit(
        events.LOGIN_FAILED, protocol=protocol, listener=listener, peer=peer,
        username=login[:200], failures=failures, locked=False,
    )  # fmt: skip
    log.warning(
        "authentication failed",
        extra={"fields": {"protocol": protocol, "session": session, "peer": peer,
                          "user": login[:200], "mechanism": mechanism, "failures": failures}},
    )  # fmt: skip
    await asyncio.sleep(min(DELAY_STEP * failures, DELAY_MAX))
    return LoginResult(None)
