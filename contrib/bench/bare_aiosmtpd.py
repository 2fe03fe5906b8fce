"""A bare aiosmtpd server whose handler only answers 250: the floor gomail is measured against.

    python contrib/bench/bare_aiosmtpd.py --port 2525 [--host 127.0.0.1]

Nothing is parsed, checked or stored.  It runs on the default asyncio event loop (as gomail does)
until SIGTERM or SIGINT, then exits 0.  The server hostname is given explicitly: left unset,
aiosmtpd calls socket.getfqdn() for every connection, which would measure the resolver instead.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

from aiosmtpd.smtp import SMTP

HOSTNAME = "bench.localhost"


class AcceptAll:
    """Every RCPT is taken by aiosmtpd's default; DATA is answered 250 and dropped."""

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd name)
        return "250 2.0.0 OK"


def serve(handler_factory: Callable[[], object], host: str, port: int) -> None:
    """Serve SMTP with `handler_factory()` on host:port until SIGTERM/SIGINT."""

    async def main() -> None:
        handler = handler_factory()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname=HOSTNAME, ident="bench"),
            host=host,
            port=port,
            backlog=1024,
            reuse_address=True,
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        await server.wait_closed()
        close = getattr(handler, "close", None)
        if close is not None:
            close()

    asyncio.run(main())


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args("bare aiosmtpd: answers 250 to everything, stores nothing")
    serve(AcceptAll, args.host, args.port)
