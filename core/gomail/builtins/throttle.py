"""The core's outbound rate limit: the ``throttle`` plugin of the outbound ``throttle`` stage.

It counts delivery attempts (one message to one destination domain, whatever its number of
recipients) per destination in a sliding window of a minute, and postpones an attempt when the
domain had its share: the entries wait, without an attempt counted and without a word to the
sender, until the window has room again. Big providers publish such limits (and answer 421 or
451 4.7.x past them); staying under them keeps our reputation::

    outbound:
      throttle: [{throttle: {per_minute: 120, domains: {gmail.com: 600, small.example: 10}}}]

The connection limits (``delivery.concurrency``, ``delivery.per_domain``) are the queue
runner's own and apply with or without this plugin. The counts live in memory: a restart
forgets them, which at worst lets one minute's share through again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gomail.delivery.policy import Attempt
from gomail.options import Option
from gomail.verdict import Verdict

WINDOW = 60.0
MAX_TRACKED = 10_000  # destination domains counted before the idle ones are forgotten


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else f"expected 0 or more, got {value}"


def _domain_limits(value: dict) -> str | None:
    for domain, limit in value.items():
        if not isinstance(domain, str) or not domain:
            return f"a domain name is expected as key, got {domain!r}"
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            return f"{domain}: expected a number of attempts a minute (0 or more), got {limit!r}"
    return None


class Throttle:
    """Entry point ``throttle``; one instance keeps the counts of the whole server."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._starts: dict[str, deque[float]] = {}

    def gomail_plugin_options(self) -> dict[str, Option]:
        return {
            "per_minute": Option(
                int,
                0,
                "delivery attempts a minute to one destination domain (0: no limit)",
                validate=_not_negative,
            ),
            "domains": Option(
                dict,
                {},
                "per-domain limits that replace per_minute: {domain: attempts a minute}",
                validate=_domain_limits,
            ),
        }

    def limit_for(self, domain: str, options: dict) -> int:
        for name, value in (options.get("domains") or {}).items():
            if str(name).lower().rstrip(".") == domain:
                return value
        return options.get("per_minute") or 0

    async def gomail_throttle(self, attempt: Attempt, options: dict) -> Verdict | None:
        limit = self.limit_for(attempt.domain, options)
        if limit <= 0:
            return None
        now = self.clock()
        if len(self._starts) > MAX_TRACKED:
            self._forget(now)
        starts = self._starts.setdefault(attempt.domain, deque())
        while starts and starts[0] <= now - WINDOW:
            starts.popleft()
        if len(starts) < limit:
            starts.append(now)
            return None
        attempt.retry_in = max(starts[0] + WINDOW - now, 1.0)
        return Verdict.tempfail(
            451, "4.4.5", f"{attempt.domain} gets at most {limit} deliveries a minute"
        )

    def _forget(self, now: float) -> None:
        for domain in [d for d, s in self._starts.items() if not s or s[-1] <= now - WINDOW]:
            del self._starts[domain]
