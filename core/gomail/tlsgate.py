"""Implicit TLS (ports 465 and 993) with the TLS handshake counted like a connection.

With ``create_server(ssl=...)`` asyncio runs the handshake before the listener's protocol
sees the connection, so a client that opens sockets and never finishes a handshake holds a
descriptor and a TLS state for 60 s each, past every connection limit. Here the listener
accepts plain TCP; :class:`HandshakeGate` counts the connection in a
:class:`gomail.limits.ConnectionLimiter` of handshakes in progress (the listener's own
limits), gives it ``limits.tls_handshake_timeout`` seconds, and only then hands the TLS
transport to the listener's protocol, which counts established connections as before.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from gomail.config import Limits
from gomail.limits import ConnectionLimiter

log = logging.getLogger("gomail.tls")


class HandshakeGate(asyncio.Protocol):
    """The protocol of one connection until its TLS handshake is done."""

    def __init__(
        self,
        factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        pending: ConnectionLimiter,
        timeout: float,
        tasks: set[asyncio.Task],
    ) -> None:
        self.factory = factory
        self.context = context
        self.pending = pending
        self.timeout = timeout
        self.tasks = tasks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Paused before asyncio starts reading, so the ClientHello waits in the socket for
        # the TLS layer instead of arriving here.
        transport.pause_reading()  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self.pending.admit(ip) is not None:
            transport.abort()  # nothing can be said before TLS: the client sees a reset
            return
        task = asyncio.get_running_loop().create_task(self._handshake(transport, ip))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handshake(self, transport: asyncio.BaseTransport, ip: str) -> None:
        protocol = self.factory()
        try:
            tls_transport = await asyncio.get_running_loop().start_tls(
                transport,  # type: ignore[arg-type]
                protocol,
                self.context,
                server_side=True,
                ssl_handshake_timeout=self.timeout,
            )
        except (OSError, ssl.SSLError) as exc:  # reset, timeout, a bad ClientHello
            transport.abort()
            log.debug("TLS handshake with %s failed: %r", ip, exc)
            return
        except asyncio.CancelledError:
            transport.abort()
            raise
        finally:
            self.pending.release(ip)
        protocol.connection_made(tls_transport)


def implicit_tls(
    factory: Callable[[], asyncio.BaseProtocol], context: ssl.SSLContext, limits: Limits
) -> Callable[[], HandshakeGate]:
    """A protocol factory for a plain-TCP listener that serves ``factory``'s protocol over
    TLS, with at most ``limits.connections`` handshakes at once (``connections_per_ip`` from
    one client address), each given ``limits.tls_handshake_timeout`` seconds."""
    pending = ConnectionLimiter(limits.connections, limits.connections_per_ip)
    timeout = limits.tls_handshake_timeout
    tasks: set[asyncio.Task] = set()  # strong references while handshakes run
    return lambda: HandshakeGate(factory, context, pending, timeout, tasks)
