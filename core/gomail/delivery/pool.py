"""Idle SMTP connections kept for the next message to the same destination.

Opening a session (TCP, greeting, EHLO, STARTTLS, EHLO again, AUTH for a smarthost) costs more
than the transaction itself; when many messages go to one destination, the queue runner sends
the next one on the connection the last one used, as Postfix's connection cache does. A
connection is kept only for the same key (destination domain, address, port, host name and
TLS policy, so that mail under a stricter policy never rides a connection made under a looser
one), at most :data:`IDLE_TIME` seconds without use and :data:`MAX_TRANSACTIONS` transactions,
and at most :data:`MAX_IDLE_PER_KEY` idle connections per key. A connection the far side
closed meanwhile shows at MAIL FROM, before anything was decided: the runner then opens a
fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable

from gomail.delivery.client import Connection, Timeouts, close, quit_and_close

IDLE_TIME = 5.0  # seconds an idle connection is kept
MAX_TRANSACTIONS = 100  # transactions on one connection before it is closed
MAX_IDLE_PER_KEY = 4


class ConnectionPool:
    """``take(key)`` an idle connection (or None), ``put(key, conn)`` it back after a
    transaction; ``await close_all()`` at shutdown."""

    def __init__(self, timeouts: Timeouts, idle_time: float = IDLE_TIME) -> None:
        self.timeouts = timeouts
        self.idle_time = idle_time
        self._idle: dict[Hashable, list[tuple[Connection, asyncio.TimerHandle]]] = {}
        self._closing: set[asyncio.Task] = set()

    def take(self, key: Hashable) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn, timer = idle.pop()
            timer.cancel()
            if not idle:
                del self._idle[key]
            if conn.usable and conn.client.is_connected:
                return conn
            close(conn)
        return None

    def put(self, key: Hashable, conn: Connection) -> None:
        """Keep conn for the next transaction to key, or say QUIT if it should not be kept."""
        idle = self._idle.setdefault(key, [])
        if (
            not conn.usable
            or not conn.client.is_connected
            or conn.transactions >= MAX_TRANSACTIONS
            or len(idle) >= MAX_IDLE_PER_KEY
        ):
            if not idle:
                del self._idle[key]
            self._quit(conn)
            return
        timer = asyncio.get_running_loop().call_later(self.idle_time, self._expire, key, conn)
        idle.append((conn, timer))

    def _expire(self, key: Hashable, conn: Connection) -> None:
        idle = self._idle.get(key)
        if not idle:
            return
        for i, (c, _timer) in enumerate(idle):
            if c is conn:
                del idle[i]
                break
        else:
            return
        if not idle:
            del self._idle[key]
        self._quit(conn)

    def _quit(self, conn: Connection) -> None:
        task = asyncio.create_task(quit_and_close(conn, self.timeouts))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def __len__(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def close_all(self) -> None:
        """QUIT every idle connection (briefly: a shutdown does not wait on the far side)."""
        for idle in self._idle.values():
            for conn, timer in idle:
                timer.cancel()
                self._quit(conn)
        self._idle.clear()
        if self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._closing, return_exceptions=True), 5.0)
        for task in list(self._closing):
            task.cancel()
