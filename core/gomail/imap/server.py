"""IMAP listeners: accept connections and run an IMAP session on each.

``gomail run`` makes one :class:`ImapListener` per IMAP listener (``imap`` with STARTTLS,
``imaps`` with implicit TLS) and stops them on SIGTERM. Each listener counts its connections
(``limits.connections`` in all, ``limits.connections_per_ip`` from one client address); past
either, the client gets ``* BYE [UNAVAILABLE]`` and is closed before a session is made, and
the log says so once a minute with a count (:class:`gomail.limits.RefusalLog`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from gomail.imap.session import ImapSession
from gomail.limits import ConnectionLimiter, RefusalLog
from gomail.tlsgate import implicit_tls

if TYPE_CHECKING:
    from gomail.app import App

log = logging.getLogger("gomail.imap")

READ_LIMIT = 64 * 1024  # bytes a line may take in the reader before it is cut off


class ImapListener:
    """One listening socket and the sessions on it."""

    def __init__(
        self, app: App, name: str, tls_context: ssl.SSLContext, implicit_tls: bool
    ) -> None:
        self.app = app
        self.name = name
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.server: asyncio.base_events.Server | None = None
        self.sessions: set[asyncio.Task] = set()
        limits = app.config.limits
        self.limiter = ConnectionLimiter(limits.connections, limits.connections_per_ip)
        self.refusals = RefusalLog(log, name)

    @property
    def address(self) -> str:
        if self.server is None or not self.server.sockets:
            return ""
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()

        def stream_protocol() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=READ_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._serve, loop=loop)

        factory: Callable[[], asyncio.BaseProtocol] = stream_protocol
        if self.implicit_tls:
            factory = implicit_tls(factory, self.tls_context, self.app.config.limits)
        self.server = await loop.create_server(
            factory, host, port, reuse_address=True, backlog=1024
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) and peer else ""
        refusal = self.limiter.admit(ip)
        if refusal is not None:
            self.refusals.note(ip, refusal, self.limiter)
            # Before any session exists: one short line, no read, and the socket is closed
            # (the transport sends what it can of the line and then lets go).
            writer.write(f"* BYE [UNAVAILABLE] {refusal.capitalize()}\r\n".encode())
            writer.close()
            return
        try:
            await self._session(reader, writer)
        finally:
            self.limiter.release(ip)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.sessions.add(task)
        try:
            await ImapSession(self.app, self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop(): the session said BYE. Ending normally keeps asyncio's stream callback
            # (Python 3.11) from logging the cancellation as an error.
            pass
        except Exception:
            log.exception("IMAP session failed")
        finally:
            self.sessions.discard(task)
            writer.close()

    def close(self) -> None:
        """Stop accepting connections."""
        if self.server is not None:
            self.server.close()

    async def stop(self) -> None:
        """Close every session (each says BYE if it can) and wait for them, bounded."""
        self.close()
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.wait(set(self.sessions), timeout=5)
