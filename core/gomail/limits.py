"""Counting what clients hold, so that no client (or crowd of clients) takes the whole server.

- :class:`ConnectionLimiter`: concurrent connections on one listener, in all and per client
  address; SMTP answers ``421`` and IMAP ``* BYE`` beyond them, and :class:`RefusalLog` says
  so in the log once a minute with a count.
- :class:`KeyedCounter`: concurrent holdings of any key (an IMAP user at one address).
- :class:`SlidingCount`: events per key within a time window (unknown recipients per address).

The settings are :class:`gomail.config.Limits` (the ``limits:`` section). A client address is
counted by :func:`gomail.clients.client_key` (IPv6 per /64).
"""

from __future__ import annotations

import logging
import time
from collections import deque

from gomail.clients import client_key

MAX_TRACKED = 100_000  # keys a SlidingCount keeps; a flood of new addresses resets it
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines about refused connections


class KeyedCounter:
    """How many of something each key holds now; ``acquire`` refuses past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._held.get(key, 0)

    def acquire(self, key: str) -> bool:
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)


class ConnectionLimiter:
    """Concurrent connections of one listener: at most ``total``, and ``per_ip`` from one
    client address. ``admit`` counts a connection in (None) or says why not."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.open = 0
        self._per_ip = KeyedCounter(per_ip)

    def admit(self, ip: str) -> str | None:
        """None when the connection is counted in (``release`` it later); else the reason."""
        if self.open >= self.total:
            return "too many connections, try again later"
        if not self._per_ip.acquire(client_key(ip)):
            return "too many connections from your address"
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        self._per_ip.release(client_key(ip))


class RefusalLog:
    """The connections one listener refused over its limits, in the log: a flood of refusals
    must not flood the log too, so one line per REFUSAL_LOG_INTERVAL, with the count since
    the last one."""

    def __init__(self, log: logging.Logger, listener: str) -> None:
        self.log = log
        self.listener = listener
        self.refused = 0  # since the last line
        self.logged = -REFUSAL_LOG_INTERVAL  # the first refusal is logged at once

    def note(self, ip: str, reason: str, limiter: ConnectionLimiter) -> None:
        """One connection from ``ip`` refused for ``reason``."""
        self.refused += 1
        now = time.monotonic()
        if now - self.logged >= REFUSAL_LOG_INTERVAL:
            self.log.warning(
                "connections refused: limit reached",
                extra={"fields": {"listener": self.listener, "last_peer": ip, "reason": reason,
                                  "refused": self.refused, "open": limiter.open}},
            )  # fmt: skip
            self.refused, self.logged = 0, now


class SlidingCount:
    """Events per key within the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def count(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        times = self._events.get(key)
        if times is None:
            return 0
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._events[key]
            return 0
        return len(times)

    def add(self, key: str, now: float | None = None) -> int:
        """Record one event; the count within the window, this one included."""
        now = time.monotonic() if now is None else now
        if key not in self._events and len(self._events) >= MAX_TRACKED:
            self._events.clear()
        count = self.count(key, now)
        self._events.setdefault(key, deque()).append(now)
        return count + 1
