"""Connection rate limit per client address, at the connect stage. Entry point ``ratelimit``.

A token bucket per IP (IPv6 by /64): ``rate`` new connections per minute with bursts of
``burst``. Over the limit the client gets 421 4.7.0 and is disconnected.
"""

from __future__ import annotations

import time

from gomail import Verdict, hookimpl
from gomail.clients import client_key
from gomail.options import Option

MAX_TRACKED = 100_000


class RateLimit:
    """Per-address token buckets; one instance serves every pipeline that names it."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    @hookimpl
    def gomail_plugin_options(self):
        return {
            "rate": Option(float, 600.0, "connections per minute per client address"),
            "burst": Option(int, 200, "connections allowed at once before the rate applies"),
            "exempt_loopback": Option(bool, True, "never limit 127.0.0.0/8 and ::1"),
        }

    @hookimpl
    def gomail_connect(self, session, options):
        if options["exempt_loopback"] and (
            session.peer_ip.startswith("127.") or session.peer_ip == "::1"
        ):
            return None
        key = client_key(session.peer_ip)
        now = time.monotonic()
        per_second = options["rate"] / 60.0
        burst = float(options["burst"])
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return Verdict.tempfail(421, "4.7.0", "Too many connections, slow down")
        if len(self._buckets) >= MAX_TRACKED and key not in self._buckets:
            self._buckets.clear()  # crude but bounded: a flood of addresses resets the table
        self._buckets[key] = (tokens - 1.0, now)
        return None
